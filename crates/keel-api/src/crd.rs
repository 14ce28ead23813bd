//! `CustomResourceDefinitions`: a CRD is validated as apiextensions validates
//! it (names, scope, one storage version, structural schemas), becomes
//! `NamesAccepted` and `Established`, and its resources are served under
//! their group like built-in ones (discovery with short names and categories,
//! namespaced or cluster scope, `status` and `scale` subresources, printer
//! columns in `kubectl get`). Objects are checked against the version's
//! structural `OpenAPI` v3 schema: unknown fields pruned (unless
//! `x-kubernetes-preserve-unknown-fields`), defaults applied, then types,
//! required fields, enums, patterns, bounds, lengths, item counts, nullable
//! and int-or-string validated with apiextensions' messages, every failing
//! field named. Deleting a CRD deletes its objects (the
//! `customresourcecleanup.apiextensions.k8s.io` finalizer). Versions share
//! one storage key; conversion is strategy `None` (only `apiVersion` changes).
//! `x-kubernetes-validations` (CEL) rules are evaluated by `cel::rules`.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock, RwLock};

use serde_json::{Value, json};

use crate::State;
use crate::resources::{Resource, Verbs};
use crate::validate::Cause;

pub const GROUP: &str = "apiextensions.k8s.io";
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// One served version of a custom resource.
#[derive(Debug, Clone)]
pub struct Version {
    pub resource: &'static Resource,
    pub schema: Value,
    /// `additionalPrinterColumns`: name, type, JSON path, priority.
    pub columns: Vec<(String, String, String, i64)>,
}

/// Served custom resources, by (group, version, plural).
type Served = BTreeMap<(String, String, String), Arc<Version>>;
static SERVED: LazyLock<RwLock<Served>> = LazyLock::new(RwLock::default);

/// What each server in this process serves (tests run several at once):
/// [`SERVED`] is their union, so one server's sync never hides another's
/// resources (its watchers would skip their events as unknown keys).
static BY_SERVER: LazyLock<RwLock<BTreeMap<usize, Served>>> = LazyLock::new(RwLock::default);

fn server_id(state: &State) -> usize {
    std::ptr::from_ref(state) as usize
}

/// Replaces `state`'s share of [`SERVED`] (or adds to it) and republishes
/// the union.
fn publish(state: &State, versions: Vec<Version>, replace: bool) {
    let Ok(mut by) = BY_SERVER.write() else {
        return;
    };
    let mine = by.entry(server_id(state)).or_default();
    if replace {
        mine.clear();
    }
    for v in versions {
        let r = v.resource;
        mine.insert(
            (
                r.group.to_string(),
                r.version.to_string(),
                r.plural.to_string(),
            ),
            Arc::new(v),
        );
    }
    let union: Served = by
        .values()
        .flat_map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())))
        .collect();
    if let Ok(mut w) = SERVED.write() {
        *w = union;
    }
}

/// Leaked resource entries, reused while their shape stays the same.
static LEAKED: LazyLock<RwLock<Vec<&'static Resource>>> = LazyLock::new(RwLock::default);

fn identity(v: &Value) -> Result<Value, String> {
    Ok(v.clone())
}

fn no_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::Schema::default()
}

fn leak_str(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

fn leak_list(v: Option<&Value>) -> &'static [&'static str] {
    let list: Vec<&'static str> = v
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(leak_str)
        .collect();
    Box::leak(list.into_boxed_slice())
}

/// Served custom resources (for the resource table's lookups).
pub fn resources() -> Vec<&'static Resource> {
    SERVED
        .read()
        .map(|m| m.values().map(|v| v.resource).collect())
        .unwrap_or_default()
}

/// The served version behind `r`, if it is a custom resource.
pub fn version_of(r: &Resource) -> Option<Arc<Version>> {
    SERVED
        .read()
        .ok()?
        .get(&(
            r.group.to_string(),
            r.version.to_string(),
            r.plural.to_string(),
        ))
        .cloned()
}

fn str_at<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or_default()
}

/// The resource entries a CRD serves (one per served version).
fn entries(crd: &Value) -> Vec<Version> {
    let group = str_at(crd, "/spec/group");
    let names = crd.pointer("/spec/names").cloned().unwrap_or(Value::Null);
    let kind = str_at(&names, "/kind");
    let plural = str_at(&names, "/plural");
    if group.is_empty() || kind.is_empty() || plural.is_empty() {
        return Vec::new();
    }
    let singular = match str_at(&names, "/singular") {
        "" => kind.to_lowercase(),
        s => s.to_string(),
    };
    let namespaced = str_at(crd, "/spec/scope") != "Cluster";
    let mut out = Vec::new();
    for v in crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if v.get("served").and_then(Value::as_bool) != Some(true) {
            continue;
        }
        let version = str_at(v, "/name");
        let want = Resource {
            group: leak_str(group),
            version: leak_str(version),
            kind: leak_str(kind),
            plural: leak_str(plural),
            singular: leak_str(&singular),
            namespaced,
            short_names: leak_list(names.get("shortNames")),
            categories: leak_list(names.get("categories")),
            verbs: Verbs::All,
            status: v.pointer("/subresources/status").is_some(),
            scale: v.pointer("/subresources/scale").is_some(),
            has_spec: true,
            typed: identity,
            schema: no_schema,
        };
        let resource = {
            let mut leaked = LEAKED.write().expect("lock");
            let same = |r: &&&Resource| {
                ***r == want
                    && r.kind == want.kind
                    && r.namespaced == want.namespaced
                    && r.short_names == want.short_names
                    && r.categories == want.categories
                    && (r.status, r.scale) == (want.status, want.scale)
            };
            if let Some(r) = leaked.iter().find(same) {
                r
            } else {
                let r: &'static Resource = Box::leak(Box::new(want));
                leaked.push(r);
                r
            }
        };
        let columns = v
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    str_at(c, "/name").to_string(),
                    str_at(c, "/type").to_string(),
                    str_at(c, "/jsonPath").to_string(),
                    c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                )
            })
            .collect();
        out.push(Version {
            resource,
            schema: v
                .pointer("/schema/openAPIV3Schema")
                .cloned()
                .unwrap_or(json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})),
            columns,
        });
    }
    out
}

/// Serves exactly the resources of `crds` (established ones) for `state`.
pub(crate) fn register_all(state: &State, crds: &[Value]) {
    publish(state, crds.iter().flat_map(entries).collect(), true);
}

/// Serves one CRD's resources now (a write just stored it).
pub(crate) fn register(state: &State, crd: &Value) {
    publish(state, entries(crd), false);
}

// ---------- CRD validation ----------

fn cause(reason: &'static str, field: &str, message: String) -> Cause {
    Cause {
        reason,
        field: field.to_string(),
        message,
    }
}

fn not_supported(field: &str, v: &str, ok: &[&str]) -> Cause {
    let list: Vec<String> = ok.iter().map(|s| format!("{s:?}")).collect();
    cause(
        "FieldValueNotSupported",
        field,
        format!(
            "Unsupported value: {v:?}: supported values: {}",
            list.join(", ")
        ),
    )
}

fn required(field: &str, detail: &str) -> Cause {
    let message = if detail.is_empty() {
        "Required value".to_string()
    } else {
        format!("Required value: {detail}")
    };
    cause("FieldValueRequired", field, message)
}

/// Defaults apiextensions sets on a CRD.
pub fn apply_defaults(crd: &mut Value) {
    let kind = str_at(crd, "/spec/names/kind").to_string();
    if let Some(names) = crd
        .pointer_mut("/spec/names")
        .and_then(Value::as_object_mut)
        && !kind.is_empty()
    {
        names
            .entry("singular")
            .or_insert_with(|| json!(kind.to_lowercase()));
        names
            .entry("listKind")
            .or_insert_with(|| json!(format!("{kind}List")));
    }
    if let Some(spec) = crd.get_mut("spec").and_then(Value::as_object_mut) {
        spec.entry("conversion")
            .or_insert_with(|| json!({"strategy": "None"}));
    }
}

/// apiextensions' validation of a CRD (the parts keel enforces).
pub fn validate(crd: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let group = str_at(crd, "/spec/group");
    let plural = str_at(crd, "/spec/names/plural");
    let name = str_at(crd, "/metadata/name");
    if name != format!("{plural}.{group}") {
        out.push(cause(
            "FieldValueInvalid",
            "metadata.name",
            format!("Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    if group.is_empty() {
        out.push(required("spec.group", ""));
    } else if !group.contains('.') {
        out.push(cause(
            "FieldValueInvalid",
            "spec.group",
            format!("Invalid value: {group:?}: should be a domain with at least one dot"),
        ));
    }
    for f in ["plural", "kind"] {
        if str_at(crd, &format!("/spec/names/{f}")).is_empty() {
            out.push(required(&format!("spec.names.{f}"), ""));
        }
    }
    if !plural.is_empty() && !crate::validate::is_dns_label(plural) {
        out.push(cause(
            "FieldValueInvalid",
            "spec.names.plural",
            format!("Invalid value: {plural:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"),
        ));
    }
    let scope = str_at(crd, "/spec/scope");
    if !matches!(scope, "Namespaced" | "Cluster") {
        out.push(not_supported(
            "spec.scope",
            scope,
            &["Cluster", "Namespaced"],
        ));
    }
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        out.push(required(
            "spec.versions",
            "must have exactly one version marked as storage version",
        ));
    }
    let storage = versions
        .iter()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .count();
    if !versions.is_empty() && storage != 1 {
        out.push(cause(
            "FieldValueInvalid",
            "spec.versions",
            "Invalid value: []apiextensions.CustomResourceDefinitionVersion{...}: must have exactly one version marked as storage version".into(),
        ));
    }
    for (i, v) in versions.iter().enumerate() {
        let base = format!("spec.versions[{i}].schema.openAPIV3Schema");
        match v.pointer("/schema/openAPIV3Schema") {
            None => out.push(required(&base, "schemas are required")),
            Some(s) => structural(s, &base, true, &mut out),
        }
    }
    out
}

/// Every node of a structural schema says its type (apiextensions'
/// `must not be empty for specified object fields`).
fn structural(s: &Value, path: &str, root: bool, out: &mut Vec<Cause>) {
    let untyped_ok = s.get("x-kubernetes-int-or-string") == Some(&json!(true))
        || s.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
    if s.get("type").is_none() && !untyped_ok && !root {
        out.push(required(
            &format!("{path}.type"),
            "must not be empty for specified object fields",
        ));
    }
    if root
        && s.get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| t != "object")
    {
        out.push(cause(
            "FieldValueInvalid",
            &format!("{path}.type"),
            format!(
                "Invalid value: {:?}: must be object at the root",
                str_at(s, "/type")
            ),
        ));
    }
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        for (k, p) in props {
            structural(p, &format!("{path}.properties[{k}]"), false, out);
        }
    }
    if let Some(items) = s.get("items") {
        structural(items, &format!("{path}.items"), false, out);
    }
    if let Some(ap) = s.get("additionalProperties").filter(|a| a.is_object()) {
        structural(ap, &format!("{path}.additionalProperties"), false, out);
    }
}

// ---------- custom objects ----------

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// A length as a schema bound's number (lengths far below 2^52).
#[allow(clippy::cast_precision_loss)]
fn count(n: usize) -> f64 {
    n as f64
}

fn join(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    }
}

/// Prunes unknown fields and applies defaults below `v` per `s`.
fn prune_and_default(s: &Value, v: &mut Value, root: bool) {
    let preserve = s.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
    let embedded = s.get("x-kubernetes-embedded-resource") == Some(&json!(true));
    match v {
        Value::Object(m) => {
            let props = s.get("properties").and_then(Value::as_object);
            let extra = s.get("additionalProperties").filter(|a| a.is_object());
            if let Some(props) = props {
                for (k, p) in props {
                    if !m.contains_key(k)
                        && let Some(d) = p.get("default")
                    {
                        m.insert(k.clone(), d.clone());
                    }
                }
            }
            let keep_meta = root || embedded;
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                if keep_meta && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let sub = props.and_then(|p| p.get(&k)).or(extra);
                match sub {
                    Some(sub) => {
                        if let Some(x) = m.get_mut(&k) {
                            prune_and_default(sub, x, false);
                        }
                    }
                    None if !preserve => {
                        m.remove(&k);
                    }
                    None => {}
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = s.get("items") {
                for x in a {
                    prune_and_default(items, x, false);
                }
            }
        }
        _ => {}
    }
}

/// apiextensions' validation of one value against its schema node.
fn check(s: &Value, v: &Value, path: &str, out: &mut Vec<Cause>) {
    let invalid = |msg: String| cause("FieldValueInvalid", path, msg);
    if v.is_null() {
        if s.get("nullable") != Some(&json!(true)) && s.get("type").is_some() {
            out.push(invalid(format!(
                "Invalid value: \"null\": {path} in body must be of type {}: \"null\"",
                str_at(s, "/type")
            )));
        }
        return;
    }
    let int_or_string = s.get("x-kubernetes-int-or-string") == Some(&json!(true));
    if int_or_string {
        if !matches!(type_name(v), "integer" | "string") {
            out.push(invalid(format!(
                "Invalid value: {:?}: {path} in body must be of type integer,string: {:?}",
                type_name(v),
                type_name(v)
            )));
        }
    } else if let Some(want) = s.get("type").and_then(Value::as_str) {
        let got = type_name(v);
        let ok = got == want || (want == "number" && got == "integer");
        if !ok {
            out.push(invalid(format!(
                "Invalid value: {got:?}: {path} in body must be of type {want}: {got:?}"
            )));
            return;
        }
    }
    if let Some(allowed) = s.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        let list: Vec<String> = allowed.iter().map(shown).collect();
        out.push(cause(
            "FieldValueNotSupported",
            path,
            format!(
                "Unsupported value: {}: supported values: {}",
                shown(v),
                list.join(", ")
            ),
        ));
    }
    let num = |k: &str| s.get(k).and_then(Value::as_f64);
    match v {
        Value::String(text) => {
            let len = text.chars().count();
            if let Some(max) = num("maxLength")
                && count(len) > max
            {
                out.push(cause(
                    "FieldValueTooLong",
                    path,
                    format!("Too long: may not be more than {max} bytes"),
                ));
            }
            if let Some(min) = num("minLength")
                && count(len) < min
            {
                out.push(invalid(format!(
                    "Invalid value: {}: {path} in body should be at least {min} chars long",
                    shown(v)
                )));
            }
            if let Some(p) = s.get("pattern").and_then(Value::as_str)
                && regex::Regex::new(p).is_ok_and(|re| !re.is_match(text))
            {
                out.push(invalid(format!(
                    "Invalid value: {}: {path} in body should match '{p}'",
                    shown(v)
                )));
            }
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or_default();
            let excl = |k: &str| s.get(k) == Some(&json!(true));
            if let Some(max) = num("maximum") {
                if excl("exclusiveMaximum") && x >= max {
                    out.push(invalid(format!(
                        "Invalid value: {n}: {path} in body should be less than {max}"
                    )));
                } else if x > max {
                    out.push(invalid(format!(
                        "Invalid value: {n}: {path} in body should be less than or equal to {max}"
                    )));
                }
            }
            if let Some(min) = num("minimum") {
                if excl("exclusiveMinimum") && x <= min {
                    out.push(invalid(format!(
                        "Invalid value: {n}: {path} in body should be greater than {min}"
                    )));
                } else if x < min {
                    out.push(invalid(format!(
                        "Invalid value: {n}: {path} in body should be greater than or equal to {min}"
                    )));
                }
            }
        }
        Value::Array(a) => {
            if let Some(max) = num("maxItems")
                && count(a.len()) > max
            {
                out.push(cause(
                    "FieldValueTooMany",
                    path,
                    format!("Too many: {}: must have at most {max} items", a.len()),
                ));
            }
            if let Some(min) = num("minItems")
                && count(a.len()) < min
            {
                out.push(invalid(format!(
                    "Invalid value: {}: {path} in body should have at least {min} items",
                    a.len()
                )));
            }
            if let Some(items) = s.get("items") {
                for (i, x) in a.iter().enumerate() {
                    check(items, x, &format!("{path}[{i}]"), out);
                }
            }
        }
        Value::Object(m) => {
            for f in s
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !m.contains_key(f) {
                    out.push(required(&join(path, f), ""));
                }
            }
            let props = s.get("properties").and_then(Value::as_object);
            let extra = s.get("additionalProperties").filter(|a| a.is_object());
            for (k, x) in m {
                if path.is_empty() && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(sub) = props.and_then(|p| p.get(k)) {
                    check(sub, x, &join(path, k), out);
                } else if let Some(sub) = extra {
                    check(sub, x, &format!("{path}[{k}]"), out);
                }
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
}

/// Prunes unknown fields of a custom object and applies its defaults.
pub fn prune_and_default_object(version: &Version, obj: &mut Value) {
    prune_and_default(&version.schema, obj, true);
}

/// The causes of every field of a custom object its schema refuses.
pub fn check_object(version: &Version, obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    check(&version.schema, obj, "", &mut out);
    out
}

/// Prunes, defaults and validates a custom object in place; the causes of
/// every failing field.
pub fn admit(version: &Version, obj: &mut Value) -> Vec<Cause> {
    prune_and_default_object(version, obj);
    check_object(version, obj)
}

/// `kubectl get` columns of a custom resource: Name, the printer columns,
/// Age (kubectl's default when none are declared).
pub fn table(
    version: &Version,
    objects: &[Value],
    meta: Value,
    include: crate::table::Include,
) -> Value {
    let mut defs = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "", "priority": 0}),
    ];
    for (name, ty, _, prio) in &version.columns {
        defs.push(
            json!({"name": name, "type": ty, "format": "", "description": "", "priority": prio}),
        );
    }
    let age_declared = version
        .columns
        .iter()
        .any(|c| c.2 == ".metadata.creationTimestamp");
    if !age_declared {
        defs.push(
            json!({"name": "Age", "type": "date", "format": "", "description": "", "priority": 0}),
        );
    }
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut cells = vec![json!(str_at(o, "/metadata/name"))];
            for (_, ty, path, _) in &version.columns {
                let v = json_path(o, path);
                cells.push(match (ty.as_str(), v) {
                    ("date", Some(Value::String(t))) => json!(crate::table::age_of(&t)),
                    (_, Some(v)) => v,
                    (_, None) => Value::Null,
                });
            }
            if !age_declared {
                cells.push(json!(crate::table::age_of(str_at(
                    o,
                    "/metadata/creationTimestamp"
                ))));
            }
            crate::table::row_with(cells, o, include)
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": defs,
        "rows": rows,
    })
}

/// A printer column's JSON path: `.a.b`, `.a[0].b`, and
/// `.a[?(@.k=="v")].b` filters.
fn json_path(o: &Value, path: &str) -> Option<Value> {
    let mut cur = o.clone();
    let mut rest = path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim_start_matches('.');
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("[?(@.") {
            let end = r.find(")]")?;
            let (cond, after) = (&r[..end], &r[end + 2..]);
            let (k, want) = cond.split_once("==")?;
            let want = want.trim().trim_matches('"').trim_matches('\'');
            cur = cur
                .as_array()?
                .iter()
                .find(|x| x.get(k.trim()).and_then(Value::as_str) == Some(want))?
                .clone();
            rest = after.trim_start_matches('.');
            continue;
        }
        if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let i: usize = r[..end].parse().ok()?;
            cur = cur.get(i)?.clone();
            rest = r[end + 1..].trim_start_matches('.');
            continue;
        }
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        cur = cur.get(&rest[..end])?.clone();
        rest = rest[end..].trim_start_matches('.');
    }
    Some(cur)
}

// ---------- following CRDs ----------

fn crds() -> &'static Resource {
    crate::resources::find(GROUP, "v1", "customresourcedefinitions").expect("CRDs are served")
}

/// Serves the stored CRDs, establishes new ones and cleans up deleted
/// ones; keeps doing so as they change.
pub(crate) fn follow(state: Arc<State>) {
    tokio::spawn(async move {
        loop {
            let rev = match sync(&state).await {
                Ok(rev) => rev,
                Err(e) => {
                    tracing::warn!(error = %e.message, "crd: sync failed");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
            };
            let Ok(mut w) = state.store.watch(&crds().key_prefix(), rev + 1).await else {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            };
            while let Some(Ok(_)) = w.next().await {
                if let Err(e) = sync(&state).await {
                    tracing::warn!(error = %e.message, "crd: sync failed");
                    break;
                }
            }
        }
    });
}

async fn sync(state: &Arc<State>) -> Result<i64, crate::http::Fail> {
    let r = crds();
    let list = state
        .store
        .list(&r.key_prefix(), keel_store::ListOptions::default())
        .await
        .map_err(crate::http::Fail::internal)?;
    let mut all = Vec::new();
    for kv in &list.items {
        all.push(crate::handlers::decode(state, kv, kv.mod_revision)?);
    }
    let live: Vec<Value> = all
        .iter()
        .filter(|c| c.pointer("/metadata/deletionTimestamp").is_none())
        .cloned()
        .collect();
    register_all(state, &live);
    for crd in &all {
        let name = str_at(crd, "/metadata/name").to_string();
        if crd.pointer("/metadata/deletionTimestamp").is_some() {
            cleanup(state, crd).await?;
            continue;
        }
        if conditions_true(crd, &["NamesAccepted", "Established"]) {
            continue;
        }
        let now = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let storage: Vec<Value> = crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|v| v.get("storage") == Some(&json!(true)))
            .filter_map(|v| v.get("name").cloned())
            .collect();
        let status = json!({
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now},
            ],
            "acceptedNames": crd.pointer("/spec/names").cloned().unwrap_or(Value::Null),
            "storedVersions": storage,
        });
        let res = crate::handlers::update_object(
            state,
            r,
            None,
            &name,
            Some("status"),
            "keel-apiextensions",
            |cur| {
                let mut v = cur.clone();
                v["status"] = status.clone();
                Some(v)
            },
        )
        .await;
        match res {
            Ok(_) => tracing::debug!(crd = name, "established"),
            Err(f) if f.code == 404 => {}
            Err(f) => return Err(f),
        }
    }
    Ok(list.revision)
}

fn conditions_true(crd: &Value, types: &[&str]) -> bool {
    let conds = crd
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    types.iter().all(|t| {
        conds
            .iter()
            .any(|c| c.get("type") == Some(&json!(t)) && c.get("status") == Some(&json!("True")))
    })
}

/// Deletes a deleted CRD's objects, then lets the CRD go.
async fn cleanup(state: &Arc<State>, crd: &Value) -> Result<(), crate::http::Fail> {
    let group = str_at(crd, "/spec/group");
    let plural = str_at(crd, "/spec/names/plural");
    let prefix = format!("{}{group}/{plural}/", crate::resources::REGISTRY);
    let list = state
        .store
        .list(&prefix, keel_store::ListOptions::default())
        .await
        .map_err(crate::http::Fail::internal)?;
    for kv in list.items {
        let _ = state.store.delete(&kv.key, Some(kv.mod_revision)).await;
    }
    let name = str_at(crd, "/metadata/name").to_string();
    tracing::info!(crd = name, "custom objects deleted");
    let res = crate::handlers::update_object(
        state,
        crds(),
        None,
        &name,
        None,
        "keel-apiextensions",
        |cur| {
            let fins = cur.pointer("/metadata/finalizers")?.as_array()?;
            if !fins.iter().any(|f| f == CLEANUP_FINALIZER) {
                return None;
            }
            let mut v = cur.clone();
            v["metadata"]["finalizers"]
                .as_array_mut()?
                .retain(|f| f != CLEANUP_FINALIZER);
            Some(v)
        },
    )
    .await;
    match res {
        Ok(_) => Ok(()),
        Err(f) if f.code == 404 => Ok(()),
        Err(f) => Err(f),
    }
}

/// Adds the cleanup finalizer to a new CRD.
pub fn add_finalizer(crd: &mut Value) {
    let Some(m) = crd.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let fins = m
        .entry("finalizers")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Some(a) = fins.as_array_mut()
        && !a.iter().any(|f| f == CLEANUP_FINALIZER)
    {
        a.push(json!(CLEANUP_FINALIZER));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        json!({"type": "object", "properties": {"spec": {"type": "object", "required": ["size"], "properties": {
            "size": {"type": "integer", "minimum": 1, "maximum": 10},
            "mode": {"type": "string", "enum": ["a", "b"], "default": "a"},
            "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5},
            "port": {"x-kubernetes-int-or-string": true},
            "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        }}}})
    }

    fn version() -> Version {
        Version {
            resource: crate::resources::find("", "v1", "configmaps").unwrap(),
            schema: schema(),
            columns: vec![("Size".into(), "integer".into(), ".spec.size".into(), 0)],
        }
    }

    #[test]
    fn prune_default_validate() {
        let mut ok = json!({"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "w"}, "spec": {"size": 3, "junk": 1, "port": "http", "free": {"any": {"thing": 1}}, "labels": {"a": "b"}}, "top": 1});
        assert!(admit(&version(), &mut ok).is_empty(), "{ok}");
        assert_eq!(ok["spec"]["mode"], "a", "default applied");
        assert!(
            ok["spec"].get("junk").is_none() && ok.get("top").is_none(),
            "pruned"
        );
        assert_eq!(ok["spec"]["free"]["any"]["thing"], 1, "preserved");
        let mut bad = json!({"spec": {"size": 11, "mode": "c", "name": "ABCDEFG", "port": 1.5, "tags": ["a", "b", "c"], "labels": {"a": 1}}});
        let causes = admit(&version(), &mut bad);
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        for f in [
            "spec.size",
            "spec.mode",
            "spec.name",
            "spec.port",
            "spec.tags",
            "spec.labels[a]",
        ] {
            assert!(fields.contains(&f), "{f} not named: {causes:?}");
        }
        let size = causes.iter().find(|c| c.field == "spec.size").unwrap();
        assert_eq!(
            size.message,
            "Invalid value: 11: spec.size in body should be less than or equal to 10"
        );
        let mut missing = json!({"spec": {}});
        let causes = admit(&version(), &mut missing);
        assert_eq!(causes[0].field, "spec.size");
        assert_eq!(causes[0].message, "Required value");
        let mut wrong = json!({"spec": {"size": "three"}});
        let causes = admit(&version(), &mut wrong);
        assert_eq!(
            causes[0].message,
            "Invalid value: \"string\": spec.size in body must be of type integer: \"string\""
        );
    }

    #[test]
    fn printer_columns_and_paths() {
        let o = json!({"metadata": {"name": "w", "creationTimestamp": "2020-01-01T00:00:00Z"}, "spec": {"size": 3}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        assert_eq!(json_path(&o, ".spec.size"), Some(json!(3)));
        assert_eq!(
            json_path(&o, ".status.conditions[?(@.type==\"Ready\")].status"),
            Some(json!("True"))
        );
        assert_eq!(
            json_path(&o, ".status.conditions[0].type"),
            Some(json!("Ready"))
        );
        let t = table(&version(), &[o], json!({}), crate::table::Include::None);
        assert_eq!(t["rows"][0]["cells"][1], 3);
        assert_eq!(t["columnDefinitions"][1]["name"], "Size");
    }

    #[test]
    fn crd_validation_messages() {
        let crd = json!({"metadata": {"name": "wrong"}, "spec": {"group": "nodot", "names": {"plural": "Ws", "kind": "W"}, "scope": "Galaxy", "versions": [{"name": "v1", "served": true, "storage": false}]}});
        let msgs: Vec<String> = validate(&crd)
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        let all = msgs.join("\n");
        for want in [
            "metadata.name: Invalid value: \"wrong\": must be spec.names.plural+\".\"+spec.group",
            "spec.group: Invalid value: \"nodot\": should be a domain with at least one dot",
            "spec.scope: Unsupported value: \"Galaxy\": supported values: \"Cluster\", \"Namespaced\"",
            "must have exactly one version marked as storage version",
            "spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required",
        ] {
            assert!(all.contains(want), "{want} missing in\n{all}");
        }
    }
}
