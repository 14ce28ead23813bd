//! hashicorp/kubernetes's typed resources: `kubernetes_namespace`,
//! `kubernetes_config_map`, `kubernetes_secret`, `kubernetes_deployment`,
//! `kubernetes_service` and their `_v1` names, with the provider's block
//! structure (`metadata {}`, `spec {}`, repeated `container {}`, `port {}`),
//! defaults and force-new rules for the fields users write most. The
//! configuration is turned into the object (`snake_case` blocks to the API's
//! camelCase fields, repeated blocks to arrays) and applied through
//! `kubernetes_manifest`'s client (server-side apply, field manager
//! `Terraform`); what the server decides (`uid`, `resource_version`,
//! `cluster_ip`, `node_port`, …) is read back into state.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use keel_hcl::{Type, Value};
use serde_json::Value as J;

use super::kubernetes::Manifest;
use super::{Attr, Nesting, OpCtx, Planned, ResourceType, Schema, get, get_bool, get_str, set};

/// Repeated blocks and the API's array field for them; any other block is one object.
const REPEATED: &[(&str, &str)] = &[
    ("container", "containers"),
    ("init_container", "initContainers"),
    ("port", "ports"),
    ("env", "env"),
    ("volume", "volumes"),
    ("volume_mount", "volumeMounts"),
    ("match_expressions", "matchExpressions"),
    ("toleration", "tolerations"),
    ("items", "items"),
];

/// Attributes only the provider reads (never sent to the API).
const PROVIDER_ONLY: &[&str] = &[
    "wait_for_rollout",
    "wait_for_default_service_account",
    "wait_for_load_balancer",
    "wait_for_service_account_token",
];

/// The API's field name: camelCase, `IP`/`IPs` as Kubernetes spells them.
fn json_name(k: &str) -> String {
    let mut out = String::new();
    for (i, w) in k.split('_').enumerate() {
        if i == 0 {
            out.push_str(w);
        } else if w == "ip" {
            out.push_str("IP");
        } else if w == "ips" {
            out.push_str("IPs");
        } else {
            let mut c = w.chars();
            if let Some(f) = c.next() {
                out.extend(f.to_uppercase());
                out.push_str(c.as_str());
            }
        }
    }
    out
}

fn repeated(k: &str) -> Option<&'static str> {
    REPEATED.iter().find(|(b, _)| *b == k).map(|(_, j)| *j)
}

/// Int-or-string fields (and `replicas`, a string in the provider's schema).
fn int_or_string(k: &str) -> bool {
    matches!(
        k,
        "target_port" | "max_surge" | "max_unavailable" | "replicas"
    )
}

fn attr_json(k: &str, v: &Value) -> J {
    let j = keel_hcl::render::to_json(&v.unmark_deep());
    if int_or_string(k)
        && let Some(n) = j.as_str().and_then(|s| s.parse::<i64>().ok())
    {
        return J::from(n);
    }
    j
}

/// The object's JSON for a value of `schema`.
fn to_json(schema: &Schema, v: &Value) -> serde_json::Map<String, J> {
    let mut out = serde_json::Map::new();
    for (k, a) in &schema.attrs {
        if (a.computed && !a.optional) || PROVIDER_ONLY.contains(&k.as_str()) || k == "id" {
            continue;
        }
        if let Some(x) = get(v, k).filter(|x| x.is_wholly_known()) {
            out.insert(json_name(k), attr_json(k, x));
        }
    }
    for (k, b) in &schema.blocks {
        let items = get(v, k).and_then(Value::as_seq).unwrap_or_default();
        if items.is_empty() {
            continue;
        }
        match repeated(k) {
            Some(field) => {
                let arr = items
                    .iter()
                    .map(|x| J::Object(to_json(&b.block, x)))
                    .collect();
                out.insert(field.to_string(), J::Array(arr));
            }
            None => {
                out.insert(json_name(k), J::Object(to_json(&b.block, &items[0])));
            }
        }
    }
    out
}

/// A JSON value as an attribute of type `t` (numbers as strings where the
/// provider's schema has strings).
fn from_json(j: &J, t: &Type) -> Value {
    match (t, j) {
        (_, J::Null) => Value::null(t.clone()),
        (Type::String, J::String(s)) => Value::string(s.clone()),
        (Type::String, J::Number(n)) => Value::string(n.to_string()),
        (Type::String, J::Bool(b)) => Value::string(b.to_string()),
        (Type::Number, J::Number(n)) => n
            .as_i64()
            .map_or_else(|| Value::null(t.clone()), Value::int),
        (Type::Bool, J::Bool(b)) => Value::bool(*b),
        (Type::Map(e), J::Object(m)) => Value::map(
            (**e).clone(),
            m.iter()
                .map(|(k, x)| (k.clone(), from_json(x, e)))
                .collect(),
        ),
        (Type::List(e), J::Array(a)) => {
            Value::list((**e).clone(), a.iter().map(|x| from_json(x, e)).collect())
        }
        (Type::Set(e), J::Array(a)) => {
            Value::set((**e).clone(), a.iter().map(|x| from_json(x, e)).collect())
        }
        _ => Value::null(t.clone()),
    }
}

/// `v` with what the server decided filled in: unknown attributes, and
/// computed blocks the configuration left out.
fn fill(schema: &Schema, v: &Value, j: &J) -> Value {
    let mut out = v.clone();
    for (k, a) in &schema.attrs {
        let cur = v.as_map().and_then(|m| m.get(k));
        let unset = cur.is_none_or(|x| !x.is_known() || (x.is_null() && a.computed));
        if a.computed && unset && !PROVIDER_ONLY.contains(&k.as_str()) && k != "id" {
            let x = from_json(&j[json_name(k)], &a.ty).mark(a.sensitive);
            set(&mut out, k, x);
        }
    }
    for (k, b) in &schema.blocks {
        let t = b.block.implied_type();
        let field = repeated(k).map_or_else(|| json_name(k), str::to_string);
        let jv = &j[field.as_str()];
        let jitems: Vec<&J> = match jv {
            J::Array(a) => a.iter().collect(),
            J::Object(_) => vec![jv],
            _ => Vec::new(),
        };
        let items = v
            .as_map()
            .and_then(|m| m.get(k))
            .and_then(Value::as_seq)
            .unwrap_or_default();
        let filled: Vec<Value> = if items.is_empty() && b.computed {
            jitems
                .iter()
                .map(|x| fill(&b.block, &unknowns(&b.block), x))
                .collect()
        } else {
            items
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    jitems
                        .get(i)
                        .map_or_else(|| x.clone(), |jx| fill(&b.block, x, jx))
                })
                .collect()
        };
        set(&mut out, k, Value::list(t, filled));
    }
    out
}

/// An object of `schema` with every attribute unknown and no blocks.
fn unknowns(schema: &Schema) -> Value {
    let mut m: BTreeMap<String, Value> = schema
        .attrs
        .iter()
        .map(|(k, a)| (k.clone(), Value::unknown(a.ty.clone())))
        .collect();
    for (k, b) in &schema.blocks {
        m.insert(k.clone(), Value::list(b.block.implied_type(), Vec::new()));
    }
    Value::object(m)
}

struct Typed {
    schema: Schema,
    api_version: &'static str,
    kind: &'static str,
    namespaced: bool,
    manifest: Manifest,
}

impl Typed {
    /// The object for the API: `apiVersion`, `kind` and the converted configuration.
    fn body(&self, v: &Value) -> J {
        let mut m = to_json(&self.schema, v);
        if self.kind == "Secret" {
            // The provider takes plain strings in `data` and base64 in `binary_data`.
            let mut data = serde_json::Map::new();
            if let Some(J::Object(d)) = m.remove("data") {
                for (k, x) in d {
                    let s = x.as_str().unwrap_or_default();
                    data.insert(
                        k,
                        J::from(base64::engine::general_purpose::STANDARD.encode(s)),
                    );
                }
            }
            if let Some(J::Object(d)) = m.remove("binaryData") {
                data.extend(d);
            }
            if !data.is_empty() {
                m.insert("data".into(), J::Object(data));
            }
        }
        if let Some(J::Object(meta)) = m.get_mut("metadata") {
            // `namespace` defaults to "default" in the schema; cluster kinds have none.
            if !self.namespaced {
                meta.remove("namespace");
            }
        }
        m.insert("apiVersion".into(), J::from(self.api_version));
        m.insert("kind".into(), J::from(self.kind));
        J::Object(m)
    }

    fn as_manifest(&self, v: &Value) -> Value {
        Value::object(BTreeMap::from([
            (
                "manifest".to_string(),
                keel_hcl::json::json_to_value(&self.body(v)),
            ),
            ("object".to_string(), Value::dyn_null()),
        ]))
    }

    fn id(&self, v: &Value) -> String {
        let meta = get(v, "metadata")
            .and_then(Value::as_seq)
            .and_then(|s| s.first())
            .cloned()
            .unwrap_or_else(Value::dyn_null);
        let name = get_str(&meta, "name").unwrap_or_default();
        if self.namespaced {
            format!(
                "{}/{name}",
                get_str(&meta, "namespace").unwrap_or("default")
            )
        } else {
            name.to_string()
        }
    }
}

/// Whether a force-new attribute changed anywhere in the nested blocks of `schema`.
fn nested_replace(schema: &Schema, new: &Value, old: &Value) -> bool {
    for (k, a) in &schema.attrs {
        if !a.force_new {
            continue;
        }
        let n = new.as_map().and_then(|m| m.get(k)).cloned();
        let o = old.as_map().and_then(|m| m.get(k)).cloned();
        if let (Some(n), Some(o)) = (n, o)
            && n.is_known()
            && n.equals(&o) != Some(true)
        {
            return true;
        }
    }
    schema.blocks.iter().any(|(k, b)| {
        let ns = get(new, k).and_then(Value::as_seq).unwrap_or_default();
        let os = get(old, k).and_then(Value::as_seq).unwrap_or_default();
        ns.iter()
            .zip(os)
            .any(|(n, o)| nested_replace(&b.block, n, o))
    })
}

impl ResourceType for Typed {
    fn schema(&self) -> &Schema {
        &self.schema
    }
    fn modify_plan(
        &self,
        prior: Option<&Value>,
        _config: &Value,
        mut p: Planned,
    ) -> Result<Planned, String> {
        let Some(prior) = prior else {
            return Ok(p);
        };
        for (k, b) in &self.schema.blocks {
            let ns = get(&p.value, k).and_then(Value::as_seq).unwrap_or_default();
            let os = get(prior, k).and_then(Value::as_seq).unwrap_or_default();
            if ns
                .iter()
                .zip(os)
                .any(|(n, o)| nested_replace(&b.block, n, o))
            {
                p.requires_replace.push(k.clone());
            }
        }
        Ok(p)
    }
    fn apply(&self, _prior: Option<&Value>, planned: &Value, ctx: &OpCtx) -> Result<Value, String> {
        let m = self.manifest.apply(None, &self.as_manifest(planned), ctx)?;
        let obj =
            get(&m, "object").map_or(J::Null, |o| keel_hcl::render::to_json(&o.unmark_deep()));
        let mut out = fill(&self.schema, planned, &obj);
        let id = self.id(&out);
        set(&mut out, "id", Value::string(id));
        if self.kind == "Deployment" && get_bool(planned, "wait_for_rollout") != Some(false) {
            wait_rollout(&self.as_manifest(planned), ctx)?;
        }
        Ok(out)
    }
    fn read(&self, prior: &Value, ctx: &OpCtx) -> Result<Option<Value>, String> {
        Ok(self
            .manifest
            .read(&self.as_manifest(prior), ctx)?
            .map(|_| prior.clone()))
    }
    fn delete(&self, prior: &Value, ctx: &OpCtx) -> Result<(), String> {
        self.manifest.delete(&self.as_manifest(prior), ctx)
    }
}

/// As the provider's `wait_for_rollout`: every replica updated and
/// available, within its 10-minute create timeout.
fn wait_rollout(manifest: &Value, ctx: &OpCtx) -> Result<(), String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_mins(10);
    loop {
        let obj = Manifest::object(manifest, ctx)?;
        let n = |p: &str| obj.pointer(p).and_then(J::as_i64).unwrap_or(0);
        let want = obj
            .pointer("/spec/replicas")
            .and_then(J::as_i64)
            .unwrap_or(1);
        if n("/status/observedGeneration") >= n("/metadata/generation")
            && n("/status/updatedReplicas") == want
            && n("/status/availableReplicas") == want
        {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(format!(
                "waiting for rollout: {} of {want} replicas available after 10 minutes (set wait_for_rollout = false where no nodes run pods)",
                n("/status/availableReplicas")
            ));
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

fn s(x: &str) -> Value {
    Value::string(x)
}

fn strmap() -> Type {
    Type::map(Type::String)
}

fn metadata(namespaced: bool) -> Schema {
    let mut m = Schema::default()
        .attr("annotations", Attr::optional(strmap()))
        .attr("labels", Attr::optional(strmap()))
        .attr("name", Attr::opt_computed(Type::String).force_new())
        .attr("generate_name", Attr::optional(Type::String).force_new())
        .attr("generation", Attr::computed(Type::Number))
        .attr("resource_version", Attr::computed(Type::String))
        .attr("uid", Attr::computed(Type::String));
    if namespaced {
        m = m.attr(
            "namespace",
            Attr::optional(Type::String)
                .force_new()
                .with_default(s("default")),
        );
    }
    m
}

fn template_metadata() -> Schema {
    Schema::default()
        .attr("annotations", Attr::optional(strmap()))
        .attr("labels", Attr::optional(strmap()))
        .attr("name", Attr::optional(Type::String))
}

fn container() -> Schema {
    let list = || Type::list(Type::String);
    Schema::default()
        .attr("name", Attr::required(Type::String))
        .attr("image", Attr::optional(Type::String))
        .attr("command", Attr::optional(list()))
        .attr("args", Attr::optional(list()))
        .attr("working_dir", Attr::optional(Type::String))
        .attr("image_pull_policy", Attr::opt_computed(Type::String))
        .block(
            "env",
            Nesting::List,
            Schema::default()
                .attr("name", Attr::required(Type::String))
                .attr("value", Attr::optional(Type::String)),
        )
        .block(
            "port",
            Nesting::List,
            Schema::default()
                .attr("container_port", Attr::required(Type::Number))
                .attr("name", Attr::optional(Type::String))
                .attr(
                    "protocol",
                    Attr::optional(Type::String).with_default(s("TCP")),
                ),
        )
        .block(
            "resources",
            Nesting::List,
            Schema::default()
                .attr("limits", Attr::opt_computed(strmap()))
                .attr("requests", Attr::opt_computed(strmap())),
        )
        .block(
            "volume_mount",
            Nesting::List,
            Schema::default()
                .attr("name", Attr::required(Type::String))
                .attr("mount_path", Attr::required(Type::String))
                .attr("sub_path", Attr::optional(Type::String))
                .attr(
                    "read_only",
                    Attr::optional(Type::Bool).with_default(Value::bool(false)),
                ),
        )
}

fn pod_spec() -> Schema {
    Schema::default()
        .attr("node_selector", Attr::optional(strmap()))
        .attr(
            "restart_policy",
            Attr::optional(Type::String).with_default(s("Always")),
        )
        .attr("service_account_name", Attr::opt_computed(Type::String))
        .attr(
            "termination_grace_period_seconds",
            Attr::optional(Type::Number).with_default(Value::int(30)),
        )
        .attr(
            "dns_policy",
            Attr::optional(Type::String).with_default(s("ClusterFirst")),
        )
        .attr(
            "host_network",
            Attr::optional(Type::Bool).with_default(Value::bool(false)),
        )
        .block("container", Nesting::List, container())
        .block("init_container", Nesting::List, container())
        .block(
            "volume",
            Nesting::List,
            Schema::default()
                .attr("name", Attr::required(Type::String))
                .block(
                    "config_map",
                    Nesting::List,
                    Schema::default().attr("name", Attr::optional(Type::String)),
                )
                .block(
                    "secret",
                    Nesting::List,
                    Schema::default().attr("secret_name", Attr::optional(Type::String)),
                )
                .block(
                    "empty_dir",
                    Nesting::List,
                    Schema::default()
                        .attr("medium", Attr::optional(Type::String).with_default(s("")))
                        .attr("size_limit", Attr::optional(Type::String)),
                ),
        )
}

fn deployment() -> Schema {
    let selector = Schema::default().attr("match_labels", Attr::optional(strmap()));
    let strategy = Schema::default()
        .attr("type", Attr::opt_computed(Type::String))
        .block(
            "rolling_update",
            Nesting::List,
            Schema::default()
                .attr(
                    "max_surge",
                    Attr::optional(Type::String).with_default(s("25%")),
                )
                .attr(
                    "max_unavailable",
                    Attr::optional(Type::String).with_default(s("25%")),
                ),
        );
    let template = Schema::default()
        .block("metadata", Nesting::List, template_metadata())
        .block("spec", Nesting::List, pod_spec());
    let mut spec = Schema::default()
        .attr("replicas", Attr::opt_computed(Type::String))
        .attr(
            "min_ready_seconds",
            Attr::optional(Type::Number).with_default(Value::int(0)),
        )
        .attr(
            "paused",
            Attr::optional(Type::Bool).with_default(Value::bool(false)),
        )
        .attr(
            "progress_deadline_seconds",
            Attr::optional(Type::Number).with_default(Value::int(600)),
        )
        .attr(
            "revision_history_limit",
            Attr::optional(Type::Number).with_default(Value::int(10)),
        )
        .block_new("selector", Nesting::List, selector, false)
        .block("strategy", Nesting::List, strategy)
        .block("template", Nesting::List, template);
    if let Some(b) = spec.blocks.get_mut("strategy") {
        b.computed = true;
    }
    Schema::default()
        .attr("id", Attr::computed(Type::String))
        .attr(
            "wait_for_rollout",
            Attr::optional(Type::Bool).with_default(Value::bool(true)),
        )
        .block("metadata", Nesting::List, metadata(true))
        .block("spec", Nesting::List, spec)
}

fn service() -> Schema {
    let port = Schema::default()
        .attr("name", Attr::optional(Type::String))
        .attr("port", Attr::required(Type::Number))
        .attr("target_port", Attr::opt_computed(Type::String))
        .attr("node_port", Attr::opt_computed(Type::Number))
        .attr(
            "protocol",
            Attr::optional(Type::String).with_default(s("TCP")),
        )
        .attr("app_protocol", Attr::optional(Type::String));
    let spec = Schema::default()
        .attr("selector", Attr::optional(strmap()))
        .attr(
            "type",
            Attr::optional(Type::String).with_default(s("ClusterIP")),
        )
        .attr("cluster_ip", Attr::opt_computed(Type::String).force_new())
        .attr("external_name", Attr::optional(Type::String))
        .attr(
            "session_affinity",
            Attr::optional(Type::String).with_default(s("None")),
        )
        .attr(
            "publish_not_ready_addresses",
            Attr::optional(Type::Bool).with_default(Value::bool(false)),
        )
        .block("port", Nesting::List, port);
    Schema::default()
        .attr("id", Attr::computed(Type::String))
        .attr(
            "wait_for_load_balancer",
            Attr::optional(Type::Bool).with_default(Value::bool(true)),
        )
        .block("metadata", Nesting::List, metadata(true))
        .block("spec", Nesting::List, spec)
}

fn config_map() -> Schema {
    Schema::default()
        .attr("id", Attr::computed(Type::String))
        .attr("data", Attr::optional(strmap()))
        .attr("binary_data", Attr::optional(strmap()))
        .attr("immutable", Attr::optional(Type::Bool))
        .block("metadata", Nesting::List, metadata(true))
}

fn secret() -> Schema {
    Schema::default()
        .attr("id", Attr::computed(Type::String))
        .attr("data", Attr::optional(strmap()).sensitive())
        .attr("binary_data", Attr::optional(strmap()).sensitive())
        .attr(
            "type",
            Attr::optional(Type::String)
                .force_new()
                .with_default(s("Opaque")),
        )
        .attr("immutable", Attr::optional(Type::Bool))
        .attr(
            "wait_for_service_account_token",
            Attr::optional(Type::Bool).with_default(Value::bool(true)),
        )
        .block("metadata", Nesting::List, metadata(true))
}

fn namespace() -> Schema {
    Schema::default()
        .attr("id", Attr::computed(Type::String))
        .attr(
            "wait_for_default_service_account",
            Attr::optional(Type::Bool).with_default(Value::bool(false)),
        )
        .block("metadata", Nesting::List, metadata(false))
}

/// Adds the typed resources, each under its name and its `_v1` name.
pub(super) fn register(resources: &mut BTreeMap<&'static str, Arc<dyn ResourceType>>) {
    let kinds: [(
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        bool,
        Schema,
    ); 5] = [
        (
            "kubernetes_namespace",
            "kubernetes_namespace_v1",
            "v1",
            "Namespace",
            false,
            namespace(),
        ),
        (
            "kubernetes_config_map",
            "kubernetes_config_map_v1",
            "v1",
            "ConfigMap",
            true,
            config_map(),
        ),
        (
            "kubernetes_secret",
            "kubernetes_secret_v1",
            "v1",
            "Secret",
            true,
            secret(),
        ),
        (
            "kubernetes_deployment",
            "kubernetes_deployment_v1",
            "apps/v1",
            "Deployment",
            true,
            deployment(),
        ),
        (
            "kubernetes_service",
            "kubernetes_service_v1",
            "v1",
            "Service",
            true,
            service(),
        ),
    ];
    for (name, v1, api_version, kind, namespaced, schema) in kinds {
        let t: Arc<dyn ResourceType> = Arc::new(Typed {
            schema,
            api_version,
            kind,
            namespaced,
            manifest: Manifest::new(),
        });
        resources.insert(name, t.clone());
        resources.insert(v1, t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_as_the_api_spells_them() {
        assert_eq!(json_name("cluster_ip"), "clusterIP");
        assert_eq!(json_name("external_ips"), "externalIPs");
        assert_eq!(
            json_name("termination_grace_period_seconds"),
            "terminationGracePeriodSeconds"
        );
        assert_eq!(json_name("data"), "data");
    }

    #[test]
    fn blocks_become_objects_and_arrays() {
        let sch = deployment();
        let v = keel_hcl::json::json_to_value(&serde_json::json!({
            "metadata": [{"name": "web", "namespace": "default"}],
            "spec": [{
                "replicas": "2",
                "selector": [{"match_labels": {"app": "web"}}],
                "template": [{
                    "metadata": [{"labels": {"app": "web"}}],
                    "spec": [{"container": [
                        {"name": "c", "image": "busybox", "port": [{"container_port": 80}]}
                    ]}]
                }]
            }]
        }));
        let j = J::Object(to_json(&sch, &v));
        assert_eq!(j["spec"]["replicas"], 2);
        assert_eq!(j["spec"]["selector"]["matchLabels"]["app"], "web");
        assert_eq!(
            j["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
            80
        );
        assert_eq!(j["metadata"]["name"], "web");
    }
}
