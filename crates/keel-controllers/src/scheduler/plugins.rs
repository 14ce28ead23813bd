//! kube-scheduler's default filter and score plugins, in its order and with
//! its failure wording (the reasons `FailedScheduling` events count):
//!
//! filters: `NodeUnschedulable`, `NodeName`, `TaintToleration`,
//! `NodeAffinity` (nodeSelector and required node affinity), `NodePorts`,
//! `NodeResourcesFit`, `PodTopologySpread`, `InterPodAffinity`;
//! scores (weight): `TaintToleration` (3), `NodeAffinity` (2),
//! `NodeResourcesFit` least allocated (1), `NodeResourcesBalancedAllocation`
//! (1), `InterPodAffinity` (2), `PodTopologySpread` (2).
//!
//! What the pod-relation plugins need from all nodes (spread counts,
//! affinity domains) is computed once per cycle in [`CycleState::new`].

use std::collections::{BTreeMap, HashMap, HashSet};

use super::cache::{Cache, NodeInfo, PodInfo, Taint};

/// Why a node does not fit, and whether preempting pods could change that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub reasons: Vec<String>,
    /// `UnschedulableAndUnresolvable` in kube-scheduler's terms.
    pub unresolvable: bool,
}

fn fail(reason: impl Into<String>, unresolvable: bool) -> Failure {
    Failure {
        reasons: vec![reason.into()],
        unresolvable,
    }
}

pub(crate) const ERR_UNSCHEDULABLE: &str = "node(s) were unschedulable";
pub(crate) const ERR_NODE_NAME: &str = "node(s) didn't match the requested node name";
pub(crate) const ERR_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
pub(crate) const ERR_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";
pub(crate) const ERR_TOO_MANY_PODS: &str = "Too many pods";
pub(crate) const ERR_SPREAD: &str = "node(s) didn't match pod topology spread constraints";
pub(crate) const ERR_SPREAD_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";
pub(crate) const ERR_POD_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub(crate) const ERR_POD_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub(crate) const ERR_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// Per-cycle precomputation for the plugins that look at other pods.
#[derive(Debug, Default)]
pub(crate) struct CycleState {
    /// Per hard spread constraint: topology value → matching pods, over
    /// the nodes that count; and the minimum over domains.
    spread: Vec<(HashMap<String, i64>, i64)>,
    /// Per soft spread constraint: topology value → matching pods.
    soft_spread: Vec<HashMap<String, i64>>,
    /// Per required affinity term: topology values holding a matching pod.
    affinity: Vec<HashSet<String>>,
    /// Whether any pod anywhere matches the pod's affinity terms.
    affinity_any: bool,
    /// (topology key, value) pairs the pod's anti-affinity forbids.
    anti: HashSet<(String, String)>,
    /// (topology key, value) pairs existing pods' anti-affinity forbids.
    existing_anti: HashSet<(String, String)>,
    /// (topology key, value) → preferred (anti-)affinity weight.
    preferred: HashMap<(String, String), i64>,
}

/// Whether `pod` tolerates every `NoSchedule`/`NoExecute` taint of `node`;
/// the first one it does not tolerate otherwise.
pub(crate) fn untolerated<'a>(pod: &PodInfo, taints: &'a [Taint]) -> Option<&'a Taint> {
    taints.iter().find(|t| {
        (t.effect == "NoSchedule" || t.effect == "NoExecute")
            && !pod.tolerations.iter().any(|tol| tol.tolerates(t))
    })
}

pub(crate) fn node_affinity_ok(pod: &PodInfo, node: &NodeInfo) -> bool {
    pod.node_selector
        .iter()
        .all(|(k, v)| node.label(k) == Some(v.as_str()))
        && pod
            .required_terms
            .as_ref()
            .is_none_or(|terms| terms.iter().any(|t| t.matches(node)))
}

fn ports_conflict(want: &(String, String, i64), used: &(String, String, i64)) -> bool {
    want.0 == used.0
        && want.2 == used.2
        && (want.1 == used.1 || want.1 == "0.0.0.0" || used.1 == "0.0.0.0")
}

/// `NodeResourcesFit`: the reasons the node's free resources are short.
pub(crate) fn resources_fit(pod: &PodInfo, node: &NodeInfo) -> Vec<String> {
    let mut out = Vec::new();
    if i64::try_from(node.pods.len()).unwrap_or(i64::MAX) + 1 > node.allowed_pods {
        out.push(ERR_TOO_MANY_PODS.to_string());
    }
    let r = &pod.requests;
    let (a, u) = (&node.allocatable, &node.requested);
    if r.milli_cpu > 0 && r.milli_cpu > a.milli_cpu - u.milli_cpu {
        out.push("Insufficient cpu".into());
    }
    if r.memory > 0 && r.memory > a.memory - u.memory {
        out.push("Insufficient memory".into());
    }
    if r.ephemeral_storage > 0 && r.ephemeral_storage > a.ephemeral_storage - u.ephemeral_storage {
        out.push("Insufficient ephemeral-storage".into());
    }
    for (k, v) in &r.scalar {
        let free = a.scalar.get(k).copied().unwrap_or(0) - u.scalar.get(k).copied().unwrap_or(0);
        if *v > 0 && *v > free {
            out.push(format!("Insufficient {k}"));
        }
    }
    out
}

/// Whether a node counts for spreading under constraint `c`.
fn counts_for_spread(pod: &PodInfo, c: &super::cache::Spread, node: &NodeInfo) -> bool {
    node.label(&c.topology_key).is_some()
        && (!c.honor_affinity || node_affinity_ok(pod, node))
        && (!c.honor_taints || untolerated(pod, &node.taints).is_none())
}

fn spread_matches(pod: &PodInfo, c: &super::cache::Spread, other: &PodInfo) -> bool {
    other.ns == pod.ns
        && !other.deleting
        && c.selector
            .as_ref()
            .is_some_and(|s| s.matches(Some(&other.labels)))
}

impl CycleState {
    pub fn new(pod: &PodInfo, cache: &Cache) -> Self {
        let mut st = CycleState::default();
        let wants_pods = !pod.affinity.is_empty()
            || !pod.anti_affinity.is_empty()
            || !pod.preferred_affinity.is_empty()
            || !pod.preferred_anti_affinity.is_empty()
            || cache.with_anti_affinity > 0;
        if pod.spread.is_empty() && !wants_pods {
            return st;
        }
        let nodes = cache.node_list();
        for c in &pod.spread {
            let mut counts: HashMap<String, i64> = HashMap::new();
            for n in &nodes {
                if !counts_for_spread(pod, c, n) {
                    continue;
                }
                let v = n.label(&c.topology_key).unwrap_or_default().to_string();
                let k = n.pods.iter().filter(|o| spread_matches(pod, c, o)).count();
                *counts.entry(v).or_default() += i64::try_from(k).unwrap_or(0);
            }
            if c.hard {
                let min = counts.values().copied().min().unwrap_or(0);
                st.spread.push((counts, min));
            } else {
                st.soft_spread.push(counts);
            }
        }
        if !wants_pods {
            return st;
        }
        st.affinity = vec![HashSet::new(); pod.affinity.len()];
        for n in &nodes {
            for other in &n.pods {
                for (i, t) in pod.affinity.iter().enumerate() {
                    if t.matches(other) {
                        st.affinity_any = true;
                        if let Some(v) = n.label(&t.topology_key) {
                            st.affinity[i].insert(v.to_string());
                        }
                    }
                }
                for t in &pod.anti_affinity {
                    if t.matches(other)
                        && let Some(v) = n.label(&t.topology_key)
                    {
                        st.anti.insert((t.topology_key.clone(), v.to_string()));
                    }
                }
                for t in &other.anti_affinity {
                    if t.matches(pod)
                        && let Some(v) = n.label(&t.topology_key)
                    {
                        st.existing_anti
                            .insert((t.topology_key.clone(), v.to_string()));
                    }
                }
                let weighted = pod
                    .preferred_affinity
                    .iter()
                    .map(|(w, t)| (*w, t))
                    .chain(pod.preferred_anti_affinity.iter().map(|(w, t)| (-*w, t)));
                for (w, t) in weighted {
                    if t.matches(other)
                        && let Some(v) = n.label(&t.topology_key)
                    {
                        *st.preferred
                            .entry((t.topology_key.clone(), v.to_string()))
                            .or_default() += w;
                    }
                }
            }
        }
        st
    }

    /// Runs the filters on one node; the first that fails decides.
    pub fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Failure> {
        if node.unschedulable
            && !pod.tolerations.iter().any(|t| {
                t.tolerates(&Taint {
                    key: UNSCHEDULABLE_TAINT.into(),
                    value: String::new(),
                    effect: "NoSchedule".into(),
                    added: String::new(),
                })
            })
        {
            return Err(fail(ERR_UNSCHEDULABLE, true));
        }
        if !pod.node.is_empty() && pod.node != node.name {
            return Err(fail(ERR_NODE_NAME, true));
        }
        if let Some(t) = untolerated(pod, &node.taints) {
            return Err(fail(
                format!("node(s) had untolerated taint {{{}: {}}}", t.key, t.value),
                true,
            ));
        }
        if !node_affinity_ok(pod, node) {
            return Err(fail(ERR_AFFINITY, true));
        }
        if pod
            .host_ports
            .iter()
            .any(|w| node.used_ports.iter().any(|u| ports_conflict(w, u)))
        {
            return Err(fail(ERR_PORTS, false));
        }
        let short = resources_fit(pod, node);
        if !short.is_empty() {
            return Err(Failure {
                reasons: short,
                unresolvable: false,
            });
        }
        self.filter_relations(pod, node)
    }

    /// `PodTopologySpread` and `InterPodAffinity`.
    fn filter_relations(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Failure> {
        for (c, (counts, min)) in pod.spread.iter().filter(|c| c.hard).zip(&self.spread) {
            let Some(v) = node.label(&c.topology_key) else {
                return Err(fail(ERR_SPREAD_LABEL, true));
            };
            let self_match = i64::from(
                c.selector
                    .as_ref()
                    .is_some_and(|s| s.matches(Some(&pod.labels))),
            );
            let have = counts.get(v).copied().unwrap_or(0);
            if have + self_match - min > c.max_skew {
                return Err(fail(ERR_SPREAD, false));
            }
        }
        if !pod.affinity.is_empty() {
            let ok = pod.affinity.iter().zip(&self.affinity).all(|(t, vals)| {
                node.label(&t.topology_key)
                    .is_some_and(|v| vals.contains(v))
            });
            // The first pod of a group that selects itself may go anywhere
            // the topology keys exist.
            let first = !self.affinity_any
                && pod
                    .affinity
                    .iter()
                    .all(|t| t.matches(pod) && node.label(&t.topology_key).is_some());
            if !ok && !first {
                return Err(fail(ERR_POD_AFFINITY, true));
            }
        }
        let in_domain = |set: &HashSet<(String, String)>| {
            set.iter().any(|(k, v)| node.label(k) == Some(v.as_str()))
        };
        if !self.anti.is_empty() && in_domain(&self.anti) {
            return Err(fail(ERR_POD_ANTI_AFFINITY, false));
        }
        if !self.existing_anti.is_empty() && in_domain(&self.existing_anti) {
            return Err(fail(ERR_EXISTING_ANTI_AFFINITY, false));
        }
        Ok(())
    }

    /// Raw scores of every plugin for the feasible `nodes`, normalized and
    /// weighted as kube-scheduler does, summed per node.
    pub fn score(&self, pod: &PodInfo, nodes: &[&NodeInfo]) -> Vec<i64> {
        let mut total = vec![0i64; nodes.len()];
        let mut add = |raw: Vec<i64>, weight: i64, reverse: bool, normalize: bool| {
            let raw = if normalize {
                normalize_scores(&raw, reverse)
            } else {
                raw
            };
            for (t, s) in total.iter_mut().zip(raw) {
                *t += s * weight;
            }
        };
        // TaintToleration: fewer intolerable PreferNoSchedule taints win.
        let taints: Vec<i64> = nodes
            .iter()
            .map(|n| {
                let k = n
                    .taints
                    .iter()
                    .filter(|t| {
                        t.effect == "PreferNoSchedule"
                            && !pod.tolerations.iter().any(|tol| {
                                (tol.effect.is_empty() || tol.effect == "PreferNoSchedule")
                                    && tol.tolerates(t)
                            })
                    })
                    .count();
                i64::try_from(k).unwrap_or(0)
            })
            .collect();
        add(taints, 3, true, true);
        if !pod.preferred_terms.is_empty() {
            let aff = nodes
                .iter()
                .map(|n| {
                    pod.preferred_terms
                        .iter()
                        .filter(|(_, t)| t.matches(n))
                        .map(|(w, _)| *w)
                        .sum()
                })
                .collect();
            add(aff, 2, false, true);
        }
        add(
            nodes.iter().map(|n| least_allocated(pod, n)).collect(),
            1,
            false,
            false,
        );
        add(
            nodes.iter().map(|n| balanced(pod, n)).collect(),
            1,
            false,
            false,
        );
        if !self.preferred.is_empty() {
            let raw: Vec<i64> = nodes
                .iter()
                .map(|n| {
                    n.labels
                        .iter()
                        .filter_map(|(k, v)| self.preferred.get(&(k.clone(), v.clone())))
                        .sum()
                })
                .collect();
            add(min_max(&raw), 2, false, false);
        }
        if !self.soft_spread.is_empty() {
            let soft = pod.spread.iter().filter(|c| !c.hard);
            let constraints: Vec<_> = soft.zip(&self.soft_spread).collect();
            let raw: Vec<i64> = nodes
                .iter()
                .map(|n| {
                    constraints
                        .iter()
                        .map(|(c, counts)| {
                            n.label(&c.topology_key)
                                .map_or(0, |v| counts.get(v).copied().unwrap_or(0))
                        })
                        .sum()
                })
                .collect();
            add(raw, 2, true, true);
        }
        total
    }
}

/// Scales scores to 0..=100 by the maximum (reversed: fewer is better).
fn normalize_scores(raw: &[i64], reverse: bool) -> Vec<i64> {
    let max = raw.iter().copied().max().unwrap_or(0);
    raw.iter()
        .map(|s| {
            let v = if max == 0 { 0 } else { s * 100 / max };
            if reverse { 100 - v } else { v }
        })
        .collect()
}

/// Scales scores to 0..=100 between their minimum and maximum.
fn min_max(raw: &[i64]) -> Vec<i64> {
    let (min, max) = (
        raw.iter().copied().min().unwrap_or(0),
        raw.iter().copied().max().unwrap_or(0),
    );
    raw.iter()
        .map(|s| {
            if max == min {
                0
            } else {
                (s - min) * 100 / (max - min)
            }
        })
        .collect()
}

fn fraction(requested: i64, allocatable: i64) -> f64 {
    if allocatable <= 0 {
        return 1.0;
    }
    #[allow(clippy::cast_precision_loss)]
    let f = requested as f64 / allocatable as f64;
    f.min(1.0)
}

/// `LeastAllocated` on CPU and memory (equal weights), with the pod placed.
fn least_allocated(pod: &PodInfo, n: &NodeInfo) -> i64 {
    let free = |req: i64, alloc: i64| {
        if alloc <= 0 || req > alloc {
            0
        } else {
            (alloc - req) * 100 / alloc
        }
    };
    let cpu = free(
        n.nonzero_requested.0 + pod.nonzero.0,
        n.allocatable.milli_cpu,
    );
    let memory = free(n.nonzero_requested.1 + pod.nonzero.1, n.allocatable.memory);
    i64::midpoint(cpu, memory)
}

/// `BalancedAllocation`: CPU and memory used in similar proportions.
fn balanced(pod: &PodInfo, n: &NodeInfo) -> i64 {
    let c = fraction(
        n.requested.milli_cpu + pod.requests.milli_cpu,
        n.allocatable.milli_cpu,
    );
    let m = fraction(
        n.requested.memory + pod.requests.memory,
        n.allocatable.memory,
    );
    let std = (c - m).abs() / 2.0;
    #[allow(clippy::cast_possible_truncation)]
    let s = ((1.0 - std) * 100.0) as i64;
    s
}

/// The reasons nodes failed, counted, as `FitError` prints them.
#[derive(Debug, Default, Clone)]
pub(crate) struct Diagnosis {
    pub nodes: usize,
    pub reasons: BTreeMap<String, usize>,
    /// Node name → failure, for preemption.
    pub failed: HashMap<String, Failure>,
}

impl Diagnosis {
    pub fn record(&mut self, node: &str, f: Failure) {
        for r in &f.reasons {
            *self.reasons.entry(r.clone()).or_default() += 1;
        }
        self.failed.insert(node.to_string(), f);
    }

    /// `0/3 nodes are available: 1 node(s) had untolerated taint {k: v}, 2
    /// Insufficient cpu.`: reasons sorted as strings, as kube-scheduler's
    /// `sortReasonsHistogram` does.
    pub fn message(&self) -> String {
        let mut parts: Vec<String> = self
            .reasons
            .iter()
            .map(|(r, n)| format!("{n} {r}"))
            .collect();
        parts.sort();
        if parts.is_empty() {
            return format!("0/{} nodes are available.", self.nodes);
        }
        format!(
            "0/{} nodes are available: {}.",
            self.nodes,
            parts.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn cache(nodes: &[Value]) -> Cache {
        let mut c = Cache::default();
        for n in nodes {
            c.set_node(n);
        }
        c
    }

    fn node(name: &str, cpu: &str, labels: Value, taints: Value) -> Value {
        json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints},
               "status": {"allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "110"}}})
    }

    fn pod(spec: Value) -> PodInfo {
        let mut s = spec;
        if s.get("containers").is_none() {
            s["containers"] = json!([{"name": "c", "resources": {"requests": {"cpu": "1"}}}]);
        }
        PodInfo::from_json(
            &json!({"metadata": {"name": "p", "namespace": "d", "labels": {"app": "x"}}, "spec": s}),
        )
    }

    fn diagnose(p: &PodInfo, c: &Cache) -> (Vec<String>, Diagnosis) {
        let st = CycleState::new(p, c);
        let mut d = Diagnosis {
            nodes: c.order.len(),
            ..Diagnosis::default()
        };
        let mut ok = Vec::new();
        for n in c.node_list() {
            match st.filter(p, n) {
                Ok(()) => ok.push(n.name.clone()),
                Err(f) => d.record(&n.name, f),
            }
        }
        (ok, d)
    }

    #[test]
    fn fit_error_message_has_kube_scheduler_wording() {
        let c = cache(&[
            node(
                "a",
                "500m",
                json!({}),
                json!([{"key": "k", "value": "v", "effect": "NoSchedule"}]),
            ),
            node("b", "500m", json!({}), json!([])),
            node("c", "500m", json!({}), json!([])),
        ]);
        let (ok, d) = diagnose(&pod(json!({})), &c);
        assert!(ok.is_empty());
        assert_eq!(
            d.message(),
            "0/3 nodes are available: 1 node(s) had untolerated taint {k: v}, 2 Insufficient cpu."
        );
        assert!(d.failed["a"].unresolvable && !d.failed["b"].unresolvable);
    }

    #[test]
    fn selectors_affinity_and_ports() {
        let c = cache(&[
            node("a", "4", json!({"disk": "ssd", "zone": "z1"}), json!([])),
            node("b", "4", json!({"disk": "hdd", "zone": "z2"}), json!([])),
        ]);
        let (ok, _) = diagnose(&pod(json!({"nodeSelector": {"disk": "ssd"}})), &c);
        assert_eq!(ok, ["a"]);
        let (ok, d) = diagnose(
            &pod(
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z2"]}]}]}}}}),
            ),
            &c,
        );
        assert_eq!(ok, ["b"]);
        assert_eq!(
            d.message(),
            "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
        );
    }

    #[test]
    fn spread_and_anti_affinity_count_placed_pods() {
        let mut c = cache(&[
            node("a", "8", json!({"zone": "z1"}), json!([])),
            node("b", "8", json!({"zone": "z2"}), json!([])),
        ]);
        let mut placed = pod(json!({}));
        placed.node = "a".into();
        c.place(placed, false);
        let spread = json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "x"}}}]});
        let mut p = pod(spread);
        p.name = "q".into();
        let (ok, d) = diagnose(&p, &c);
        assert_eq!(ok, ["b"]);
        assert_eq!(d.reasons[ERR_SPREAD], 1);
        let anti = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "x"}}, "topologyKey": "zone"}]}}});
        let mut p = pod(anti);
        p.name = "r".into();
        let (ok, _) = diagnose(&p, &c);
        assert_eq!(ok, ["b"]);
        let aff = json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "x"}}, "topologyKey": "zone"}]}}});
        let mut p = pod(aff);
        p.name = "s".into();
        let (ok, _) = diagnose(&p, &c);
        assert_eq!(ok, ["a"]);
    }

    #[test]
    fn scores_prefer_emptier_nodes() {
        let mut c = cache(&[
            node("a", "4", json!({}), json!([])),
            node("b", "4", json!({}), json!([])),
        ]);
        let mut busy = pod(json!({}));
        busy.name = "busy".into();
        busy.node = "a".into();
        c.place(busy, false);
        let p = pod(json!({}));
        let st = CycleState::new(&p, &c);
        let nodes = c.node_list();
        let s = st.score(&p, &nodes);
        assert!(s[1] > s[0], "{s:?}");
    }
}
