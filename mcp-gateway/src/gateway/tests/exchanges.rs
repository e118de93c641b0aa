//! Routing by exchange, as the HTTP transports use it: answers go back to
//! the exchange their request came in, server messages to the exchange
//! whose stream carried them, and a closed exchange takes what it was owed
//! along.

use serde_json::json;
use tokio::sync::mpsc;

use super::*;

fn open(exchange: u64) -> (Reply, mpsc::Receiver<Out>) {
    let (sender, receiver) = mpsc::channel(16);
    (Reply::new(sender, exchange), receiver)
}

fn line(message: &Value) -> Line {
    Line::Message(message.to_string().into_bytes())
}

fn answer_of(out: Option<Out>) -> Value {
    match out {
        Some(Out::Answer(bytes)) => serde_json::from_slice(&bytes).expect("JSON"),
        other => panic!("expected an answer, got {other:?}"),
    }
}

#[tokio::test]
async fn an_answer_returns_to_its_exchange_and_server_messages_to_their_stream() {
    let mut h = harness();
    let (post, mut posted) = open(1);
    let expect = h.gateway.from_client_via(line(&call(1, "query", json!({}))), &post).await;
    assert_eq!(expect, Expect::Answer);
    let forwarded = h.server.recv().await.expect("forwarded");
    assert_eq!((forwarded.request.clone(), forwarded.reply.exchange()), (Id::from_value(&json!(1)), 1));

    let (stream, mut streamed) = open(2);
    let progress = json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": 1}});
    h.gateway.from_server_via(line(&progress), &post).await;
    assert!(matches!(posted.try_recv(), Ok(Out::Line(_))), "a message about the call goes with it");
    h.gateway.from_server_via(line(&ok(1, json!({"content": []}))), &stream).await;
    assert_eq!(answer_of(posted.try_recv().ok())["id"], 1, "the answer goes where the request came from");
    assert!(streamed.try_recv().is_err());
    h.nothing_for_client();
}

#[tokio::test]
async fn an_answer_whose_exchange_is_gone_goes_to_the_stream_that_carried_it() {
    let mut h = harness();
    let (post, posted) = open(1);
    h.gateway.from_client_via(line(&call(7, "query", json!({}))), &post).await;
    h.server_gets().await;
    drop(posted);
    let (stream, mut streamed) = open(2);
    h.gateway.from_server_via(line(&ok(7, json!({"content": []}))), &stream).await;
    match streamed.try_recv() {
        Ok(Out::Line(bytes)) => assert_eq!(serde_json::from_slice::<Value>(&bytes).expect("JSON")["id"], 7),
        other => panic!("expected a plain message (it must not end that stream), got {other:?}"),
    }
}

#[tokio::test]
async fn what_the_transport_should_wait_for() {
    let h = harness();
    let (reply, _receiver) = open(1);
    let send = |message: Value| {
        let gateway = Arc::clone(&h.gateway);
        let reply = reply.clone();
        async move { gateway.from_client_via(line(&message), &reply).await }
    };
    assert_eq!(send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await, Expect::Nothing);
    assert_eq!(send(json!({"jsonrpc": "2.0", "id": "s1", "result": {}})).await, Expect::Nothing);
    assert_eq!(send(json!({"jsonrpc": "2.0", "params": {}})).await, Expect::Refused);
    assert_eq!(send(json!([{"jsonrpc": "2.0", "method": "notifications/progress"}])).await, Expect::Nothing);
    assert_eq!(send(json!([call(3, "query", json!({}))])).await, Expect::Answer);
    let oversized = Line::Oversized { prefix: b"{\"id\":4".to_vec(), size: 99_999 };
    assert_eq!(h.gateway.from_client_via(oversized, &reply).await, Expect::Refused);
}

#[tokio::test]
async fn an_undeliverable_request_is_answered_once() {
    let mut h = harness();
    let (post, mut posted) = open(1);
    h.gateway.from_client_via(line(&call(1, "query", json!({}))), &post).await;
    h.server_gets().await;
    let id = Id::from_value(&json!(1)).expect("id");
    assert!(h.gateway.undeliverable(&id, "the MCP server broke off").await);
    let answer = answer_of(posted.try_recv().ok());
    assert_eq!(answer["error"]["code"], jsonrpc::CONNECTION_CLOSED);
    assert_eq!(answer["error"]["message"], "the MCP server broke off");
    assert!(!h.gateway.undeliverable(&id, "again").await, "answered already");
}

#[tokio::test]
async fn a_closed_exchange_drops_what_it_was_owed() {
    let mut h = harness();
    let (post, posted) = open(3);
    h.gateway.from_client_via(line(&call(1, "query", json!({}))), &post).await;
    h.server_gets().await;
    drop(posted);
    assert_eq!(h.gateway.exchange_closed(3), vec![Id::from_value(&json!(1)).expect("id")]);
    h.server_sends(ok(1, json!({"content": []}))).await;
    assert!(!h.notices().contains("not in flight"), "a late answer to an abandoned request is expected");
    // The id is free again.
    let (again, mut answered) = open(4);
    h.gateway.from_client_via(line(&call(1, "query", json!({}))), &again).await;
    assert_eq!(h.server_gets().await["id"], 1);
    assert!(answered.try_recv().is_err());
}
