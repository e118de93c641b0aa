use super::*;

fn lint_one(text: &str) -> Vec<Diagnostic> {
    lint(&[PolicyFile { name: "l.cedar".into(), text: text.into() }])
}

fn codes(findings: &[Diagnostic]) -> Vec<&'static str> {
    findings.iter().filter_map(|d| d.code).collect()
}

#[test]
fn clean_policy_has_no_findings() {
    let f = lint_one(
        "@id(\"a\") @reason(\"r\") forbid(principal, action, resource in Net::Domain::\"x.com\") when { context has sni };",
    );
    assert!(f.is_empty(), "{f:?}");
}

#[test]
fn permit_shadowed_by_unconditional_forbid() {
    let f = lint_one(
        r#"@id("p") permit(principal, action == Net::Action::"Connect", resource in Net::Domain::"api.github.com");
           @id("f") @reason("no github") forbid(principal, action, resource in Net::Domain::"github.com");
           @id("ok") permit(principal, action == Net::Action::"Connect", resource in Net::Domain::"gitlab.com");"#,
    );
    let bl001: Vec<&Diagnostic> = f.iter().filter(|d| d.code == Some("BL001")).collect();
    assert_eq!(bl001.len(), 1, "{f:?}");
    assert_eq!(bl001[0].policy.as_deref(), Some("p"));
    assert!(bl001[0].message.contains("`f`"));
}

#[test]
fn conditional_or_ask_forbid_does_not_shadow() {
    let f = lint_one(
        r#"@id("p") permit(principal, action, resource);
           @id("f") @reason("r") forbid(principal, action, resource) when { context has sni };
           @id("g") @ask @reason("r") forbid(principal, action, resource);"#,
    );
    assert!(!codes(&f).contains(&"BL001"), "{f:?}");
}

#[test]
fn forbid_without_reason_and_missing_id_and_unknown_annotation() {
    let f = lint_one("@resaon(\"typo\") forbid(principal, action, resource);");
    let c = codes(&f);
    for code in ["BL002", "BL006", "BL007"] {
        assert!(c.contains(&code), "{code} in {f:?}");
    }
}

#[test]
fn like_without_label_boundary_is_flagged() {
    let f = lint_one(
        r#"@id("a") @reason("r") forbid(principal, action == Net::Action::"Connect", resource) when { resource.name like "*github.com" };
           @id("b") @reason("r") forbid(principal, action == Net::Action::"Connect", resource) when { resource.name like "*.github.com" };
           @id("c") @reason("r") forbid(principal, action == File::Action::"Read", resource) when { resource.path like "*/.ssh/*" };"#,
    );
    let bl003: Vec<&Diagnostic> = f.iter().filter(|d| d.code == Some("BL003")).collect();
    assert_eq!(bl003.len(), 1, "{f:?}");
    assert_eq!(bl003[0].policy.as_deref(), Some("a"));
    assert_eq!(bl003[0].line, 1);
}

#[test]
fn duplicate_ids_and_optional_attributes_have_codes() {
    let f = lint_one(
        r#"@id("a") @reason("r") forbid(principal, action == Net::Action::"Connect", resource) when { context.sni == "x" };
           @id("a") permit(principal, action, resource);"#,
    );
    let c = codes(&f);
    assert!(c.contains(&"BL004") && c.contains(&"BL005"), "{f:?}");
    let bl005 = f.iter().find(|d| d.code == Some("BL005")).expect("BL005");
    assert_eq!((bl005.line, bl005.file.as_str()), (1, "l.cedar"));
}
