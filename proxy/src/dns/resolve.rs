//! Stages 2–4 for one packet: flag, decide, audit, then refuse or answer
//! from the cache or the upstreams, recording answered IPs in the name map.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bridle_engine::audit::{AuditEntry, AuditLog};
use bridle_engine::authorizer::Authorizer;
use bridle_engine::config::DenyResponse;
use bridle_engine::decision::Decision;
use bridle_engine::event::{DnsQuery, Event, EventKind};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::Record;

use super::cache::{AnswerCache, CachedAnswer};
use super::config::ResolverConfig;
use super::exfil::ExfilDetector;
use super::names::NameMap;
use super::notice::NoticeLimiter;
use super::upstream::Upstreams;
use super::wire::{self, Parsed, Request};

/// Longest time any answer is cached, whatever TTL the upstream sent.
const MAX_CACHE_TTL: Duration = Duration::from_secs(86_400);

/// The transport a query came on: it bounds the response size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Udp,
    Tcp,
}

/// Everything needed to answer one query; shared by all listener tasks.
#[derive(Debug)]
pub struct Resolver {
    authorizer: Arc<Authorizer>,
    audit: Option<Arc<AuditLog>>,
    session: String,
    principal: String,
    deny_response: DenyResponse,
    exfil: ExfilDetector,
    cache: AnswerCache,
    names: Arc<NameMap>,
    upstreams: Upstreams,
    notices: NoticeLimiter,
}

impl Resolver {
    pub fn new(config: &ResolverConfig, authorizer: Arc<Authorizer>, audit: Option<Arc<AuditLog>>) -> Self {
        Resolver {
            authorizer,
            audit,
            session: config.session.clone(),
            principal: config.principal.clone(),
            deny_response: config.deny_response,
            exfil: ExfilDetector::new(config.exfil.clone()),
            cache: AnswerCache::new(config.cache_size, MAX_CACHE_TTL),
            names: Arc::new(NameMap::new(config.names_size)),
            upstreams: Upstreams::new(config.upstreams.clone(), config.upstream_timeout),
            notices: NoticeLimiter::default(),
        }
    }

    /// The IP → name map this resolver fills.
    pub fn names(&self) -> Arc<NameMap> {
        Arc::clone(&self.names)
    }

    /// The bytes to send back for `packet` from `client`, or `None` when
    /// the packet gets no answer.
    pub async fn handle(&self, packet: &[u8], client: SocketAddr, via: Via) -> Option<Vec<u8>> {
        let request = match wire::parse(packet) {
            Parsed::Query(request) => request,
            Parsed::Reply { bytes, why } => {
                self.notice(format!("malformed DNS query from {client} answered with an error: {why}"));
                return Some(bytes);
            }
            Parsed::Drop { why } => {
                self.notice(format!("DNS packet from {client} dropped: {why}"));
                return None;
            }
        };
        let max_len = match via {
            Via::Udp => request.max_udp,
            Via::Tcp => usize::from(u16::MAX),
        };
        let decision = self.decide(&request);
        if !decision.effect.permits() {
            let rcode = match self.deny_response {
                DenyResponse::Refused => ResponseCode::Refused,
                DenyResponse::Nxdomain => ResponseCode::NXDomain,
            };
            return Some(wire::response(&request, rcode, Vec::new(), Vec::new(), max_len));
        }
        let answer = self.answer(&request).await;
        Some(match answer {
            Some(a) => wire::response(&request, a.response_code, a.answers, a.authorities, max_len),
            None => wire::response(&request, ResponseCode::ServFail, Vec::new(), Vec::new(), max_len),
        })
    }

    /// One `Dns::Action::"Resolve"` event, decided and audited (during an
    /// MCP tool call it carries `context.mcp`).
    fn decide(&self, request: &Request) -> Decision {
        let labels: Vec<&[u8]> = request.question.name.iter().collect();
        let flags = self.exfil.flags(&labels, &request.qtype, Instant::now());
        let query = DnsQuery { qname: request.qname.clone(), qtype: request.qtype.clone(), flags };
        let mut event = Event::now(&self.session, &self.principal, EventKind::DnsQuery(query));
        // The querying process is not known here: a query during a tool
        // call is the session's.
        self.authorizer.correlator().attribute(&mut event, &[]);
        let decision = crate::decide::enforced(self.authorizer.decide(&event), "DNS query");
        self.record(AuditEntry::Decision { event, decision: decision.clone() });
        decision
    }

    /// The cached answer, else the upstreams' (cached and mapped for next
    /// time); `None` when no upstream answered.
    async fn answer(&self, request: &Request) -> Option<CachedAnswer> {
        let q = &request.question;
        let key = (request.qname.clone(), q.query_type, q.query_class);
        if let Some(hit) = self.cache.get(&key, Instant::now()) {
            // The agent connects on what it is told now: the names map must
            // know it, even if it let the name go since (16 per address).
            self.map_names(&request.qname, &hit.answers, Instant::now());
            return Some(hit);
        }
        let upstream: Message = match self.upstreams.query(q).await {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%error, qtype = %request.qtype, "DNS upstreams failed");
                return None;
            }
        };
        let (answer, ttl) = CachedAnswer::from_upstream(upstream);
        let now = Instant::now();
        self.map_names(&request.qname, &answer.answers, now);
        if let Some(ttl) = ttl {
            self.cache.insert(key, answer.clone(), ttl, now);
        }
        Some(answer)
    }

    fn map_names(&self, qname: &str, answers: &[Record], now: Instant) {
        for record in answers {
            if let Some(ip) = record.data.ip_addr() {
                self.names.insert(ip, qname, Duration::from_secs(u64::from(record.ttl)), now);
            }
        }
    }

    fn notice(&self, message: String) {
        let Some(message) = self.notices.admit(message, Instant::now()) else { return };
        self.record(AuditEntry::Notice { component: "dns".into(), level: "warn".into(), message });
    }

    /// Appended after the answer goes out (see `Decider::record`); a
    /// failure is logged and counted by the log.
    fn record(&self, entry: AuditEntry) {
        let Some(audit) = &self.audit else { return };
        audit.append_later(entry);
    }
}
