//! Git smart-HTTP: which service a request is (fetch or push) and, for a
//! push, which refs it updates, so a policy can tell `git push` from
//! `git clone` and protect branches.
//!
//! Requests, as `git http-backend` dispatches them (path percent-decoded,
//! since the web server decodes `PATH_INFO` before the backend sees it):
//! - `GET|HEAD <repo>/info/refs?service=git-upload-pack|git-receive-pack`,
//!   the ref advertisement that starts a fetch or a push;
//! - `POST <repo>/git-upload-pack|git-receive-pack` (content type
//!   `application/x-git-<service>-request`, not required here because the
//!   backend dispatches on the path alone).
//!
//! A receive-pack POST body starts with the command list (gitprotocol-pack(5)),
//! in pkt-lines: 4 hex digits of length (counting themselves), then data.
//! ```text
//! *( "shallow" SP oid LF )
//! old-oid SP new-oid SP refname NUL capabilities   first command
//! *( old-oid SP new-oid SP refname [LF] )
//! "0000"                                            flush-pkt
//! ```
//! then push options and the pack, which are not read. Old all zeros is a
//! create, new all zeros a delete. Object ids are 40 (SHA-1) or 64 (SHA-256)
//! hex digits. A signed push (`git push --signed`) replaces the commands by
//! a push certificate, `push-cert NUL caps`, header lines, an empty line,
//! `old new ref LF` lines, the signature, then `push-cert-end LF`; its refs
//! are read from inside the certificate (the signature is not checked:
//! the server does that). Like `git receive-pack`, commands may also follow
//! the certificate before the flush, and a flush inside it ends the list.
//!
//! Must never: accept what `git receive-pack` would reject as a protocol
//! error (a guessable gap between what we read and what the server does),
//! or buffer without bound: past [`MAX_COMMAND_LIST`] bytes an unfinished
//! command list is [`RefsParse::Invalid`]. A gzip `Content-Encoding`, which
//! git does not use for pushes, also reads as `Invalid`; callers fail closed.

use bridle_engine::event::GitOp;
use http::Method;

use super::codec::percent_decode;

/// Bytes of a receive-pack body read before an unfinished command list is
/// `Invalid`: about 500 ref updates of typical length (a mirror push of a
/// large repository can exceed it and is then refused).
pub const MAX_COMMAND_LIST: usize = 64 * 1024;

/// Largest pkt-line git sends or accepts (`LARGE_PACKET_MAX`).
const MAX_PKT: usize = 65520;

/// Which git service a smart-HTTP request belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GitService {
    /// `git-upload-pack`: clone, fetch, pull.
    UploadPack,
    /// `git-receive-pack`: push.
    ReceivePack,
}

impl GitService {
    /// The service name as git spells it.
    pub fn name(self) -> &'static str {
        match self {
            GitService::UploadPack => "git-upload-pack",
            GitService::ReceivePack => "git-receive-pack",
        }
    }

    /// `fetch` or `push`.
    pub fn action(self) -> &'static str {
        match self {
            GitService::UploadPack => "fetch",
            GitService::ReceivePack => "push",
        }
    }

    /// The event's git context with no refs yet: a push's caller fills in
    /// [`receive_pack_refs`] once the body's command list is read.
    pub fn op(self) -> GitOp {
        GitOp { service: self.name().to_owned(), op: self.action().to_owned(), refs: Vec::new() }
    }

    fn from_name(name: &[u8]) -> Option<GitService> {
        match name {
            b"git-upload-pack" => Some(GitService::UploadPack),
            b"git-receive-pack" => Some(GitService::ReceivePack),
            _ => None,
        }
    }
}

/// The smart-HTTP service of a request, from its method, path and raw
/// query string (without `?`); `None` for anything else (including dumb
/// HTTP, which has no service).
pub fn git_service(method: &Method, path: &str, query: &str) -> Option<GitService> {
    let path = percent_decode(path);
    if *method == Method::GET || *method == Method::HEAD {
        if !path.ends_with(b"/info/refs") {
            return None;
        }
        // http-backend decodes names and values, and the last `service` wins.
        let mut pairs = query.split('&').filter_map(|pair| pair.split_once('='));
        let (_, service) = pairs.rfind(|(name, _)| percent_decode(name) == b"service")?;
        return GitService::from_name(&percent_decode(service));
    }
    if *method == Method::POST {
        let slash = path.iter().rposition(|&b| b == b'/')?;
        return GitService::from_name(&path[slash + 1..]);
    }
    None
}

/// What the start of a receive-pack body says about the refs it updates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefsParse {
    /// The whole command list: every ref name, in order.
    Complete(Vec<String>),
    /// The command list goes on past these bytes (and they are fewer than
    /// [`MAX_COMMAND_LIST`]): call again with a longer prefix.
    NeedMore,
    /// Not a command list git would accept, or too long.
    Invalid,
}

/// Parses the command list at the start of a `git-receive-pack` POST body.
pub fn receive_pack_refs(body_prefix: &[u8]) -> RefsParse {
    match command_list(body_prefix) {
        Ok(commands) => RefsParse::Complete(commands.into_iter().map(|c| c.refname).collect()),
        Err(Stop::Short) if body_prefix.len() < MAX_COMMAND_LIST => RefsParse::NeedMore,
        Err(_) => RefsParse::Invalid,
    }
}

/// One ref update.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Command {
    old: String,
    new: String,
    refname: String,
}

impl Command {
    #[cfg(test)]
    fn is_create(&self) -> bool {
        self.old.bytes().all(|b| b == b'0')
    }

    #[cfg(test)]
    fn is_delete(&self) -> bool {
        self.new.bytes().all(|b| b == b'0')
    }
}

/// Why parsing stopped short of a complete command list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// The bytes end before the list does.
    Short,
    /// git would refuse this.
    Bad,
}

/// One pkt-line: `None` is the flush-pkt.
type Pkt<'a> = Option<&'a [u8]>;

/// Reads pkt-lines off the front of a byte slice.
struct PktReader<'a> {
    rest: &'a [u8],
}

impl<'a> PktReader<'a> {
    fn next(&mut self) -> Result<Pkt<'a>, Stop> {
        // Checked before the length is complete, so a body that is not
        // pkt-lines (a gzip stream, a pack) is refused at once; and before
        // from_str_radix, which would take a leading `+`.
        let head = &self.rest[..self.rest.len().min(4)];
        if !head.iter().all(u8::is_ascii_hexdigit) {
            return Err(Stop::Bad);
        }
        if head.len() < 4 {
            return Err(Stop::Short);
        }
        let text = std::str::from_utf8(head).map_err(|_| Stop::Bad)?;
        let len = usize::from_str_radix(text, 16).map_err(|_| Stop::Bad)?;
        match len {
            0 => {
                self.rest = &self.rest[4..];
                Ok(None)
            }
            // Delim and response-end packets are protocol v2 only; git
            // has no v2 push, and receive-pack dies on them.
            1..=4 => Err(Stop::Bad),
            _ if len > MAX_PKT => Err(Stop::Bad),
            _ => {
                let data = self.rest.get(4..len).ok_or(Stop::Short)?;
                self.rest = &self.rest[len..];
                Ok(Some(data))
            }
        }
    }
}

/// The command list, following `read_head_info` in git's receive-pack.
fn command_list(body: &[u8]) -> Result<Vec<Command>, Stop> {
    let mut reader = PktReader { rest: body };
    let mut commands = Vec::new();
    let mut cert_commands = Vec::new();
    while let Some(line) = reader.next()? {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        if let Some(oid) = line.strip_prefix(b"shallow ") {
            oid_len(oid).ok_or(Stop::Bad)?;
            continue;
        }
        // Capabilities follow a NUL on any line; git reads them from each.
        let command = line.split(|&b| b == 0).next().unwrap_or(line);
        if command == b"push-cert" {
            let ended_by_flush = read_cert(&mut reader, &mut cert_commands)?;
            if ended_by_flush {
                break;
            }
            continue;
        }
        commands.push(parse_command(command)?);
    }
    commands.append(&mut cert_commands);
    Ok(commands)
}

/// Reads a push certificate after its `push-cert` line, through
/// `push-cert-end` (returns false) or a flush-pkt (returns true), adding
/// the commands it signs.
fn read_cert(reader: &mut PktReader<'_>, commands: &mut Vec<Command>) -> Result<bool, Stop> {
    let mut cert = Vec::new();
    let ended_by_flush = loop {
        match reader.next()? {
            None => break true,
            Some(b"push-cert-end\n") => break false,
            Some(line) => cert.extend_from_slice(line),
        }
    };
    // As `queue_commands_from_cert`: header lines, an empty line, then one
    // command a line up to where the signature starts.
    let blank = cert.windows(2).position(|w| w == b"\n\n").ok_or(Stop::Bad)?;
    let signed = &cert[..signature_start(&cert)];
    let body = signed.get(blank + 2..).unwrap_or_default();
    if !body.is_empty() {
        for line in body.strip_suffix(b"\n").unwrap_or(body).split(|&b| b == b'\n') {
            commands.push(parse_command(line)?);
        }
    }
    Ok(ended_by_flush)
}

/// Where the last line that opens a signature starts (git's
/// `parse_signed_buffer`), or the end when there is none.
fn signature_start(cert: &[u8]) -> usize {
    const OPENERS: [&[u8]; 4] = [
        b"-----BEGIN PGP SIGNATURE-----",
        b"-----BEGIN PGP MESSAGE-----",
        b"-----BEGIN SIGNED MESSAGE-----",
        b"-----BEGIN SSH SIGNATURE-----",
    ];
    let mut start = cert.len();
    let mut at = 0;
    for line in cert.split_inclusive(|&b| b == b'\n') {
        if OPENERS.iter().any(|opener| line.starts_with(opener)) {
            start = at;
        }
        at += line.len();
    }
    start
}

/// `old SP new SP refname`, both ids of one length.
fn parse_command(line: &[u8]) -> Result<Command, Stop> {
    let hex = oid_len(line).ok_or(Stop::Bad)?;
    let sep = |at: usize| line.get(at) == Some(&b' ');
    if !sep(hex) || !sep(2 * hex + 1) || oid_len(&line[hex + 1..]) != Some(hex) {
        return Err(Stop::Bad);
    }
    let refname = &line[2 * hex + 2..];
    // git would reject these in check_refname_format; a name that cannot be
    // shown faithfully in the event must not pass as some other name.
    let printable = refname.iter().all(|&b| b > b' ' && b != 0x7f);
    let refname = std::str::from_utf8(refname).ok().filter(|r| printable && !r.is_empty()).ok_or(Stop::Bad)?;
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    Ok(Command { old: text(&line[..hex]), new: text(&line[hex + 1..2 * hex + 1]), refname: refname.to_owned() })
}

/// The length of the object id at the start of `bytes`: 40 or 64 hex digits
/// followed by a non-hex byte or the end.
fn oid_len(bytes: &[u8]) -> Option<usize> {
    let digits = bytes.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    (digits == 40 || digits == 64).then_some(digits)
}

#[cfg(test)]
mod tests;
