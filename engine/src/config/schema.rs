//! The sections of `bridle.toml` as serde types, with their defaults.
//!
//! Every struct denies unknown keys so a typo fails loudly instead of silently
//! leaving a guardrail at its default.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};

/// `[project]`: who the agent is and where its workload lives.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProjectConfig {
    /// Principal name: policies see the agent as `Agent::"<name>"`.
    pub name: String,
    /// Project directory on the host.
    pub path: PathBuf,
    /// Working directory inside the guarded workload (not resolved on the host).
    pub workdir: PathBuf,
    /// Container image of the agent, passed to policies as an attribute; empty if none.
    pub image: String,
}

impl Default for ProjectConfig {
    fn default() -> Self {
        Self {
            name: "agent".to_owned(),
            path: PathBuf::from("."),
            workdir: PathBuf::from("/workspace"),
            image: String::new(),
        }
    }
}

/// `[[mounts]]`: a host path made visible inside the guarded workload.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    /// Path on the host.
    pub source: PathBuf,
    /// Absolute path inside the workload.
    pub target: PathBuf,
    /// Read-only unless set to false: writes are the riskier default to grant.
    #[serde(default = "default_true")]
    pub readonly: bool,
}

/// `[env]`: which host environment variables the agent inherits.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnvConfig {
    /// Names of variables forwarded to the agent; everything else is withheld.
    pub forward: Vec<String>,
}

impl Default for EnvConfig {
    fn default() -> Self {
        let forward = ["PATH", "HOME", "TERM", "LANG"];
        Self { forward: forward.map(str::to_owned).to_vec() }
    }
}

/// `[host]`: what host mode (`bridle run`) lets the command see of the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostConfig {
    /// Directories of `/run` (relative to it, e.g. `postgresql`) the command
    /// sees as the host's, sockets and all, rather than copied without their
    /// sockets. The services there act for the command outside Bridle's
    /// guard.
    pub live_run_dirs: Vec<PathBuf>,
    /// Gives the command a `/tmp` and a `/var/tmp` of its own (empty tmpfs,
    /// gone when the session ends) instead of the host's: no socket another
    /// process of the user's serves there (an `ssh-agent`'s `/tmp/ssh-*`,
    /// an IDE's IPC) is in its reach, and nothing it leaves there outlives
    /// it.
    pub private_tmp: bool,
    /// Makes the files that run code later outside the guard (shell and
    /// login files, ssh's, git's, systemd user units, the repository's
    /// hooks, …) read-only for the command where they exist, rather than
    /// only naming their changes when the session ends.
    pub lock_startup_files: bool,
    /// Covers every socket served outside the session that the command
    /// could still connect to (an ssh `ControlMaster` under `~/.ssh`, an
    /// ssh-agent or IDE socket in `/tmp`), rather than only naming them:
    /// each is overmounted, so a connect to it is refused; those served
    /// after the command starts within about 250 ms.
    pub cover_sockets: bool,
}

/// `[policies]`: where the Cedar policy set comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Directory of `.cedar` files; `None` uses the built-in default set.
    pub dir: Option<PathBuf>,
    /// Directory for permits written by "always" approvals; `None` lets the policy loader choose.
    pub overrides: Option<PathBuf>,
}

/// Where a secret's value is read from on the host (never inside the workload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A host environment variable, by name.
    Env(String),
    /// A file on the host holding the value.
    File(PathBuf),
}

/// `[[secrets]]`: a credential bridle injects into requests so the agent never holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    /// Identifier used in policies and the console, `[a-z0-9_-]+`.
    pub name: String,
    /// Where the value comes from.
    pub source: SecretSource,
    /// Host names the secret may be sent to; never any other.
    pub hosts: Vec<String>,
    /// HTTP header that carries the secret.
    pub header: String,
    /// Header value template; `{value}` is replaced by the secret.
    pub format: String,
}

impl Secret {
    /// The header value for `value`, following `format`.
    pub fn render(&self, value: &str) -> String {
        self.format.replace("{value}", value)
    }
}

/// `[[secrets]]` as written, before the value source is checked and resolved.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSecret {
    pub name: String,
    pub env: Option<String>,
    pub file: Option<PathBuf>,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default = "default_header")]
    pub header: String,
    #[serde(default = "default_format")]
    pub format: String,
}

/// How a denied DNS query is answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DenyResponse {
    /// `REFUSED`: tells the agent a policy said no, instead of pretending the name is gone.
    #[default]
    Refused,
    /// `NXDOMAIN`: the name does not exist.
    Nxdomain,
}

/// `[dns]`: bridle's resolver for guarded DNS queries.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// Upstream servers, `"ip"` (port 53) or `"ip:port"`; empty uses the host's `/etc/resolv.conf`.
    #[serde(deserialize_with = "upstreams")]
    pub upstreams: Vec<SocketAddr>,
    /// Answer to a denied query.
    pub deny_response: DenyResponse,
    /// Maximum number of cached answers.
    pub cache_size: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self { upstreams: Vec::new(), deny_response: DenyResponse::default(), cache_size: 10_000 }
    }
}

/// `[console]`: the web console and its API.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Listen address; loopback by default because the console can approve actions.
    pub bind: SocketAddr,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self { bind: SocketAddr::from(([127, 0, 0, 1], 18080)) }
    }
}

/// `[audit]`: the hash-chained audit log.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// JSONL log file on the host.
    pub path: PathBuf,
    /// Longest time an appended event may sit unsynced, in milliseconds (1..=60000).
    pub fsync_interval_ms: u64,
    /// Keep a SQLite index beside the log for console search.
    pub index: bool,
    /// Extra literal strings to redact from events, on top of the configured secrets.
    pub redact: Vec<String>,
}

impl AuditConfig {
    /// `fsync_interval_ms` as a duration.
    pub fn fsync_interval(&self) -> Duration {
        Duration::from_millis(self.fsync_interval_ms)
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("/var/lib/bridle/audit/audit.jsonl"),
            fsync_interval_ms: 50,
            index: true,
            redact: Vec::new(),
        }
    }
}

/// `[engine]`: the decision engine.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Maximum number of cached decisions (cleared whenever the policy set changes).
    pub decision_cache_size: usize,
    /// How long an "ask" waits for a person before it is denied, in seconds (at least 1).
    pub ask_timeout_secs: u64,
}

impl EngineConfig {
    /// `ask_timeout_secs` as a duration.
    pub fn ask_timeout(&self) -> Duration {
        Duration::from_secs(self.ask_timeout_secs)
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self { decision_cache_size: 100_000, ask_timeout_secs: 120 }
    }
}

/// `[proxy]`: the transparent proxy's timeouts and connection limit.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxySection {
    /// How long to wait for a client's first bytes (TLS ClientHello, HTTP
    /// request) before treating the protocol as server-speaks-first (SSH,
    /// SMTP, databases), in ms (1 to 10000). Such clients wait this long.
    pub peek_timeout_ms: u64,
    /// Upstream connect timeout, in ms (at least 1).
    pub connect_timeout_ms: u64,
    /// A spliced connection with no traffic either way is closed after this
    /// many seconds; 0 never closes it.
    pub idle_timeout_secs: u64,
    /// The most connections the proxy holds at once (at least 1); past it
    /// new ones are refused. Lowered to what Bridle's open-files limit
    /// allows.
    pub max_connections: usize,
}

impl ProxySection {
    pub fn peek_timeout(&self) -> Duration {
        Duration::from_millis(self.peek_timeout_ms)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }
}

impl Default for ProxySection {
    fn default() -> Self {
        Self { peek_timeout_ms: 1000, connect_timeout_ms: 10_000, idle_timeout_secs: 600, max_connections: 10_000 }
    }
}

/// `[tls]`: Bridle's certificate authority and the roots upstream servers are
/// verified against.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    /// Directory holding `ca.pem`, `ca.key` (0600) and the agent's trust
    /// bundle `bundle.pem`; made on first use.
    pub ca_dir: PathBuf,
    /// PEM bundle upstream servers are verified against (and that the
    /// agent's bundle is built from); `None` uses the system bundle.
    pub upstream_ca_bundle: Option<PathBuf>,
    /// Maximum number of cached leaf certificates (at least 1).
    pub leaf_cache_size: usize,
}

impl Default for TlsSection {
    fn default() -> Self {
        Self { ca_dir: PathBuf::from("/var/lib/bridle/ca"), upstream_ca_bundle: None, leaf_cache_size: 10_000 }
    }
}

/// `[dlp]`: secret-leak detection on outgoing requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DlpConfig {
    /// Honeytoken canaries: fake credentials planted where only a thief would
    /// look; a request carrying one anywhere is flagged `honeytoken`. Literal,
    /// case-sensitive, at least 8 characters.
    pub canaries: Vec<String>,
}

/// `[mcp]`: the MCP gateway's HTTP side, a reverse proxy in front of the
/// HTTP MCP servers listed in `[[mcp.servers]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpSection {
    /// Where the gateway listens; agents reach server NAME at
    /// `http://<listen>/mcp/NAME`. Loopback by default.
    pub listen: SocketAddr,
    /// Longest JSON-RPC message (or SSE event) accepted either way, in bytes.
    pub max_message_bytes: usize,
    /// Upstream connect timeout, in ms (at least 1).
    pub connect_timeout_ms: u64,
    /// A session with no client request for this long is forgotten, in
    /// seconds (at least 1).
    pub session_idle_secs: u64,
    /// `[[mcp.servers]]`, in file order, names unique.
    pub servers: Vec<McpServer>,
}

impl McpSection {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub fn session_idle(&self) -> Duration {
        Duration::from_secs(self.session_idle_secs)
    }
}

impl Default for McpSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 18090)),
            max_message_bytes: 16 << 20,
            connect_timeout_ms: 10_000,
            session_idle_secs: 3600,
            servers: Vec::new(),
        }
    }
}

/// `[[mcp.servers]]`: one HTTP MCP server behind the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServer {
    /// The server's name: `/mcp/NAME` on the gateway, `resource.server` in
    /// policies, `NAME.json` among the tool pins.
    pub name: String,
    /// The server's endpoint, `http://` or `https://`: the MCP endpoint for
    /// streamable HTTP, the event-stream URL for `sse`.
    pub url: String,
    /// How the server speaks MCP over HTTP.
    #[serde(default)]
    pub transport: McpTransport,
    /// Headers added to every request to the server (e.g. its credentials),
    /// replacing any the agent sent under the same name.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// An HTTP MCP transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum McpTransport {
    /// The current transport: POST with JSON or event-stream answers, a GET
    /// stream, `Mcp-Session-Id`.
    #[default]
    StreamableHttp,
    /// The legacy HTTP+SSE transport: an event stream that names an
    /// endpoint to POST to.
    Sse,
}

/// The whole file as written; validation turns it into a `Config`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawConfig {
    pub project: ProjectConfig,
    pub mounts: Vec<Mount>,
    pub env: EnvConfig,
    pub host: HostConfig,
    pub policies: PolicyConfig,
    pub secrets: Vec<RawSecret>,
    pub dns: DnsConfig,
    pub console: ConsoleConfig,
    pub proxy: ProxySection,
    pub tls: TlsSection,
    pub audit: AuditConfig,
    pub engine: EngineConfig,
    pub dlp: DlpConfig,
    pub mcp: McpSection,
}

fn default_true() -> bool {
    true
}

fn default_header() -> String {
    "authorization".to_owned()
}

fn default_format() -> String {
    "Bearer {value}".to_owned()
}

/// One upstream. Parsed inside a visitor because toml only attaches the element's
/// own span to errors raised while it is being visited.
struct Upstream(SocketAddr);

impl<'de> Deserialize<'de> for Upstream {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(UpstreamVisitor)
    }
}

struct UpstreamVisitor;

impl Visitor<'_> for UpstreamVisitor {
    type Value = Upstream;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an IP address or ip:port")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Upstream, E> {
        parse_upstream(text)
            .map(Upstream)
            .ok_or_else(|| E::custom(format!("invalid DNS upstream `{text}`: expected an IP address or ip:port")))
    }
}

fn upstreams<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    let list = Vec::<Upstream>::deserialize(d)?;
    Ok(list.into_iter().map(|u| u.0).collect())
}

fn parse_upstream(text: &str) -> Option<SocketAddr> {
    let bare_ip = || text.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53));
    text.parse::<SocketAddr>().ok().or_else(bare_ip)
}
