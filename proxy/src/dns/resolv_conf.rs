//! The host's upstream resolvers, from `/etc/resolv.conf` `nameserver` lines.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use super::DnsError;

/// Reads `path` and returns its nameservers on port 53.
pub fn read(path: &Path) -> Result<Vec<SocketAddr>, DnsError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| DnsError::ResolvConf { path: path.to_path_buf(), source })?;
    Ok(parse(&text))
}

/// The `nameserver` addresses in resolv.conf text, in order. Lines that do
/// not parse are skipped (glibc does the same), and an IPv6 zone suffix
/// (`fe80::1%eth0`) is dropped because `SocketAddr` cannot carry its name.
pub fn parse(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let line = line.split(['#', ';']).next()?;
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            let addr = words.next()?;
            let addr = addr.split('%').next()?;
            addr.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_in_order_comments_and_junk_skipped() {
        let text = "# generated\nsearch example\nnameserver 192.0.2.53\nnameserver fd00::53%eth0 \n\
                    ;nameserver 10.9.9.9\nnameserver not-an-ip\noptions edns0\nnameserver 192.0.2.54 # second\n";
        let got: Vec<String> = parse(text).iter().map(ToString::to_string).collect();
        assert_eq!(got, ["192.0.2.53:53", "[fd00::53]:53", "192.0.2.54:53"]);
    }
}
