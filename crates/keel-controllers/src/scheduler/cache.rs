//! What the scheduler knows about nodes and pods, decoded once from the
//! watch into typed form ([`PodInfo`], [`NodeInfo`]) so that a scheduling
//! cycle never touches JSON. Pods the scheduler has just bound are
//! *assumed* onto their node before the API confirms it, so the next cycle
//! already counts them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use keel_api::selectors::LabelSelector;
use keel_api::validate::parse_quantity;
use serde_json::Value;

use crate::objects::meta_str;

/// Amounts of resources: CPU in millicores, everything else in units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Extended resources (`nvidia.com/gpu`, `hugepages-2Mi`, ...).
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    /// From a `requests` / `allocatable` map; `pods` is left out.
    pub fn from_json(v: Option<&Value>) -> Self {
        let mut r = Resources::default();
        let Some(m) = v.and_then(Value::as_object) else {
            return r;
        };
        for (k, q) in m {
            let Some(x) = q.as_str().and_then(|s| parse_quantity(s).ok()) else {
                continue;
            };
            match k.as_str() {
                "cpu" => r.milli_cpu = milli(x),
                "memory" => r.memory = whole(x),
                "ephemeral-storage" => r.ephemeral_storage = whole(x),
                "pods" => {}
                other => {
                    r.scalar.insert(other.to_string(), whole(x));
                }
            }
        }
        r
    }

    pub fn add(&mut self, o: &Resources) {
        self.milli_cpu += o.milli_cpu;
        self.memory += o.memory;
        self.ephemeral_storage += o.ephemeral_storage;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() += v;
        }
    }

    pub fn sub(&mut self, o: &Resources) {
        self.milli_cpu -= o.milli_cpu;
        self.memory -= o.memory;
        self.ephemeral_storage -= o.ephemeral_storage;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() -= v;
        }
    }

    /// Component-wise maximum.
    fn max_with(&mut self, o: &Resources) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(o.ephemeral_storage);
        for (k, v) in &o.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }
}

#[allow(clippy::cast_possible_truncation)]
fn milli(x: f64) -> i64 {
    (x * 1000.0).ceil() as i64
}

#[allow(clippy::cast_possible_truncation)]
fn whole(x: f64) -> i64 {
    x.ceil() as i64
}

/// kube-scheduler's defaults for containers without requests, used by the
/// scores only (so that empty pods still spread).
pub(crate) const DEFAULT_MILLI_CPU: i64 = 100;
pub(crate) const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Toleration {
    pub key: String,
    pub exists: bool,
    pub value: String,
    pub effect: String,
    pub seconds: Option<i64>,
}

impl Toleration {
    fn from_json(t: &Value) -> Self {
        let s = |k: &str| {
            t.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        Toleration {
            key: s("key"),
            exists: s("operator") == "Exists",
            value: s("value"),
            effect: s("effect"),
            seconds: t.get("tolerationSeconds").and_then(Value::as_i64),
        }
    }

    /// Kubernetes' `ToleratesTaint`.
    pub fn tolerates(&self, t: &Taint) -> bool {
        if !self.effect.is_empty() && self.effect != t.effect {
            return false;
        }
        if !self.key.is_empty() && self.key != t.key {
            return false;
        }
        // An empty key with Exists tolerates everything.
        self.exists || self.value == t.value
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Taint {
    pub key: String,
    pub value: String,
    pub effect: String,
    /// `timeAdded` (RFC 3339), for `NoExecute` taints.
    pub added: String,
}

impl Taint {
    pub fn list(node: &Value) -> Vec<Taint> {
        node.pointer("/spec/taints")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|t| {
                        let s = |k: &str| {
                            t.get(k)
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_string()
                        };
                        Taint {
                            key: s("key"),
                            value: s("value"),
                            effect: s("effect"),
                            added: s("timeAdded"),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

pub(crate) fn tolerations(pod: &Value) -> Vec<Toleration> {
    pod.pointer("/spec/tolerations")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(Toleration::from_json).collect())
        .unwrap_or_default()
}

/// One requirement of a node selector term.
#[derive(Debug, Clone)]
pub(crate) struct NodeReq {
    key: String,
    op: String,
    values: Vec<String>,
}

/// A `nodeSelectorTerm`: its expressions and fields, all of which must match.
#[derive(Debug, Clone, Default)]
pub(crate) struct NodeTerm {
    exprs: Vec<NodeReq>,
    fields: Vec<NodeReq>,
}

impl NodeTerm {
    pub(crate) fn from_json(t: &Value) -> Self {
        let reqs = |k: &str| -> Vec<NodeReq> {
            t.get(k)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|r| NodeReq {
                            key: r
                                .get("key")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .into(),
                            op: r
                                .get("operator")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .into(),
                            values: r
                                .get("values")
                                .and_then(Value::as_array)
                                .map(|v| {
                                    v.iter()
                                        .filter_map(|x| x.as_str().map(String::from))
                                        .collect()
                                })
                                .unwrap_or_default(),
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        NodeTerm {
            exprs: reqs("matchExpressions"),
            fields: reqs("matchFields"),
        }
    }

    /// A term without requirements matches no node, as in Kubernetes.
    pub fn matches(&self, node: &NodeInfo) -> bool {
        if self.exprs.is_empty() && self.fields.is_empty() {
            return false;
        }
        self.exprs
            .iter()
            .all(|r| req_matches(r, node.labels.get(&r.key).map(String::as_str)))
            && self
                .fields
                .iter()
                .all(|r| r.key == "metadata.name" && req_matches(r, Some(node.name.as_str())))
    }
}

fn req_matches(r: &NodeReq, v: Option<&str>) -> bool {
    let num = |s: &str| s.parse::<i64>().ok();
    match r.op.as_str() {
        "In" => v.is_some_and(|x| r.values.iter().any(|w| w == x)),
        "NotIn" => v.is_none_or(|x| !r.values.iter().any(|w| w == x)),
        "Exists" => v.is_some(),
        "DoesNotExist" => v.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), Some(want)) = (
                v.and_then(num),
                r.values.first().and_then(|s| num(s.as_str())),
            ) else {
                return false;
            };
            if r.op == "Gt" {
                have > want
            } else {
                have < want
            }
        }
        _ => false,
    }
}

/// A pod (anti-)affinity term.
#[derive(Debug, Clone)]
pub(crate) struct PodTerm {
    /// `None`: a missing selector, which matches no pod.
    pub selector: Option<LabelSelector>,
    /// Namespaces the term looks in; empty with `all_namespaces` false means
    /// the pod's own.
    pub namespaces: Vec<String>,
    pub all_namespaces: bool,
    pub topology_key: String,
}

impl PodTerm {
    fn from_json(t: &Value, own_ns: &str) -> Self {
        let mut namespaces: Vec<String> = t
            .get("namespaces")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        // An empty namespaceSelector ({}) selects every namespace; others
        // are not evaluated (namespace labels are not cached).
        let all_namespaces = t
            .get("namespaceSelector")
            .and_then(Value::as_object)
            .is_some_and(serde_json::Map::is_empty);
        if namespaces.is_empty() && t.get("namespaceSelector").is_none_or(Value::is_null) {
            namespaces.push(own_ns.to_string());
        }
        PodTerm {
            selector: t
                .get("labelSelector")
                .filter(|s| !s.is_null())
                .map(LabelSelector::from_json),
            namespaces,
            all_namespaces,
            topology_key: t
                .get("topologyKey")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        }
    }

    pub fn matches(&self, pod: &PodInfo) -> bool {
        (self.all_namespaces || self.namespaces.contains(&pod.ns))
            && self
                .selector
                .as_ref()
                .is_some_and(|s| s.matches(Some(&pod.labels)))
    }
}

/// A `topologySpreadConstraint`.
#[derive(Debug, Clone)]
pub(crate) struct Spread {
    pub max_skew: i64,
    pub topology_key: String,
    pub hard: bool,
    pub selector: Option<LabelSelector>,
    /// `nodeAffinityPolicy: Honor` (the default): only nodes the pod's
    /// node affinity allows count.
    pub honor_affinity: bool,
    /// `nodeTaintsPolicy: Honor`: only nodes whose taints the pod tolerates
    /// count (default Ignore).
    pub honor_taints: bool,
}

/// A pod, as scheduling needs it.
#[derive(Debug, Clone)]
pub(crate) struct PodInfo {
    pub ns: String,
    pub name: String,
    pub uid: String,
    pub labels: Value,
    pub node: String,
    pub scheduler: String,
    pub priority: i64,
    pub preempt_never: bool,
    pub requests: Resources,
    /// Requests with kube-scheduler's defaults for empty containers (scores).
    pub nonzero: (i64, i64),
    /// (protocol, hostIP, hostPort) of container ports with a host port.
    pub host_ports: Vec<(String, String, i64)>,
    pub node_selector: BTreeMap<String, String>,
    /// `None`: no required node affinity; else its terms (any must match).
    pub required_terms: Option<Vec<NodeTerm>>,
    pub preferred_terms: Vec<(i64, NodeTerm)>,
    pub tolerations: Vec<Toleration>,
    pub affinity: Vec<PodTerm>,
    pub anti_affinity: Vec<PodTerm>,
    pub preferred_affinity: Vec<(i64, PodTerm)>,
    pub preferred_anti_affinity: Vec<(i64, PodTerm)>,
    pub spread: Vec<Spread>,
    pub deleting: bool,
    pub terminal: bool,
    /// Names of the claims its volumes use.
    pub claims: Vec<String>,
}

impl PodInfo {
    pub fn key(&self) -> String {
        format!("{}/{}", self.ns, self.name)
    }

    pub fn from_json(pod: &Value) -> Self {
        let ns = meta_str(pod, "namespace").to_string();
        let spec = pod.get("spec").cloned().unwrap_or(Value::Null);
        let str_at = |p: &str| {
            pod.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let mut requests = Resources::default();
        let (mut cpu0, mut mem0) = (0, 0);
        let mut host_ports = Vec::new();
        for c in spec
            .get("containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let r = Resources::from_json(c.pointer("/resources/requests"));
            cpu0 += if r.milli_cpu == 0 {
                DEFAULT_MILLI_CPU
            } else {
                r.milli_cpu
            };
            mem0 += if r.memory == 0 {
                DEFAULT_MEMORY
            } else {
                r.memory
            };
            requests.add(&r);
            for p in c
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(hp) = p.get("hostPort").and_then(Value::as_i64).filter(|x| *x > 0) {
                    let s = |k: &str, d: &str| {
                        p.get(k)
                            .and_then(Value::as_str)
                            .filter(|x| !x.is_empty())
                            .unwrap_or(d)
                            .to_string()
                    };
                    host_ports.push((s("protocol", "TCP"), s("hostIP", "0.0.0.0"), hp));
                }
            }
        }
        // An init container runs alone: the pod needs the larger of the two.
        for c in spec
            .get("initContainers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            requests.max_with(&Resources::from_json(c.pointer("/resources/requests")));
        }
        requests.add(&Resources::from_json(spec.get("overhead")));
        let node_selector = string_map(spec.get("nodeSelector"));
        let na = spec.pointer("/affinity/nodeAffinity");
        let required_terms = na
            .and_then(|a| {
                a.pointer("/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")
            })
            .and_then(Value::as_array)
            .map(|terms| terms.iter().map(NodeTerm::from_json).collect());
        let preferred_terms = na
            .and_then(|a| a.get("preferredDuringSchedulingIgnoredDuringExecution"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|p| {
                        (
                            p.get("weight").and_then(Value::as_i64).unwrap_or(0),
                            p.get("preference")
                                .map(NodeTerm::from_json)
                                .unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let terms = |p: &str| -> Vec<PodTerm> {
            spec.pointer(p)
                .and_then(Value::as_array)
                .map(|a| a.iter().map(|t| PodTerm::from_json(t, &ns)).collect())
                .unwrap_or_default()
        };
        let weighted = |p: &str| -> Vec<(i64, PodTerm)> {
            spec.pointer(p)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|w| {
                            (
                                w.get("weight").and_then(Value::as_i64).unwrap_or(0),
                                PodTerm::from_json(
                                    w.get("podAffinityTerm").unwrap_or(&Value::Null),
                                    &ns,
                                ),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let spread = spec
            .get("topologySpreadConstraints")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|c| Spread {
                        max_skew: c.get("maxSkew").and_then(Value::as_i64).unwrap_or(1),
                        topology_key: c
                            .get("topologyKey")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .into(),
                        hard: c.get("whenUnsatisfiable").and_then(Value::as_str)
                            != Some("ScheduleAnyway"),
                        selector: c
                            .get("labelSelector")
                            .filter(|s| !s.is_null())
                            .map(LabelSelector::from_json),
                        honor_affinity: c.get("nodeAffinityPolicy").and_then(Value::as_str)
                            != Some("Ignore"),
                        honor_taints: c.get("nodeTaintsPolicy").and_then(Value::as_str)
                            == Some("Honor"),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let phase = str_at("/status/phase");
        let scheduler = spec
            .get("schedulerName")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or(super::SCHEDULER_NAME)
            .to_string();
        PodInfo {
            name: meta_str(pod, "name").to_string(),
            uid: meta_str(pod, "uid").to_string(),
            labels: pod
                .pointer("/metadata/labels")
                .cloned()
                .unwrap_or(Value::Null),
            node: str_at("/spec/nodeName"),
            scheduler,
            priority: spec.get("priority").and_then(Value::as_i64).unwrap_or(0),
            preempt_never: spec.get("preemptionPolicy").and_then(Value::as_str) == Some("Never"),
            requests,
            nonzero: (cpu0, mem0),
            host_ports,
            node_selector,
            required_terms,
            preferred_terms,
            tolerations: tolerations(pod),
            affinity: terms("/affinity/podAffinity/requiredDuringSchedulingIgnoredDuringExecution"),
            anti_affinity: terms(
                "/affinity/podAntiAffinity/requiredDuringSchedulingIgnoredDuringExecution",
            ),
            preferred_affinity: weighted(
                "/affinity/podAffinity/preferredDuringSchedulingIgnoredDuringExecution",
            ),
            preferred_anti_affinity: weighted(
                "/affinity/podAntiAffinity/preferredDuringSchedulingIgnoredDuringExecution",
            ),
            spread,
            deleting: crate::objects::is_deleting(pod),
            terminal: matches!(phase.as_str(), "Succeeded" | "Failed"),
            claims: super::volumes::claim_names(pod),
            ns,
        }
    }

    /// What scheduling this pod depends on changed (not just its status).
    pub fn same_spec(&self, o: &PodInfo) -> bool {
        self.labels == o.labels
            && self.requests == o.requests
            && self.priority == o.priority
            && self.node_selector == o.node_selector
            && self.tolerations == o.tolerations
            && self.host_ports == o.host_ports
            && self.required_terms.is_some() == o.required_terms.is_some()
            && self.affinity.len() == o.affinity.len()
            && self.anti_affinity.len() == o.anti_affinity.len()
            && self.spread.len() == o.spread.len()
    }
}

/// A JSON object of strings (labels, a node selector) as a map.
fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// A node and what is placed on it.
#[derive(Debug, Clone, Default)]
pub(crate) struct NodeInfo {
    pub name: String,
    /// Whether the Node object exists (pods may name a node not seen yet).
    pub exists: bool,
    pub labels: BTreeMap<String, String>,
    pub allocatable: Resources,
    pub allowed_pods: i64,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub requested: Resources,
    pub nonzero_requested: (i64, i64),
    pub pods: Vec<Arc<PodInfo>>,
    pub used_ports: Vec<(String, String, i64)>,
}

impl NodeInfo {
    fn set_node(&mut self, node: &Value) {
        self.exists = true;
        self.labels = string_map(node.pointer("/metadata/labels"));
        let alloc = node
            .pointer("/status/allocatable")
            .or_else(|| node.pointer("/status/capacity"));
        self.allocatable = Resources::from_json(alloc);
        self.allowed_pods = alloc
            .and_then(|a| a.get("pods"))
            .and_then(Value::as_str)
            .and_then(|s| parse_quantity(s).ok())
            .map_or(0, whole);
        self.taints = Taint::list(node);
        self.unschedulable = node
            .pointer("/spec/unschedulable")
            .and_then(Value::as_bool)
            .unwrap_or(false);
    }

    pub fn add(&mut self, p: Arc<PodInfo>) {
        self.requested.add(&p.requests);
        self.nonzero_requested.0 += p.nonzero.0;
        self.nonzero_requested.1 += p.nonzero.1;
        self.used_ports.extend(p.host_ports.iter().cloned());
        self.pods.push(p);
    }

    pub fn remove(&mut self, key: &str) {
        let Some(i) = self.pods.iter().position(|p| p.key() == key) else {
            return;
        };
        let p = self.pods.swap_remove(i);
        self.requested.sub(&p.requests);
        self.nonzero_requested.0 -= p.nonzero.0;
        self.nonzero_requested.1 -= p.nonzero.1;
        for hp in &p.host_ports {
            if let Some(j) = self.used_ports.iter().position(|u| u == hp) {
                self.used_ports.swap_remove(j);
            }
        }
    }

    /// Whether `label` on this node equals `value`.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
}

/// Nodes and the pods placed on them.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    pub nodes: HashMap<String, NodeInfo>,
    /// Names of existing nodes, in a stable order for round-robin search.
    pub order: Vec<String>,
    /// Pod key → (node, assumed by this scheduler and not yet confirmed).
    placed: HashMap<String, (String, bool)>,
    /// How many placed pods have required anti-affinity terms.
    pub with_anti_affinity: usize,
}

impl Cache {
    /// Adds or updates a node; whether anything scheduling looks at changed.
    pub fn set_node(&mut self, node: &Value) -> bool {
        let name = meta_str(node, "name").to_string();
        let info = self.nodes.entry(name.clone()).or_insert_with(|| NodeInfo {
            name: name.clone(),
            ..NodeInfo::default()
        });
        let was_new = !info.exists;
        if was_new {
            self.order.push(name);
        }
        let before = (
            info.labels.clone(),
            info.allocatable.clone(),
            info.allowed_pods,
            info.taints.clone(),
            info.unschedulable,
        );
        info.set_node(node);
        was_new
            || before
                != (
                    info.labels.clone(),
                    info.allocatable.clone(),
                    info.allowed_pods,
                    info.taints.clone(),
                    info.unschedulable,
                )
    }

    pub fn remove_node(&mut self, name: &str) {
        if let Some(n) = self.nodes.get_mut(name) {
            n.exists = false;
            if n.pods.is_empty() {
                self.nodes.remove(name);
            }
        }
        self.order.retain(|n| n != name);
    }

    /// Records a pod on its node (replacing what was known of it).
    pub fn place(&mut self, pod: PodInfo, assumed: bool) {
        let key = pod.key();
        self.forget(&key);
        let node = pod.node.clone();
        if !pod.anti_affinity.is_empty() {
            self.with_anti_affinity += 1;
        }
        self.nodes
            .entry(node.clone())
            .or_insert_with(|| NodeInfo {
                name: node.clone(),
                ..NodeInfo::default()
            })
            .add(Arc::new(pod));
        self.placed.insert(key, (node, assumed));
    }

    /// Removes a pod from its node.
    pub fn forget(&mut self, key: &str) {
        let Some((node, _)) = self.placed.remove(key) else {
            return;
        };
        if let Some(n) = self.nodes.get_mut(&node) {
            if n.pods
                .iter()
                .any(|p| p.key() == key && !p.anti_affinity.is_empty())
            {
                self.with_anti_affinity -= 1;
            }
            n.remove(key);
            if !n.exists && n.pods.is_empty() {
                self.nodes.remove(&node);
            }
        }
    }

    pub fn is_placed(&self, key: &str) -> bool {
        self.placed.contains_key(key)
    }

    pub fn is_assumed(&self, key: &str) -> bool {
        self.placed.get(key).is_some_and(|p| p.1)
    }

    /// Existing nodes, in order.
    pub fn node_list(&self) -> Vec<&NodeInfo> {
        self.order
            .iter()
            .filter_map(|n| self.nodes.get(n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pod_requests_take_init_containers_and_overhead() {
        let pod = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}, "ports": [{"containerPort": 80, "hostPort": 8080}]},
                {"name": "b"}
            ],
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "1", "nvidia.com/gpu": "1"}}}],
            "overhead": {"cpu": "10m"},
            "priority": 7
        }});
        let p = PodInfo::from_json(&pod);
        assert_eq!(p.requests.milli_cpu, 1010);
        assert_eq!(p.requests.memory, 64 * 1024 * 1024);
        assert_eq!(p.requests.scalar["nvidia.com/gpu"], 1);
        assert_eq!(p.nonzero, (350, 64 * 1024 * 1024 + DEFAULT_MEMORY));
        assert_eq!(p.host_ports, vec![("TCP".into(), "0.0.0.0".into(), 8080)]);
        assert_eq!(p.priority, 7);
        assert_eq!(p.scheduler, "default-scheduler");
    }

    #[test]
    fn node_terms_and_tolerations() {
        let mut n = NodeInfo {
            name: "n1".into(),
            ..NodeInfo::default()
        };
        n.labels.insert("zone".into(), "a".into());
        n.labels.insert("cores".into(), "8".into());
        let t = |v: Value| NodeTerm::from_json(&v);
        assert!(t(json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]})).matches(&n));
        assert!(
            !t(
                json!({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]})
            )
            .matches(&n)
        );
        assert!(
            t(json!({"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]}))
                .matches(&n)
        );
        assert!(
            !t(json!({"matchExpressions": [{"key": "cores", "operator": "Lt", "values": ["4"]}]}))
                .matches(&n)
        );
        assert!(t(json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]})).matches(&n));
        assert!(!t(json!({})).matches(&n), "an empty term matches nothing");
        let taint = Taint {
            key: "k".into(),
            value: "v".into(),
            effect: "NoSchedule".into(),
            added: String::new(),
        };
        let tol = |v: Value| Toleration::from_json(&v);
        assert!(tol(json!({"key": "k", "value": "v", "effect": "NoSchedule"})).tolerates(&taint));
        assert!(tol(json!({"key": "k", "operator": "Exists"})).tolerates(&taint));
        assert!(tol(json!({"operator": "Exists"})).tolerates(&taint));
        assert!(!tol(json!({"key": "k", "value": "w"})).tolerates(&taint));
        assert!(
            !tol(json!({"key": "k", "operator": "Exists", "effect": "NoExecute"}))
                .tolerates(&taint)
        );
    }

    #[test]
    fn cache_accounts_pods_per_node() {
        let mut c = Cache::default();
        c.set_node(&json!({"metadata": {"name": "n"}, "status": {"allocatable": {"cpu": "2", "memory": "1Gi", "pods": "10"}}}));
        let mut p = PodInfo::from_json(
            &json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "500m"}}}]}}),
        );
        p.node = "n".into();
        c.place(p.clone(), true);
        assert!(c.is_assumed("d/p"));
        assert_eq!(c.nodes["n"].requested.milli_cpu, 500);
        assert_eq!(c.nodes["n"].allowed_pods, 10);
        c.place(p, false);
        assert!(!c.is_assumed("d/p"));
        assert_eq!(c.nodes["n"].pods.len(), 1);
        c.forget("d/p");
        assert_eq!(c.nodes["n"].requested.milli_cpu, 0);
        c.remove_node("n");
        assert!(c.node_list().is_empty());
    }
}
