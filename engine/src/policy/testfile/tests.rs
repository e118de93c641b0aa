use std::path::Path;

use super::*;
use crate::policy::{PolicyFile, load_files};

const POLICIES: &str = r#"
@id("gh") permit(principal, action == Net::Action::"Connect", resource in Net::Domain::"github.com");
@id("no-wf") @reason("ci") forbid(principal, action == File::Action::"Write", resource) when { resource.path like "*/.github/workflows/*" };
@id("files") permit(principal, action == File::Action::"Write", resource);
@id("unused") permit(principal, action == Mcp::Action::"ListTools", resource);
"#;

fn authz() -> Authorizer {
    let files = vec![PolicyFile { name: "p.cedar".into(), text: POLICIES.into() }];
    Authorizer::new(load_files("t", files).expect("valid"), 10)
}

const CASES: &str = r#"
policies = "../pol"

[[case]]
name = "github"
action = 'Net::Action::"Connect"'
resource = { host = "API.github.com" }
expect = "allow"
policies = ["gh"]

[[case]]
name = "workflow write"
action = "File::Write"
resource = { path = "/workspace/.github/workflows/ci.yml" }
expect = "deny"

[[case]]
name = "wrong expectation"
action = "File::Write"
resource = { path = "/workspace/src/main.rs" }
expect = "deny"
"#;

#[test]
fn cases_run_and_report_pass_and_fail() {
    let file = parse(Path::new("/t/tests/cases.toml"), CASES).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(file.policies, Some(PolicyRef::Dir("/t/pol".into())));
    let results = run(&file, &authz());
    let passed: Vec<bool> = results.iter().map(|r| r.passed).collect();
    assert_eq!(passed, [true, true, false]);
    assert_eq!(results[2].got.effect, Effect::Allow);
    assert_eq!(results[1].line, 12);
}

fn parse_err(text: &str) -> Diagnostic {
    parse(Path::new("t.toml"), text).expect_err("must fail")
}

#[test]
fn malformed_files_get_file_line_col() {
    let d = parse_err("[[case]]\nname = \"x\"\naction = \n");
    assert_eq!((d.file.as_str(), d.line), ("t.toml", 3), "{d}");
    let d = parse_err("[[case]]\nname = \"x\"\nacton = \"Net::Connect\"\n");
    assert!(d.message.contains("acton"), "{d}");
}

#[test]
fn bad_case_fields_name_the_case_and_line() {
    let base = "[[case]]\nname = \"c1\"\naction = \"Net::Connect\"\nexpect = \"allow\"\n";
    let d = parse_err(&format!("{base}resource = {{ hots = \"a\" }}\n"));
    assert_eq!(d.line, 5, "{d}");
    assert!(d.message.contains("case `c1`") && d.message.contains("hots"), "{d}");
    let d = parse_err(&format!("{base}resource = {{ host = \"a\" }}\ncontext = {{ tls = \"yes\" }}\n"));
    assert_eq!(d.line, 6, "{d}");
    let d = parse_err(
        "[[case]]\nname = \"c\"\naction = \"Net::Conect\"\nexpect = \"allow\"\nresource = { host = \"a\" }\n",
    );
    assert!(d.message.contains("unknown action"), "{d}");
    let d = parse_err(
        "[[case]]\nname = \"c\"\naction = \"Net::Connect\"\nexpect = \"permit\"\nresource = { host = \"a\" }\n",
    );
    assert!(d.message.contains("shadow-deny"), "{d}");
}

#[test]
fn mcp_arguments_reach_the_context() {
    let text = "[[case]]\nname = \"m\"\naction = 'Mcp::Action::\"CallTool\"'\nresource = { server = \"fs\", tool = \"write_file\" }\ncontext = { arguments = { path = \"/w/.github/workflows/x\", mode = 1 } }\nexpect = \"allow\"\n";
    let file = parse(Path::new("t.toml"), text).expect("valid");
    let Detail::Call(call) = &file.cases[0].request.context.detail else { panic!("call context") };
    assert!(call.arguments_json.contains("\"mode\":1"), "{}", call.arguments_json);
    assert_eq!(call.arguments[0].0, "path");
}
