//! `bridle policy …` end to end: the real binary on real policy files.

mod support;

use support::{bridle, bridle_in, write_files};

#[test]
fn shipped_policy_sets_validate_and_lint_clean() {
    let run = bridle(&["policy", "validate", "policies/default", "policies/examples"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.contains("policies/default: OK"), "{}", run.all());
    let run = bridle(&["policy", "lint", "policies/default", "policies/examples"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let run = bridle(&["policy", "fmt", "--check", "policies/default", "policies/examples"]);
    assert_eq!(run.code, 0, "{}", run.all());
}

#[test]
fn without_a_directory_the_builtin_default_set_is_used() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = bridle_in(dir.path(), &["policy", "validate"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.contains("builtin:default: OK"), "{}", run.all());
}

#[test]
fn a_single_allow_all_line_is_a_valid_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_files(dir.path(), &[("p/all.cedar", "permit(principal, action, resource);\n")]);
    let run = bridle_in(dir.path(), &["policy", "validate", "p"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.contains("OK, 1 policies in 1 files"), "{}", run.all());
}

#[test]
fn syntax_and_schema_errors_name_file_line_col_and_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_files(
        dir.path(),
        &[
            ("p/a.cedar", "@id(\"ok\")\npermit(principal, action, resource);\n"),
            ("p/b.cedar", "\n\nforbid(principal action, resource);\n"),
            (
                "p/c.cedar",
                "@id(\"typo\")\nforbid(principal, action == Net::Action::\"Connect\", resource)\nwhen { resource.prot == \"udp\" };\n",
            ),
            ("p/d.cedar", "@id(\"ok\") permit(principal, action == Dns::Action::\"Lookup\", resource);\n"),
        ],
    );
    let run = bridle_in(dir.path(), &["policy", "validate", "p"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stdout.contains("p/b.cedar:3:"), "syntax error location: {}", run.all());
    assert!(run.stdout.contains("p/c.cedar:3:") && run.stdout.contains("(policy `typo`)"), "{}", run.all());
    assert!(run.stdout.contains("prot"), "{}", run.all());
    assert!(run.stdout.contains("duplicate @id `ok`"), "{}", run.all());
    assert!(run.stdout.contains("Lookup"), "unknown action named: {}", run.all());
}

#[test]
fn fmt_check_fails_then_fmt_fixes_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_files(dir.path(), &[("p/a.cedar", "// keep\n@id(\"a\") permit(principal,action,resource)   ;\n")]);
    let run = bridle_in(dir.path(), &["policy", "fmt", "--check", "p"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stdout.contains("p/a.cedar: not formatted"), "{}", run.all());
    let run = bridle_in(dir.path(), &["policy", "fmt", "p"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let text = std::fs::read_to_string(dir.path().join("p/a.cedar")).expect("read");
    assert!(text.contains("// keep") && text.contains("permit (principal, action, resource);"), "{text}");
    let run = bridle_in(dir.path(), &["policy", "fmt", "--check", "p"]);
    assert_eq!(run.code, 0, "{}", run.all());
}

#[test]
fn lint_reports_codes_with_locations() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_files(
        dir.path(),
        &[(
            "p/a.cedar",
            "@id(\"gh\")\npermit(principal, action, resource) when { resource.name like \"*github.com\" };\n\
             @id(\"no\")\nforbid(principal, action, resource);\n",
        )],
    );
    let run = bridle_in(dir.path(), &["policy", "lint", "p"]);
    assert_eq!(run.code, 1, "{}", run.all());
    for expected in ["p/a.cedar:1:1: warning[BL003]", "warning[BL001]", "p/a.cedar:3:1: warning[BL002]"] {
        assert!(run.stdout.contains(expected), "{expected}: {}", run.all());
    }
}

#[test]
fn shipped_policy_tests_pass_and_cover_every_policy() {
    let run = bridle(&["policy", "test", "policies/tests/"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.contains(" 0 failed"), "{}", run.all());
    assert!(!run.stdout.contains("not exercised"), "{}", run.all());
}

#[test]
fn failing_case_and_uncovered_policy_are_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_files(
        dir.path(),
        &[
            (
                "p/a.cedar",
                "@id(\"gh\") permit(principal, action, resource in Net::Domain::\"github.com\");\n\
                 @id(\"never\") permit(principal, action == File::Action::\"Exec\", resource);\n",
            ),
            (
                "t/cases.toml",
                "policies = \"../p\"\n\n[[case]]\nname = \"gh ok\"\naction = 'Net::Action::\"Connect\"'\n\
                 resource = { host = \"api.github.com\" }\nexpect = \"allow\"\n\n[[case]]\nname = \"wrong\"\n\
                 action = 'Net::Action::\"Connect\"'\nresource = { host = \"evilgithub.com\" }\nexpect = \"allow\"\n",
            ),
        ],
    );
    let run = bridle_in(dir.path(), &["policy", "test", "t"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stdout.contains("ok    gh ok"), "{}", run.all());
    assert!(run.stdout.contains("FAIL  wrong") && run.stdout.contains("t/cases.toml:10"), "{}", run.all());
    assert!(run.stdout.contains("not exercised: never (p/a.cedar:2:"), "{}", run.all());
    assert!(run.stdout.contains("1 passed, 1 failed"), "{}", run.all());
}

#[test]
fn malformed_test_file_is_an_input_error_with_location() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_files(
        dir.path(),
        &[(
            "t/bad.toml",
            "[[case]]\nname = \"x\"\naction = 'Net::Action::\"Connect\"'\nexpect = \"allow\"\nresource = { hots = \"a\" }\n",
        )],
    );
    let run = bridle_in(dir.path(), &["policy", "test", "t/bad.toml"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("t/bad.toml:5:") && run.stderr.contains("hots"), "{}", run.all());
}

#[test]
fn config_chooses_the_policy_dir_and_bad_config_names_the_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_files(
        dir.path(),
        &[
            ("bridle.toml", "[policies]\ndir = \"mine\"\n"),
            ("mine/only.cedar", "@id(\"only\") forbid(principal, action, resource);\n"),
            (
                "t/c.toml",
                "[[case]]\nname = \"all denied\"\naction = 'Dns::Action::\"Resolve\"'\nresource = { name = \"a.test\" }\nexpect = \"deny\"\npolicies = [\"only\"]\n",
            ),
        ],
    );
    let run = bridle_in(dir.path(), &["policy", "test", "t"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.contains("(policies: ") && run.stdout.contains("mine"), "{}", run.all());

    write_files(dir.path(), &[("broken.toml", "[policies]\ndir = \"mine\"\nfrobnicate = true\n")]);
    let run = bridle_in(dir.path(), &["policy", "test", "t", "--config", "broken.toml"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("broken.toml:3:") && run.stderr.contains("frobnicate"), "{}", run.all());
}

#[test]
fn missing_directory_is_an_input_error() {
    let run = bridle(&["policy", "validate", "/nonexistent/policies"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("/nonexistent/policies"), "{}", run.all());
}
