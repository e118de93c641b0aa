//! One request at a time: describe it, decide it, answer it or forward it.

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bridle_engine::approvals::Merge;
use bridle_engine::audit::{REDACTED, is_sensitive_header, redact_query};
use bridle_engine::event::{GitOp, HttpRequest};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

use bridle_mcp_gateway::framing::Line;
use bridle_mcp_gateway::http::{Inline, McpRequest, content_coding, is_event_stream, read_bounded_after};

use super::body::{OnFinding, Prefix, Replay, read_more, read_prefix};
use super::mcp::{self, Via};
use super::partial::Watched;
use super::reflected::{Guard, Reflected, Report};
use super::respond::{bad_gateway, bad_request, forbidden};
use super::upgraded::{self, Protocol};
use super::upstream::Upstream;
use super::{Conn, ProxyBody};
use crate::decide::Verdict;
use crate::http::fronting::authority_mismatch;
use crate::http::git::{RefsParse, git_service, receive_pack_refs};
use crate::http::publish::publish_with_query;
use crate::http::scan::{BodyScanner, scan_request_head};
use crate::http::secrets::Reflection;
use crate::http::websocket;

/// Upgrades never passed on: what they carry could not be inspected.
const NOT_PASSED_ON: [&str; 2] = ["h2c", "TLS"];

/// Largest request head accepted (HTTP/1.1 read buffer).
const MAX_HEAD: usize = 64 * 1024;

/// Headers that describe one hop, never forwarded as they came
/// (RFC 9110 §7.6.1; `http2-settings`, RFC 9113's h2c upgrade, too).
/// `connection`/`upgrade` go along for upgrades. Names, not strings: a
/// lookup by string parses it first, on every request.
static HOP_BY_HOP: [HeaderName; 7] = [
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    HeaderName::from_static("http2-settings"),
];

struct Exchange {
    conn: Conn,
    upstream: Upstream,
    h2: bool,
}

/// Serves HTTP on `io` (the agent's side) until the agent closes it.
pub(super) async fn serve<IO>(conn: Conn, io: IO, upstream: Upstream, h2: bool)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let header_timeout = conn.inspector.header_timeout;
    let (decider, dst) = (Arc::clone(&conn.decider), conn.dst);
    let exchange = Arc::new(Exchange { conn, upstream, h2 });
    let service = service_fn(move |request| {
        let exchange = Arc::clone(&exchange);
        async move { Ok::<_, Infallible>(exchange.handle(request).await) }
    });
    let (io, partial) = Watched::new(io);
    let io = TokioIo::new(io);
    let served = if h2 {
        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .serve_connection(io, service)
            .await
    } else {
        hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .max_buf_size(MAX_HEAD)
            // max_buf_size alone is checked only while a head is incomplete:
            // a larger head that arrives in one large read parses and goes
            // through. This bound is checked on every parsed head (431).
            .max_header_size(MAX_HEAD)
            .serve_connection(io, service)
            .with_upgrades()
            .await
    };
    if let Err(error) = served {
        tracing::debug!(%error, "intercepted connection ended");
        // hyper answered a malformed or oversized head (400, 431) or cut a
        // trickled one off itself, so no request reached policy: without
        // this the agent's attempt would leave no trace. A timeout with
        // nothing sent is an idle keep-alive connection closing: routine.
        // hyper's text names the kind of error, never header values.
        let trickled = error.is_timeout() && partial.load(Ordering::Relaxed);
        if error.is_parse() || trickled {
            decider.notice("warn", format!("HTTP request from the agent to {dst} rejected: {error}"));
        }
    }
}

impl Exchange {
    async fn handle(&self, mut request: Request<Incoming>) -> Response<ProxyBody> {
        if let Some(reason) = self.upstream.failure() {
            // The path only: query values may be secrets, and notices are
            // not redacted the way a request's described query is.
            self.conn.decider.notice("warn", format!("{} {}: {reason}", request.method(), request.uri().path()));
            return bad_gateway(reason);
        }
        // h2c would carry requests Bridle could not decide one by one (the
        // "h2c smuggling" past per-request policy), TLS (RFC 2817) bytes it
        // could not read at all: such an offer is dropped and the request
        // goes on as HTTP/1.1. The agent can speak h2 over TLS, where each
        // stream is decided.
        let dropped = match is_upgrade(request.headers()) {
            true => NOT_PASSED_ON.iter().find(|protocol| offers(request.headers(), protocol)),
            false => None,
        };
        let upgrade = (is_upgrade(request.headers()) && dropped.is_none()).then(|| hyper::upgrade::on(&mut request));
        let websocket_asked = upgrade.is_some() && offers(request.headers(), "websocket");
        let (mut parts, mut incoming) = request.into_parts();
        let authority = parts.uri.authority().map(|a| a.as_str().to_owned());
        let path = parts.uri.path().to_owned();
        let query = parts.uri.query().unwrap_or_default().to_owned();
        let host_header = match single_host(&parts.headers).and_then(|host| upper_case(&parts.method).map(|()| host)) {
            Ok(host_header) => host_header,
            Err(problem) => {
                let host = host_of(authority.as_deref(), &self.conn);
                let described = self.describe(&parts, &host, &path, &query, &Prefix::default());
                self.conn.decider.deny_request(described, problem.to_owned(), self.conn.pid);
                return bad_request(problem);
            }
        };
        let host = host_of(authority.as_deref().or(host_header.as_deref()), &self.conn);
        if let Some(protocol) = dropped {
            let message = format!(
                "{host}{path}: the agent's {protocol} upgrade was not passed on (what it would carry could \
                 not be decided one by one); the request went on as HTTP/1.1"
            );
            self.conn.decider.notice("info", message);
        }

        let mut prefix =
            match read_prefix(&mut incoming, self.conn.inspector.body_window, self.conn.inspector.body_wait).await {
                Ok(prefix) => prefix,
                Err(error) => return bad_gateway(&format!("reading the request body failed: {error}")),
            };
        // A JSON POST whose first bytes do not say whether it is MCP is
        // read whole (bounded) first: classification must not depend on
        // where the sender put the `jsonrpc` key or how fast it sent.
        let mut too_long_to_tell = None;
        if let Some(inline) = &self.conn.inspector.mcp
            && parts.method == Method::POST
        {
            let max = inline.max_message_bytes();
            // Nothing but whitespace yet: wait for the first real byte
            // (bounded), then look again.
            let blank = |bytes: &[u8]| bytes.iter().all(u8::is_ascii_whitespace);
            let mut read = read_more(&mut incoming, &mut prefix, max, |bytes| !blank(bytes)).await;
            if matches!(read, Ok(true)) && !prefix.complete && inline.needs_whole_body(&parts.headers, &prefix.bytes) {
                read = read_more(&mut incoming, &mut prefix, max, |_| false).await;
            }
            match read {
                Ok(true) => {}
                Ok(false) => too_long_to_tell = Some(max),
                Err(error) => return bad_gateway(&format!("reading the request body failed: {error}")),
            }
        }
        let mut described = self.describe(&parts, &host, &path, &query, &prefix);
        let canaries = &self.conn.inspector.canaries;
        let secrets = self.conn.inspector.secrets.clone();
        // Credentials go only where TLS verified the host: in plain HTTP a
        // placeholder is misused whatever the Host says (nothing proves
        // who receives it, and anyone on the path could read the value).
        let secret_host = if self.conn.tls { host.as_str() } else { "" };
        let mut scanner = BodyScanner::new(secrets.clone(), secret_host, canaries);
        // An origin-form target (HTTP/1.1) is its own text: no formatting.
        let uri_text = match (parts.uri.scheme(), parts.uri.authority(), parts.uri.path_and_query()) {
            (None, None, Some(origin)) => Cow::Borrowed(origin.as_str()),
            _ => Cow::Owned(parts.uri.to_string()),
        };
        let mut dlp = scan_request_head(&uri_text, &parts.headers, secrets.as_deref(), secret_host, canaries);
        dlp.extend(scanner.feed(&prefix.bytes));
        dlp.sort();
        dlp.dedup();
        described.dlp = dlp;

        // SNI, Host and :authority agree, and the SNI is what the upstream's
        // certificate was verified for. Without such an SNI (plain HTTP, or
        // TLS verified for the bare IP) nothing ties the request's host to
        // the address: it must be a name of the address.
        let checked = self.conn.sni.as_deref().is_some_and(super::checked_sni);
        let fronting = authority_mismatch(self.conn.sni.as_deref(), host_header.as_deref(), authority.as_deref())
            .or_else(|| if checked { None } else { self.conn.unproven_host(&host) });
        // A push whose ref updates cannot be read (compressed, past the
        // window, malformed) would reach policy looking like an empty push.
        let unreadable_push = parts.method == Method::POST
            && described.git.as_ref().is_some_and(|git| git.op == "push")
            && !matches!(receive_pack_refs(&prefix.bytes), RefsParse::Complete(_));
        // After the decision the description is needed again only to decide
        // a finding in a body still streaming or in trailers, in what
        // follows an upgrade, or by an MCP message (always a POST);
        // otherwise the decision takes it without a copy.
        let mut kept = (!prefix.complete
            || prefix.frames.iter().any(Frame::is_trailers)
            || upgrade.is_some()
            || (parts.method == Method::POST && self.conn.inspector.mcp.is_some()))
        .then(|| described.clone());
        let verdict = match (fronting, unreadable_push) {
            (Some(reason), _) => {
                self.conn.decider.deny_request(described, format!("domain fronting: {reason}"), self.conn.pid)
            }
            (None, _) if let Some(max) = too_long_to_tell => self.conn.decider.deny_request(
                described,
                format!(
                    "a JSON body over {max} bytes ([mcp] max_message_bytes) whose first bytes do not show \
                     whether it is an MCP message"
                ),
                self.conn.pid,
            ),
            (None, true) => self.conn.decider.deny_request(
                described,
                "git push whose updated refs Bridle cannot read (compressed, too many refs or malformed)".into(),
                self.conn.pid,
            ),
            (None, false) => {
                // Hashed only if the request is held for a person.
                let merge = || approval_merge(&parts, &uri_text, &prefix);
                self.conn.decider.decide_request(described, merge, self.conn.pid).await
            }
        };
        if !verdict.permits() {
            return refusal(&verdict);
        }

        let mcp = self.conn.inspector.mcp.as_ref().map(|inline| {
            let (method, headers) = (&parts.method, &parts.headers);
            let kind = inline.classify(&host, &path, &query, method, headers, &prefix.bytes, prefix.complete);
            (Arc::clone(inline), kind)
        });
        // A legacy MCP server answers on the event stream of a GET.
        let watch =
            self.conn.inspector.mcp.as_ref().filter(|inline| inline.watch_request(&parts.method, &mut parts.headers));
        let watch = watch.map(Arc::clone);
        // Answers from a host a secret may go to are checked for its value
        // (echoed, quoted in an error, stored by an earlier request), which
        // compression would hide.
        let reflection = secrets.as_ref().and_then(|secrets| secrets.reflection(&host));
        if reflection.is_some() {
            parts.headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
            // Ranges would hand a stored value over in pieces, none whole.
            parts.headers.remove(header::RANGE);
            parts.headers.remove(header::IF_RANGE);
        }
        if let Some(secrets) = &secrets
            && self.conn.tls
        {
            secrets.inject(&host, &mut parts.headers);
        }
        strip_hop_by_hop(&mut parts.headers, upgrade.is_some());
        if upgrade.is_some() {
            // Compressed frames could not be scanned: the upstream is not
            // offered permessage-deflate (or any extension), so every frame
            // that follows is plain and a compressed one is an error.
            parts.headers.remove(websocket::EXTENSIONS);
        }
        parts.uri = match upstream_uri(&parts.uri, &host, self.conn.tls, self.h2) {
            Ok(uri) => uri,
            Err(reason) => return bad_gateway(&reason),
        };
        if self.h2 {
            // h2 carries the authority in :authority; a Host header too
            // would be a second opinion.
            parts.headers.remove(header::HOST);
        }
        // The MCP session's answers carry what the upstream sent: masked
        // like any other.
        match mcp {
            Some((inline, kind @ (McpRequest::Message | McpRequest::Legacy))) => {
                // Only POSTs are MCP messages, so their description was kept.
                let Some(described) = kept.take() else {
                    return bad_gateway("internal error: an MCP message lost its description");
                };
                let target = (host.as_str(), path.as_str(), query.as_str());
                let answer =
                    self.mcp_message(&inline, kind, target, &parts, prefix, incoming, scanner, described).await;
                return self.masked_answer(reflection, answer, format!("{host}{path}"));
            }
            Some((inline, McpRequest::Stream)) => {
                let via = Via::route(self.upstream.recipe(), parts.uri.clone(), &parts.headers);
                let answer = mcp::answer(inline.stream(&host, &parts.headers, via).await);
                return self.masked_answer(reflection, answer, format!("{host}{path}"));
            }
            Some((inline, McpRequest::End)) => inline.end(&host, &parts.headers),
            Some((_, McpRequest::None)) | None => {}
        }
        let upgrade = upgrade.zip(kept.clone());
        let on_finding: OnFinding = match kept {
            Some(described) => self.redecide(described, "secret in request body"),
            // The whole body was scanned before the decision: nothing streams
            // after it, so this is never called; were it, it stops the body.
            None => Box::new(|_| Some("secret in request body".into())),
        };
        let rest = (!prefix.complete).then_some(incoming);
        let body = Replay::new(prefix, rest, scanner, on_finding);
        let stopped = Arc::clone(&body.stopped);
        let forwarded = Request::from_parts(parts, body.boxed_unsync());
        let response = match self.upstream.send(forwarded).await {
            Ok(response) => response,
            Err(reason) => {
                let stop = stopped.lock().ok().and_then(|s| s.clone());
                return match stop {
                    Some(reason) => forbidden(&reason, None),
                    None => bad_gateway(&reason),
                };
            }
        };
        let (mut parts, body) = response.into_parts();
        let mut body = body.map_err(|e| -> super::BoxError { Box::new(e) }).boxed_unsync();
        let mut guard = None;
        if let Some(reflection) = reflection {
            match self.check_answer(reflection, &mut parts, format!("{host}{path}")) {
                Ok(checked) => guard = Some(checked),
                Err(reason) => return bad_gateway(&reason),
            }
        }
        if parts.status == StatusCode::SWITCHING_PROTOCOLS
            && let Some((agent_side, described)) = upgrade
        {
            let target = format!("{host}{path}");
            let response = Response::from_parts(parts, ());
            return self.switch(response, (agent_side, websocket_asked), described, guard, target);
        }
        if let Some(guard) = guard {
            body = Reflected::new(body, guard).boxed_unsync();
        }
        // keep-alive and proxy-connection: the rest hyper handles itself.
        for name in &HOP_BY_HOP[..2] {
            parts.headers.remove(name);
        }
        if let Some(inline) = watch
            && parts.status.is_success()
            && is_event_stream(&parts.headers)
        {
            if let Some(coding) = content_coding(&parts.headers) {
                let reason =
                    format!("{host}{path} sent an event stream encoded as {coding:?}, which Bridle cannot inspect");
                self.conn.decider.notice("warn", reason.clone());
                return bad_gateway(&reason);
            }
            let body = inline.event_stream(&host, &path, body);
            return Response::from_parts(parts, body.map_err(|e| -> super::BoxError { e }).boxed_unsync());
        }
        Response::from_parts(parts, body)
    }

    /// A `101` from the upstream: the agent gets it, and what follows is
    /// relayed with the agent's side scanned ([`upgraded`]).
    fn switch(
        &self,
        mut response: Response<()>,
        (agent_side, websocket_asked): (OnUpgrade, bool),
        described: HttpRequest,
        guard: Option<Guard>,
        target: String,
    ) -> Response<ProxyBody> {
        let headers = response.headers();
        let named = headers.get(header::UPGRADE).and_then(|v| v.to_str().ok()).unwrap_or("?");
        let protocol = match named.trim().eq_ignore_ascii_case("websocket") {
            true => Protocol::WebSocket,
            false => Protocol::Opaque,
        };
        // The agent will speak what it asked for: WebSocket frames read as
        // raw bytes would pass masked, so unscanned.
        if websocket_asked && protocol != Protocol::WebSocket {
            let reason = format!("{target}: the upstream answered a WebSocket upgrade with {named:?}");
            self.conn.decider.notice("warn", reason.clone());
            return bad_gateway(&reason);
        }
        if let Some(accepted) = headers.get(websocket::EXTENSIONS) {
            let reason = format!(
                "{target}: the upstream switched to {named:?} with extensions {accepted:?} that Bridle did not \
                 offer; their frames could not be inspected"
            );
            self.conn.decider.notice("warn", reason.clone());
            return bad_gateway(&reason);
        }
        // The decision covered the upgrade, not each message: say so.
        let what = match protocol {
            Protocol::WebSocket => "messages",
            Protocol::Opaque => "bytes",
        };
        let message = format!(
            "{target} switched to {named:?}: the agent's {what} are scanned for leaks as they go, not \
             decided one by one"
        );
        self.conn.decider.notice("info", message);
        let upstream_side = hyper::upgrade::on(&mut response);
        let secret_host = if self.conn.tls { described.host.as_str() } else { "" };
        let inspector = &self.conn.inspector;
        let scanner = BodyScanner::new(inspector.secrets.clone(), secret_host, &inspector.canaries);
        let on_finding = self.redecide(described, "secret in an upgraded connection");
        let decider = Arc::clone(&self.conn.decider);
        tokio::spawn(async move {
            match (agent_side.await, upstream_side.await) {
                (Ok(agent), Ok(upstream)) => {
                    let (agent, upstream) = (TokioIo::new(agent), TokioIo::new(upstream));
                    let scan = upgraded::Scan { scanner, on_finding };
                    upgraded::relay(agent, upstream, protocol, scan, guard, decider, target).await;
                }
                (agent, upstream) => {
                    tracing::debug!(agent = agent.is_ok(), upstream = upstream.is_ok(), "upgrade failed");
                }
            }
        });
        let (parts, _) = response.into_parts();
        Response::from_parts(parts, Empty::new().map_err(|never| match never {}).boxed_unsync())
    }

    /// The head of an answer from a host a secret may go to, every value of
    /// those secrets in it masked ([`Reflection`]); the guard that masks
    /// the rest and reports the secrets found by name, or why the answer
    /// cannot be read (it came encoded: a `502`).
    fn check_answer(
        &self,
        reflection: Reflection,
        parts: &mut http::response::Parts,
        target: String,
    ) -> Result<Guard, String> {
        let decider = Arc::clone(&self.conn.decider);
        let notice_target = target.clone();
        let report: Report = Box::new(move |names: Vec<String>| {
            let names = names.join(", ");
            decider.notice("warn", format!("{notice_target}: the answer held the value of secret(s) {names}; masked"));
        });
        let mut guard = Guard::new(reflection, report);
        // Masked first: the coding named below is the upstream's text.
        // hyper would pass an HTTP/1 reason phrase on as it came.
        parts.extensions.remove::<hyper::ext::ReasonPhrase>();
        guard.headers(&mut parts.headers);
        if let Some(coding) = encoded(&parts.headers) {
            let reason = format!(
                "{target}: the answer came encoded ({coding}) though Bridle asked for none; answers from a \
                 host a secret may go to are checked for its value, and this one could not be"
            );
            self.conn.decider.notice("warn", reason.clone());
            return Err(reason);
        }
        Ok(guard)
    }

    /// `answer` with its head checked and its body masked when there is a
    /// `reflection` ([`Exchange::check_answer`]).
    fn masked_answer(
        &self,
        reflection: Option<Reflection>,
        answer: Response<ProxyBody>,
        target: String,
    ) -> Response<ProxyBody> {
        let Some(reflection) = reflection else { return answer };
        let (mut parts, body) = answer.into_parts();
        match self.check_answer(reflection, &mut parts, target) {
            Ok(guard) => Response::from_parts(parts, Reflected::new(body, guard).boxed_unsync()),
            Err(reason) => bad_gateway(&reason),
        }
    }

    /// Re-decides `described` with new dlp findings; `Some(reason)` when
    /// that is a deny (`fallback` if policy gave no reason).
    fn redecide(&self, described: HttpRequest, fallback: &'static str) -> OnFinding {
        let (decider, pid) = (Arc::clone(&self.conn.decider), self.conn.pid);
        Box::new(move |kinds: Vec<String>| {
            let mut again = described.clone();
            again.dlp.extend(kinds);
            again.dlp.sort();
            again.dlp.dedup();
            let verdict = decider.decide_request_now(again, pid);
            (!verdict.permits()).then(|| verdict.decision.reason.unwrap_or_else(|| fallback.into()))
        })
    }

    /// An MCP message (or batch), its HTTP request already allowed: read
    /// whole (bounded), scanned past the window the decision saw, then
    /// through the MCP gateway's inline session for `host`.
    #[allow(clippy::too_many_arguments)]
    async fn mcp_message(
        &self,
        inline: &Inline,
        kind: McpRequest,
        (host, path, query): (&str, &str, &str),
        parts: &http::request::Parts,
        prefix: Prefix,
        incoming: Incoming,
        mut scanner: BodyScanner,
        described: HttpRequest,
    ) -> Response<ProxyBody> {
        // The decision scanned every byte read before it: all the frames'
        // data, which the message continues.
        let window = prefix.bytes.len();
        let max = inline.max_message_bytes();
        let read_so_far = prefix.bytes;
        let read = match prefix.complete {
            true => read_bounded_after(read_so_far, Empty::<bytes::Bytes>::new(), max).await,
            false => read_bounded_after(read_so_far, incoming, max).await,
        };
        let line = match read {
            Ok(line) => line,
            Err(error) => return bad_gateway(&format!("reading the request body failed: {error}")),
        };
        if let Line::Message(bytes) = &line
            && bytes.len() > window
        {
            let found = scanner.feed(&bytes[window..]);
            if !found.is_empty() {
                let mut again = described;
                again.dlp.extend(found);
                again.dlp.sort();
                again.dlp.dedup();
                let verdict = self.conn.decider.decide_request_now(again, self.conn.pid);
                if !verdict.permits() {
                    return refusal(&verdict);
                }
            }
        }
        let via = Via::route(self.upstream.recipe(), parts.uri.clone(), &parts.headers);
        let answer = match kind {
            McpRequest::Legacy => inline.legacy_post(host, path, query, line, via).await,
            _ => inline.post(host, &parts.headers, line, via).await,
        };
        mcp::answer(answer)
    }

    /// The request as policy sees it (dlp filled in by the caller).
    fn describe(
        &self,
        parts: &http::request::Parts,
        host: &str,
        path: &str,
        query: &str,
        prefix: &Prefix,
    ) -> HttpRequest {
        let git = git_service(&parts.method, path, query).map(|service| {
            let mut op: GitOp = service.op();
            if parts.method == Method::POST
                && op.op == "push"
                && let RefsParse::Complete(refs) = receive_pack_refs(&prefix.bytes)
            {
                op.refs = refs;
            }
            op
        });
        let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
        let body_size = declared.or(prefix.complete.then_some(prefix.bytes.len() as u64));
        HttpRequest {
            method: parts.method.as_str().to_owned(),
            scheme: if self.conn.tls { "https" } else { "http" }.to_owned(),
            host: host.to_owned(),
            port: self.conn.dst.port(),
            path: path.to_owned(),
            query: redact_query(query),
            headers: described_headers(&parts.headers),
            body_size,
            dlp: Vec::new(),
            inspected: true,
            git,
            publish: publish_with_query(&parts.method, host, path, query, &parts.headers, &prefix.bytes),
        }
    }
}

/// Which held requests may share one approval with this one: those with
/// the same head (the real query and header values, which the event
/// redacts or leaves out) and the same body, when all of it was read
/// before the decision; none when the body streams after it.
fn approval_merge(parts: &http::request::Parts, uri: &str, prefix: &Prefix) -> Merge {
    if !prefix.complete || prefix.frames.iter().any(Frame::is_trailers) {
        return Merge::Never;
    }
    let head = [parts.method.as_str().as_bytes(), uri.as_bytes()];
    let headers = parts.headers.iter().flat_map(|(name, value)| [name.as_str().as_bytes(), value.as_bytes()]);
    Merge::on_digest_of(head.into_iter().chain(headers).chain([prefix.bytes.as_ref()]))
}

/// `403` for a deny (an ask that was not approved arrives as a deny).
fn refusal(verdict: &Verdict) -> Response<ProxyBody> {
    let reason = verdict.decision.reason.as_deref().unwrap_or("no policy permits this request");
    forbidden(reason, verdict.decision.policies.first().map(String::as_str))
}

/// The request's one `Host` value. Several, or one that is not visible
/// ASCII, is refused: policy and the fronting check would read one value
/// while the upstream might route on another (hyper forwards them all).
fn single_host(headers: &HeaderMap) -> Result<Option<String>, &'static str> {
    let mut values = headers.get_all(header::HOST).iter();
    let Some(first) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err("several Host headers (RFC 9112 §3.2)");
    }
    first.to_str().map(|v| Some(v.to_owned())).map_err(|_| "a Host header that is not visible ASCII (RFC 9112 §3.2)")
}

/// A method in lower case (`post`) is another method to hyper and to
/// Bridle's git and publish detection, and the same method to servers
/// that fold case: refused, so no request is described as one thing and
/// served as another.
fn upper_case(method: &Method) -> Result<(), &'static str> {
    match method.as_str().bytes().any(|b| b.is_ascii_lowercase()) {
        true => Err("a request method in lower case (RFC 9110 §9.1: methods are case-sensitive)"),
        false => Ok(()),
    }
}

/// Lowercase host without port or trailing dot; the SNI, else the original
/// IP, when the request names none.
fn host_of(authority: Option<&str>, conn: &Conn) -> String {
    let from_request = authority.and_then(|a| a.parse::<http::uri::Authority>().ok()).map(|a| a.host().to_owned());
    let host = from_request.or_else(|| conn.sni.clone()).unwrap_or_else(|| conn.dst.ip().to_string());
    host.trim_end_matches('.').trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase()
}

/// Header names and values for the event; sensitive values never leave
/// here (the audit log redacts again, but the context should not hold them).
fn described_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = if is_sensitive_header(name.as_str()) {
                REDACTED.to_owned()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            (name.as_str().to_owned(), value)
        })
        .collect()
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|token| token.trim().eq_ignore_ascii_case("upgrade")))
}

/// The content or transfer coding that makes `headers`' body unreadable
/// as it comes (any but identity, or chunked), in every value given.
fn encoded(headers: &HeaderMap) -> Option<String> {
    let content = tokens(headers, header::CONTENT_ENCODING).into_iter().find(|t| !t.is_empty() && t != "identity");
    content.or_else(|| tokens(headers, header::TRANSFER_ENCODING).into_iter().find(|t| !t.is_empty() && t != "chunked"))
}

/// Whether the `Upgrade` header lists `protocol` (any version of it).
fn offers(headers: &HeaderMap, protocol: &str) -> bool {
    let tokens = tokens(headers, header::UPGRADE);
    tokens.iter().any(|token| token.split('/').next().unwrap_or_default().trim().eq_ignore_ascii_case(protocol))
}

/// The comma-separated tokens of every `name` header, trimmed and
/// lowercased. Bytes, not `to_str`: a value with one odd byte still names
/// what it names (h2c, gzip).
fn tokens(headers: &HeaderMap, name: HeaderName) -> Vec<String> {
    let values = headers.get_all(name).iter().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    values.flat_map(|v| v.split(',').map(|t| t.trim().to_ascii_lowercase()).collect::<Vec<_>>()).collect()
}

fn strip_hop_by_hop(headers: &mut HeaderMap, upgrading: bool) {
    // `TE: trailers` alone goes on (RFC 9113 §8.2.2 allows it in h2):
    // gRPC servers refuse a call without it.
    let trailers = headers.get_all(header::TE).iter().count() == 1
        && headers.get(header::TE).is_some_and(|te| te.as_bytes().eq_ignore_ascii_case(b"trailers"));
    // Headers the `Connection` header names are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .filter(|name| !(upgrading && name == header::UPGRADE))
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if !upgrading {
        headers.remove(header::CONNECTION);
        headers.remove(header::UPGRADE);
    }
    if trailers {
        headers.insert(header::TE, http::HeaderValue::from_static("trailers"));
    }
}

/// HTTP/1.1 upstream: origin-form (`/path?query`). h2: the full URI, whose
/// authority becomes `:authority`.
fn upstream_uri(uri: &Uri, host_authority: &str, tls: bool, h2: bool) -> Result<Uri, String> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    if !h2 {
        return path.parse().map_err(|e| format!("request target {path:?}: {e}"));
    }
    let authority = uri.authority().map_or_else(|| host_authority.to_owned(), |a| a.as_str().to_owned());
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{authority}{path}").parse().map_err(|e| format!("request target: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_the_ones_connection_names_are_dropped() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, "keep-alive, x-secret-hop".parse().expect("value"));
        headers.insert("x-secret-hop", "1".parse().expect("value"));
        headers.insert("keep-alive", "timeout=5".parse().expect("value"));
        headers.insert("x-kept", "1".parse().expect("value"));
        strip_hop_by_hop(&mut headers, false);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert!(headers.contains_key("x-kept"));
        // `TE: trailers` (gRPC's) goes on; any other TE does not.
        for (te, kept) in [("trailers", true), ("Trailers", true), ("gzip", false), ("trailers, gzip", false)] {
            let mut headers = HeaderMap::new();
            headers.insert(header::TE, te.parse().expect("value"));
            strip_hop_by_hop(&mut headers, false);
            assert_eq!(headers.get(header::TE).is_some(), kept, "TE: {te}");
        }
    }

    #[test]
    fn upgrades_keep_connection_and_upgrade() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, "Upgrade".parse().expect("value"));
        headers.insert(header::UPGRADE, "websocket".parse().expect("value"));
        assert!(is_upgrade(&headers));
        strip_hop_by_hop(&mut headers, true);
        assert!(headers.contains_key(header::UPGRADE) && headers.contains_key(header::CONNECTION));
    }

    #[test]
    fn an_h2c_offer_is_found_in_any_upgrade_value_and_its_settings_never_forwarded() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, "Upgrade".parse().expect("value"));
        headers.insert(header::UPGRADE, "websocket".parse().expect("value"));
        assert!(!offers(&headers, "h2c"));
        headers.append(header::UPGRADE, http::HeaderValue::from_bytes(b"foo/1\xff, H2C ").expect("obs-text"));
        assert!(offers(&headers, "h2c") && offers(&headers, "websocket") && offers(&headers, "foo"));
        headers.insert("http2-settings", "AAMAAABkAAQAAP__".parse().expect("value"));
        strip_hop_by_hop(&mut headers, false);
        assert!(headers.is_empty(), "{headers:?}");
    }

    #[test]
    fn upstream_targets_are_origin_form_for_http1_and_absolute_for_h2() {
        let uri: Uri = "/v1/ok?x=1".parse().expect("uri");
        assert_eq!(upstream_uri(&uri, "api.test", true, false).expect("h1"), "/v1/ok?x=1");
        assert_eq!(upstream_uri(&uri, "api.test", true, true).expect("h2"), "https://api.test/v1/ok?x=1");
    }

    #[test]
    fn one_ascii_host_header_or_none_is_accepted() {
        let mut headers = HeaderMap::new();
        assert_eq!(single_host(&headers), Ok(None));
        headers.insert(header::HOST, "allowed.test".parse().expect("value"));
        assert_eq!(single_host(&headers), Ok(Some("allowed.test".into())));
        headers.append(header::HOST, "evil.test".parse().expect("value"));
        assert_eq!(single_host(&headers), Err("several Host headers (RFC 9112 §3.2)"));
        headers.insert(header::HOST, http::HeaderValue::from_bytes(b"evil.test\xff").expect("obs-text"));
        assert_eq!(single_host(&headers), Err("a Host header that is not visible ASCII (RFC 9112 §3.2)"));
    }

    #[test]
    fn sensitive_header_values_never_reach_the_event() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Bearer sk-live-123".parse().expect("value"));
        headers.insert(header::ACCEPT, "*/*".parse().expect("value"));
        let described = described_headers(&headers);
        assert!(described.contains(&("authorization".into(), REDACTED.into())), "{described:?}");
        assert!(described.contains(&("accept".into(), "*/*".into())));
    }
}
