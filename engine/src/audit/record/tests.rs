use chrono::TimeZone as _;

use super::*;

fn body(json: serde_json::Value) -> Map<String, Value> {
    match json {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn fields(map: &Map<String, Value>) -> Vec<u8> {
    let mut out = Vec::new();
    write_fields(&mut out, map);
    out
}

fn sample_line(seq: u64, prev: &Hash) -> (Vec<u8>, Hash) {
    let time =
        Utc.with_ymd_and_hms(2026, 11, 27, 6, 0, 0).single().unwrap_or_default() + chrono::Duration::microseconds(123);
    let mut buf = Vec::new();
    let map = body(serde_json::json!({"message": "hi \"there\"", "type": "notice", "component": "t", "level": "info"}));
    let hash = encode(&mut buf, seq, &time, prev, &fields(&map));
    (buf, hash)
}

#[test]
fn encoded_lines_have_the_documented_shape() {
    let (line, hash) = sample_line(0, &Hash::ZERO);
    let text = String::from_utf8(line).expect("utf8");
    let expected_head =
        format!(r#"{{"seq":0,"time":"2026-11-27T06:00:00.000123Z","prev":"{}","type":"notice","#, "0".repeat(64));
    assert!(text.starts_with(&expected_head), "{text}");
    assert!(text.ends_with(&format!(",\"hash\":\"{hash}\"}}\n")), "{text}");
    let parsed: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(parsed["message"], "hi \"there\"");
    assert_eq!(parsed["hash"], hash.to_string());
}

#[test]
fn check_accepts_what_encode_writes() {
    let prev = Hash::of(b"earlier");
    let (line, hash) = sample_line(41, &prev);
    let checked = check(&line[..line.len() - 1]).expect("valid");
    assert_eq!(checked.seq, 41);
    assert_eq!(checked.prev, prev);
    assert_eq!(checked.hash, hash);
    assert_eq!(checked.time, "2026-11-27T06:00:00.000123Z");
    assert_eq!(checked.type_name, Some("notice"));
}

#[test]
fn any_edited_byte_is_a_hash_mismatch() {
    let (line, _) = sample_line(5, &Hash::ZERO);
    let content_end = line.len() - 1 - (HASH_KEY.len() + 64 + 2);
    for at in [0, 8, 20, 60, content_end - 1] {
        let mut edited = line[..line.len() - 1].to_vec();
        edited[at] ^= 0x01;
        let fault = check(&edited).expect_err("edited");
        assert!(matches!(fault, RecordFault::HashMismatch { .. } | RecordFault::MissingHash), "byte {at}: {fault:?}");
    }
}

#[test]
fn malformed_hash_fields_are_reported() {
    let (line, _) = sample_line(5, &Hash::ZERO);
    let line = &line[..line.len() - 1];
    assert_eq!(check(&line[..line.len() - 3]), Err(RecordFault::BadHashField));
    let text = String::from_utf8_lossy(line).into_owned();
    let split = text.rfind(",\"hash\":\"").expect("hash key");
    let upper = format!("{}{}", &text[..split], text[split..].to_uppercase());
    assert_eq!(check(upper.as_bytes()), Err(RecordFault::MissingHash));
    let shouting = format!("{}{}", &text[..split + 9], text[split + 9..].to_uppercase());
    assert_eq!(check(shouting.as_bytes()), Err(RecordFault::BadHashField));
    assert_eq!(check(br#"{"seq":0}"#), Err(RecordFault::MissingHash));
}

#[test]
fn a_valid_hash_over_a_foreign_header_is_rejected() {
    let content = br#"{"time":"x","seq":0,"prev":"0""#;
    let mut line = content.to_vec();
    line.extend_from_slice(HASH_KEY);
    line.extend_from_slice(Hash::of(content).to_string().as_bytes());
    line.extend_from_slice(b"\"}");
    assert_eq!(check(&line), Err(RecordFault::BadHeader));
}

#[test]
fn string_values_cannot_forge_the_hash_split() {
    let mut buf = Vec::new();
    let map = body(serde_json::json!({"type": "notice", "message": ",\"hash\":\"abc\"}"}));
    encode(&mut buf, 0, &Utc::now(), &Hash::ZERO, &fields(&map));
    assert!(check(&buf[..buf.len() - 1]).is_ok());
}

#[test]
fn hashes_parse_only_lowercase_hex() {
    let hash = Hash::of(b"x");
    assert_eq!(Hash::from_hex(hash.to_string().as_bytes()), Some(hash));
    assert_eq!(Hash::from_hex(hash.to_string().to_uppercase().as_bytes()), None);
    assert_eq!(Hash::from_hex(b"00"), None);
    assert_eq!(guess_seq(br#"{"seq":17,"time":"t","prev":"x"#), None);
}
