//! Pod CIDR allocation (kube-controller-manager's range allocator): every
//! node without `spec.podCIDR` gets the next free block of the cluster CIDR
//! (`--cluster-cidr`, blocks of `--node-cidr-mask-size`). Blocks already
//! named by nodes are never handed out twice; when none is left the node
//! gets a `CIDRNotAvailable` event.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use keel_api::Loopback;
use keel_api::client::{ChangeKind, WatchEvent};
use serde_json::{Value, json};

use crate::objects::meta_str;
use crate::scheduler::events::{Involved, Recorder};
use crate::scheduler::nodes;

/// An IPv4 cluster CIDR cut into per-node blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CidrPlan {
    pub base: Ipv4Addr,
    pub prefix: u8,
    pub node_prefix: u8,
}

impl CidrPlan {
    /// Parses `10.42.0.0/16` with per-node blocks of `/node_prefix`.
    pub fn parse(cidr: &str, node_prefix: u8) -> Result<Self, String> {
        let (ip, len) = cidr
            .split_once('/')
            .ok_or_else(|| format!("{cidr}: expected an IPv4 CIDR like 10.42.0.0/16"))?;
        let base: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("{cidr}: {ip} is not an IPv4 address"))?;
        let prefix: u8 = len
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("{cidr}: bad prefix length {len}"))?;
        if node_prefix < prefix || node_prefix > 30 {
            return Err(format!(
                "node CIDR mask size {node_prefix} must be between the cluster prefix {prefix} and 30"
            ));
        }
        if node_prefix - prefix > 20 {
            return Err(format!(
                "{cidr} split into /{node_prefix} makes over a million blocks; use a larger mask size"
            ));
        }
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        Ok(CidrPlan {
            base: Ipv4Addr::from(u32::from(base) & mask),
            prefix,
            node_prefix,
        })
    }

    pub fn blocks(&self) -> u32 {
        1 << (self.node_prefix - self.prefix)
    }

    pub fn block(&self, i: u32) -> String {
        let ip = u32::from(self.base) + (i << (32 - u32::from(self.node_prefix)));
        format!("{}/{}", Ipv4Addr::from(ip), self.node_prefix)
    }
}

/// The allocator. [`NodeIpam::run`] never returns.
#[derive(Debug)]
pub struct NodeIpam {
    api: Loopback,
    plan: CidrPlan,
    used: HashSet<String>,
    next: u32,
    recorder: Recorder,
}

impl NodeIpam {
    pub fn new(api: Loopback, plan: CidrPlan) -> Self {
        NodeIpam {
            recorder: Recorder::new(api.clone(), "cidrAllocator"),
            api,
            plan,
            used: HashSet::new(),
            next: 0,
        }
    }

    pub async fn run(mut self) {
        loop {
            let Ok((list, rev)) = self.api.list(nodes(), None).await else {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            self.used = list.iter().filter_map(pod_cidr).collect();
            for n in &list {
                self.allocate(n).await;
            }
            let Ok(mut w) = self.api.watch(nodes(), rev + 1).await else {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            while let Some(Ok(ev)) = w.next().await {
                if let WatchEvent::Change(c) = ev
                    && c.kind == ChangeKind::Put
                    && let Some(n) = self.api.object(&c)
                {
                    if let Some(cidr) = pod_cidr(&n) {
                        self.used.insert(cidr);
                    } else {
                        self.allocate(&n).await;
                    }
                }
            }
        }
    }

    async fn allocate(&mut self, node: &Value) {
        if pod_cidr(node).is_some() {
            return;
        }
        let name = meta_str(node, "name").to_string();
        let total = self.plan.blocks();
        let Some(i) = (0..total)
            .map(|k| (self.next + k) % total)
            .find(|i| !self.used.contains(&self.plan.block(*i)))
        else {
            self.recorder.warning(
                &Involved {
                    kind: "Node",
                    api_version: "v1",
                    ns: String::new(),
                    name: name.clone(),
                    uid: meta_str(node, "uid").to_string(),
                },
                "CIDRNotAvailable",
                format!("Node {name} status is now: CIDRNotAvailable"),
            );
            return;
        };
        let cidr = self.plan.block(i);
        let r = self
            .api
            .modify(nodes(), None, &name, None, "node-ipam-controller", |cur| {
                if pod_cidr(cur).is_some() {
                    return None;
                }
                let mut v = cur.clone();
                v["spec"]["podCIDR"] = json!(cidr);
                v["spec"]["podCIDRs"] = json!([cidr]);
                Some(v)
            })
            .await;
        match r {
            Ok(Some(_)) => {
                tracing::debug!(node = name, cidr, "pod CIDR allocated");
                self.used.insert(cidr);
                self.next = (i + 1) % total;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(node = name, error = %e, "pod CIDR not written"),
        }
    }
}

fn pod_cidr(node: &Value) -> Option<String> {
    node.pointer("/spec/podCIDR")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_of_the_cluster_cidr() {
        let p = CidrPlan::parse("10.42.7.9/16", 24).unwrap();
        assert_eq!(p.blocks(), 256);
        assert_eq!(p.block(0), "10.42.0.0/24");
        assert_eq!(p.block(255), "10.42.255.0/24");
        assert!(CidrPlan::parse("10.42.0.0", 24).is_err());
        assert!(CidrPlan::parse("10.42.0.0/16", 8).is_err());
        assert!(CidrPlan::parse("fd00::/64", 80).is_err());
    }
}
