use chrono::{TimeZone as _, Utc};

use super::*;

fn row(seq: u64, resource: &str, reason: Option<&str>) -> Row {
    Row {
        seq,
        time: Utc.with_ymd_and_hms(2026, 11, 27, 6, 0, 0).single().unwrap_or_default(),
        r#type: "decision".into(),
        kind: "net.connect".into(),
        action: Some(r#"Net::Action::"Connect""#.into()),
        effect: Some("deny".into()),
        principal: Some("claude".into()),
        resource: Some(resource.into()),
        reason: reason.map(str::to_string),
        line: None,
        offset: 0,
        len: 0,
    }
}

#[test]
fn tables_are_aligned_and_escape_control_characters() {
    let table = format_table(&[row(7, "a.test:443", Some("no\nfake line")), row(12, "longer-name.test:8443", None)]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    let column = |line: &str| line.find("deny").or_else(|| line.find("EFFECT"));
    assert_eq!(column(lines[0]), column(lines[1]));
    assert_eq!(column(lines[1]), column(lines[2]));
    assert!(lines[1].ends_with("no\\nfake line"), "{table}");
    assert!(lines[1].starts_with("7 "));
}

#[test]
fn csv_follows_rfc_4180() {
    let csv = format_csv(&[row(1, "a,b", Some("say \"hi\"\nbye")), row(2, "=HYPERLINK(\"x\")", None)]);
    let lines: Vec<&str> = csv.split("\r\n").collect();
    assert_eq!(lines[0], "seq,time,type,action,effect,principal,resource,reason");
    assert_eq!(
        lines[1],
        "1,2026-11-27T06:00:00.000000Z,decision,\"Net::Action::\"\"Connect\"\"\",deny,claude,\"a,b\",\"say \"\"hi\"\"\nbye\""
    );
    assert!(lines[2].contains(r#","'=HYPERLINK(""x"")","#), "{csv}");
    assert_eq!(lines.len(), 4, "{csv}");
}

#[test]
fn json_lines_prefer_the_stored_record() {
    let mut stored = row(3, "a.test:443", None);
    stored.line = Some(r#"{"seq":3}"#.into());
    let text = format_json_lines(&[stored, row(4, "b.test:443", None)]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], r#"{"seq":3}"#);
    let parsed: serde_json::Value = serde_json::from_str(lines[1]).expect("json");
    assert_eq!((parsed["seq"].as_u64(), parsed["type"].as_str()), (Some(4), Some("decision")));
}
