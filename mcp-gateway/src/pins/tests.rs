use serde_json::json;

use super::*;

fn now() -> DateTime<Utc> {
    Utc::now()
}

#[test]
fn the_hash_ignores_key_order_and_extra_fields() {
    let a = json!({"name": "add", "description": "Add.", "inputSchema": {"type": "object", "properties": {"a": {}, "b": {}}}});
    let b = json!({"inputSchema": {"properties": {"b": {}, "a": {}}, "type": "object"}, "description": "Add.", "name": "add",
                   "_meta": {"x": 1}, "icons": []});
    assert_eq!(hash(&definition(&a)), hash(&definition(&b)));
    // Annotations, title and output schema are part of what is pinned.
    let hinted = json!({"name": "add", "description": "Add.", "inputSchema": a["inputSchema"].clone(),
                        "annotations": {"destructiveHint": false}});
    assert_ne!(hash(&definition(&a)), hash(&definition(&hinted)));
    let c = json!({"name": "add", "description": "Add!", "inputSchema": a["inputSchema"].clone()});
    assert_ne!(hash(&definition(&a)), hash(&definition(&c)));
    assert_eq!(hash(&definition(&a)).len(), 64);
}

#[test]
fn canonical_json_is_compact_and_sorted() {
    let mut text = String::new();
    canonical(&json!({"b": [1, "x\n"], "a": {"d": null, "c": true}}), &mut text);
    assert_eq!(text, r#"{"a":{"c":true,"d":null},"b":[1,"x\n"]}"#);
}

#[test]
fn a_change_is_kept_until_accepted() {
    let v1 = json!({"name": "t", "description": "one"});
    let v2 = json!({"name": "t", "description": "two"});
    let mut pin = ToolPin::new(v1.clone(), hash(&v1), vec![], now());
    pin.saw(&v1, &hash(&v1), vec![], now());
    assert!(!pin.is_changed());
    pin.saw(&v2, &hash(&v2), vec!["hidden-instructions".into()], now());
    assert!(pin.is_changed());
    assert_eq!(pin.effective_findings(), vec!["hidden-instructions".to_string()]);
    pin.accept(now());
    assert!(!pin.is_changed());
    assert_eq!(pin.hash, hash(&v2));
    assert!(pin.effective_findings().is_empty(), "accepted with the pin");
    // Back to the old definition: a change again.
    pin.saw(&v1, &hash(&v1), vec![], now());
    assert!(pin.is_changed());
}

#[test]
fn update_writes_atomically_and_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = PinStore::new(dir.path().join("pins"));
    assert!(store.load("fs").expect("load").tools.is_empty());
    let v = json!({"name": "read_file"});
    store
        .update("fs", |file| {
            file.tools.insert("read_file".into(), ToolPin::new(v.clone(), hash(&v), vec![], now()));
        })
        .expect("update");
    assert_eq!(store.load("fs").expect("load").tools.len(), 1);
    let mode = fs::metadata(dir.path().join("pins/fs.json")).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let mode = fs::metadata(dir.path().join("pins")).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    assert_eq!(store.servers().expect("servers"), vec!["fs".to_string()]);
    store
        .update("web", |file| {
            file.tools.insert("read_file".into(), ToolPin::new(v.clone(), hash(&v), vec![], now()));
        })
        .expect("update");
    assert_eq!(store.other_tools("web").get("read_file"), Some(&BTreeSet::from(["fs".to_string()])));
}

#[test]
fn a_damaged_pin_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("fs.json"), "{not json").expect("write");
    let error = PinStore::new(dir.path()).load("fs").expect_err("damaged");
    assert!(error.to_string().contains("fs.json: invalid pin file"), "{error}");
}

#[test]
fn the_default_directory_follows_xdg() {
    let home = Path::new("/home/a");
    assert_eq!(
        PinStore::default_dir(Some(Path::new("/state")), Some(home)),
        Some(PathBuf::from("/state/bridle/mcp-pins"))
    );
    assert_eq!(PinStore::default_dir(None, Some(home)), Some(PathBuf::from("/home/a/.local/state/bridle/mcp-pins")));
    // A relative XDG_STATE_HOME is invalid per the spec and ignored.
    assert_eq!(
        PinStore::default_dir(Some(Path::new("rel")), Some(home)),
        Some(PathBuf::from("/home/a/.local/state/bridle/mcp-pins"))
    );
    assert_eq!(PinStore::default_dir(None, None), None);
}

#[test]
fn accept_repins_one_tool_or_a_whole_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = PinStore::new(dir.path());
    let (v1, v2) = (json!({"name": "a", "description": "1"}), json!({"name": "a", "description": "2"}));
    store
        .update("demo", |file| {
            let mut pin = ToolPin::new(v1.clone(), hash(&v1), vec![], now());
            pin.saw(&v2, &hash(&v2), vec!["bidi-control".into()], now());
            file.tools.insert("a".into(), pin);
            file.tools.insert("b".into(), ToolPin::new(v1.clone(), hash(&v1), vec![], now()));
        })
        .expect("update");
    assert!(matches!(store.accept("demo", Some("zz")), Err(GatewayError::UnknownPin { .. })));
    assert!(matches!(store.accept("nope", None), Err(GatewayError::UnknownPin { .. })));
    assert!(matches!(store.accept("../etc", None), Err(GatewayError::UnknownPin { .. })));
    assert_eq!(store.accept("demo", Some("a")).expect("accept"), vec!["a".to_string()]);
    let pin = &store.load("demo").expect("load").tools["a"];
    assert!(!pin.is_changed());
    assert_eq!(pin.hash, hash(&v2));
    assert!(pin.effective_findings().is_empty());
    assert_eq!(store.accept("demo", None).expect("accept"), vec!["a".to_string(), "b".to_string()]);
}

#[test]
fn a_pin_from_before_annotations_were_hashed_is_brought_up_to_date_not_flagged() {
    let tool = json!({"name": "rm", "description": "Remove.", "annotations": {"destructiveHint": true}});
    let old = definition_v1(&tool);
    let mut pin = ToolPin::new(old.clone(), hash(&old), vec![], now());
    pin.version = 1;
    // Seen again as it was: the pin now covers the annotations too.
    pin.saw(&definition(&tool), &hash(&definition(&tool)), vec![], now());
    assert!(!pin.is_changed());
    assert_eq!((pin.version, pin.hash.clone()), (VERSION, hash(&definition(&tool))));
    // From then on, flipping the hint is a change.
    let flipped = json!({"name": "rm", "description": "Remove.", "annotations": {"destructiveHint": false}});
    pin.saw(&definition(&flipped), &hash(&definition(&flipped)), vec![], now());
    assert!(pin.is_changed());
    // An old pin seen changed in what it covered is flagged as before.
    let mut stale = ToolPin::new(old.clone(), hash(&old), vec![], now());
    stale.version = 1;
    let reworded = json!({"name": "rm", "description": "Remove everything.", "annotations": {"destructiveHint": true}});
    stale.saw(&definition(&reworded), &hash(&definition(&reworded)), vec![], now());
    assert!(stale.is_changed());
    // A pin file without versions reads as version 1.
    let file: PinFile = serde_json::from_value(json!({"server": "s", "tools": {"rm": {
        "hash": hash(&old), "definition": old, "pinned_at": now(), "last_seen": now()}}}))
    .expect("old pin file");
    assert_eq!(file.tools["rm"].version, 1);
}
