//! Which records a question gets, following the Kubernetes DNS spec
//! (schema 1.1.0): a name that exists without records of the asked type is
//! NODATA, a name that does not exist is NXDOMAIN (a headless Service
//! without ready endpoints does not exist, as the spec says).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::cluster::{Cluster, Kind, Service};

/// TTL of the cluster's records (`CoreDNS`'s default).
pub const TTL: u32 = 5;
/// The schema version the `dns-version` record names.
pub const SCHEMA_VERSION: &str = "1.1.0";

/// What the cluster says about a question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Records (answer section) and helpful ones (additional section).
    Answer {
        answers: Vec<Record>,
        additionals: Vec<Record>,
    },
    /// The name exists, without records of this type.
    NoData,
    NxDomain,
    /// An `ExternalName` Service: its CNAME, and the target the rest of the
    /// answer comes from (asked upstream).
    Cname {
        record: Box<Record>,
        target: Name,
    },
    /// Not a cluster name: forward it.
    NotOurs,
}

fn lower_labels(name: &Name) -> Vec<String> {
    name.iter()
        .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
        .collect()
}

fn parse_name(s: &str) -> Option<Name> {
    let mut n = Name::from_ascii(s).ok()?;
    n.set_fqdn(true);
    Some(n)
}

fn addr_record(name: &Name, ip: IpAddr) -> Record {
    let data = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(name.clone(), TTL, data)
}

fn family_matches(ip: IpAddr, qtype: RecordType) -> bool {
    match qtype {
        RecordType::A => ip.is_ipv4(),
        RecordType::AAAA => ip.is_ipv6(),
        RecordType::ANY => true,
        _ => false,
    }
}

/// Addresses as records of `qtype`: NODATA when none fits.
fn addresses(name: &Name, ips: impl IntoIterator<Item = IpAddr>, qtype: RecordType) -> Lookup {
    let mut answers: Vec<Record> = Vec::new();
    for ip in ips {
        let r = addr_record(name, ip);
        if family_matches(ip, qtype) && !answers.contains(&r) {
            answers.push(r);
        }
    }
    if answers.is_empty() {
        Lookup::NoData
    } else {
        Lookup::Answer {
            answers,
            additionals: Vec::new(),
        }
    }
}

/// The address a reverse name (`4.3.2.1.in-addr.arpa`, 32 nibbles of
/// `ip6.arpa`) stands for.
pub(crate) fn reverse_ip(labels: &[String]) -> Option<IpAddr> {
    match labels {
        [rest @ .., v4, arpa] if v4 == "in-addr" && arpa == "arpa" && rest.len() == 4 => {
            let mut o = [0u8; 4];
            for (i, l) in rest.iter().rev().enumerate() {
                if l.is_empty() || l.len() > 3 || !l.bytes().all(|c| c.is_ascii_digit()) {
                    return None;
                }
                o[i] = l.parse().ok()?;
            }
            Some(IpAddr::V4(Ipv4Addr::from(o)))
        }
        [rest @ .., v6, arpa] if v6 == "ip6" && arpa == "arpa" && rest.len() == 32 => {
            let mut bits: u128 = 0;
            for label in rest.iter().rev() {
                let [nibble] = label.as_bytes() else {
                    return None;
                };
                bits = (bits << 4) | u128::from(char::from(*nibble).to_digit(16)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(bits)))
        }
        _ => None,
    }
}

/// A pod name's address: `10-1-2-3` or `2001-db8--1`.
fn pod_ip(label: &str) -> Option<IpAddr> {
    if let Ok(v4) = label.replace('-', ".").parse::<Ipv4Addr>() {
        return Some(IpAddr::V4(v4));
    }
    label
        .replace('-', ":")
        .parse::<Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

impl Cluster {
    /// The SOA record of the zone (the authority of negative answers).
    pub fn soa(&self) -> Record {
        let zone = parse_name(self.zone()).unwrap_or_else(Name::root);
        let ns = parse_name(&format!("ns.dns.{}", self.zone())).unwrap_or_else(Name::root);
        let mail = parse_name(&format!("hostmaster.{}", self.zone())).unwrap_or_else(Name::root);
        Record::from_rdata(
            zone,
            TTL,
            RData::SOA(SOA::new(ns, mail, 1, 7200, 1800, 86400, TTL)),
        )
    }

    /// The answer to `name`/`qtype`.
    pub fn lookup(&self, name: &Name, qtype: RecordType) -> Lookup {
        let labels = lower_labels(name);
        let zone: Vec<&str> = self.zone().split('.').filter(|s| !s.is_empty()).collect();
        if labels.len() >= zone.len() && labels[labels.len() - zone.len()..] == zone[..] {
            let rest = &labels[..labels.len() - zone.len()];
            return self.in_zone(name, rest, qtype);
        }
        if let Some(ip) = reverse_ip(&labels) {
            let names = self.ptr(ip);
            if names.is_empty() {
                // Not a cluster address: the node's resolver may know it.
                return Lookup::NotOurs;
            }
            if qtype != RecordType::PTR && qtype != RecordType::ANY {
                return Lookup::NoData;
            }
            let answers = names
                .into_iter()
                .filter_map(|n| {
                    Some(Record::from_rdata(
                        name.clone(),
                        TTL,
                        RData::PTR(PTR(parse_name(n)?)),
                    ))
                })
                .collect();
            return Lookup::Answer {
                answers,
                additionals: Vec::new(),
            };
        }
        Lookup::NotOurs
    }

    fn in_zone(&self, name: &Name, rest: &[String], qtype: RecordType) -> Lookup {
        let strs: Vec<&str> = rest.iter().map(String::as_str).collect();
        match strs.as_slice() {
            [] => match qtype {
                RecordType::SOA | RecordType::ANY => Lookup::Answer {
                    answers: vec![self.soa()],
                    additionals: Vec::new(),
                },
                _ => Lookup::NoData,
            },
            ["dns-version"] => match qtype {
                RecordType::TXT | RecordType::ANY => Lookup::Answer {
                    answers: vec![Record::from_rdata(
                        name.clone(),
                        28800,
                        RData::TXT(TXT::new(vec![SCHEMA_VERSION.into()])),
                    )],
                    additionals: Vec::new(),
                },
                _ => Lookup::NoData,
            },
            ["svc" | "pod"] => Lookup::NoData,
            [ns, "svc"] if self.has_namespace(ns) => Lookup::NoData,
            [svc, ns, "svc"] => match self.service(ns, svc) {
                Some(s) => self.service_records(name, ns, svc, s, qtype),
                None => Lookup::NxDomain,
            },
            [host, svc, ns, "svc"] => self.hostname_records(name, host, ns, svc, qtype),
            [port, proto, svc, ns, "svc"] => {
                match (port.strip_prefix('_'), proto.strip_prefix('_')) {
                    (Some(port), Some(proto)) => {
                        self.srv_records(name, (port, proto), ns, svc, qtype)
                    }
                    _ => Lookup::NxDomain,
                }
            }
            [ip, _ns, "pod"] => match pod_ip(ip) {
                Some(ip) => addresses(name, [ip], qtype),
                None => Lookup::NxDomain,
            },
            _ => Lookup::NxDomain,
        }
    }

    fn service_records(
        &self,
        name: &Name,
        ns: &str,
        svc: &str,
        s: &Service,
        qtype: RecordType,
    ) -> Lookup {
        match &s.kind {
            Kind::External(target) => {
                let Some(target) = parse_name(target) else {
                    return Lookup::NoData;
                };
                let record =
                    Record::from_rdata(name.clone(), TTL, RData::CNAME(CNAME(target.clone())));
                if qtype == RecordType::CNAME {
                    return Lookup::Answer {
                        answers: vec![record],
                        additionals: Vec::new(),
                    };
                }
                Lookup::Cname {
                    record: Box::new(record),
                    target,
                }
            }
            Kind::ClusterIp(ips) => addresses(name, ips.iter().copied(), qtype),
            Kind::Headless => {
                let key = (ns.to_string(), svc.to_string());
                let eps: Vec<IpAddr> = self
                    .endpoints(&key, s)
                    .flat_map(|e| e.addrs.iter().copied())
                    .collect();
                if eps.is_empty() {
                    return Lookup::NxDomain;
                }
                addresses(name, eps, qtype)
            }
        }
    }

    fn hostname_records(
        &self,
        name: &Name,
        host: &str,
        ns: &str,
        svc: &str,
        qtype: RecordType,
    ) -> Lookup {
        let Some(s) = self.service(ns, svc) else {
            return Lookup::NxDomain;
        };
        if host.starts_with('_') {
            // `_port.svc...`: the parent of SRV names, which has no records.
            let named = s.ports.iter().any(|p| format!("_{}", p.name) == host);
            return if named {
                Lookup::NoData
            } else {
                Lookup::NxDomain
            };
        }
        if s.kind != Kind::Headless {
            return Lookup::NxDomain;
        }
        let key = (ns.to_string(), svc.to_string());
        let ips: Vec<IpAddr> = self
            .endpoints(&key, s)
            .filter(|e| e.hostname().as_deref() == Some(host))
            .flat_map(|e| e.addrs.iter().copied())
            .collect();
        if ips.is_empty() {
            return Lookup::NxDomain;
        }
        addresses(name, ips, qtype)
    }

    fn srv_records(
        &self,
        name: &Name,
        (port, proto): (&str, &str),
        ns: &str,
        svc: &str,
        qtype: RecordType,
    ) -> Lookup {
        let Some(s) = self.service(ns, svc) else {
            return Lookup::NxDomain;
        };
        let base = format!("{svc}.{ns}.svc.{}", self.zone());
        // (port, target, addresses of the target)
        let mut found: Vec<(u16, String, Vec<IpAddr>)> = Vec::new();
        match &s.kind {
            Kind::ClusterIp(ips) => {
                for p in s
                    .ports
                    .iter()
                    .filter(|p| p.name == port && p.proto == proto)
                {
                    found.push((p.port, base.clone(), ips.clone()));
                }
            }
            Kind::Headless => {
                let key = (ns.to_string(), svc.to_string());
                for (p, e) in self.endpoint_ports(&key, s, port, proto) {
                    if let Some(h) = e.hostname() {
                        found.push((p, format!("{h}.{base}"), e.addrs.clone()));
                    }
                }
            }
            Kind::External(_) => {}
        }
        if found.is_empty() {
            return Lookup::NxDomain;
        }
        if qtype != RecordType::SRV && qtype != RecordType::ANY {
            return Lookup::NoData;
        }
        let weight = (100 / found.len()).max(1) as u16;
        let mut answers = Vec::new();
        let mut additionals = Vec::new();
        for (p, target, ips) in found {
            let Some(t) = parse_name(&target) else {
                continue;
            };
            answers.push(Record::from_rdata(
                name.clone(),
                TTL,
                RData::SRV(SRV::new(0, weight, p, t.clone())),
            ));
            for ip in ips {
                let r = addr_record(&t, ip);
                if !additionals.contains(&r) {
                    additionals.push(r);
                }
            }
        }
        Lookup::Answer {
            answers,
            additionals,
        }
    }
}
