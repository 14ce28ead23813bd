//! keel's cluster DNS, what `CoreDNS`'s `kubernetes` plugin does for a
//! Kubernetes cluster: the records of the Kubernetes DNS-based service
//! discovery spec (schema 1.1.0) from Services and `EndpointSlices`, other
//! names forwarded to the node's resolvers.
//!
//! - [`Cluster`] keeps the objects ([`Event`]s: a list, then puts and
//!   deletes, from any source: keel server feeds it from its API watch,
//!   tests from a channel) and answers questions ([`Lookup`]):
//!   A/AAAA of `ClusterIP` and headless Services (a record per _ready_
//!   endpoint, `<hostname>.<service>` per endpoint), SRV per named port,
//!   PTR of Service and endpoint addresses, pod names
//!   (`10-42-0-5.<ns>.pod.<zone>`), `ExternalName` CNAMEs (the target asked
//!   upstream) and `dns-version`. NXDOMAIN and NODATA as the spec and DNS
//!   (RFC 8020) say, with the zone's SOA for negative caching.
//! - [`Dns`] serves it over UDP and TCP, truncating UDP answers to the
//!   client's size (512 bytes, or its EDNS size up to 1232), and forwards
//!   other names ([`upstreams_from_resolv_conf`]).
//!
//! hickory-proto parses and writes the messages. The server loop and the
//! answering are written here: hickory-server's authorities serve zones of
//! stored record sets, while these answers are computed per question from
//! live objects (a Service change is visible to the next query, no zone to
//! rebuild), and its request handler would bring its whole catalog and
//! resolver stack for a 100-line UDP/TCP loop.

mod answer;
mod cluster;
mod server;

pub use answer::{Lookup, SCHEMA_VERSION, TTL};
pub use cluster::{Cluster, Event};
pub use server::{Dns, Transport};

use std::net::{IpAddr, SocketAddr};

/// The cluster domain Kubernetes uses unless told otherwise.
pub const DEFAULT_ZONE: &str = "cluster.local";

/// The nameservers of a resolv.conf text (port 53), in order.
pub fn upstreams_from_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            if w.next()? != "nameserver" {
                return None;
            }
            // A scoped IPv6 address (fe80::1%eth0) has no SocketAddr form here.
            let ip: IpAddr = w.next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .collect()
}

#[cfg(test)]
mod tests;
