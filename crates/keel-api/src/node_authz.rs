//! The Node authorizer and `NodeRestriction` admission, as Kubernetes runs
//! them for kubelets: a node credential (`system:node:<name>` in
//! `system:nodes`) may
//!
//! - read nodes, pods, services, endpoints (the kubelet's `NodeRules`),
//!   namespaces and networkpolicies (the agent enforces `NetworkPolicy`);
//!   create its Node, update and patch only its own (and its status);
//! - read and write only its own Lease in `kube-node-lease`;
//! - write the status of, evict and delete only pods bound to it, and create
//!   pods only bound to itself;
//! - get a secret, configMap, persistentVolumeClaim or serviceAccount only
//!   when a pod bound to it references it (volumes, env, envFrom,
//!   imagePullSecrets, `serviceAccountName`), a persistentVolume only when
//!   such a claim is bound to it, and request tokens only for such service
//!   accounts; get a secret an Ingress or Gateway names for TLS (the
//!   node's ingress gateway serves it);
//! - create events and certificate signing requests;
//! - read and write configMaps in `keel-overlay`, where the agents record
//!   the overlay networks of plain containers (what each node hands out
//!   and runs on them: no pod is involved).
//!
//! Anything else gets no opinion here and goes on to RBAC (which binds
//! nothing to `system:nodes` by default, as in Kubernetes). Kubernetes keeps
//! a graph of pods and what they reference; keel asks the store for the
//! node's pods of the namespace when a node reads such an object (a node
//! reads each once per pod start and volume refresh).

use keel_store::ListOptions;
use serde_json::Value;

use crate::State;
use crate::auth::{Attributes, User};
use crate::http::Fail;
use crate::resources::{self, Resource};

pub const NODES_GROUP: &str = "system:nodes";
const NODE_PREFIX: &str = "system:node:";
const LEASE_NS: &str = "kube-node-lease";
/// The namespace of overlay networks (keel-agent's `overlaynet`).
pub const OVERLAY_NS: &str = "keel-overlay";

/// The node a credential speaks for, if it is a node's.
pub fn node_of(user: &User) -> Option<&str> {
    if !user.groups.iter().any(|g| g == NODES_GROUP) {
        return None;
    }
    user.name
        .strip_prefix(NODE_PREFIX)
        .filter(|n| !n.is_empty())
}

/// What the authorizer decides without looking at stored objects, or which
/// lookup it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    Allow,
    NoOpinion(&'static str),
    /// Allowed if the pod `name` in the namespace is bound to the node.
    PodBound,
    /// Allowed if a pod bound to the node references this object.
    Referenced,
}

fn any(verb: &str, verbs: &[&str]) -> bool {
    verbs.contains(&verb)
}

const READ: &[&str] = &["get", "list", "watch"];

fn rule(node: &str, a: &Attributes) -> Rule {
    let v = a.verb.as_str();
    let own = a.name == node;
    match (
        a.group.as_str(),
        a.resource.as_str(),
        a.subresource.as_str(),
    ) {
        ("", "nodes" | "pods", "") if any(v, READ) || v == "create" => Rule::Allow,
        ("", "nodes", "" | "status") if any(v, &["update", "patch"]) && own => Rule::Allow,
        ("", "nodes", _) => Rule::NoOpinion("a node may only modify its own Node"),
        ("coordination.k8s.io", "leases", "")
            if a.namespace == LEASE_NS
                && any(v, &["get", "create", "update", "patch", "delete"])
                && (own || (v == "create" && a.name.is_empty())) =>
        {
            Rule::Allow
        }
        ("coordination.k8s.io", "leases", _) => {
            Rule::NoOpinion("a node may only use its own Lease in kube-node-lease")
        }
        ("", "pods", "status") if v == "get" => Rule::Allow,
        ("", "pods", "") if v == "delete" => Rule::PodBound,
        ("", "pods", "status") if any(v, &["update", "patch"]) => Rule::PodBound,
        ("", "pods", "eviction") if v == "create" => Rule::PodBound,
        ("", "pods", _) => Rule::NoOpinion("a node may only modify pods bound to it"),
        ("", "configmaps", "")
            if a.namespace == OVERLAY_NS
                && any(
                    v,
                    &[
                        "get", "list", "watch", "create", "update", "patch", "delete",
                    ],
                ) =>
        {
            Rule::Allow
        }
        ("", "secrets" | "configmaps" | "persistentvolumeclaims" | "serviceaccounts", "")
            if v == "get" =>
        {
            Rule::Referenced
        }
        ("", "persistentvolumes", "") if v == "get" => Rule::Referenced,
        ("", "serviceaccounts", "token") if v == "create" => Rule::Referenced,
        (
            "",
            "secrets"
            | "configmaps"
            | "persistentvolumeclaims"
            | "persistentvolumes"
            | "serviceaccounts",
            _,
        ) => Rule::NoOpinion(
            "a node may only get objects referenced by pods bound to it (no relationship found)",
        ),
        ("" | "events.k8s.io", "events", "") if any(v, &["create", "update", "patch"]) => {
            Rule::Allow
        }
        // namespaces and networkpolicies: the agent's NetworkPolicy
        // enforcement (what kube-router does in k3s's agents) needs every
        // policy and the namespaces' labels.
        ("", "services" | "endpoints" | "namespaces", "")
        | ("discovery.k8s.io", "endpointslices", "")
        | ("networking.k8s.io", "networkpolicies", "")
        | ("node.k8s.io", "runtimeclasses", "")
        | ("storage.k8s.io", "csidrivers" | "storageclasses", "")
            if any(v, READ) =>
        {
            Rule::Allow
        }
        ("certificates.k8s.io", "certificatesigningrequests", "")
            if any(v, &["create", "get", "list", "watch"]) =>
        {
            Rule::Allow
        }
        ("authentication.k8s.io", "tokenreviews", "")
        | ("authorization.k8s.io", "subjectaccessreviews", "")
            if v == "create" =>
        {
            Rule::Allow
        }
        _ => Rule::NoOpinion(""),
    }
}

fn pods() -> &'static Resource {
    resources::find("", "v1", "pods").expect("pods are served")
}

async fn stored(state: &State, r: &Resource, ns: &str, name: &str) -> Option<Value> {
    let kv = state.store.get(&r.key(Some(ns), name)).await.ok()??;
    crate::handlers::decode(state, &kv, kv.mod_revision).ok()
}

/// The pods of `ns` (all namespaces when `None`) bound to `node`.
async fn node_pods(state: &State, node: &str, ns: Option<&str>) -> Vec<Value> {
    let Ok(list) = state
        .store
        .list(&pods().list_prefix(ns), ListOptions::default())
        .await
    else {
        return Vec::new();
    };
    list.items
        .iter()
        .filter_map(|kv| crate::handlers::decode(state, kv, kv.mod_revision).ok())
        .filter(|p| p.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node))
        .collect()
}

/// The names of objects of `resource` a pod references.
pub(crate) fn references(pod: &Value, resource: &str) -> Vec<String> {
    let spec = &pod["spec"];
    let mut out: Vec<String> = Vec::new();
    let mut push = |s: Option<&str>| {
        if let Some(s) = s.filter(|s| !s.is_empty()) {
            out.push(s.to_string());
        }
    };
    let containers = ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| spec[*k].as_array().into_iter().flatten());
    let volumes = spec["volumes"].as_array().into_iter().flatten();
    match resource {
        "secrets" | "configmaps" => {
            let (key_ref, from_ref, vol, vol_name, proj) = if resource == "secrets" {
                (
                    "secretKeyRef",
                    "secretRef",
                    "secret",
                    "secretName",
                    "secret",
                )
            } else {
                (
                    "configMapKeyRef",
                    "configMapRef",
                    "configMap",
                    "name",
                    "configMap",
                )
            };
            for c in containers {
                for e in c["env"].as_array().into_iter().flatten() {
                    push(e["valueFrom"][key_ref]["name"].as_str());
                }
                for e in c["envFrom"].as_array().into_iter().flatten() {
                    push(e[from_ref]["name"].as_str());
                }
            }
            for v in volumes {
                push(v[vol][vol_name].as_str());
                for s in v["projected"]["sources"].as_array().into_iter().flatten() {
                    push(s[proj]["name"].as_str());
                }
                if resource == "secrets" {
                    for k in ["cephfs", "cinder", "flexVolume", "rbd", "scaleIO", "iscsi"] {
                        push(v[k]["secretRef"]["name"].as_str());
                    }
                    push(v["azureFile"]["secretName"].as_str());
                    push(v["csi"]["nodePublishSecretRef"]["name"].as_str());
                }
            }
            if resource == "secrets" {
                for s in spec["imagePullSecrets"].as_array().into_iter().flatten() {
                    push(s["name"].as_str());
                }
            }
        }
        "persistentvolumeclaims" => {
            for v in volumes {
                push(v["persistentVolumeClaim"]["claimName"].as_str());
            }
        }
        "serviceaccounts" => {
            push(
                spec["serviceAccountName"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .or(Some("default")),
            );
        }
        _ => {}
    }
    out.sort();
    out.dedup();
    out
}

async fn referenced(state: &State, node: &str, a: &Attributes) -> bool {
    if a.resource == "persistentvolumes" {
        let pvcs = resources::find("", "v1", "persistentvolumeclaims").expect("served");
        for p in node_pods(state, node, None).await {
            let ns = p
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            for claim in references(&p, "persistentvolumeclaims") {
                if let Some(c) = stored(state, pvcs, &ns, &claim).await
                    && c.pointer("/spec/volumeName").and_then(Value::as_str)
                        == Some(a.name.as_str())
                {
                    return true;
                }
            }
        }
        return false;
    }
    // The node's ingress gateway serves the certificates Ingresses name.
    if a.resource == "secrets"
        && crate::ingress_defaults::names_tls_secret(state, &a.namespace, &a.name).await
    {
        return true;
    }
    node_pods(state, node, Some(&a.namespace))
        .await
        .iter()
        .any(|p| references(p, &a.resource).contains(&a.name))
}

/// The Node authorizer: `Some((true, why))` when a node may do `a`,
/// `Some((false, why))` when it may not here (RBAC may still allow it),
/// `None` for users that are not nodes.
pub(crate) async fn authorize(
    state: &State,
    user: &User,
    a: &Attributes,
) -> Option<(bool, String)> {
    let node = node_of(user)?;
    if a.path.is_some() {
        return Some((false, String::new()));
    }
    let allowed = match rule(node, a) {
        Rule::Allow => true,
        Rule::NoOpinion(why) => return Some((false, why.to_string())),
        Rule::PodBound => stored(state, pods(), &a.namespace, &a.name)
            .await
            .is_some_and(|p| p.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node)),
        Rule::Referenced => referenced(state, node, a).await,
    };
    Some(if allowed {
        (
            true,
            format!("node {node:?} allowed by the Node authorizer"),
        )
    } else {
        (
            false,
            format!(
                "node {node:?} cannot {} {} {:?}: no relationship found between node {node:?} and this object",
                a.verb, a.resource, a.name
            ),
        )
    })
}

/// `NodeRestriction` for creates: a node creates only its own Node and
/// Lease, and only pods bound to itself.
pub(crate) fn restrict_create(user: &User, r: &Resource, obj: &Value) -> Result<(), Fail> {
    let Some(node) = node_of(user) else {
        return Ok(());
    };
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let refuse = |what: String| {
        Err(Fail::new(
            403,
            "Forbidden",
            format!("{} {name:?} is forbidden: node {node:?} {what}", r.plural),
        ))
    };
    match (r.group, r.plural) {
        ("", "nodes") if name != node => refuse(format!("is not allowed to modify node {name:?}")),
        ("coordination.k8s.io", "leases") if name != node => {
            refuse(format!("is not allowed to modify lease {name:?}"))
        }
        ("", "pods") if obj.pointer("/spec/nodeName").and_then(Value::as_str) != Some(node) => {
            refuse("can only create pods with spec.nodeName set to itself".to_string())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rbac::tests::attrs as a;
    use serde_json::json;

    #[test]
    fn only_node_credentials_are_nodes() {
        assert_eq!(
            node_of(&User::new("system:node:a", &[NODES_GROUP])),
            Some("a")
        );
        assert_eq!(node_of(&User::new("system:node:a", &[])), None);
        assert_eq!(node_of(&User::new("alice", &[NODES_GROUP])), None);
    }

    #[test]
    fn a_node_writes_only_its_own_node_and_lease() {
        let r = |v, res, sub, ns, name| rule("a", &a(v, "", res, sub, ns, name));
        assert_eq!(r("get", "nodes", "", "", "b"), Rule::Allow);
        assert_eq!(r("patch", "nodes", "status", "", "a"), Rule::Allow);
        assert!(matches!(
            r("patch", "nodes", "status", "", "b"),
            Rule::NoOpinion(_)
        ));
        assert!(matches!(
            r("update", "nodes", "", "", "b"),
            Rule::NoOpinion(_)
        ));
        assert!(matches!(
            r("delete", "nodes", "", "", "a"),
            Rule::NoOpinion(_)
        ));
        let l = |v, name| {
            rule(
                "a",
                &a(v, "coordination.k8s.io", "leases", "", LEASE_NS, name),
            )
        };
        assert_eq!(l("update", "a"), Rule::Allow);
        assert_eq!(l("create", ""), Rule::Allow);
        assert!(matches!(l("update", "b"), Rule::NoOpinion(_)));
        assert_eq!(r("patch", "pods", "status", "default", "p"), Rule::PodBound);
        assert_eq!(r("get", "secrets", "", "default", "s"), Rule::Referenced);
        assert!(matches!(
            r("list", "secrets", "", "default", ""),
            Rule::NoOpinion(_)
        ));
        assert!(matches!(
            r("create", "secrets", "", "default", ""),
            Rule::NoOpinion(_)
        ));
        assert!(matches!(
            r("get", "deployments", "", "default", "d"),
            Rule::NoOpinion(_)
        ));
        // NetworkPolicy enforcement reads policies and namespaces, never writes.
        let np = |v| {
            rule(
                "a",
                &a(v, "networking.k8s.io", "networkpolicies", "", "", ""),
            )
        };
        assert_eq!(np("watch"), Rule::Allow);
        assert!(matches!(np("create"), Rule::NoOpinion(_)));
        assert_eq!(r("list", "namespaces", "", "", ""), Rule::Allow);
        assert!(matches!(
            r("delete", "namespaces", "", "", "x"),
            Rule::NoOpinion(_)
        ));
        // Overlay networks: configMaps of keel-overlay, and only there.
        assert_eq!(r("update", "configmaps", "", OVERLAY_NS, "ov"), Rule::Allow);
        assert_eq!(r("list", "configmaps", "", OVERLAY_NS, ""), Rule::Allow);
        assert!(matches!(
            r("list", "configmaps", "", "default", ""),
            Rule::NoOpinion(_)
        ));
        assert!(matches!(
            r("get", "secrets", "", OVERLAY_NS, "s"),
            Rule::Referenced
        ));
    }

    #[test]
    fn references_follow_volumes_env_and_pull_secrets() {
        let pod = json!({"spec": {
            "serviceAccountName": "sa",
            "imagePullSecrets": [{"name": "pull"}],
            "containers": [{"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "env-s", "key": "k"}}},
                                    {"name": "Y", "valueFrom": {"configMapKeyRef": {"name": "env-c", "key": "k"}}}],
                            "envFrom": [{"configMapRef": {"name": "from-c"}}]}],
            "initContainers": [{"envFrom": [{"secretRef": {"name": "init-s"}}]}],
            "volumes": [{"name": "v", "secret": {"secretName": "vol-s"}},
                        {"name": "w", "configMap": {"name": "vol-c"}},
                        {"name": "p", "projected": {"sources": [{"configMap": {"name": "kube-root-ca.crt"}}, {"secret": {"name": "proj-s"}}]}},
                        {"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
        }});
        assert_eq!(
            references(&pod, "secrets"),
            ["env-s", "init-s", "proj-s", "pull", "vol-s"]
        );
        assert_eq!(
            references(&pod, "configmaps"),
            ["env-c", "from-c", "kube-root-ca.crt", "vol-c"]
        );
        assert_eq!(references(&pod, "persistentvolumeclaims"), ["data"]);
        assert_eq!(references(&pod, "serviceaccounts"), ["sa"]);
        assert_eq!(
            references(&json!({"spec": {}}), "serviceaccounts"),
            ["default"]
        );
    }

    #[test]
    fn node_restriction_refuses_other_nodes_objects() {
        let n = User::new("system:node:a", &[NODES_GROUP]);
        let nodes = resources::find("", "v1", "nodes").unwrap();
        let leases = resources::find("coordination.k8s.io", "v1", "leases").unwrap();
        let pods = pods();
        assert!(restrict_create(&n, nodes, &json!({"metadata": {"name": "a"}})).is_ok());
        assert!(restrict_create(&n, nodes, &json!({"metadata": {"name": "b"}})).is_err());
        assert!(restrict_create(&n, leases, &json!({"metadata": {"name": "b"}})).is_err());
        assert!(
            restrict_create(
                &n,
                pods,
                &json!({"metadata": {"name": "p"}, "spec": {"nodeName": "b"}})
            )
            .is_err()
        );
        let admin = User::new("keel:admin", &["system:masters"]);
        assert!(restrict_create(&admin, nodes, &json!({"metadata": {"name": "b"}})).is_ok());
    }
}
