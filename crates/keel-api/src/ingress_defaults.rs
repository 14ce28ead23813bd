//! What the server provides for keel's ingress gateway (keel-gateway, run
//! by every node agent): the default `IngressClass` `keel`, Gateway API's
//! `GatewayClass`, `Gateway` and `HTTPRoute` as CRDs
//! (`gateway.networking.k8s.io/v1`; open schemas: the gateway reads what it
//! supports), and the `ClusterRole` `system:keel-gateway` bound to
//! `system:nodes` (read Ingresses and the Gateway API kinds, write their
//! status). TLS Secrets stay behind the Node authorizer: a node may get a
//! Secret an Ingress or Gateway of its namespace names for TLS
//! ([`names_tls_secret`]), not list Secrets.

use serde_json::{Value, json};

use crate::State;
use crate::resources::{self, Resource};

pub const INGRESS_CONTROLLER: &str = "keel.dev/ingress-controller";
const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
const RBAC: &str = "rbac.authorization.k8s.io";

fn crd(kind: &str, plural: &str, namespaced: bool, short: &[&str]) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{GATEWAY_GROUP}"),
            "annotations": {"keel.dev/provided-by": "keel-gateway"}},
        "spec": {
            "group": GATEWAY_GROUP,
            "names": {"kind": kind, "listKind": format!("{kind}List"), "plural": plural,
                "singular": kind.to_ascii_lowercase(), "shortNames": short, "categories": ["gateway-api"]},
            "scope": if namespaced { "Namespaced" } else { "Cluster" },
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                }}},
            }],
        },
    })
}

/// `(resource, objects)` created at bootstrap when missing.
pub(crate) fn objects() -> Vec<(&'static Resource, Vec<Value>)> {
    let find = |g: &str, p: &str| resources::find(g, "v1", p).expect("served");
    let rule = |groups: &[&str], res: &[&str], verbs: &[&str]| json!({"apiGroups": groups, "resources": res, "verbs": verbs});
    let role = json!({
        "apiVersion": format!("{RBAC}/v1"), "kind": "ClusterRole",
        "metadata": {"name": "system:keel-gateway"},
        "rules": [
            rule(&["networking.k8s.io"], &["ingresses", "ingressclasses"], &["get", "list", "watch"]),
            rule(&["networking.k8s.io"], &["ingresses/status"], &["get", "patch", "update"]),
            rule(&[GATEWAY_GROUP], &["gatewayclasses", "gateways", "httproutes"], &["get", "list", "watch"]),
            rule(&[GATEWAY_GROUP], &["gatewayclasses/status", "gateways/status", "httproutes/status"], &["get", "patch", "update"]),
        ],
    });
    let binding = json!({
        "apiVersion": format!("{RBAC}/v1"), "kind": "ClusterRoleBinding",
        "metadata": {"name": "system:keel-gateway"},
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "system:keel-gateway"},
        "subjects": [{"apiGroup": RBAC, "kind": "Group", "name": crate::node_authz::NODES_GROUP}],
    });
    let class = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": "keel",
            "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
        "spec": {"controller": INGRESS_CONTROLLER},
    });
    vec![
        (find(RBAC, "clusterroles"), vec![role]),
        (find(RBAC, "clusterrolebindings"), vec![binding]),
        (find("networking.k8s.io", "ingressclasses"), vec![class]),
        (
            find("apiextensions.k8s.io", "customresourcedefinitions"),
            vec![
                crd("GatewayClass", "gatewayclasses", false, &["gc"]),
                crd("Gateway", "gateways", true, &["gtw"]),
                crd("HTTPRoute", "httproutes", true, &[]),
            ],
        ),
    ]
}

async fn list(state: &State, r: &Resource, ns: &str) -> Vec<Value> {
    let Ok(list) = state
        .store
        .list(&r.list_prefix(Some(ns)), keel_store::ListOptions::default())
        .await
    else {
        return Vec::new();
    };
    list.items
        .iter()
        .filter_map(|kv| crate::handlers::decode(state, kv, kv.mod_revision).ok())
        .collect()
}

/// Whether an Ingress (`spec.tls[].secretName`) or a Gateway
/// (`listeners[].tls.certificateRefs`) of `ns` names Secret `name`.
pub(crate) async fn names_tls_secret(state: &State, ns: &str, name: &str) -> bool {
    let ing = resources::find("networking.k8s.io", "v1", "ingresses").expect("served");
    let by_ingress = list(state, ing, ns).await.iter().any(|i| {
        i.pointer("/spec/tls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|t| t["secretName"].as_str() == Some(name))
    });
    if by_ingress {
        return true;
    }
    let Some(gw) = resources::find(GATEWAY_GROUP, "v1", "gateways") else {
        return false;
    };
    list(state, gw, ns).await.iter().any(|g| {
        g.pointer("/spec/listeners")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|l| l.pointer("/tls/certificateRefs").and_then(Value::as_array))
            .flatten()
            .any(|c| {
                c["name"].as_str() == Some(name)
                    && c["namespace"].as_str().is_none_or(|n| n == ns)
                    && c["kind"].as_str().is_none_or(|k| k == "Secret")
            })
    })
}
