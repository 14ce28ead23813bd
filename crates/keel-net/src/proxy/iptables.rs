//! The iptables backend, for hosts without nftables' `nft`: the same rule
//! model as kube-proxy's iptables mode writes it, through
//! `iptables-restore --noflush` (nft-based or legacy, as the host's
//! iptables is). Per node a prefix `p` (a hash of the table name):
//! `KEEL-p-SVCS` (jumped to from nat PREROUTING and OUTPUT) sends a
//! Service's cluster and load-balancer addresses to its `SVC-p-…` or
//! `EXT-p-…` chain and local addresses to `KEEL-p-NODEPORTS`; a `SVC`
//! chain picks an endpoint's `SEP-p-…` chain with `statistic --mode
//! random` (probabilities 1/n, 1/(n-1), … as kube-proxy does) or the one
//! `recent` remembers for the client (`sessionAffinity: ClientIP`), and the
//! `SEP` chain DNATs. Masquerading by mark `0x4000` in `KEEL-p-POST`; ports
//! without endpoints are rejected and `externalTrafficPolicy: Local`
//! without local endpoints dropped (mark `0x8000`) in filter's
//! `KEEL-p-FILTER`.
//!
//! An update is one restore per table of that one Service's chains (each
//! declared, which flushes it), its dispatch rules (`-D` old, `-A` new) and
//! `-X` of chains it no longer needs. A full sync reads `iptables-save`
//! to delete chains of Services that are gone.

use std::collections::{BTreeMap, BTreeSet};

use super::nft::{ep_id, port_id};
use super::{Backend, PortRules, ProxyError, ServiceRules, id};
use crate::restore::{self, Batch};

/// The kernel side: `iptables-restore --noflush` and `iptables-save`.
pub trait Restore: Send {
    fn restore(&mut self, script: &str) -> Result<(), ProxyError>;
    /// `iptables-save -t table`.
    fn save(&mut self, table: &str) -> Result<String, ProxyError>;
}

/// The host's `iptables-restore`/`iptables-save`.
#[derive(Debug, Default)]
pub struct HostIptables;

impl Restore for HostIptables {
    fn restore(&mut self, script: &str) -> Result<(), ProxyError> {
        restore::restore(script).map_err(|e| refused(&e))
    }
    fn save(&mut self, table: &str) -> Result<String, ProxyError> {
        restore::save(Some(table)).map_err(|e| refused(&e))
    }
}

fn refused(e: &str) -> ProxyError {
    if e.starts_with("cannot run") {
        ProxyError::Spawn(e.to_string())
    } else {
        ProxyError::Refused("iptables-restore", e.to_string())
    }
}

/// The iptables backend over a [`Restore`].
#[derive(Debug, Default)]
pub struct Iptables<R: Restore = HostIptables>(pub R);

const MASQ: &str = "-j MARK --or-mark 0x4000";
const DROP_MARK: &str = "-j MARK --or-mark 0x8000";

/// The chain names of one node's table.
struct Names {
    p: String,
}

impl Names {
    fn new(table: &str) -> Self {
        Self {
            p: id(&[table])[..6].to_string(),
        }
    }
    fn base(&self, what: &str) -> String {
        format!("KEEL-{}-{what}", self.p)
    }
    fn svcs(&self) -> String {
        self.base("SVCS")
    }
    fn nodeports(&self) -> String {
        self.base("NODEPORTS")
    }
    fn post(&self) -> String {
        self.base("POST")
    }
    fn filter(&self) -> String {
        self.base("FILTER")
    }
    /// `SVC-p-<16 hex>`: 27 characters, under iptables' 28.
    fn chain(&self, kind: &str, hash: &str) -> String {
        format!("{kind}-{}-{hash}", self.p)
    }
    /// Whether `chain` is one of this node's.
    fn owns(&self, chain: &str) -> bool {
        ["KEEL", "SVC", "EXT", "SEP"]
            .iter()
            .any(|k| chain.starts_with(&format!("{k}-{}-", self.p)))
    }
    /// `(table, built-in chain, our chain)` jumps.
    fn hooks(&self) -> [(&'static str, &'static str, String); 6] {
        [
            ("nat", "PREROUTING", self.svcs()),
            ("nat", "OUTPUT", self.svcs()),
            ("nat", "POSTROUTING", self.post()),
            ("filter", "INPUT", self.filter()),
            ("filter", "FORWARD", self.filter()),
            ("filter", "OUTPUT", self.filter()),
        ]
    }
}

/// Everything one Service puts in the tables.
#[derive(Debug, Default)]
struct Parts {
    /// nat chains with their rules.
    chains: Vec<(String, Vec<String>)>,
    /// `(base chain, rule)` in nat: the Service's dispatch rules.
    dispatch: Vec<(String, String)>,
    /// Rules of the filter chain (rejects).
    filter: Vec<String>,
}

fn matcher(p: &PortRules, port: u16) -> String {
    let proto = p.proto.as_str();
    format!("-p {proto} -m {proto} --dport {port}")
}

/// kube-proxy's pick: endpoint i of n with probability 1/(n-i), the last
/// one always.
fn pick(chains: &[String]) -> Vec<String> {
    let n = chains.len();
    chains
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i + 1 == n {
                format!("-j {c}")
            } else {
                #[allow(clippy::cast_precision_loss)] // n is small
                let prob = 1.0 / (n - i) as f64;
                format!("-m statistic --mode random --probability {prob:.10} -j {c}")
            }
        })
        .collect()
}

fn parts(n: &Names, s: &ServiceRules) -> Parts {
    let mut out = Parts::default();
    for p in &s.ports {
        let pid = port_id(s, p);
        let proto = p.proto.as_str();
        let m = matcher(p, p.port);
        if p.endpoints.is_empty() {
            for ip in s.cluster_ips.iter().chain(&s.lb_ips) {
                out.filter.push(format!("-d {ip}/32 {m} -j REJECT"));
            }
            if let Some(np) = p.node_port {
                out.filter.push(format!(
                    "-m addrtype --dst-type LOCAL {} -j REJECT",
                    matcher(p, np)
                ));
            }
            continue;
        }
        let svc = n.chain("SVC", &pid);
        let mut svc_rules = Vec::new();
        let mut seps = Vec::new();
        for e in &p.endpoints {
            let sep = n.chain("SEP", &ep_id(s, p, e));
            let mut rules = vec![format!("-s {}/32 {MASQ}", e.ip)];
            let dnat = format!("-j DNAT --to-destination {}:{}", e.ip, e.port);
            if let Some(t) = s.affinity {
                svc_rules.push(format!(
                    "-m recent --rcheck --seconds {t} --reap --name {sep} --mask 255.255.255.255 --rsource -j {sep}"
                ));
                rules.push(format!(
                    "-p {proto} -m recent --set --name {sep} --mask 255.255.255.255 --rsource {dnat}"
                ));
            } else {
                rules.push(format!("-p {proto} {dnat}"));
            }
            out.chains.push((sep.clone(), rules));
            seps.push((sep, e.local));
        }
        let all: Vec<String> = seps.iter().map(|(c, _)| c.clone()).collect();
        svc_rules.extend(pick(&all));
        out.chains.push((svc.clone(), svc_rules));
        for ip in &s.cluster_ips {
            out.dispatch
                .push((n.svcs(), format!("-d {ip}/32 {m} -j {svc}")));
        }
        if p.node_port.is_some() || !s.lb_ips.is_empty() {
            let ext = n.chain("EXT", &pid);
            let rules = if s.external_local {
                let local: Vec<String> = seps
                    .iter()
                    .filter(|(_, l)| *l)
                    .map(|(c, _)| c.clone())
                    .collect();
                // Loopback sources cannot leave the node unmasqueraded.
                let mut r = vec![format!("-s 127.0.0.0/8 {MASQ}")];
                if local.is_empty() {
                    // nat cannot drop: the filter chain drops the mark.
                    r.push(DROP_MARK.to_string());
                } else {
                    r.extend(pick(&local));
                }
                r
            } else {
                vec![MASQ.to_string(), format!("-j {svc}")]
            };
            out.chains.push((ext.clone(), rules));
            for ip in &s.lb_ips {
                out.dispatch
                    .push((n.svcs(), format!("-d {ip}/32 {m} -j {ext}")));
            }
            if let Some(np) = p.node_port {
                out.dispatch
                    .push((n.nodeports(), format!("{} -j {ext}", matcher(p, np))));
            }
        }
    }
    out
}

/// Chains (`:NAME`) and jump rules (`-A BUILTIN -j NAME`) of our node in
/// an `iptables-save` of one table.
fn ours(n: &Names, saved: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut chains, mut jumps) = (BTreeSet::new(), BTreeSet::new());
    for l in saved.lines() {
        if let Some(c) = l
            .strip_prefix(':')
            .and_then(|c| c.split_whitespace().next())
            && n.owns(c)
        {
            chains.insert(c.to_string());
        } else if let Some(r) = l.strip_prefix("-A ") {
            let mut w = r.split_whitespace();
            if let (Some(hook), Some("-j"), Some(target), None) =
                (w.next(), w.next(), w.next(), w.next())
                && n.owns(target)
                && !n.owns(hook)
            {
                jumps.insert(format!("{hook} -j {target}"));
            }
        }
    }
    (chains, jumps)
}

/// The rules of `p` (its chains declared before).
fn add_rules(b: &mut Batch, n: &Names, p: &Parts) {
    for (c, rules) in &p.chains {
        for r in rules {
            b.push("nat", format!("-A {c} {r}"));
        }
    }
    for (c, r) in &p.dispatch {
        b.push("nat", format!("-A {c} {r}"));
    }
    for r in &p.filter {
        b.push("filter", format!("-A {} {r}", n.filter()));
    }
}

/// The full script: base chains and every Service anew; chains of ours in
/// `saved` (per table) that the new rules do not have are deleted; jumps
/// from the built-in chains are inserted where missing.
fn full(n: &Names, saved: &BTreeMap<&str, String>, all: &BTreeMap<String, ServiceRules>) -> Batch {
    let mut b = Batch::default();
    let parts: Vec<Parts> = all.values().map(|s| parts(n, s)).collect();
    let mut keep: BTreeSet<String> = [n.svcs(), n.nodeports(), n.post(), n.filter()].into();
    keep.extend(
        parts
            .iter()
            .flat_map(|p| p.chains.iter().map(|(c, _)| c.clone())),
    );
    let stale: Vec<(&str, String)> = ["nat", "filter"]
        .into_iter()
        .flat_map(|t| {
            let (chains, _) = ours(n, saved.get(t).map_or("", String::as_str));
            chains
                .into_iter()
                .filter(|c| !keep.contains(c))
                .map(move |c| (t, c))
        })
        .collect();
    for c in [n.svcs(), n.nodeports(), n.post()] {
        b.push("nat", format!(":{c} - [0:0]"));
    }
    b.push("filter", format!(":{} - [0:0]", n.filter()));
    for (c, _) in parts.iter().flat_map(|p| &p.chains) {
        b.push("nat", format!(":{c} - [0:0]"));
    }
    for (t, c) in &stale {
        b.push(t, format!(":{c} - [0:0]"));
    }
    b.push(
        "nat",
        format!(
            "-A {} -m addrtype --dst-type LOCAL -j {}",
            n.svcs(),
            n.nodeports()
        ),
    );
    let post = n.post();
    b.push(
        "nat",
        format!("-A {post} -m mark ! --mark 0x4000/0x4000 -j RETURN"),
    );
    b.push("nat", format!("-A {post} -j MARK --xor-mark 0x4000"));
    b.push("nat", format!("-A {post} -j MASQUERADE"));
    b.push(
        "filter",
        format!("-A {} -m mark --mark 0x8000/0x8000 -j DROP", n.filter()),
    );
    for p in &parts {
        add_rules(&mut b, n, p);
    }
    for (table, hook, chain) in n.hooks() {
        let (_, jumps) = ours(n, saved.get(table).map_or("", String::as_str));
        if !jumps.contains(&format!("{hook} -j {chain}")) {
            b.push(table, format!("-I {hook} -j {chain}"));
        }
    }
    for (t, c) in &stale {
        b.push(t, format!("-X {c}"));
    }
    b
}

/// One Service from `old` to `new`.
fn update(n: &Names, old: Option<&ServiceRules>, new: Option<&ServiceRules>) -> Batch {
    let old = old.map(|s| parts(n, s)).unwrap_or_default();
    let new = new.map(|s| parts(n, s)).unwrap_or_default();
    let mut b = Batch::default();
    let new_chains: BTreeSet<&str> = new.chains.iter().map(|(c, _)| c.as_str()).collect();
    // Every chain is declared (emptied) first, so nothing old jumps on.
    for (c, _) in &old.chains {
        if !new_chains.contains(c.as_str()) {
            b.push("nat", format!(":{c} - [0:0]"));
        }
    }
    for (c, _) in &new.chains {
        b.push("nat", format!(":{c} - [0:0]"));
    }
    for (c, r) in &old.dispatch {
        b.push("nat", format!("-D {c} {r}"));
    }
    for r in &old.filter {
        b.push("filter", format!("-D {} {r}", n.filter()));
    }
    add_rules(&mut b, n, &new);
    for (c, _) in &old.chains {
        if !new_chains.contains(c.as_str()) {
            b.push("nat", format!("-X {c}"));
        }
    }
    b
}

impl<R: Restore> Iptables<R> {
    fn saved(&mut self) -> Result<BTreeMap<&'static str, String>, ProxyError> {
        Ok([
            ("nat", self.0.save("nat")?),
            ("filter", self.0.save("filter")?),
        ]
        .into())
    }

    fn apply(&mut self, b: &Batch) -> Result<(), ProxyError> {
        if b.is_empty() {
            return Ok(());
        }
        self.0.restore(&b.script())
    }
}

impl<R: Restore> Backend for Iptables<R> {
    fn name(&self) -> &'static str {
        "iptables"
    }

    fn sync_all(
        &mut self,
        table: &str,
        all: &BTreeMap<String, ServiceRules>,
    ) -> Result<(), ProxyError> {
        let saved = self.saved()?;
        let b = full(&Names::new(table), &saved, all);
        self.apply(&b)
    }

    fn update(
        &mut self,
        table: &str,
        old: Option<&ServiceRules>,
        new: Option<&ServiceRules>,
    ) -> Result<(), ProxyError> {
        let b = update(&Names::new(table), old, new);
        self.apply(&b)
    }

    fn cleanup(&mut self, table: &str) -> Result<(), ProxyError> {
        let n = Names::new(table);
        let saved = self.saved()?;
        let mut b = Batch::default();
        for (t, text) in &saved {
            let (chains, jumps) = ours(&n, text);
            for j in &jumps {
                b.push(t, format!("-D {j}"));
            }
            for c in &chains {
                b.push(t, format!(":{c} - [0:0]"));
            }
            for c in &chains {
                b.push(t, format!("-X {c}"));
            }
        }
        self.apply(&b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_names_fit_iptables() {
        let n = Names::new("keel-svc-node_0");
        let c = n.chain("SEP", &id(&["x"]));
        assert!(c.len() <= 28, "{c}");
        assert!(n.owns(&c) && n.owns(&n.filter()));
        assert!(!Names::new("keel-svc-node_1").owns(&c));
        assert!(!n.owns("KEEL-FORWARD"));
    }

    #[test]
    fn pick_is_uniform_over_the_endpoints() {
        let chains: Vec<String> = ["a", "b", "c"].iter().map(ToString::to_string).collect();
        assert_eq!(
            pick(&chains),
            vec![
                "-m statistic --mode random --probability 0.3333333333 -j a",
                "-m statistic --mode random --probability 0.5000000000 -j b",
                "-j c",
            ]
        );
    }

    #[test]
    fn saved_chains_and_jumps_of_this_node_only() {
        let n = Names::new("t");
        let p = &n.p;
        let saved = format!(
            ":PREROUTING ACCEPT [0:0]\n:KEEL-{p}-SVCS - [0:0]\n:SVC-{p}-00 - [0:0]\n:SVC-ffffff-00 - [0:0]\n\
             -A PREROUTING -j KEEL-{p}-SVCS\n-A PREROUTING -j SVC-ffffff-00\n-A KEEL-{p}-SVCS -j SVC-{p}-00\n"
        );
        let (chains, jumps) = ours(&n, &saved);
        assert_eq!(
            chains,
            BTreeSet::from([format!("KEEL-{p}-SVCS"), format!("SVC-{p}-00")])
        );
        // Only jumps from built-in chains.
        assert_eq!(
            jumps,
            BTreeSet::from([format!("PREROUTING -j KEEL-{p}-SVCS")])
        );
    }
}
