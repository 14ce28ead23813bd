//! Docker's `-p` syntax: `[IP:][HOST:]CTR[/PROTO]`, with port ranges.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::NetError;

/// Transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One published port. `host_port == 0` asks for a free port, picked at attach;
/// `host_port_end > host_port` (Docker's `8000-8010:80`) asks for the first
/// free port of that range. Resolved mappings always have `host_port_end == 0`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct PortMapping {
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub host_port_end: u16,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(p: &u16) -> bool {
    *p == 0
}

impl fmt::Display for PortMapping {
    /// `docker port` style: `80/tcp -> 0.0.0.0:8080`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ip = self
            .host_ip
            .map_or_else(|| "0.0.0.0".to_string(), |i| i.to_string());
        write!(
            f,
            "{}/{} -> {ip}:{}",
            self.container_port, self.protocol, self.host_port
        )
    }
}

fn err(spec: &str, reason: impl Into<String>) -> NetError {
    NetError::PortSpec {
        spec: spec.to_string(),
        reason: reason.into(),
    }
}

/// `N` or `N-M` → inclusive range. `allow_zero` only for host ports (0 = pick one).
fn parse_range(spec: &str, s: &str, what: &str) -> Result<(u16, u16), NetError> {
    let port = |p: &str| -> Result<u16, NetError> {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err(spec, format!("invalid {what} port {p:?}")));
        }
        match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(err(
                spec,
                format!("{what} port {p} is out of range 1-65535"),
            )),
            Ok(n) => Ok(n),
        }
    };
    match s.split_once('-') {
        None => {
            let p = port(s)?;
            Ok((p, p))
        }
        Some((a, b)) => {
            let (a, b) = (port(a)?, port(b)?);
            if b < a {
                return Err(err(spec, format!("invalid {what} port range {s}")));
            }
            Ok((a, b))
        }
    }
}

/// Parses one `-p` value into its mappings (several when ranges are given).
pub fn parse_port_spec(spec: &str) -> Result<Vec<PortMapping>, NetError> {
    let (rest, protocol) = match spec.rsplit_once('/') {
        Some((r, "tcp" | "")) => (r, Protocol::Tcp),
        Some((r, "udp")) => (r, Protocol::Udp),
        Some((_, p)) => return Err(err(spec, format!("unsupported protocol {p:?}"))),
        None => (spec, Protocol::Tcp),
    };
    // An IPv6 host address is written in brackets: `[::1]:8080:80`.
    let (ip_part, ports) = if let Some(after) = rest.strip_prefix('[') {
        let (ip, tail) = after
            .split_once(']')
            .ok_or_else(|| err(spec, "missing ] after IPv6 address"))?;
        let tail = tail
            .strip_prefix(':')
            .ok_or_else(|| err(spec, "expected : after the host address"))?;
        (Some(ip), tail)
    } else {
        let parts: Vec<&str> = rest.split(':').collect();
        match parts.len() {
            1 | 2 => (None, rest),
            3 => (Some(parts[0]), &rest[parts[0].len() + 1..]),
            _ => return Err(err(spec, "too many colons")),
        }
    };
    let host_ip = match ip_part {
        None | Some("") => None,
        Some(ip) => Some(
            ip.parse::<IpAddr>()
                .map_err(|_| err(spec, format!("invalid host address {ip:?}")))?,
        ),
    };
    let (host, ctr) = match ports.split_once(':') {
        Some((h, c)) => (h, c),
        None => ("", ports),
    };
    let (c0, c1) = parse_range(spec, ctr, "container")?;
    let n = c1 - c0;
    let host_ports: Vec<u16> = if host.is_empty() {
        vec![0; usize::from(n) + 1]
    } else {
        let (h0, h1) = parse_range(spec, host, "host")?;
        if n == 0 && h1 > h0 {
            return Ok(vec![PortMapping {
                host_ip,
                host_port: h0,
                container_port: c0,
                protocol,
                host_port_end: h1,
            }]);
        }
        if h1 - h0 != n {
            return Err(err(
                spec,
                "host and container port ranges must have the same length",
            ));
        }
        (h0..=h1).collect()
    };
    Ok((c0..=c1)
        .zip(host_ports)
        .map(|(container_port, host_port)| PortMapping {
            host_ip,
            host_port,
            container_port,
            protocol,
            host_port_end: 0,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one(s: &str) -> PortMapping {
        let v = parse_port_spec(s).unwrap();
        assert_eq!(v.len(), 1, "{s}");
        v.into_iter().next().unwrap()
    }

    #[test]
    fn forms() {
        assert_eq!(
            one("80"),
            PortMapping {
                host_ip: None,
                host_port: 0,
                container_port: 80,
                protocol: Protocol::Tcp,
                host_port_end: 0,
            }
        );
        let m = one("8080:80");
        assert_eq!((m.host_port, m.container_port), (8080, 80));
        let m = one("127.0.0.1:8080:80/udp");
        assert_eq!(m.host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(m.protocol, Protocol::Udp);
        let m = one("127.0.0.1::80");
        assert_eq!((m.host_port, m.container_port), (0, 80));
        let m = one("[::1]:53:53/udp");
        assert_eq!(m.host_ip, Some("::1".parse().unwrap()));
        assert_eq!(one("53/tcp").protocol, Protocol::Tcp);
    }

    #[test]
    fn ranges() {
        let v = parse_port_spec("8000-8002:80-82").unwrap();
        let pairs: Vec<_> = v.iter().map(|m| (m.host_port, m.container_port)).collect();
        assert_eq!(pairs, [(8000, 80), (8001, 81), (8002, 82)]);
        // A host range for one container port: the first free one of the range.
        let m = one("8000-8010:80");
        assert_eq!(
            (m.host_port, m.host_port_end, m.container_port),
            (8000, 8010, 80)
        );
        let v = parse_port_spec("80-81").unwrap();
        assert!(v.iter().all(|m| m.host_port == 0));
        assert_eq!(v.len(), 2);
    }

    #[test]
    fn errors() {
        for (s, want) in [
            ("", "invalid container port"),
            ("abc", "invalid container port"),
            ("0", "out of range"),
            ("65536", "out of range"),
            ("80/sctp", "unsupported protocol"),
            ("8000-8001:80-82", "same length"),
            ("90-80", "invalid container port range"),
            ("1.2.3:80:80", "invalid host address"),
            ("a:b:c:d", "too many colons"),
            ("[::1:80:80", "missing ]"),
        ] {
            let e = parse_port_spec(s).unwrap_err().to_string();
            assert!(e.contains(want), "{s}: {e}");
            assert!(e.starts_with("invalid port specification"), "{e}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = parse_port_spec(&s);
        }

        #[test]
        fn never_panics_on_portlike(s in "[\\[\\]0-9:./a-z-]{0,30}") {
            let _ = parse_port_spec(&s);
        }

        #[test]
        fn roundtrip(h in 1u16.., c in 1u16.., udp: bool) {
            let proto = if udp { "udp" } else { "tcp" };
            let m = one(&format!("127.0.0.1:{h}:{c}/{proto}"));
            prop_assert_eq!((m.host_port, m.container_port, m.protocol.as_str()), (h, c, proto));
        }
    }
}
