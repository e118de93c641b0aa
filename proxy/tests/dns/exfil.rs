//! Exfiltration-shaped queries are flagged in the event, and the policy
//! can refuse them.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::support::{Harness, dig, udp_query};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_label_is_flagged_and_refused() {
    let h = Harness::start(|_| {}).await;
    let name = format!("{}.allowed.test", "a".repeat(45));
    let out = dig(h.addr, &[&name, "A"]).await;
    assert!(out.contains("status: REFUSED"), "{out}");
    let decision = h.decision_for(&name);
    assert_eq!(decision["event"]["detail"]["flags"], serde_json::json!(["long-label"]));
    assert_eq!(decision["decision"]["reason"], "long labels look like DNS exfiltration");
    assert_eq!(h.authority.count(), 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_entropy_label_is_flagged_but_policy_decides() {
    let h = Harness::start(|_| {}).await;
    let name = "q7x2k9m4z8w1v6b3.allowed.test.";
    let answer = udp_query(h.addr, name, RecordType::A).await;
    // The authority has no such name; the policy permitted the query.
    assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
    let decision = h.decision_for(name.trim_end_matches('.'));
    assert_eq!(decision["event"]["detail"]["flags"], serde_json::json!(["high-entropy"]));
    assert_eq!(decision["decision"]["effect"], "allow");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txt_flood_is_flagged() {
    // A wide window keeps a slow CI machine from sliding it mid-test.
    let h = Harness::start(|c| {
        c.exfil.txt_per_window = 3;
        c.exfil.txt_window = std::time::Duration::from_secs(60);
    })
    .await;
    for _ in 0..3 {
        let answer = udp_query(h.addr, "txt.test.", RecordType::TXT).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    }
    assert!(h.decision_for("txt.test")["event"]["detail"]["flags"].is_null(), "three per second are fine");
    udp_query(h.addr, "txt.test.", RecordType::TXT).await;
    assert_eq!(h.decision_for("txt.test")["event"]["detail"]["flags"], serde_json::json!(["txt-flood"]));
    let out = dig(h.addr, &["+tcp", "allowed.test", "A"]).await;
    assert!(out.contains("198.51.100.10"), "A queries are not counted as TXT: {out}");
    assert!(h.decision_for("allowed.test")["event"]["detail"]["flags"].is_null());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_new_names_under_one_domain_is_flagged() {
    let h = Harness::start(|c| c.exfil.names_per_domain = 3).await;
    // Short, plain chunks: nothing for the label tests to see.
    for chunk in ["c0", "c1", "c2"] {
        let name = format!("{chunk}.t.missing.test.");
        let answer = udp_query(h.addr, &name, RecordType::A).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
        assert!(h.decision_for(name.trim_end_matches('.'))["event"]["detail"]["flags"].is_null(), "{name}");
    }
    udp_query(h.addr, "c3.t.missing.test.", RecordType::A).await;
    let decision = h.decision_for("c3.t.missing.test");
    assert_eq!(decision["event"]["detail"]["flags"], serde_json::json!(["subdomain-flood"]));
    udp_query(h.addr, "www.allowed.test.", RecordType::A).await;
    assert!(h.decision_for("www.allowed.test")["event"]["detail"]["flags"].is_null(), "counted per domain");
    h.stop().await;
}
