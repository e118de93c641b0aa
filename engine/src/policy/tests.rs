use super::*;

fn file(name: &str, text: &str) -> PolicyFile {
    PolicyFile { name: name.into(), text: text.into() }
}

fn errors(files: Vec<PolicyFile>) -> Vec<Diagnostic> {
    match load_files("test", files) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.diagnostics().to_vec(),
    }
}

#[test]
fn builtin_default_set_is_valid_and_matches_the_policies_directory() {
    let loaded = builtin_default().unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.meta.len() >= 10);
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/default");
    let on_disk = read_dir(std::path::Path::new(dir)).expect("read");
    let names: Vec<String> = on_disk
        .iter()
        .map(|f| std::path::Path::new(&f.name).file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default())
        .collect();
    let mut embedded: Vec<String> = DEFAULT_FILES.iter().map(|(n, _)| n.to_string()).collect();
    embedded.sort();
    assert_eq!(names, embedded, "every file of policies/default is embedded");
    for (f, (_, text)) in
        on_disk.iter().zip(DEFAULT_FILES.iter().copied().collect::<std::collections::BTreeMap<_, _>>())
    {
        assert_eq!(f.text, text);
    }
}

#[test]
fn ids_come_from_annotations_or_file_and_line() {
    let loaded = load_files(
        "t",
        vec![file(
            "a.cedar",
            "@id(\"first\")\npermit(principal, action, resource);\n\npermit(principal, action, resource);",
        )],
    )
    .expect("valid");
    assert_eq!(loaded.ids_in_order(), ["first", "a.cedar:4"]);
    assert_eq!(loaded.meta["first"].line, 1);
}

#[test]
fn syntax_error_names_file_line_and_column() {
    let d =
        errors(vec![file("p/bad.cedar", "permit(principal, action, resource);\nforbid(principal action, resource);")]);
    assert_eq!((d[0].file.as_str(), d[0].line), ("p/bad.cedar", 2), "{d:?}");
    assert!(d[0].col > 1);
}

#[test]
fn schema_violations_name_location_and_policy_id() {
    let d = errors(vec![file(
        "s.cedar",
        "permit(principal, action, resource);\n@id(\"typo\")\nforbid(principal, action == Net::Action::\"Connect\", resource)\nwhen { resource.nmae == \"x\" };",
    )]);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!((d[0].line, d[0].policy.as_deref()), (4, Some("typo")));
    assert!(d[0].message.contains("nmae"), "{}", d[0].message);
}

#[test]
fn unknown_action_and_unguarded_optional_attribute_are_errors() {
    let d = errors(vec![file("u.cedar", "permit(principal, action == Net::Action::\"Conect\", resource);")]);
    assert!(d[0].message.contains("Conect"), "{d:?}");
    let d = errors(vec![file(
        "o.cedar",
        "forbid(principal, action == Net::Action::\"Connect\", resource) when { context.sni == \"x\" };",
    )]);
    assert!(d[0].message.contains("sni"), "{d:?}");
}

#[test]
fn duplicate_ids_are_rejected_with_both_locations() {
    let d = errors(vec![
        file("a.cedar", "@id(\"x\") permit(principal, action, resource);"),
        file("b.cedar", "\n@id(\"x\") forbid(principal, action, resource);"),
    ]);
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].file.as_str(), d[0].line, d[0].code), ("b.cedar", 2, Some("BL004")));
    assert!(d[0].message.contains("a.cedar:1:1"), "{}", d[0].message);
}

#[test]
fn misused_annotations_are_rejected() {
    let d = errors(vec![file("a.cedar", "@shadow permit(principal, action, resource);")]);
    assert!(d[0].message.contains("@shadow"), "{d:?}");
}

#[test]
fn a_directory_is_loaded_recursively_and_a_file_is_not_a_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("overrides")).expect("mkdir");
    std::fs::write(dir.path().join("a.cedar"), "@id(\"a\") permit(principal, action, resource);").expect("write");
    std::fs::write(dir.path().join("overrides/b.cedar"), "@id(\"b\") permit(principal, action, resource);")
        .expect("write");
    std::fs::write(dir.path().join("notes.txt"), "not policy").expect("write");
    let loaded = load_dir(dir.path()).expect("valid");
    assert_eq!(loaded.ids_in_order(), ["a", "b"]);
    let err = load_dir(&dir.path().join("a.cedar")).expect_err("not a dir");
    assert!(err.to_string().contains("not a directory"), "{err}");
}
