use serde_json::json;

use super::*;

async fn lines(input: &[u8], max: usize) -> Vec<Line> {
    let mut reader = LineReader::new(input, max);
    let mut out = Vec::new();
    while let Some(line) = reader.next().await.expect("read") {
        out.push(line);
    }
    out
}

fn message(text: &str) -> Line {
    Line::Message(text.as_bytes().to_vec())
}

#[tokio::test]
async fn splits_on_newlines_and_skips_blank_lines() {
    let got = lines(b"{\"a\":1}\n\n  \r\n{\"b\":2}\r\n{\"c\":3}", 100).await;
    assert_eq!(got, vec![message("{\"a\":1}"), message("{\"b\":2}"), message("{\"c\":3}")]);
}

#[tokio::test]
async fn a_line_over_the_bound_keeps_a_prefix_and_the_next_line_survives() {
    let mut input = br#"{"jsonrpc":"2.0","id":42,"params":""#.to_vec();
    input.extend(std::iter::repeat_n(b'x', 300_000));
    input.extend_from_slice(b"\"}\n{\"ok\":true}\n");
    let got = lines(&input, 1000).await;
    assert_eq!(got.len(), 2, "{:?}", got.get(1));
    let Line::Oversized { prefix, size } = &got[0] else { panic!("{:?}", got[0]) };
    assert_eq!(*size, input.len() - "\n{\"ok\":true}\n".len());
    assert_eq!(prefix.len(), OVERSIZED_PREFIX);
    assert_eq!(scan_id(prefix), Some(json!(42)));
    assert_eq!(got[1], message("{\"ok\":true}"));
}

#[tokio::test]
async fn exactly_the_bound_is_allowed() {
    let got = lines(b"12345\n123456\n", 5).await;
    assert_eq!(got[0], message("12345"));
    assert!(matches!(got[1], Line::Oversized { size: 6, .. }));
}

#[test]
fn scan_id_finds_only_the_top_level_id() {
    assert_eq!(scan_id(br#"{"jsonrpc":"2.0","id":"abc","method":"x"#), Some(json!("abc")));
    assert_eq!(scan_id(br#"{"params":{"id":5,"x":"\"id\":9"},"id":7,"#), Some(json!(7)));
    assert_eq!(scan_id(br#"{"method":"x","params":{"id":5,"data":"xxxx"#), None);
    assert_eq!(scan_id(br#"{"id" : -3 , "#), Some(json!(-3)));
    // Cut off inside the number: not trusted.
    assert_eq!(scan_id(br#"{"id":12"#), None);
    assert_eq!(scan_id(br#"{"id":null,"#), None);
    assert_eq!(scan_id(b"garbage"), None);
}
