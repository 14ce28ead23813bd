//! The per-container `/etc/hosts` and `/etc/resolv.conf` files keel-net maintains.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use crate::NetError;

/// Docker's standard lines that every container's hosts file starts with.
const BASE: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n";

/// One line's worth: an address and the names it answers to.
#[derive(Debug, Clone)]
pub struct HostEntry {
    pub ip: Ipv4Addr,
    pub names: Vec<String>,
}

/// Renders a hosts file: the base lines, the container itself, then its peers.
pub fn render_hosts(own: &HostEntry, peers: &[HostEntry]) -> String {
    let mut out = String::from(BASE);
    for e in std::iter::once(own).chain(peers) {
        let mut names: Vec<&str> = Vec::new();
        for n in &e.names {
            if !n.is_empty() && !names.contains(&n.as_str()) {
                names.push(n);
            }
        }
        if names.is_empty() {
            continue;
        }
        let _ = writeln!(out, "{}\t{}", e.ip, names.join(" "));
    }
    out
}

/// Docker's fallback when the host only has loopback resolvers (unreachable from a container).
const FALLBACK_NAMESERVERS: [&str; 2] = ["8.8.8.8", "8.8.4.4"];

/// The container's resolv.conf from the host's: nameservers kept unless they are
/// loopback addresses (which would mean the container itself); search and
/// options lines kept.
pub fn render_resolv_conf(host: &str) -> String {
    let mut servers = Vec::new();
    let mut rest = Vec::new();
    for line in host.lines() {
        let l = line.trim();
        let mut words = l.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok())
                    && !ip.is_loopback()
                    // IPv6 servers are unreachable on keel's IPv4-only networks.
                    && ip.is_ipv4()
                {
                    servers.push(ip.to_string());
                }
            }
            Some("search" | "domain" | "options") => rest.push(l.to_string()),
            _ => {}
        }
    }
    if servers.is_empty() {
        servers = FALLBACK_NAMESERVERS
            .iter()
            .map(ToString::to_string)
            .collect();
    }
    let mut out = String::new();
    for s in servers {
        let _ = writeln!(out, "nameserver {s}");
    }
    for r in rest {
        out.push_str(&r);
        out.push('\n');
    }
    out
}

/// Rewrites a file in place (same inode): containers see it through a bind
/// mount, which a rename would silently detach.
pub fn write_in_place(path: &Path, content: &str) -> Result<(), NetError> {
    let res = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .and_then(|mut f| f.write_all(content.as_bytes()));
    res.map_err(|e| NetError::WriteHostsFile {
        path: path.to_path_buf(),
        source: e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lists_self_then_peers_without_duplicates() {
        let own = HostEntry {
            ip: Ipv4Addr::new(172, 18, 0, 2),
            names: vec!["web".into(), "web".into(), "w".into()],
        };
        let peer = HostEntry {
            ip: Ipv4Addr::new(172, 18, 0, 3),
            names: vec!["db".into(), "database".into()],
        };
        let h = render_hosts(&own, &[peer]);
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(
            h.ends_with("172.18.0.2\tweb w\n172.18.0.3\tdb database\n"),
            "{h}"
        );
    }

    #[test]
    fn resolv_conf_drops_loopback_servers() {
        let r = render_resolv_conf(
            "# c\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch example.org\noptions edns0\n",
        );
        assert_eq!(
            r,
            "nameserver 10.0.0.2\nsearch example.org\noptions edns0\n"
        );
        let r = render_resolv_conf("nameserver 127.0.0.53\nnameserver ::1\n");
        assert_eq!(r, "nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }
}
