//! The iptables rules of a network and of an endpoint's published ports,
//! each tagged (`keel:<container id>`, `keel-net:<network id prefix>`) so
//! that removal finds exactly them again.
//!
//! keel's chains (`KEEL`: DNAT, jumped to from PREROUTING and OUTPUT for
//! local destinations; `KEEL-POSTROUTING`; `KEEL-FORWARD`, inserted first in
//! FORWARD so a DROP policy below cannot shadow it) and the jumps into them
//! stay once created, as Docker's do; every rule inside them belongs to one
//! network or endpoint and goes with it. Networks are isolated: traffic from
//! one `keel+` bridge to another is dropped unless conntrack says it was
//! DNAT-ed (a published port).

use crate::Rule;
use crate::ports::PortMapping;
use crate::state::{Endpoint, NetRecord};

pub(crate) fn ports_clash(a: &PortMapping, b: &PortMapping) -> bool {
    a.protocol == b.protocol
        && a.host_port == b.host_port
        && (a.host_ip.is_none() || b.host_ip.is_none() || a.host_ip == b.host_ip)
}

pub(crate) fn tag_container(id: &str) -> String {
    format!("keel:{id}")
}

pub(crate) fn tag_network(id: &str) -> String {
    format!("keel-net:{}", &id[..12.min(id.len())])
}

/// Rules every bridge network needs: outbound NAT, localhost-published ports, forwarding.
pub(crate) fn network_rules(net: &NetRecord) -> Vec<Rule> {
    let (Some(br), Some(subnet)) = (&net.bridge, &net.subnet) else {
        return Vec::new();
    };
    let tag = tag_network(&net.id);
    let r = |table, chain, spec: String| Rule {
        table,
        chain,
        spec,
        tag: tag.clone(),
    };
    if net.internal {
        // Docker's internal network: traffic stays on the bridge; nothing is
        // forwarded in or out (containers get no default route either).
        return vec![
            r(
                "filter",
                "KEEL-FORWARD",
                format!("-i {br} -o {br} -j ACCEPT"),
            ),
            r(
                "filter",
                "KEEL-FORWARD",
                format!("-i {br} ! -o {br} -j DROP"),
            ),
            r(
                "filter",
                "KEEL-FORWARD",
                format!("! -i {br} -o {br} -j DROP"),
            ),
        ];
    }
    let mut v = Vec::new();
    if net.masquerade() {
        v.push(r(
            "nat",
            "KEEL-POSTROUTING",
            format!("-s {subnet} ! -o {br} -j MASQUERADE"),
        ));
    }
    v.extend([
        // DNAT of 127.0.0.1 traffic keeps a loopback source, which the
        // container could not answer; masquerade it to the bridge address.
        r(
            "nat",
            "KEEL-POSTROUTING",
            format!("-s 127.0.0.0/8 -o {br} -m addrtype --src-type LOCAL -j MASQUERADE"),
        ),
        // A container reaching a published port through a host address gets
        // DNAT-ed back onto its own bridge; masquerade it so the reply returns
        // through the host (where the DNAT is undone), not straight over L2.
        r(
            "nat",
            "KEEL-POSTROUTING",
            format!("-s {subnet} -o {br} -m conntrack --ctstate DNAT -j MASQUERADE"),
        ),
        r(
            "filter",
            "KEEL-FORWARD",
            format!("-o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
        ),
        // Networks are isolated from each other, as Docker's are: traffic
        // from this bridge to another keel bridge is dropped unless it was
        // DNAT-ed to a published port. Containers on both networks talk over
        // their own interfaces on each bridge instead.
        r(
            "filter",
            "KEEL-FORWARD",
            format!("-i {br} -o {br} -j ACCEPT"),
        ),
        r(
            "filter",
            "KEEL-FORWARD",
            format!("-i {br} -o keel+ -m conntrack ! --ctstate DNAT -j DROP"),
        ),
        r("filter", "KEEL-FORWARD", format!("-i {br} -j ACCEPT")),
    ]);
    v
}

/// DNAT and forward-accept rules for one endpoint's published ports.
pub(crate) fn port_rules(ep: &Endpoint, bridge: &str) -> Vec<Rule> {
    let tag = tag_container(&ep.container_id);
    let mut v = Vec::new();
    for p in &ep.ports {
        let proto = p.protocol.as_str();
        let dst = p
            .host_ip
            .map(|ip| format!("-d {ip}/32 "))
            .unwrap_or_default();
        v.push(Rule {
            table: "nat",
            chain: "KEEL",
            spec: format!(
                "{dst}-p {proto} -m {proto} --dport {} -j DNAT --to-destination {}:{}",
                p.host_port, ep.ip, p.container_port
            ),
            tag: tag.clone(),
        });
        v.push(Rule {
            table: "filter",
            chain: "KEEL-FORWARD",
            spec: format!(
                "-d {}/32 ! -i {bridge} -o {bridge} -p {proto} -m {proto} --dport {} -j ACCEPT",
                ep.ip, p.container_port
            ),
            tag: tag.clone(),
        });
    }
    v
}
