//! The per-container `/etc/hosts` and `/etc/resolv.conf` files keel-net maintains.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::NetError;

/// Docker's standard lines that every container's hosts file starts with.
const BASE: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n";

/// One line's worth: an address and the names it answers to.
#[derive(Debug, Clone)]
pub struct HostEntry {
    pub ip: Ipv4Addr,
    pub names: Vec<String>,
}

/// `--add-host NAME:IP` (or `NAME=IP`, compose's form); the IP may be
/// [`HOST_GATEWAY`], resolved when the container is connected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraHost {
    pub name: String,
    pub ip: String,
}

/// Docker's special `--add-host` address: the host as seen from the container.
pub const HOST_GATEWAY: &str = "host-gateway";

/// Parses `NAME:IP`, `NAME=IP` or `NAME:host-gateway` (IPv6 addresses keep
/// their colons: only the first `:` separates).
pub fn parse_extra_host(spec: &str) -> Result<ExtraHost, NetError> {
    let bad = |reason: &str| NetError::ExtraHost {
        spec: spec.to_string(),
        reason: reason.to_string(),
    };
    let (name, ip) = spec
        .split_once('=')
        .or_else(|| spec.split_once(':'))
        .ok_or_else(|| bad("expected NAME:IP"))?;
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(bad("invalid host name"));
    }
    if ip != HOST_GATEWAY && ip.parse::<IpAddr>().is_err() {
        return Err(bad("invalid IP address"));
    }
    Ok(ExtraHost {
        name: name.to_string(),
        ip: ip.to_string(),
    })
}

/// `--dns`, `--dns-search`, `--dns-option`: each, when given, replaces what
/// the host's resolv.conf says (Docker's rule).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsConfig {
    #[serde(default)]
    pub servers: Vec<String>,
    #[serde(default)]
    pub search: Vec<String>,
    #[serde(default)]
    pub options: Vec<String>,
}

impl DnsConfig {
    /// Refuses servers that are not IP addresses.
    pub fn validate(&self) -> Result<(), NetError> {
        for s in &self.servers {
            if s.parse::<IpAddr>().is_err() {
                return Err(NetError::InvalidDns(s.clone()));
            }
        }
        Ok(())
    }
}

/// Renders a hosts file: the base lines, `--add-host` entries (`host-gateway`
/// already resolved), the container itself, then its peers.
pub fn render_hosts(own: &HostEntry, peers: &[HostEntry]) -> String {
    render_hosts_with(&[], std::slice::from_ref(own), peers)
}

/// [`render_hosts`] for a container on several networks (one own line per
/// address) and with extra entries.
pub fn render_hosts_with(extra: &[ExtraHost], own: &[HostEntry], peers: &[HostEntry]) -> String {
    let mut out = String::from(BASE);
    for x in extra {
        let _ = writeln!(out, "{}\t{}", x.ip, x.name);
    }
    for e in own.iter().chain(peers) {
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
    render_resolv_conf_with(host, &DnsConfig::default())
}

/// [`render_resolv_conf`] with the container's own DNS settings over the host's.
pub fn render_resolv_conf_with(host: &str, dns: &DnsConfig) -> String {
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
            Some("search" | "domain") if dns.search.is_empty() => rest.push(l.to_string()),
            Some("options") if dns.options.is_empty() => rest.push(l.to_string()),
            _ => {}
        }
    }
    if !dns.servers.is_empty() {
        servers.clone_from(&dns.servers);
    }
    if !dns.search.is_empty() {
        rest.insert(0, format!("search {}", dns.search.join(" ")));
    }
    if !dns.options.is_empty() {
        rest.push(format!("options {}", dns.options.join(" ")));
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
    // Over the old bytes, then cut to length, never truncate first: a
    // container reading its file meanwhile (`hostname -i` as it starts,
    // while a peer leaves the network) must not find it empty. The
    // unchanged head (localhost, its own names) reads the same throughout.
    let res = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .and_then(|mut f| {
            f.write_all(content.as_bytes())?;
            f.set_len(content.len() as u64)
        });
    res.map_err(|e| NetError::WriteHostsFile {
        path: path.to_path_buf(),
        source: e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewriting_in_place_keeps_the_inode_and_cuts_the_old_tail() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hosts");
        write_in_place(&p, "127.0.0.1 localhost\n10.0.0.2 a\n10.0.0.3 peer\n").unwrap();
        let ino = std::fs::metadata(&p).unwrap().ino();
        write_in_place(&p, "127.0.0.1 localhost\n10.0.0.2 a\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "127.0.0.1 localhost\n10.0.0.2 a\n"
        );
        assert_eq!(std::fs::metadata(&p).unwrap().ino(), ino);
    }

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

    #[test]
    fn dns_settings_replace_the_hosts() {
        let dns = DnsConfig {
            servers: vec!["10.1.1.1".into()],
            search: vec!["a.test".into(), "b.test".into()],
            options: vec!["ndots:2".into()],
        };
        let r = render_resolv_conf_with(
            "nameserver 10.0.0.2\nsearch example.org\noptions edns0\n",
            &dns,
        );
        assert_eq!(
            r,
            "nameserver 10.1.1.1\nsearch a.test b.test\noptions ndots:2\n"
        );
        // Only what is given is replaced.
        let r = render_resolv_conf_with(
            "nameserver 10.0.0.2\nsearch example.org\n",
            &DnsConfig {
                options: vec!["timeout:1".into()],
                ..DnsConfig::default()
            },
        );
        assert_eq!(
            r,
            "nameserver 10.0.0.2\nsearch example.org\noptions timeout:1\n"
        );
        assert!(
            DnsConfig {
                servers: vec!["x".into()],
                ..DnsConfig::default()
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn extra_hosts_parse_and_render_before_own_line() {
        let a = parse_extra_host("db.local:10.0.0.5").unwrap();
        let b = parse_extra_host("gw=host-gateway").unwrap();
        let c = parse_extra_host("v6:[::1]").unwrap();
        assert_eq!((a.name.as_str(), a.ip.as_str()), ("db.local", "10.0.0.5"));
        assert_eq!(b.ip, HOST_GATEWAY);
        assert_eq!(c.ip, "::1");
        for bad in ["nocolon", ":1.2.3.4", "x:notanip", "x:"] {
            assert!(parse_extra_host(bad).is_err(), "{bad}");
        }
        let own = HostEntry {
            ip: Ipv4Addr::new(10, 1, 0, 2),
            names: vec!["me".into()],
        };
        let h = render_hosts_with(&[a], &[own], &[]);
        assert!(h.ends_with("10.0.0.5\tdb.local\n10.1.0.2\tme\n"), "{h}");
    }

    proptest::proptest! {
        #[test]
        fn extra_host_parser_never_panics(s in ".{0,40}") {
            let _ = parse_extra_host(&s);
        }
    }
}
