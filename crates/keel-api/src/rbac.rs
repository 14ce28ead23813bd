//! RBAC as Kubernetes' authorizer evaluates it: `Roles` and `ClusterRoles`
//! (rules of verbs × API groups × resources[/subresources] × names, or
//! non-resource URLs), granted through `RoleBindings` (in their namespace) and
//! `ClusterRoleBindings` (everywhere) to users, groups and service accounts.
//! Members of `system:masters` pass without a lookup, as the apiserver's
//! privileged-group authorizer lets them. The bindings live in an in-memory
//! index loaded from the store and refreshed when the store's RBAC objects
//! change (a denial first re-reads a stale index, so a binding just created
//! is honoured at once). [`bootstrap`] writes the default roles (cluster-admin,
//! admin, edit, view and the system roles keel uses) and their bindings.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use keel_store::ListOptions;
use serde_json::{Value, json};

use crate::State;
use crate::auth::{Attributes, MASTERS, READ_ONLY_USER, User};
use crate::resources::{self, Resource};
use crate::selectors::LabelSelector;
use crate::validate::Cause;

pub const GROUP: &str = "rbac.authorization.k8s.io";

fn kinds() -> [&'static Resource; 4] {
    [
        "clusterroles",
        "clusterrolebindings",
        "roles",
        "rolebindings",
    ]
    .map(|p| resources::find(GROUP, "v1", p).expect("RBAC is served"))
}

/// The RBAC objects as last read, and the store revision they are from.
#[derive(Debug, Default)]
pub(crate) struct Index {
    revision: i64,
    cluster_roles: BTreeMap<String, Value>,
    roles: BTreeMap<(String, String), Value>,
    cluster_bindings: Vec<Value>,
    bindings: BTreeMap<String, Vec<Value>>,
}

/// The shared index (part of the server's state).
#[derive(Debug, Default)]
pub(crate) struct Cache(Arc<RwLock<Index>>);

/// A handle on the index for synchronous checks (CEL's `authorizer`, which
/// runs on threads of its own).
#[derive(Debug, Clone)]
pub(crate) struct Checker(Arc<RwLock<Index>>);

impl Checker {
    /// What RBAC decides for `user` doing `a` with the index as it is:
    /// the reason when allowed.
    pub(crate) fn allows(&self, user: &User, a: &Attributes) -> Option<String> {
        if user.groups.iter().any(|g| g == MASTERS) {
            return Some(String::new());
        }
        let idx = self.0.read().ok()?;
        idx.rules_for(user, &a.namespace)
            .into_iter()
            .find(|(r, _)| rule_allows(r, a))
            .map(|(_, why)| format!("RBAC: allowed by {why} to User {:?}", user.name))
    }
}

fn strs(v: &Value, k: &str) -> Vec<String> {
    v.get(k)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

fn any_is(list: &[String], want: &str) -> bool {
    list.iter().any(|x| x == "*" || x == want)
}

/// Whether one policy rule allows `a`.
pub fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    if !any_is(&strs(rule, "verbs"), &a.verb) {
        return false;
    }
    if let Some(path) = &a.path {
        return strs(rule, "nonResourceURLs").iter().any(|u| {
            u == "*" || u == path || u.strip_suffix('*').is_some_and(|p| path.starts_with(p))
        });
    }
    if !any_is(&strs(rule, "apiGroups"), &a.group) {
        return false;
    }
    let combined = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let resource_ok = strs(rule, "resources").iter().any(|r| {
        r == "*"
            || *r == combined
            || (!a.subresource.is_empty() && r.strip_prefix("*/") == Some(a.subresource.as_str()))
    });
    if !resource_ok {
        return false;
    }
    let names = strs(rule, "resourceNames");
    names.is_empty() || names.contains(&a.name)
}

/// Whether a binding's subject list names `user` (service accounts of a
/// `RoleBinding` default to its namespace).
fn binds(binding: &Value, user: &User, binding_ns: &str) -> bool {
    binding
        .get("subjects")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|s| {
            let name = s.get("name").and_then(Value::as_str).unwrap_or_default();
            match s.get("kind").and_then(Value::as_str) {
                Some("User") => user.name == name,
                Some("Group") => user.groups.iter().any(|g| g == name),
                Some("ServiceAccount") => {
                    let ns = s
                        .get("namespace")
                        .and_then(Value::as_str)
                        .filter(|n| !n.is_empty())
                        .unwrap_or(binding_ns);
                    user.name == format!("system:serviceaccount:{ns}:{name}")
                }
                _ => false,
            }
        })
}

fn meta_name(v: &Value) -> String {
    v.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl Index {
    fn rules_of(&self, role_ref: &Value, ns: &str) -> Vec<Value> {
        let name = role_ref
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let role = match role_ref.get("kind").and_then(Value::as_str) {
            Some("ClusterRole") => self.cluster_roles.get(name),
            Some("Role") => self.roles.get(&(ns.to_string(), name.to_string())),
            _ => None,
        };
        role.and_then(|r| r.get("rules"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    }

    /// The rules that apply to `user` in `ns` ("" for cluster scope), each
    /// with what granted it.
    fn rules_for(&self, user: &User, ns: &str) -> Vec<(Value, String)> {
        let mut out = Vec::new();
        for b in &self.cluster_bindings {
            if binds(b, user, "") {
                let role_ref = b.get("roleRef").cloned().unwrap_or(Value::Null);
                let why = format!(
                    "ClusterRoleBinding {:?} of ClusterRole {:?}",
                    meta_name(b),
                    role_ref
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                );
                for r in self.rules_of(&role_ref, "") {
                    out.push((r, why.clone()));
                }
            }
        }
        if !ns.is_empty() {
            for b in self.bindings.get(ns).into_iter().flatten() {
                if binds(b, user, ns) {
                    let role_ref = b.get("roleRef").cloned().unwrap_or(Value::Null);
                    let why = format!(
                        "RoleBinding \"{}/{ns}\" of {} {:?}",
                        meta_name(b),
                        role_ref
                            .get("kind")
                            .and_then(Value::as_str)
                            .unwrap_or_default(),
                        role_ref
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                    );
                    for r in self.rules_of(&role_ref, ns) {
                        out.push((r, why.clone()));
                    }
                }
            }
        }
        out
    }
}

impl Cache {
    /// Re-reads every RBAC object from the store.
    pub(crate) async fn reload(&self, state: &State) -> Result<(), keel_store::StoreError> {
        let rev = state.store.current_revision().await?;
        let mut idx = Index {
            revision: rev,
            ..Index::default()
        };
        let [crs, crbs, rs, rbs] = kinds();
        for r in [crs, crbs, rs, rbs] {
            let list = state
                .store
                .list(
                    &r.key_prefix(),
                    ListOptions {
                        revision: Some(rev),
                        ..ListOptions::default()
                    },
                )
                .await?;
            for kv in list.items {
                let Ok(obj) = serde_json::from_slice::<Value>(&kv.value) else {
                    continue;
                };
                let name = meta_name(&obj);
                let ns = obj
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                match r.plural {
                    "clusterroles" => {
                        idx.cluster_roles.insert(name, obj);
                    }
                    "clusterrolebindings" => idx.cluster_bindings.push(obj),
                    "roles" => {
                        idx.roles.insert((ns, name), obj);
                    }
                    _ => idx.bindings.entry(ns).or_default().push(obj),
                }
            }
        }
        if let Ok(mut w) = self.0.write()
            && w.revision <= rev
        {
            *w = idx;
        }
        Ok(())
    }

    pub(crate) fn checker(&self) -> Checker {
        Checker(self.0.clone())
    }

    fn revision(&self) -> i64 {
        self.0.read().map_or(0, |i| i.revision)
    }

    /// Keeps the index current: reloads after any change to an RBAC object.
    pub(crate) fn follow(state: std::sync::Arc<State>) {
        tokio::spawn(async move {
            loop {
                let from = state.rbac.revision() + 1;
                let prefix = format!("{}{GROUP}/", resources::REGISTRY);
                let mut w = match state.store.watch(&prefix, from).await {
                    Ok(w) => w,
                    Err(e) => {
                        tracing::warn!(error = %e, "rbac: watch failed, reloading");
                        let _ = state.rbac.reload(&state).await;
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        continue;
                    }
                };
                while let Some(item) = w.next().await {
                    match item {
                        Ok(keel_store::WatchItem::Event(_)) => {
                            if let Err(e) = state.rbac.reload(&state).await {
                                tracing::warn!(error = %e, "rbac: reload failed");
                            }
                        }
                        Ok(keel_store::WatchItem::Progress(_)) => {}
                        Err(_) => break,
                    }
                }
                let _ = state.rbac.reload(&state).await;
            }
        });
    }
}

/// Whether `user` may do `a`; the reason names what allowed it.
pub(crate) async fn authorize(state: &State, user: &User, a: &Attributes) -> (bool, String) {
    let rbac = state.rbac.checker();
    if let Some(why) = rbac.allows(user, a) {
        return (true, why);
    }
    // A binding written a moment ago may not be in the index yet.
    if let Ok(now) = state.store.current_revision().await
        && now > state.rbac.revision()
        && state.rbac.reload(state).await.is_ok()
        && let Some(why) = rbac.allows(user, a)
    {
        return (true, why);
    }
    (false, String::new())
}

/// The rules `user` has in `ns` (a `SelfSubjectRulesReview`'s status).
pub(crate) fn rules_review(state: &State, user: &User, ns: &str) -> Value {
    if user.groups.iter().any(|g| g == MASTERS) {
        return json!({
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": false,
        });
    }
    let rules = state
        .rbac
        .0
        .read()
        .map(|i| i.rules_for(user, ns))
        .unwrap_or_default();
    let mut res = Vec::new();
    let mut nonres = Vec::new();
    for (r, _) in rules {
        if r.get("nonResourceURLs").is_some() {
            nonres.push(json!({"verbs": r["verbs"], "nonResourceURLs": r["nonResourceURLs"]}));
        } else {
            let mut x = json!({"verbs": r["verbs"], "apiGroups": r.get("apiGroups").cloned().unwrap_or(json!([])), "resources": r.get("resources").cloned().unwrap_or(json!([]))});
            if let Some(n) = r.get("resourceNames") {
                x["resourceNames"] = n.clone();
            }
            res.push(x);
        }
    }
    json!({"resourceRules": res, "nonResourceRules": nonres, "incomplete": false})
}

/// Rules of a `ClusterRole` with an aggregation rule: the union of the rules of
/// the `ClusterRoles` its selectors match (what the clusterrole-aggregation
/// controller writes).
pub fn aggregate(role: &Value, all: &[Value]) -> Option<Vec<Value>> {
    let selectors = role
        .pointer("/aggregationRule/clusterRoleSelectors")
        .and_then(Value::as_array)?;
    let me = meta_name(role);
    let mut rules: Vec<Value> = Vec::new();
    let mut sources: Vec<&Value> = all
        .iter()
        .filter(|r| meta_name(r) != me)
        .filter(|r| {
            selectors
                .iter()
                .any(|s| LabelSelector::from_json(s).matches(r.pointer("/metadata/labels")))
        })
        .collect();
    sources.sort_by_key(|r| meta_name(r));
    for r in sources {
        for rule in r
            .get("rules")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !rules.contains(rule) {
                rules.push(rule.clone());
            }
        }
    }
    Some(rules)
}

const READ: [&str; 3] = ["get", "list", "watch"];
const WRITE: [&str; 6] = [
    "create",
    "delete",
    "deletecollection",
    "patch",
    "update",
    "get",
];

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

fn url_rule(urls: &[&str], verbs: &[&str]) -> Value {
    json!({"nonResourceURLs": urls, "verbs": verbs})
}

fn all_write() -> Vec<&'static str> {
    let mut v: Vec<&str> = WRITE.to_vec();
    v.extend(["list", "watch"]);
    v.sort_unstable();
    v.dedup();
    v
}

/// Kubernetes' default `ClusterRoles` (bootstrap policy), as far as keel
/// serves their resources.
fn default_cluster_roles() -> Vec<Value> {
    let w = all_write();
    let view = vec![
        rule(
            &[""],
            &[
                "pods",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/status",
                "endpoints",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "configmaps",
            ],
            &READ,
        ),
        rule(
            &[""],
            &[
                "limitranges",
                "resourcequotas",
                "bindings",
                "events",
                "pods/status",
                "resourcequotas/status",
                "namespaces/status",
                "replicationcontrollers/status",
                "pods/log",
            ],
            &READ,
        ),
        rule(&[""], &["namespaces"], &READ),
        rule(&["discovery.k8s.io"], &["endpointslices"], &READ),
        rule(
            &["apps"],
            &[
                "controllerrevisions",
                "statefulsets",
                "statefulsets/status",
                "statefulsets/scale",
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/status",
                "deployments/scale",
                "replicasets",
                "replicasets/status",
                "replicasets/scale",
            ],
            &READ,
        ),
        rule(
            &["autoscaling"],
            &[
                "horizontalpodautoscalers",
                "horizontalpodautoscalers/status",
            ],
            &READ,
        ),
        rule(
            &["batch"],
            &["jobs", "cronjobs", "cronjobs/status", "jobs/status"],
            &READ,
        ),
        rule(
            &["policy"],
            &["poddisruptionbudgets", "poddisruptionbudgets/status"],
            &READ,
        ),
        rule(
            &["networking.k8s.io"],
            &["networkpolicies", "ingresses", "ingresses/status"],
            &READ,
        ),
    ];
    let edit = vec![
        rule(
            &[""],
            &[
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
                "secrets",
                "services/proxy",
            ],
            &READ,
        ),
        rule(&[""], &["serviceaccounts"], &["impersonate"]),
        rule(
            &[""],
            &[
                "pods",
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
            ],
            &w,
        ),
        rule(&[""], &["pods/eviction"], &["create"]),
        rule(
            &[""],
            &[
                "configmaps",
                "events",
                "persistentvolumeclaims",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "secrets",
                "serviceaccounts",
                "services",
                "services/proxy",
            ],
            &w,
        ),
        rule(&[""], &["serviceaccounts/token"], &["create"]),
        rule(
            &["apps"],
            &[
                "daemonsets",
                "deployments",
                "deployments/rollback",
                "deployments/scale",
                "replicasets",
                "replicasets/scale",
                "statefulsets",
                "statefulsets/scale",
            ],
            &w,
        ),
        rule(&["autoscaling"], &["horizontalpodautoscalers"], &w),
        rule(&["batch"], &["cronjobs", "jobs"], &w),
        rule(&["policy"], &["poddisruptionbudgets"], &w),
        rule(
            &["networking.k8s.io"],
            &["ingresses", "networkpolicies"],
            &w,
        ),
        rule(&["coordination.k8s.io"], &["leases"], &w),
    ];
    let admin = vec![
        rule(
            &["authorization.k8s.io"],
            &["localsubjectaccessreviews"],
            &["create"],
        ),
        rule(&[GROUP], &["rolebindings", "roles"], &w),
    ];
    let agg = |name: &str, to: &[&str], rules: Vec<Value>| {
        let labels: serde_json::Map<String, Value> = to
            .iter()
            .map(|t| {
                (
                    format!("rbac.authorization.k8s.io/aggregate-to-{t}"),
                    json!("true"),
                )
            })
            .collect();
        json!({"metadata": {"name": name, "labels": labels}, "rules": rules})
    };
    let aggregated = |name: &str, to: &str, also: &[&str]| {
        let mut labels = serde_json::Map::new();
        for t in also {
            labels.insert(
                format!("rbac.authorization.k8s.io/aggregate-to-{t}"),
                json!("true"),
            );
        }
        json!({
            "metadata": {"name": name, "labels": labels},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {format!("rbac.authorization.k8s.io/aggregate-to-{to}"): "true"}}]},
            "rules": [],
        })
    };
    let mut roles = vec![
        json!({"metadata": {"name": "cluster-admin"}, "rules": [rule(&["*"], &["*"], &["*"]), url_rule(&["*"], &["*"])]}),
        aggregated("admin", "admin", &[]),
        aggregated("edit", "edit", &["admin"]),
        aggregated("view", "view", &["admin", "edit"]),
        agg("system:aggregate-to-admin", &["admin"], admin),
        agg("system:aggregate-to-edit", &["admin", "edit"], edit),
        agg("system:aggregate-to-view", &["admin", "edit", "view"], view),
        json!({"metadata": {"name": "system:discovery"}, "rules": [url_rule(&["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz", "/version", "/version/"], &["get"])]}),
        json!({"metadata": {"name": "system:basic-user"}, "rules": [rule(&["authorization.k8s.io"], &["selfsubjectaccessreviews", "selfsubjectrulesreviews"], &["create"]), rule(&["authentication.k8s.io"], &["selfsubjectreviews"], &["create"])]}),
        json!({"metadata": {"name": "system:public-info-viewer"}, "rules": [url_rule(&["/healthz", "/livez", "/readyz", "/version", "/version/"], &["get"])]}),
        json!({"metadata": {"name": "system:service-account-issuer-discovery"}, "rules": [url_rule(&["/.well-known/openid-configuration", "/.well-known/openid-configuration/", "/openid/v1/jwks", "/openid/v1/jwks/"], &["get"])]}),
        json!({"metadata": {"name": "system:node-bootstrapper"}, "rules": [rule(&["certificates.k8s.io"], &["certificatesigningrequests"], &["create", "get", "list", "watch"])]}),
        // What a kubelet needs (Kubernetes' system:node role). Bound to no
        // one, as in Kubernetes: the Node authorizer (node_authz) decides
        // for node credentials.
        json!({"metadata": {"name": "system:node"}, "rules": [
            rule(&[""], &["nodes"], &["create", "get", "list", "watch", "patch", "update"]),
            rule(&[""], &["nodes/status"], &["patch", "update"]),
            rule(&[""], &["pods"], &["get", "list", "watch", "create", "delete"]),
            rule(&[""], &["pods/status"], &["patch", "update"]),
            rule(&[""], &["pods/eviction"], &["create"]),
            rule(&[""], &["configmaps", "secrets", "services", "endpoints", "persistentvolumeclaims", "persistentvolumes"], &["get", "list", "watch"]),
            rule(&[""], &["serviceaccounts/token"], &["create"]),
            rule(&["", "events.k8s.io"], &["events"], &["create", "patch", "update"]),
            rule(&["coordination.k8s.io"], &["leases"], &["get", "create", "update", "patch", "delete"]),
            rule(&["certificates.k8s.io"], &["certificatesigningrequests"], &["create", "get", "list", "watch"]),
            rule(&["discovery.k8s.io"], &["endpointslices"], &["get", "list", "watch"]),
        ]}),
        json!({"metadata": {"name": "system:auth-delegator"}, "rules": [rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]), rule(&["authorization.k8s.io"], &["subjectaccessreviews"], &["create"])]}),
    ];
    let snapshot = roles.clone();
    for r in &mut roles {
        if let Some(rules) = aggregate(r, &snapshot) {
            r["rules"] = json!(rules);
        }
        r["apiVersion"] = json!(format!("{GROUP}/v1"));
        r["kind"] = json!("ClusterRole");
        r["metadata"]["annotations"] =
            json!({"rbac.authorization.kubernetes.io/autoupdate": "true"});
        let labels = r["metadata"]
            .as_object_mut()
            .and_then(|m| {
                m.entry("labels")
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
                    .cloned()
            })
            .unwrap_or_default();
        let mut labels = labels;
        labels.insert("kubernetes.io/bootstrapping".into(), json!("rbac-defaults"));
        r["metadata"]["labels"] = Value::Object(labels);
    }
    roles
}

fn default_bindings() -> Vec<Value> {
    let b = |name: &str, role: &str, subjects: Value| {
        json!({
            "apiVersion": format!("{GROUP}/v1"),
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name, "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
            "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role},
            "subjects": subjects,
        })
    };
    let group = |g: &str| json!({"apiGroup": GROUP, "kind": "Group", "name": g});
    vec![
        b("cluster-admin", "cluster-admin", json!([group(MASTERS)])),
        b(
            "system:discovery",
            "system:discovery",
            json!([group("system:authenticated")]),
        ),
        b(
            "system:basic-user",
            "system:basic-user",
            json!([group("system:authenticated")]),
        ),
        b(
            "system:public-info-viewer",
            "system:public-info-viewer",
            json!([
                group("system:authenticated"),
                group("system:unauthenticated")
            ]),
        ),
        b(
            "system:service-account-issuer-discovery",
            "system:service-account-issuer-discovery",
            json!([group("system:serviceaccounts")]),
        ),
        b(
            "system:node-bootstrapper",
            "system:node-bootstrapper",
            json!([group("system:bootstrappers")]),
        ),
        b("system:node", "system:node", json!([])),
        // keel's read-only tokens.
        b(
            "keel:read-only",
            "view",
            json!([{"apiGroup": GROUP, "kind": "User", "name": READ_ONLY_USER}]),
        ),
    ]
}

/// A CRD keel provides itself (annotated `keel.dev/provided-by`) whose
/// stored schema leaves `spec` open, where this binary types it (a server
/// from before the kind's schema was written), gets this binary's spec.
/// Argo's own CRDs applied over keel's are typed and left alone.
async fn type_open_crd(
    state: &std::sync::Arc<State>,
    r: &'static resources::Resource,
    name: &str,
    obj: &Value,
) -> Result<(), crate::http::Fail> {
    const BY: &str = "/metadata/annotations/keel.dev~1provided-by";
    const OPEN: &str = "/spec/versions/0/schema/openAPIV3Schema/properties/spec/x-kubernetes-preserve-unknown-fields";
    if obj.pointer(BY).is_none() || obj.pointer(OPEN) == Some(&json!(true)) {
        return Ok(());
    }
    let mut want = obj.clone();
    crate::crd::apply_defaults(&mut want);
    crate::handlers::update_object(state, r, None, name, None, "keel", |cur| {
        (cur.pointer(BY) == want.pointer(BY) && cur.pointer(OPEN) == Some(&json!(true))).then(
            || {
                let mut v = cur.clone();
                v["spec"] = want["spec"].clone();
                v
            },
        )
    })
    .await?;
    Ok(())
}

/// Creates the default roles and bindings that are missing.
pub(crate) async fn bootstrap(
    state: &std::sync::Arc<State>,
    builtins: crate::http::Builtins,
) -> Result<(), crate::http::Fail> {
    let [crs, crbs, _, _] = kinds();
    let pcs = resources::find("scheduling.k8s.io", "v1", "priorityclasses").expect("served");
    for (r, objs) in [
        (crs, default_cluster_roles()),
        (crbs, default_bindings()),
        (pcs, crate::admission::system_priority_classes()),
    ]
    .into_iter()
    .chain(crate::ingress_defaults::objects())
    .chain(
        builtins
            .argo_rollouts
            .then(crate::argo_defaults::objects)
            .into_iter()
            .flatten(),
    ) {
        for obj in objs {
            let name = meta_name(&obj);
            if state
                .store
                .get(&r.key(None, &name))
                .await
                .ok()
                .flatten()
                .is_some()
            {
                type_open_crd(state, r, &name, &obj).await?;
                continue;
            }
            match crate::handlers::create(state, r, obj, false, None).await {
                Ok(_) => {}
                Err(f) if f.reason == "AlreadyExists" => {}
                Err(f) => return Err(f),
            }
        }
    }
    // Servers from before the Node authorizer bound system:node to every
    // node; an unmodified (autoupdate) binding is brought to Kubernetes'.
    crate::handlers::update_object(state, crbs, None, "system:node", None, "keel", |b| {
        let auto = b.pointer("/metadata/annotations/rbac.authorization.kubernetes.io~1autoupdate")
            == Some(&json!("true"));
        let bound = b["subjects"].as_array().is_some_and(|s| !s.is_empty());
        (auto && bound).then(|| {
            let mut b = b.clone();
            b["subjects"] = json!([]);
            b
        })
    })
    .await?;
    state
        .rbac
        .reload(state)
        .await
        .map_err(crate::http::Fail::internal)
}

/// apimachinery's `NotSupported` cause.
fn not_supported(field: &str, v: &str, supported: &[&str]) -> Cause {
    let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
    Cause {
        reason: "FieldValueNotSupported",
        field: field.into(),
        message: format!(
            "Unsupported value: {v:?}: supported values: {}",
            list.join(", ")
        ),
    }
}

fn required(field: &str, detail: &str) -> Cause {
    Cause {
        reason: "FieldValueRequired",
        field: field.into(),
        message: if detail.is_empty() {
            "Required value".into()
        } else {
            format!("Required value: {detail}")
        },
    }
}

fn str_at<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or_default()
}

/// Subjects' `apiGroup` defaults (`SetDefaults_Subject`).
pub fn apply_defaults(obj: &mut Value) {
    for s in obj
        .get_mut("subjects")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if s.get("apiGroup").is_none_or(|g| g.as_str() == Some("")) {
            match s.get("kind").and_then(Value::as_str) {
                Some("User" | "Group") => s["apiGroup"] = json!(GROUP),
                Some("ServiceAccount") => s["apiGroup"] = json!(""),
                _ => {}
            }
        }
    }
}

/// RBAC's own validation (`pkg/apis/rbac/validation`), with its messages.
pub fn validate(kind: &str, obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    match kind {
        "Role" | "ClusterRole" => {
            for (i, r) in obj
                .get("rules")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let f = |x: &str| format!("rules[{i}].{x}");
                if strs(r, "verbs").is_empty() {
                    out.push(required(
                        &f("verbs"),
                        "verbs must contain at least one value",
                    ));
                }
                let urls = strs(r, "nonResourceURLs");
                if !urls.is_empty() {
                    let shown = format!("{urls:?}").replace(',', "");
                    if kind == "Role" {
                        out.push(Cause {
                            reason: "FieldValueInvalid",
                            field: f("nonResourceURLs"),
                            message: format!("Invalid value: {shown}: namespaced rules cannot apply to non-resource URLs"),
                        });
                    }
                    if !strs(r, "apiGroups").is_empty()
                        || !strs(r, "resources").is_empty()
                        || !strs(r, "resourceNames").is_empty()
                    {
                        out.push(Cause {
                            reason: "FieldValueInvalid",
                            field: f("nonResourceURLs"),
                            message: format!("Invalid value: {shown}: rules cannot apply to both regular resources and non-resource URLs"),
                        });
                    }
                    continue;
                }
                if r.get("apiGroups")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty)
                {
                    out.push(required(
                        &f("apiGroups"),
                        "resource rules must supply at least one api group",
                    ));
                }
                if strs(r, "resources").is_empty() {
                    out.push(required(
                        &f("resources"),
                        "resource rules must supply at least one resource",
                    ));
                }
            }
        }
        "RoleBinding" | "ClusterRoleBinding" => {
            let group = str_at(obj, "/roleRef/apiGroup");
            if group != GROUP {
                out.push(not_supported("roleRef.apiGroup", group, &[GROUP]));
            }
            let role_kind = str_at(obj, "/roleRef/kind");
            let kinds: &[&str] = if kind == "RoleBinding" {
                &["Role", "ClusterRole"]
            } else {
                &["ClusterRole"]
            };
            if !kinds.contains(&role_kind) {
                out.push(not_supported("roleRef.kind", role_kind, kinds));
            }
            if str_at(obj, "/roleRef/name").is_empty() {
                out.push(required("roleRef.name", ""));
            }
            for (i, s) in obj
                .get("subjects")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let f = |x: &str| format!("subjects[{i}].{x}");
                if str_at(s, "/name").is_empty() {
                    out.push(required(&f("name"), ""));
                }
                let api_group = str_at(s, "/apiGroup");
                match str_at(s, "/kind") {
                    "ServiceAccount" => {
                        if !api_group.is_empty() {
                            out.push(not_supported(&f("apiGroup"), api_group, &[""]));
                        }
                        if kind == "ClusterRoleBinding" && str_at(s, "/namespace").is_empty() {
                            out.push(required(&f("namespace"), ""));
                        }
                    }
                    "User" | "Group" => {
                        if api_group != GROUP {
                            out.push(not_supported(&f("apiGroup"), api_group, &[GROUP]));
                        }
                    }
                    other => out.push(not_supported(
                        &f("kind"),
                        other,
                        &["ServiceAccount", "User", "Group"],
                    )),
                }
            }
        }
        _ => {}
    }
    out
}

/// A binding's role reference never changes.
pub fn validate_update(kind: &str, old: &Value, new: &Value) -> Vec<Cause> {
    if matches!(kind, "RoleBinding" | "ClusterRoleBinding")
        && old.get("roleRef") != new.get("roleRef")
    {
        let shown =
            serde_json::to_string(new.get("roleRef").unwrap_or(&Value::Null)).unwrap_or_default();
        return vec![Cause {
            reason: "FieldValueInvalid",
            field: "roleRef".into(),
            message: format!("Invalid value: {shown}: cannot change roleRef"),
        }];
    }
    Vec::new()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn attrs(
        verb: &str,
        group: &str,
        res: &str,
        sub: &str,
        ns: &str,
        name: &str,
    ) -> Attributes {
        Attributes {
            verb: verb.into(),
            group: group.into(),
            resource: res.into(),
            subresource: sub.into(),
            namespace: ns.into(),
            name: name.into(),
            path: None,
        }
    }

    #[test]
    fn rules_match_like_kubernetes() {
        let r = rule(&[""], &["pods", "pods/log"], &["get", "list"]);
        assert!(rule_allows(&r, &attrs("get", "", "pods", "", "a", "p")));
        assert!(rule_allows(&r, &attrs("get", "", "pods", "log", "a", "p")));
        assert!(!rule_allows(
            &r,
            &attrs("get", "", "pods", "exec", "a", "p")
        ));
        assert!(!rule_allows(&r, &attrs("create", "", "pods", "", "a", "p")));
        assert!(!rule_allows(
            &r,
            &attrs("get", "apps", "pods", "", "a", "p")
        ));
        let star = rule(&["*"], &["*/scale"], &["*"]);
        assert!(rule_allows(
            &star,
            &attrs("update", "apps", "deployments", "scale", "", "")
        ));
        assert!(!rule_allows(
            &star,
            &attrs("update", "apps", "deployments", "", "", "")
        ));
        let named = json!({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"], "resourceNames": ["one"]});
        assert!(rule_allows(
            &named,
            &attrs("get", "", "configmaps", "", "a", "one")
        ));
        assert!(!rule_allows(
            &named,
            &attrs("get", "", "configmaps", "", "a", "two")
        ));
        let urls = url_rule(&["/apis/*", "/version"], &["get"]);
        let path = |p: &str| Attributes {
            verb: "get".into(),
            path: Some(p.into()),
            ..Attributes::default()
        };
        assert!(rule_allows(&urls, &path("/apis/apps/v1")));
        assert!(rule_allows(&urls, &path("/version")));
        assert!(!rule_allows(&urls, &path("/healthz")));
    }

    #[test]
    fn default_roles_aggregate_and_bind() {
        let roles = default_cluster_roles();
        let by = |n: &str| roles.iter().find(|r| meta_name(r) == n).unwrap();
        let view = by("view")["rules"].as_array().unwrap().clone();
        let edit = by("edit")["rules"].as_array().unwrap().clone();
        let admin = by("admin")["rules"].as_array().unwrap().clone();
        assert!(!view.is_empty() && edit.len() > view.len() && admin.len() > edit.len());
        let list_pods = attrs("list", "", "pods", "", "a", "");
        let create_pods = attrs("create", "", "pods", "", "a", "");
        let read_secret = attrs("get", "", "secrets", "", "a", "s");
        assert!(view.iter().any(|r| rule_allows(r, &list_pods)));
        assert!(!view.iter().any(|r| rule_allows(r, &create_pods)));
        assert!(!view.iter().any(|r| rule_allows(r, &read_secret)));
        assert!(edit.iter().any(|r| rule_allows(r, &create_pods)));
        assert!(edit.iter().any(|r| rule_allows(r, &read_secret)));
        let mut idx = Index::default();
        for r in &roles {
            idx.cluster_roles.insert(meta_name(r), r.clone());
        }
        idx.cluster_bindings = default_bindings();
        let ro = User::new(READ_ONLY_USER, &["system:authenticated"]);
        assert!(!idx.rules_for(&ro, "a").is_empty());
        let sa = User::new(
            "system:serviceaccount:a:bot",
            &["system:serviceaccounts", "system:authenticated"],
        );
        let rb = json!({"metadata": {"name": "rb", "namespace": "a"}, "roleRef": {"kind": "ClusterRole", "name": "view"}, "subjects": [{"kind": "ServiceAccount", "name": "bot"}]});
        idx.bindings.insert("a".into(), vec![rb]);
        assert!(
            idx.rules_for(&sa, "a")
                .iter()
                .any(|(r, _)| rule_allows(r, &list_pods))
        );
        assert!(
            !idx.rules_for(&sa, "b")
                .iter()
                .any(|(r, _)| rule_allows(r, &attrs("list", "", "pods", "", "b", "")))
        );
    }
}
