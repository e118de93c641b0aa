//! `bridle mcp wrap` and `bridle mcp tools` end to end, with real MCP
//! peers we did not write: the official Python SDK as client
//! (`mcp.client.stdio`) and as server (`MCPServer`, FastMCP's name since
//! mcp 2), and the reference `@modelcontextprotocol/server-everything` and
//! `server-filesystem`.
//! A few tests speak raw JSON-RPC to the wrapper where the SDK cannot
//! (batches, malformed input, signals).
//!
//! Needs the SDK in a venv and the npm server in a cache, which
//! `scripts/test.sh` installs: `BRIDLE_TEST_PYTHON` (default
//! `target/mcp-venv/bin/python`), `BRIDLE_TEST_MCP_EVERYTHING` and
//! `BRIDLE_TEST_MCP_FILESYSTEM` (default
//! `target/mcp-npm/node_modules/.bin/mcp-server-{everything,filesystem}`).
//! No network.

#[path = "support/mcp/mod.rs"]
mod mcp;
mod support;

use std::time::Duration;

use mcp::{Fixture, init_lines, reference_server};
use serde_json::{Value, json};

/// Allows MCP, forbids `drop_database` outright, `read_notes` on SSH
/// paths, secret notes and prompts about prod; asks for changed or
/// poisoned tools (like the default set).
const POLICY: &str = r#"
@id("mcp-allow") @reason("MCP allowed")
permit(principal, action in [Mcp::Action::"CallTool", Mcp::Action::"ReadResource",
                             Mcp::Action::"GetPrompt", Mcp::Action::"ListTools"], resource);

@id("no-drop") @reason("dropping databases needs a DBA")
forbid(principal, action == Mcp::Action::"CallTool", resource)
when { resource.server == "demo" && resource.name == "drop_database" };

@id("no-ssh-notes") @reason("notes under ~/.ssh are off limits")
forbid(principal, action == Mcp::Action::"CallTool", resource)
when { context.arguments has path && context.arguments.path like "*/.ssh/*" };

@id("no-secret-notes") @reason("secret notes stay secret")
forbid(principal, action == Mcp::Action::"ReadResource", resource) when { resource.uri like "notes://secret*" };

@id("no-prod-reviews") @reason("no prompts about prod")
forbid(principal, action == Mcp::Action::"GetPrompt", resource)
when { context.arguments has json && context.arguments.json like "*prod*" };

@id("ask-flagged") @ask @reason("the tool changed since it was pinned or looks poisoned")
forbid(principal, action in [Mcp::Action::"CallTool", Mcp::Action::"GetPrompt"], resource)
when { context.tool_changed || !context.findings.isEmpty() };
"#;

fn call(name: &str, args: Value) -> Value {
    json!({"op": "call", "name": name, "args": args})
}

/// A raw `tools/call` request.
fn rpc_call(id: Value, name: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name, "arguments": arguments}})
}

fn list() -> Value {
    json!({"op": "list"})
}

#[test]
fn allowed_denied_and_filtered_calls_through_the_python_sdk() {
    let fx = Fixture::new(Some(POLICY));
    let out = fx.client(
        &[
            list(),
            call("add", json!({"a": 2, "b": 3})),
            call("read_notes", json!({"path": "/home/dev/.ssh/id_rsa"})),
            call("drop_database", json!({"name": "prod"})),
            call("read_notes", json!({"path": "/workspace/notes.md"})),
        ],
        &fx.wrap("v1", &[]),
    );
    assert_eq!(out[0]["server"], "demo", "{out:?}");
    let tools = out[1]["tools"].as_array().expect("tools");
    assert!(tools.contains(&json!("add")) && !tools.contains(&json!("drop_database")), "{out:?}");
    assert_eq!(out[2]["text"], "5");
    let denied = &out[3]["error"];
    assert_eq!(denied["code"], -32001, "{out:?}");
    assert_eq!(denied["message"], "denied by Bridle policy: notes under ~/.ssh are off limits");
    assert_eq!(denied["data"]["policy"], "no-ssh-notes");
    assert_eq!(out[4]["error"]["data"]["reason"], "dropping databases needs a DBA", "{out:?}");
    assert_eq!(out[5]["text"], "notes from /workspace/notes.md");

    let calls = fx.server_log();
    assert_eq!(calls.iter().filter(|c| c["event"] == "call").count(), 2, "{calls:?}");
    assert!(
        !calls.iter().any(|c| c["tool"] == "drop_database" || c["path"].as_str().is_some_and(|p| p.contains(".ssh")))
    );

    let audit = fx.audit();
    let effects: Vec<&str> = audit
        .iter()
        .filter(|r| {
            r["type"] == "decision"
                && r["event"]["detail"]["message"]["method"] == "tools/call"
                && r["event"]["detail"]["direction"] == "to-server"
        })
        .filter_map(|r| r["decision"]["effect"].as_str())
        .collect();
    assert_eq!(effects, vec!["allow", "deny", "deny", "allow"]);
    assert!(audit.iter().any(
        |r| r["type"] == "notice" && r["message"].as_str().is_some_and(|m| m.starts_with("hid tool drop_database"))
    ));
    let verify = fx.bridle(&["audit", "verify", fx.audit_path().to_str().expect("utf-8")]);
    assert_eq!(verify.code, 0, "{}", verify.all());
}

#[test]
fn resource_reads_and_prompt_gets_are_decided_too() {
    let fx = Fixture::new(Some(POLICY));
    let out = fx.client(
        &[
            json!({"op": "read", "uri": "notes://groceries"}),
            json!({"op": "read", "uri": "notes://secret-plans"}),
            json!({"op": "prompt", "name": "review", "args": {"topic": "the README"}}),
            json!({"op": "prompt", "name": "review", "args": {"topic": "prod credentials"}}),
        ],
        &fx.wrap("v1", &[]),
    );
    assert_eq!(out[1]["text"], "note groceries", "{out:?}");
    assert_eq!(out[2]["error"]["data"]["policy"], "no-secret-notes", "{out:?}");
    assert_eq!(out[3]["text"], "Please review the README.", "{out:?}");
    assert_eq!(out[4]["error"]["data"]["policy"], "no-prod-reviews", "{out:?}");
    let log = fx.server_log();
    assert_eq!(log.len(), 2, "only the allowed read and prompt reached the server: {log:?}");
}

#[test]
fn a_changed_tool_definition_is_flagged_until_accepted() {
    let fx = Fixture::new(Some(POLICY));
    let first = fx.client(&[list(), call("add", json!({"a": 1, "b": 1}))], &fx.wrap("v1", &[]));
    assert_eq!(first[2]["text"], "2", "{first:?}");
    let listing = fx.bridle(&["mcp", "tools", "--pins", &fx.pins()]);
    assert_eq!(listing.code, 0, "{}", listing.all());

    // The rug pull: same server name, add's description changed.
    let second = fx.client(&[list(), call("add", json!({"a": 1, "b": 2}))], &fx.wrap("v2", &["--ask-timeout", "1"]));
    let held = &second[2]["error"];
    assert_eq!(held["code"], -32001, "{second:?}");
    assert_eq!(held["data"]["reason"], "no approval within 1s");
    assert_eq!(fx.server_log().iter().filter(|c| c["tool"] == "add").count(), 1, "the changed tool was not called");
    let flagged = fx
        .audit()
        .into_iter()
        .find(|r| r["event"]["detail"]["message"]["name"] == "add" && r["event"]["detail"]["tool_changed"] == true);
    assert!(flagged.is_some(), "the call's event carries tool_changed");

    let listing = fx.bridle(&["mcp", "tools", "--pins", &fx.pins()]);
    assert_eq!(listing.code, 1, "{}", listing.all());
    assert!(listing.stdout.contains("demo/add") && listing.stdout.contains("CHANGED"), "{}", listing.all());
    let accepted = fx.bridle(&["mcp", "tools", "--pins", &fx.pins(), "--accept", "demo/add"]);
    assert_eq!(accepted.code, 0, "{}", accepted.all());
    assert!(!accepted.stdout.contains("CHANGED"), "{}", accepted.all());

    let third = fx.client(&[call("add", json!({"a": 2, "b": 2}))], &fx.wrap("v2", &["--ask-timeout", "1"]));
    assert_eq!(third[1]["text"], "4", "{third:?}");
    let unknown = fx.bridle(&["mcp", "tools", "--pins", &fx.pins(), "--accept", "demo/nope"]);
    assert_eq!(unknown.code, 1, "{}", unknown.all());
}

#[test]
fn a_poisoned_description_is_flagged_under_the_default_policies() {
    let fx = Fixture::new(None);
    let out = fx.client(
        &[list(), call("weather", json!({"city": "Oslo"})), call("add", json!({"a": 1, "b": 1}))],
        &fx.wrap("poisoned", &["--ask-timeout", "1"]),
    );
    assert!(out[1]["tools"].as_array().expect("tools").contains(&json!("weather")), "{out:?}");
    assert_eq!(out[2]["error"]["code"], -32001, "{out:?}");
    assert_eq!(out[3]["text"], "2", "clean tools are unaffected: {out:?}");
    assert!(!fx.server_log().iter().any(|c| c["tool"] == "weather"));
    let call = fx
        .audit()
        .into_iter()
        .find(|r| {
            r["type"] == "decision"
                && r["event"]["detail"]["message"]["name"] == "weather"
                && r["event"]["detail"]["direction"] == "to-server"
        })
        .expect("audited");
    assert_eq!(
        call["event"]["detail"]["findings"],
        json!(["conceal-from-user", "credential-access", "hidden-instructions"])
    );
    assert_eq!(call["decision"]["policies"], json!(["mcp-ask-changed-or-poisoned"]));
    let listing = fx.bridle(&["mcp", "tools", "--pins", &fx.pins()]);
    assert_eq!(listing.code, 1, "{}", listing.all());
    assert!(listing.stdout.contains("conceal-from-user,credential-access,hidden-instructions"), "{}", listing.all());
}

#[test]
fn a_cancelled_call_reaches_the_server_and_the_session_goes_on() {
    let fx = Fixture::new(Some(POLICY));
    let slow = json!({"op": "call", "name": "slow", "args": {"seconds": 30}, "timeout": 1});
    let out = fx.client(&[slow, call("add", json!({"a": 3, "b": 4}))], &fx.wrap("v1", &[]));
    assert!(out[1]["error"].is_object(), "{out:?}");
    assert_eq!(out[2]["text"], "7", "{out:?}");
    let log = fx.server_log();
    assert!(log.iter().any(|c| c["event"] == "cancelled" && c["tool"] == "slow"), "{log:?}");
}

#[test]
fn a_10_mib_result_is_relayed_whole() {
    let fx = Fixture::new(Some(POLICY));
    let size = 10 << 20;
    let out = fx.client(&[call("big", json!({"size": size}))], &fx.wrap("v1", &[]));
    assert_eq!(out[1]["length"], size, "{:?}", out[1].get("error"));
}

#[test]
fn a_server_crash_mid_call_answers_the_call_and_ends_the_session() {
    let fx = Fixture::new(Some(POLICY));
    let out = fx.client(&[call("crash", json!({})), call("add", json!({"a": 1, "b": 1}))], &fx.wrap("v1", &[]));
    let error = &out[1]["error"];
    assert_eq!(error["code"], -32000, "{out:?}");
    assert_eq!(error["message"], "the MCP server exited with status 3 before answering");
    assert!(out[2].get("text").is_none(), "nothing answers after the crash: {out:?}");
}

#[test]
fn a_batch_is_decided_per_item_and_answered_as_one_array() {
    let fx = Fixture::new(Some(POLICY));
    let mut raw = fx.raw(&fx.wrap("v1", &[]));
    init_lines(&mut raw);
    raw.send(&json!([
        rpc_call(json!(10), "add", json!({"a": 5, "b": 5})),
        rpc_call(json!(11), "drop_database", json!({"name": "x"})),
        {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 1}},
        {"jsonrpc": "2.0", "id": 12, "method": "ping"},
    ]));
    let answer = raw.recv();
    let items = answer.as_array().unwrap_or_else(|| panic!("not a batch answer: {answer}"));
    assert_eq!(items.len(), 3, "{answer}");
    let by_id = |id: u64| items.iter().find(|i| i["id"] == id).unwrap_or_else(|| panic!("{id} missing: {answer}"));
    assert_eq!(by_id(10)["result"]["content"][0]["text"], "10");
    assert_eq!(by_id(11)["error"]["code"], -32001);
    assert!(by_id(12)["result"].is_object());
    assert_eq!(raw.finish(), 0);
    assert!(!fx.server_log().iter().any(|c| c["tool"] == "drop_database"));
}

#[test]
fn bad_input_is_answered_and_the_session_survives() {
    let fx = Fixture::new(Some(POLICY));
    let mut command = fx.wrap("v1", &["--max-message-size", "64KiB"]);
    command.push("--noisy".into());
    let mut raw = fx.raw(&command);
    init_lines(&mut raw);
    raw.send_text("{this is not json");
    assert_eq!(raw.recv()["error"]["code"], -32700);
    raw.send(&json!({"jsonrpc": "2.0", "params": {}}));
    assert_eq!(raw.recv()["error"]["code"], -32600);
    let huge = "y".repeat(100 << 10);
    raw.send(&rpc_call(json!("big"), "add", json!({"pad": huge})));
    let answer = raw.recv();
    assert_eq!((answer["id"].clone(), answer["error"]["code"].clone()), (json!("big"), json!(-32003)), "{answer}");
    raw.send(&rpc_call(json!(20), "slow", json!({"seconds": 2})));
    raw.send(&rpc_call(json!(20), "add", json!({"a": 1, "b": 1})));
    let reused = raw.recv();
    assert_eq!(reused["error"]["code"], -32600, "{reused}");
    assert!(reused["error"]["message"].as_str().is_some_and(|m| m.contains("already in flight")));
    assert_eq!(raw.recv()["result"]["content"][0]["text"], "done");
    raw.send(&rpc_call(json!(21), "add", json!({"a": 1, "b": 2})));
    assert_eq!(raw.recv()["result"]["content"][0]["text"], "3");
    assert_eq!(raw.finish(), 0);
    assert_eq!(fx.server_log().iter().filter(|c| c["tool"] == "add").count(), 1, "only the valid add ran");
    let notices: Vec<String> = fx.audit().iter().filter_map(|r| r["message"].as_str().map(str::to_string)).collect();
    assert!(
        notices.iter().any(|m| m.contains("not JSON-RPC to stdout") && m.contains("demo server starting")),
        "{notices:?}"
    );
}

#[test]
fn the_server_exit_status_and_signals_propagate() {
    let fx = Fixture::new(Some(POLICY));
    let mut raw = fx.raw(&fx.wrap("v1", &[]));
    init_lines(&mut raw);
    raw.send(
        &json!({"jsonrpc": "2.0", "id": 30, "method": "tools/call", "params": {"name": "crash", "arguments": {}}}),
    );
    assert_eq!(raw.recv()["error"]["code"], -32000);
    assert_eq!(raw.wait(Duration::from_secs(20)), 3, "the server's status");

    let mut raw = fx.raw(&fx.wrap("v1", &[]));
    init_lines(&mut raw);
    raw.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(raw.wait(Duration::from_secs(20)), 128 + 15, "SIGTERM reached the server");
}

#[test]
fn the_reference_everything_server_works_through_the_gateway() {
    let fx = Fixture::new(None);
    let server = reference_server("everything");
    let out = fx.client(
        &[list(), call("echo", json!({"message": "hello through bridle"})), call("get-sum", json!({"a": 2, "b": 40}))],
        &fx.wrap_command("everything", &[], &[server.as_str()]),
    );
    assert!(out[1]["tools"].as_array().is_some_and(|t| t.contains(&json!("echo"))), "{out:?}");
    assert_eq!(out[2]["text"], "Echo: hello through bridle", "{out:?}");
    assert!(out[3]["text"].as_str().is_some_and(|t| t.contains("42")), "{out:?}");
    let pins = fx.bridle(&["mcp", "tools", "--pins", &fx.pins()]);
    assert!(pins.stdout.contains("everything/echo"), "{}", pins.all());
    assert_eq!(pins.code, 0, "no reference tool is flagged: {}", pins.all());
}

#[test]
fn a_policy_edit_applies_to_the_running_wrapper() {
    let fx = Fixture::new(Some(POLICY));
    let mut raw = fx.raw(&fx.wrap("v1", &[]));
    init_lines(&mut raw);
    raw.send(&rpc_call(json!(1), "read_notes", json!({"path": "/workspace/a.md"})));
    assert_eq!(raw.recv()["result"]["content"][0]["text"], "notes from /workspace/a.md");
    let stricter = format!(
        "{POLICY}\n@id(\"no-notes\") @reason(\"notes are closed\")\nforbid(principal, action, resource) when {{ resource has name && resource.name == \"read_notes\" }};\n"
    );
    fx.write_policy(&stricter);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !fx.audit().iter().any(|r| r["type"] == "policy_reload" && r["ok"] == true) {
        assert!(std::time::Instant::now() < deadline, "no reload recorded");
        std::thread::sleep(Duration::from_millis(50));
    }
    raw.send(&rpc_call(json!(2), "read_notes", json!({"path": "/workspace/a.md"})));
    assert_eq!(raw.recv()["error"]["data"]["policy"], "no-notes");
    assert_eq!(raw.finish(), 0);
}

#[test]
fn the_reference_filesystem_server_is_held_to_the_default_policy() {
    let fx = Fixture::new(None);
    let root = fx.path().join("workspace");
    std::fs::create_dir_all(root.join(".github/workflows")).expect("mkdir");
    let root = root.canonicalize().expect("canonical root");
    let server = reference_server("filesystem");
    let at = |rel: &str| root.join(rel).display().to_string();
    let out = fx.client(
        &[
            list(),
            call("write_file", json!({"path": at("notes.txt"), "content": "hello"})),
            call("write_file", json!({"path": at(".github/workflows/ci.yml"), "content": "on: push"})),
            call("read_text_file", json!({"path": at("notes.txt")})),
        ],
        &fx.wrap_command("fs", &[], &[server.as_str(), root.to_str().expect("utf-8")]),
    );
    assert!(out[1]["tools"].as_array().is_some_and(|t| t.contains(&json!("write_file"))), "{out:?}");
    assert!(out[2]["error"].is_null(), "an ordinary write is allowed: {out:?}");
    assert_eq!(out[3]["error"]["data"]["policy"], "mcp-forbid-ci-config-writes", "{out:?}");
    assert_eq!(out[4]["text"], "hello", "{out:?}");
    assert!(!root.join(".github/workflows/ci.yml").exists(), "the server never saw the denied write");
    let pins = fx.bridle(&["mcp", "tools", "--pins", &fx.pins()]);
    assert_eq!(pins.code, 0, "no reference tool is flagged: {}", pins.all());
}
