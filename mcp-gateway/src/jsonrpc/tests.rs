use serde_json::json;

use super::*;

fn single(line: &str) -> Message {
    match parse(line.as_bytes()) {
        Ok(Frame::Single(parsed)) => parsed.message,
        other => panic!("expected one message, got {other:?}"),
    }
}

#[test]
fn requests_notifications_and_responses() {
    let request = single(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x"}}"#);
    assert_eq!(
        request,
        Message::Request { id: Id("7".into()), method: "tools/call".into(), params: json!({"name": "x"}) }
    );
    let note = single(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    assert_eq!(note, Message::Notification { method: "notifications/initialized".into(), params: Value::Null });
    let response = single(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#);
    assert_eq!(response, Message::Response { id: Id("\"a\"".into()) });
    let error = single(r#"{"jsonrpc":"2.0","id":"a","error":{"code":1,"message":"m"}}"#);
    assert!(matches!(error, Message::Response { .. }));
}

#[test]
fn string_and_number_ids_differ_and_read_back() {
    let number = Id::from_value(&json!(1)).expect("id");
    let string = Id::from_value(&json!("1")).expect("id");
    assert_ne!(number, string);
    assert_eq!(number.text(), "1");
    assert_eq!(string.text(), "1");
    assert_eq!(string.to_value(), json!("1"));
    assert_eq!(Id::from_value(&json!(null)), None);
    assert_eq!(Id::from_value(&json!({"a": 1})), None);
}

#[test]
fn bad_input_is_reported_not_guessed() {
    assert!(matches!(parse(b"{not json"), Err(FrameError::Json(_))));
    assert_eq!(parse(b"[]"), Err(FrameError::EmptyBatch));
    assert_eq!(parse(b"42"), Err(FrameError::NotAnObject("a number")));
    let no_version = single(r#"{"id":1,"method":"ping"}"#);
    assert!(matches!(no_version, Message::Invalid { id: Some(_), .. }), "{no_version:?}");
    let neither = single(r#"{"jsonrpc":"2.0","params":{}}"#);
    assert!(matches!(neither, Message::Invalid { id: None, .. }), "{neither:?}");
    let bad_id = single(r#"{"jsonrpc":"2.0","id":[1],"method":"ping"}"#);
    assert!(matches!(bad_id, Message::Invalid { id: None, .. }), "{bad_id:?}");
    let bad_method = single(r#"{"jsonrpc":"2.0","id":3,"method":5}"#);
    assert!(matches!(bad_method, Message::Invalid { id: Some(_), .. }), "{bad_method:?}");
    let id_only = single(r#"{"jsonrpc":"2.0","id":3}"#);
    assert!(matches!(id_only, Message::Invalid { id: Some(_), .. }), "{id_only:?}");
    let bad_params = single(r#"{"jsonrpc":"2.0","id":3,"method":"ping","params":"x"}"#);
    assert!(matches!(bad_params, Message::Invalid { .. }), "{bad_params:?}");
}

#[test]
fn batches_keep_each_item() {
    let frame = parse(br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},5,{"jsonrpc":"2.0","method":"n"}]"#);
    let Ok(Frame::Batch(items)) = frame else { panic!("{frame:?}") };
    assert_eq!(items.len(), 3);
    assert!(matches!(items[0].message, Message::Request { .. }));
    assert!(matches!(items[1].message, Message::Invalid { id: None, .. }));
    assert!(matches!(items[2].message, Message::Notification { .. }));
}

#[test]
fn error_responses_carry_id_code_and_data() {
    let id = Id::from_value(&json!("q")).expect("id");
    let response = error_response(Some(&id), DENIED, "no", Some(json!({"policy": "p"})));
    assert_eq!(
        response,
        json!({"jsonrpc":"2.0","id":"q","error":{"code":-32001,"message":"no","data":{"policy":"p"}}})
    );
    assert_eq!(error_response(None, PARSE_ERROR, "bad", None)["id"], Value::Null);
}

#[test]
fn the_quick_response_reader_agrees_with_parse_or_steps_aside() {
    let lines = [
        r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"x"}]}}"#,
        r#" {"result":null,"id":"a\u0041","jsonrpc":"2.0","extra":[1,{"id":9}]}"#,
        r#"{"jsonrpc":"2.0","id":-1.5e3,"error":{"code":1,"message":"m"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"both"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":null,"error":null}"#,
        r#"{"jsonrpc":"2.0","id":1}"#,
        r#"{"jsonrpc":"2.0","id":null,"result":{}}"#,
        r#"{"jsonrpc":"2.0","id":[1],"result":{}}"#,
        r#"{"jsonrpc":"1.0","id":1,"result":{}}"#,
        r#"{"id":1,"result":{}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}"#,
        r#"{"jsonrpc":"2.0","id":1,"id":2,"result":{}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{}} trailing"#,
        r#"[{"jsonrpc":"2.0","id":1,"result":{}}]"#,
        r#"["2.0",1,null,{},null]"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{"#,
        "",
    ];
    let mut quick = 0;
    for line in lines {
        let full = match parse(line.as_bytes()) {
            Ok(Frame::Single(parsed)) => Some(parsed.message),
            _ => None,
        };
        match response_id(line.as_bytes()) {
            Some(id) => {
                quick += 1;
                assert_eq!(full, Some(Message::Response { id }), "{line}");
            }
            // It steps aside for a response only when a key occurs twice.
            None => {
                let duplicate = line.contains(r#""id":1,"id""#);
                assert!(!matches!(full, Some(Message::Response { .. })) || duplicate, "{line}");
            }
        }
    }
    assert_eq!(quick, 3, "the three plain responses are read quickly");
}
