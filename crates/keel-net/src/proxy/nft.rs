//! The nftables text of the rule model: the table's fixed part, and per
//! Service the chains, affinity sets and map elements it owns. A Service's
//! pieces are named by hashes of its key, so an update script names exactly
//! what the old and new rules of that one Service hold.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::{Endpoint, PortRules, ServiceRules, id};

/// Marks a packet for masquerading in postrouting.
const MASQ: &str = "meta mark set meta mark | 0x4000";

/// Everything one Service puts in the table.
#[derive(Debug, Default)]
struct Parts {
    /// `(name, body)`: affinity sets.
    sets: Vec<(String, String)>,
    /// `(name, rules)`.
    chains: Vec<(String, Vec<String>)>,
    /// `(map or set, element)`.
    elements: Vec<(&'static str, String)>,
}

pub(super) fn port_id(s: &ServiceRules, p: &PortRules) -> String {
    id(&[&s.key, &p.name, p.proto.as_str(), &p.port.to_string()])
}

pub(super) fn ep_id(s: &ServiceRules, p: &PortRules, e: &Endpoint) -> String {
    let aff = s.affinity.map(|t| t.to_string()).unwrap_or_default();
    id(&[
        &s.key,
        &p.name,
        p.proto.as_str(),
        &e.ip.to_string(),
        &e.port.to_string(),
        &aff,
    ])
}

/// `numgen random mod N vmap { 0 : goto a, ... }` over `chains`.
fn pick(chains: &[String]) -> String {
    let arms: Vec<String> = chains
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{i} : goto {c}"))
        .collect();
    format!(
        "numgen random mod {} vmap {{ {} }}",
        chains.len(),
        arms.join(", ")
    )
}

fn parts(s: &ServiceRules) -> Parts {
    let mut out = Parts::default();
    for p in &s.ports {
        let pid = port_id(s, p);
        let proto = p.proto.as_str();
        let svc_chain = format!("svc-{pid}");
        let ext_chain = format!("ext-{pid}");
        let has_ext = p.node_port.is_some() || !s.lb_ips.is_empty();
        if p.endpoints.is_empty() {
            for ip in s.cluster_ips.iter().chain(&s.lb_ips) {
                out.elements
                    .push(("no_endpoints", format!("{ip} . {proto} . {}", p.port)));
            }
            if let Some(np) = p.node_port {
                out.elements
                    .push(("no_endpoint_nodeports", format!("{proto} . {np}")));
            }
            continue;
        }
        let mut ep_chains = Vec::new();
        let mut svc_rules = Vec::new();
        for e in &p.endpoints {
            let eid = ep_id(s, p, e);
            let chain = format!("ep-{eid}");
            let mut rules = vec![format!("ip saddr {} {MASQ}", e.ip)];
            if let Some(t) = s.affinity {
                let set = format!("aff-{eid}");
                out.sets.push((
                    set.clone(),
                    format!("type ipv4_addr; flags dynamic,timeout; timeout {t}s;"),
                ));
                svc_rules.push(format!("ip saddr @{set} goto {chain}"));
                rules.push(format!("update @{set} {{ ip saddr }}"));
            }
            rules.push(format!("meta l4proto {proto} dnat to {}:{}", e.ip, e.port));
            out.chains.push((chain.clone(), rules));
            ep_chains.push((chain, e.local));
        }
        let all: Vec<String> = ep_chains.iter().map(|(c, _)| c.clone()).collect();
        svc_rules.push(pick(&all));
        out.chains.push((svc_chain.clone(), svc_rules));
        for ip in &s.cluster_ips {
            out.elements.push((
                "services",
                format!("{ip} . {proto} . {} : goto {svc_chain}", p.port),
            ));
        }
        if has_ext {
            let ext_rules = if s.external_local {
                let local: Vec<String> = ep_chains
                    .iter()
                    .filter(|(_, l)| *l)
                    .map(|(c, _)| c.clone())
                    .collect();
                // Loopback sources cannot leave the node unmasqueraded.
                let mut r = vec![format!("ip saddr 127.0.0.0/8 {MASQ}")];
                r.push(if local.is_empty() {
                    "drop".to_string()
                } else {
                    pick(&local)
                });
                r
            } else {
                vec![MASQ.to_string(), format!("goto {svc_chain}")]
            };
            out.chains.push((ext_chain.clone(), ext_rules));
            for ip in &s.lb_ips {
                out.elements.push((
                    "services",
                    format!("{ip} . {proto} . {} : goto {ext_chain}", p.port),
                ));
            }
            if let Some(np) = p.node_port {
                out.elements
                    .push(("nodeports", format!("{proto} . {np} : goto {ext_chain}")));
            }
        }
    }
    out
}

/// The key of a map element (what `delete element` takes).
fn key(element: &str) -> &str {
    element.split(" : ").next().unwrap_or(element)
}

fn base(table: &str) -> String {
    format!(
        "table ip {table} {{
  map services {{ type ipv4_addr . inet_proto . inet_service : verdict; }}
  map nodeports {{ type inet_proto . inet_service : verdict; }}
  set no_endpoints {{ type ipv4_addr . inet_proto . inet_service; }}
  set no_endpoint_nodeports {{ type inet_proto . inet_service; }}
  chain dispatch {{
    ip daddr . meta l4proto . th dport vmap @services
    fib daddr type local meta l4proto . th dport vmap @nodeports
  }}
  chain prerouting {{ type nat hook prerouting priority dstnat; policy accept; jump dispatch; }}
  chain output {{ type nat hook output priority -100; policy accept; jump dispatch; }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    meta mark & 0x4000 == 0 return
    meta mark set meta mark ^ 0x4000 masquerade
  }}
  chain filter_input {{
    type filter hook input priority filter; policy accept;
    ip daddr . meta l4proto . th dport @no_endpoints reject
    fib daddr type local meta l4proto . th dport @no_endpoint_nodeports reject
  }}
  chain filter_forward {{
    type filter hook forward priority filter; policy accept;
    ip daddr . meta l4proto . th dport @no_endpoints reject
  }}
  chain filter_output {{
    type filter hook output priority filter; policy accept;
    ip daddr . meta l4proto . th dport @no_endpoints reject
  }}
}}
"
    )
}

fn add_parts(out: &mut String, table: &str, p: &Parts, seen: &mut BTreeSet<(String, String)>) {
    for (name, body) in &p.sets {
        let _ = writeln!(out, "add set ip {table} {name} {{ {body} }}");
    }
    // Chains first (empty), so rules may jump to any of them.
    for (name, _) in &p.chains {
        let _ = writeln!(out, "add chain ip {table} {name}");
    }
    for (name, rules) in &p.chains {
        for r in rules {
            let _ = writeln!(out, "add rule ip {table} {name} {r}");
        }
    }
    for (map, e) in &p.elements {
        // Two Services claiming one key (a node port handed out twice):
        // the first keeps it.
        if seen.insert(((*map).to_string(), key(e).to_string())) {
            let _ = writeln!(out, "add element ip {table} {map} {{ {e} }}");
        }
    }
}

/// The whole table, made anew (an old one is deleted in the same
/// transaction).
pub fn full_script<'a>(table: &str, all: impl IntoIterator<Item = &'a ServiceRules>) -> String {
    let mut out = format!("add table ip {table}\ndelete table ip {table}\n");
    out.push_str(&base(table));
    let mut seen = BTreeSet::new();
    for s in all {
        add_parts(&mut out, table, &parts(s), &mut seen);
    }
    out
}

/// One transaction taking one Service from `old` to `new`: only that
/// Service's elements, chains and sets are named.
pub fn update_script(
    table: &str,
    old: Option<&ServiceRules>,
    new: Option<&ServiceRules>,
) -> String {
    let old = old.map(parts).unwrap_or_default();
    let new = new.map(parts).unwrap_or_default();
    let mut out = String::new();
    for (map, e) in &old.elements {
        let _ = writeln!(out, "delete element ip {table} {map} {{ {} }}", key(e));
    }
    for (name, _) in &old.chains {
        let _ = writeln!(out, "flush chain ip {table} {name}");
    }
    let new_chains: BTreeSet<&str> = new.chains.iter().map(|(n, _)| n.as_str()).collect();
    for (name, _) in &old.chains {
        if !new_chains.contains(name.as_str()) {
            let _ = writeln!(out, "delete chain ip {table} {name}");
        }
    }
    let new_sets: BTreeSet<&str> = new.sets.iter().map(|(n, _)| n.as_str()).collect();
    for (name, _) in &old.sets {
        if !new_sets.contains(name.as_str()) {
            let _ = writeln!(out, "delete set ip {table} {name}");
        }
    }
    add_parts(&mut out, table, &new, &mut BTreeSet::new());
    out
}

/// Deletes the table (nothing if it is not there).
pub fn cleanup_script(table: &str) -> String {
    format!("add table ip {table}\ndelete table ip {table}\n")
}
