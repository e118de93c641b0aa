//! Stage 3: name the destination, ask the engine, record the answer.
//!
//! The name comes from the SNI, else the `Host` header, else the name
//! Bridle's resolver answered with the original IP, else the IP itself. The
//! name only ever selects policy: the forward stage always connects to the
//! original destination, so lying in SNI or Host cannot reach another host.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};

use bridle_engine::approvals::{Approvals, Merge};
use bridle_engine::audit::{AuditEntry, AuditLog};
use bridle_engine::authorizer::Authorizer;
use bridle_engine::decision::{Decision, Effect};
use bridle_engine::event::{Connect, Event, EventKind, HttpRequest, NamedBy, Transport};
use bridle_engine::request::AuthzRequest;

use crate::detect::Protocol;
use crate::lineage::lineage;

/// The reason recorded when an `ask` verdict is refused for now.
pub const ASK_REASON: &str = "needs a person's approval, and none can be asked for here";

/// Decides connections for one session and audits every decision.
#[derive(Debug)]
pub struct Decider {
    authorizer: Arc<Authorizer>,
    audit: Option<Arc<AuditLog>>,
    session: String,
    principal: String,
    /// Where an `ask` waits for a person; without it an ask is a deny.
    approvals: OnceLock<Arc<Approvals>>,
}

/// What was decided for one connection.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// The decision as enforced (an `ask` arrives here as a deny).
    pub decision: Decision,
    /// `Some(generation)` when policy denies every connect to this
    /// destination, whatever its name or process: the kernel may refuse
    /// later ones itself while that policy generation is live.
    pub kernel_refusal: Option<u64>,
}

impl Verdict {
    /// Whether the connection may be forwarded.
    pub fn permits(&self) -> bool {
        self.decision.decided && self.decision.effect.permits()
    }
}

impl Decider {
    pub fn new(
        authorizer: Arc<Authorizer>,
        audit: Option<Arc<AuditLog>>,
        session: impl Into<String>,
        principal: impl Into<String>,
    ) -> Self {
        Decider { authorizer, audit, session: session.into(), principal: principal.into(), approvals: OnceLock::new() }
    }

    /// From now on an `ask` waits for a person (`bridle approve`, the
    /// console) until the broker's timeout, which denies.
    pub fn hold_asks_with(&self, approvals: Arc<Approvals>) {
        let _ = self.approvals.set(approvals);
    }

    /// The engine's decision, with an `ask` settled by a person where a
    /// broker is wired in, and enforced (anything unsettled is a deny).
    async fn settle(&self, event: &Event, decision: Decision, subject: &str) -> Decision {
        self.settle_merging(event, decision, subject, || Merge::OnEvent).await
    }

    /// [`settle`](Self::settle), a held ask sharing its approval only as
    /// `merge` allows (worked out only for an ask).
    async fn settle_merging(
        &self,
        event: &Event,
        decision: Decision,
        subject: &str,
        merge: impl FnOnce() -> Merge,
    ) -> Decision {
        match self.approvals.get() {
            Some(approvals) if decision.effect == Effect::Ask => {
                enforced(approvals.ask_merging(event, decision, merge()).await, subject)
            }
            _ => enforced(decision, subject),
        }
    }

    /// An event of this session by process `pid`, attributed to the MCP
    /// tool call in flight, if any (the acting process's ancestry is read
    /// only when a call has a server process to match it against).
    fn event(&self, kind: EventKind, pid: Option<u32>) -> Event {
        let mut event = Event::now(&self.session, &self.principal, kind);
        let correlator = self.authorizer.correlator();
        let lineage = match pid {
            Some(pid) if correlator.wants_lineage() => lineage(pid),
            _ => Vec::new(),
        };
        correlator.attribute(&mut event, &lineage);
        event
    }

    /// Decides a connection to `dst` whose first bytes were `protocol`;
    /// `naming` is what names it besides those bytes.
    /// `pid` is the connecting process, where known.
    pub async fn decide(&self, dst: SocketAddr, protocol: &Protocol, naming: Naming, pid: Option<u32>) -> Verdict {
        let event = self.event(EventKind::Connect(connect(dst, protocol, naming)), pid);
        let decision = self.settle(&event, self.authorizer.decide(&event), "connection").await;
        let kernel_refusal = if decision.effect.permits() { None } else { self.destination_deny(&event) };
        self.record(AuditEntry::Decision { event, decision: decision.clone() });
        Verdict { decision, kernel_refusal }
    }

    /// The generation in which every connect to this event's destination is
    /// denied, if policy says so (see `Authorizer::destination_deny`).
    fn destination_deny(&self, event: &Event) -> Option<u64> {
        if !self.authorizer.has_destination_forbids() {
            return None;
        }
        let principal = self.authorizer.principal_for(event);
        let requests = AuthzRequest::from_event(event, &principal);
        requests.iter().find_map(|request| self.authorizer.destination_deny(request)).map(|deny| deny.generation)
    }

    /// Decides one HTTP request (intercepted or plain). An `ask` waits for
    /// a person where an approvals broker is wired in; otherwise, and on
    /// timeout, it is a deny. Held, it shares its approval only with the
    /// requests `merge` allows (the event shows neither query values nor
    /// header values nor the body).
    pub async fn decide_request(
        &self,
        request: HttpRequest,
        merge: impl FnOnce() -> Merge,
        pid: Option<u32>,
    ) -> Verdict {
        let event = self.event(EventKind::HttpRequest(request), pid);
        let decision = self.settle_merging(&event, self.authorizer.decide(&event), "request", merge).await;
        self.record(AuditEntry::Decision { event, decision: decision.clone() });
        Verdict { decision, kernel_refusal: None }
    }

    /// Decides one HTTP request without waiting (an `ask` is a deny): for
    /// findings in a body that is already streaming.
    pub fn decide_request_now(&self, request: HttpRequest, pid: Option<u32>) -> Verdict {
        let event = self.event(EventKind::HttpRequest(request), pid);
        let decision = enforced(self.authorizer.decide(&event), "request");
        self.record(AuditEntry::Decision { event, decision: decision.clone() });
        Verdict { decision, kernel_refusal: None }
    }

    /// Records a request Bridle refuses before policy is asked (domain
    /// fronting: the names disagree, so no single resource describes it).
    pub fn deny_request(&self, request: HttpRequest, reason: String, pid: Option<u32>) -> Verdict {
        let event = self.event(EventKind::HttpRequest(request), pid);
        let decision = Decision {
            effect: Effect::Deny,
            policies: Vec::new(),
            reason: Some(reason),
            generation: self.authorizer.generation(),
            errors: Vec::new(),
            decided: true,
        };
        self.record(AuditEntry::Decision { event, decision: decision.clone() });
        Verdict { decision, kernel_refusal: None }
    }

    /// Whether a permitting decision came from a `@passthrough` permit.
    pub fn passthrough(&self, decision: &Decision) -> bool {
        let policies = self.authorizer.policies();
        decision.effect.permits()
            && decision.policies.iter().any(|id| policies.meta.get(id).is_some_and(|m| m.passthrough))
    }

    /// Records a notice (e.g. a connection refused before any decision).
    pub fn notice(&self, level: &str, message: String) {
        self.record(AuditEntry::Notice { component: "proxy".into(), level: level.into(), message });
    }

    /// Appends `entry` after the work it describes: on the proxy's
    /// multi-thread runtime the audit flusher appends it before its next
    /// sync, so redaction, encoding and the hash chain are not between a
    /// decision and the bytes it lets through. A failed append is logged
    /// and counted by the log ([`AuditLog::dropped`]); the connection is
    /// still decided.
    fn record(&self, entry: AuditEntry) {
        let Some(audit) = &self.audit else { return };
        audit.append_later(entry);
    }
}

/// The decision the proxy and the resolver enforce for what the engine
/// answered about a `subject` ("connection", "DNS query").
pub(crate) fn enforced(mut decision: Decision, subject: &str) -> Decision {
    if !decision.decided {
        // No policy request was built for the event: nothing permits it.
        decision.effect = Effect::Deny;
        decision.decided = true;
        decision.reason = Some(format!("no decision could be made for this {subject}"));
    }
    if decision.effect == Effect::Ask {
        // Approvals need the console (not built yet): hold = refuse, fail
        // closed, and say why so the agent and the operator can tell.
        decision.effect = Effect::Deny;
        decision.reason = Some(match decision.reason.take() {
            Some(reason) => format!("{ASK_REASON} ({reason})"),
            None => ASK_REASON.to_string(),
        });
    }
    decision
}

/// What names a connection besides its first bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Naming {
    /// What Bridle's resolver learned for the destination's IP.
    pub dns_name: Option<String>,
    /// The SNI or Host the first bytes claim is not proven to belong to the
    /// destination (see `server::unproven_claim`): it does not name the
    /// connection, which is decided on the DNS name or the IP instead. The
    /// SNI stays in the event as what the agent said.
    pub claim_unproven: bool,
}

/// The `net.connect` event detail for a connection.
pub fn connect(dst: SocketAddr, protocol: &Protocol, naming: Naming) -> Connect {
    let (sni, host, tls) = match protocol {
        Protocol::Tls { sni } => (sni.clone(), None, true),
        Protocol::Http { host } => (None, host.clone(), false),
        Protocol::Malformed { tls, .. } => (None, None, *tls),
        Protocol::ServerSpeaksFirst | Protocol::Opaque | Protocol::H2c | Protocol::FirstLine => (None, None, false),
    };
    let (name, named_by) = if naming.claim_unproven {
        name(None, None, naming.dns_name)
    } else {
        name(sni.clone(), host, naming.dns_name)
    };
    Connect { proto: Transport::Tcp, ip: Some(dst.ip()), port: dst.port(), name, named_by, sni, tls }
}

/// The first real name in order SNI, Host, DNS; an IP literal in any of
/// them names nothing the IP does not already say, so it is skipped.
fn name(sni: Option<String>, host: Option<String>, dns: Option<String>) -> (Option<String>, NamedBy) {
    let candidates = [(sni, NamedBy::Sni), (host, NamedBy::HostHeader), (dns, NamedBy::Dns)];
    candidates
        .into_iter()
        .find_map(|(name, by)| name.filter(|n| n.parse::<IpAddr>().is_err()).map(|n| (Some(n), by)))
        .unwrap_or((None, NamedBy::Ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dst() -> SocketAddr {
        "198.51.100.7:443".parse().expect("addr")
    }

    fn dns(name: &str) -> Naming {
        Naming { dns_name: Some(name.into()), claim_unproven: false }
    }

    #[test]
    fn sni_beats_host_beats_dns_beats_ip() {
        let tls = Protocol::Tls { sni: Some("a.test".into()) };
        let c = connect(dst(), &tls, dns("dns.test"));
        assert_eq!((c.name.as_deref(), c.named_by, c.tls), (Some("a.test"), NamedBy::Sni, true));
        let http = Protocol::Http { host: Some("h.test".into()) };
        assert_eq!(connect(dst(), &http, dns("dns.test")).named_by, NamedBy::HostHeader);
        let c = connect(dst(), &Protocol::Opaque, dns("dns.test"));
        assert_eq!((c.name.as_deref(), c.named_by), (Some("dns.test"), NamedBy::Dns));
        let c = connect(dst(), &Protocol::ServerSpeaksFirst, Naming::default());
        assert_eq!((c.name, c.named_by, c.ip), (None, NamedBy::Ip, Some(dst().ip())));
    }

    #[test]
    fn an_unproven_claim_names_nothing_but_the_sni_is_kept() {
        let unproven = |dns_name: Option<&str>| Naming { dns_name: dns_name.map(Into::into), claim_unproven: true };
        let tls = Protocol::Tls { sni: Some("a.test".into()) };
        let c = connect(dst(), &tls, unproven(Some("dns.test")));
        assert_eq!((c.name.as_deref(), c.named_by, c.sni.as_deref()), (Some("dns.test"), NamedBy::Dns, Some("a.test")));
        let http = Protocol::Http { host: Some("h.test".into()) };
        let c = connect(dst(), &http, unproven(None));
        assert_eq!((c.name, c.named_by), (None, NamedBy::Ip));
    }

    #[test]
    fn ip_literal_names_are_skipped() {
        let tls = Protocol::Tls { sni: Some("10.0.0.1".into()) };
        let c = connect(dst(), &tls, Naming::default());
        assert_eq!((c.name, c.named_by, c.sni.as_deref()), (None, NamedBy::Ip, Some("10.0.0.1")));
    }

    #[test]
    fn ask_and_undecided_are_enforced_as_deny() {
        let ask = Decision { effect: Effect::Ask, reason: Some("unknown host".into()), ..Decision::observation(1) };
        let ask = enforced(Decision { decided: true, ..ask }, "connection");
        assert_eq!(ask.effect, Effect::Deny);
        assert_eq!(ask.reason, Some(format!("{ASK_REASON} (unknown host)")));
        let none = enforced(Decision::observation(1), "connection");
        assert_eq!((none.effect, none.decided), (Effect::Deny, true));
    }
}
