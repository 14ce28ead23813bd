//! Field ownership (`metadata.managedFields`) with the semantics of
//! Kubernetes' structured-merge-diff: every write records which manager set
//! which fields; an apply that changes a field another manager owns is a
//! conflict unless forced; applying the same value co-owns; an update
//! (create, put, patch, scale) takes the fields it changes from everyone;
//! fields a manager stops applying are released and removed when no one
//! else owns them.
//!
//! Paths are lists of `FieldsV1` tokens: `f:name` (a field), `k:{"name":"c"}`
//! (a keyed list item), `v:"x"` (a set item).

use std::collections::BTreeSet;
use std::fmt::Write;

use serde_json::{Map, Value, json};

pub type Path = Vec<String>;
pub type FieldSet = BTreeSet<Path>;

/// Which part of an object a request may touch, as Kubernetes' reset fields
/// decide: the main resource does not own `status` of kinds with a status
/// subresource; the status subresource owns only `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Whole,
    MainWithoutStatus,
    StatusOnly,
}

/// The key fields of an associative list (`listMapKeys`) and their
/// defaults, or `None` for a list that is atomic or a set.
fn list_keys(parent: &str, field: &str) -> Option<&'static [(&'static str, Option<&'static str>)]> {
    const NAME: &[(&str, Option<&str>)] = &[("name", None)];
    Some(match (parent, field) {
        ("containers" | "initContainers" | "ephemeralContainers", "ports") => {
            &[("containerPort", None), ("protocol", Some("TCP"))]
        }
        ("spec", "ports") => &[("port", None), ("protocol", Some("TCP"))],
        (
            _,
            "containers"
            | "initContainers"
            | "ephemeralContainers"
            | "env"
            | "volumes"
            | "imagePullSecrets"
            | "resourceClaims",
        ) => NAME,
        (_, "volumeMounts") => &[("mountPath", None)],
        (_, "volumeDevices") => &[("devicePath", None)],
        (_, "hostAliases") => &[("ip", None)],
        (_, "topologySpreadConstraints") => &[("topologyKey", None), ("whenUnsatisfiable", None)],
        (_, "ownerReferences") => &[("uid", None)],
        (_, "conditions") => &[("type", None)],
        (_, "readinessGates") => &[("conditionType", None)],
        _ => return None,
    })
}

/// Lists of scalars merged as sets (`listType=set`).
fn is_set_list(field: &str) -> bool {
    field == "finalizers"
}

/// Fields owned as a whole (`structType`/`mapType=atomic`).
fn is_atomic(field: &str) -> bool {
    matches!(
        field,
        "selector" | "labelSelector" | "namespaceSelector" | "nodeSelector"
    )
}

/// The `k:` token of a keyed list item; `None` when a key field is missing.
fn key_token(item: &Value, keys: &[(&str, Option<&str>)]) -> Option<String> {
    let mut sorted: Vec<&(&str, Option<&str>)> = keys.iter().collect();
    sorted.sort_by_key(|(k, _)| *k);
    let mut parts = Vec::new();
    for (k, default) in sorted {
        let v = match (item.get(*k), default) {
            (Some(v), _) if !v.is_null() => v.clone(),
            (_, Some(d)) => json!(d),
            _ => return None,
        };
        parts.push(format!("{}:{v}", json!(k)));
    }
    Some(format!("k:{{{}}}", parts.join(",")))
}

/// Tokens of the items of list `field` (whose enclosing field is `parent`).
fn items_with_tokens<'a>(list: &'a [Value], parent: &str, field: &str) -> Vec<(String, &'a Value)> {
    if let Some(keys) = list_keys(parent, field) {
        list.iter()
            .filter_map(|it| key_token(it, keys).map(|t| (t, it)))
            .collect()
    } else {
        list.iter().map(|it| (format!("v:{it}"), it)).collect()
    }
}

fn is_associative(parent: &str, field: &str) -> bool {
    list_keys(parent, field).is_some() || is_set_list(field)
}

// ---------- field sets ----------

/// The fields an applied configuration sets (structured-merge-diff's
/// `ToFieldSet`): leaves, atomic values, empty maps and list items.
pub fn config_fields(config: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    config_walk(config, "", &mut Vec::new(), &mut out);
    out
}

fn config_walk(v: &Value, field: &str, path: &mut Path, out: &mut FieldSet) {
    let Value::Object(m) = v else { return };
    for (k, c) in m {
        path.push(format!("f:{k}"));
        match c {
            Value::Object(cm) if !cm.is_empty() && !is_atomic(k) => config_walk(c, k, path, out),
            Value::Array(items) if is_associative(field, k) => {
                for (tok, it) in items_with_tokens(items, field, k) {
                    path.push(tok);
                    out.insert(path.clone());
                    if it.is_object() {
                        config_walk(it, k, path, out);
                    }
                    path.pop();
                }
            }
            _ => {
                out.insert(path.clone());
            }
        }
        path.pop();
    }
}

/// Every path in `v` (a subtree added or removed as a whole); `parent`
/// encloses `field`, whose value `v` is.
fn all_paths(v: &Value, parent: &str, field: &str, path: &mut Path, out: &mut FieldSet) {
    out.insert(path.clone());
    if is_atomic(field) {
        return;
    }
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                path.push(format!("f:{k}"));
                all_paths(c, field, k, path, out);
                path.pop();
            }
        }
        Value::Array(items) if is_associative(parent, field) => {
            for (tok, it) in items_with_tokens(items, parent, field) {
                path.push(tok);
                all_paths(it, field, field, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

/// What changed from `old` to `new`.
#[derive(Debug, Default)]
pub struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

pub fn compare(old: &Value, new: &Value) -> Comparison {
    let mut c = Comparison::default();
    compare_maps(old, new, "", &mut Vec::new(), &mut c);
    c
}

fn compare_maps(old: &Value, new: &Value, field: &str, path: &mut Path, c: &mut Comparison) {
    let empty = Map::new();
    let (o, n) = (
        old.as_object().unwrap_or(&empty),
        new.as_object().unwrap_or(&empty),
    );
    let keys: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
    for k in keys {
        path.push(format!("f:{k}"));
        compare_values(o.get(k.as_str()), n.get(k.as_str()), field, k, path, c);
        path.pop();
    }
}

fn compare_values(
    old: Option<&Value>,
    new: Option<&Value>,
    parent: &str,
    field: &str,
    path: &mut Path,
    c: &mut Comparison,
) {
    match (old, new) {
        (None, None) => {}
        (None, Some(n)) => all_paths(n, parent, field, path, &mut c.added),
        (Some(o), None) => all_paths(o, parent, field, path, &mut c.removed),
        (Some(o @ Value::Object(_)), Some(n @ Value::Object(_))) if !is_atomic(field) => {
            compare_maps(o, n, field, path, c);
        }
        (Some(Value::Array(o)), Some(Value::Array(n))) if is_associative(parent, field) => {
            let ol = items_with_tokens(o, parent, field);
            let nl = items_with_tokens(n, parent, field);
            let toks: BTreeSet<&String> = ol.iter().chain(nl.iter()).map(|(t, _)| t).collect();
            for t in toks {
                let oi = ol.iter().find(|(x, _)| x == t).map(|(_, v)| *v);
                let ni = nl.iter().find(|(x, _)| x == t).map(|(_, v)| *v);
                path.push(t.clone());
                match (oi, ni) {
                    (Some(oi), Some(ni)) => compare_maps(oi, ni, field, path, c),
                    (None, Some(ni)) => all_paths(ni, field, field, path, &mut c.added),
                    (Some(oi), None) => all_paths(oi, field, field, path, &mut c.removed),
                    (None, None) => {}
                }
                path.pop();
            }
        }
        (Some(o), Some(n)) => {
            if o != n {
                c.modified.insert(path.clone());
            }
        }
    }
}

/// Paths a request may own in `scope` (system fields are nobody's).
pub fn in_scope(p: &Path, scope: Scope) -> bool {
    let first = p.first().map_or("", String::as_str);
    if matches!(first, "f:apiVersion" | "f:kind")
        || p.len() == 1 && matches!(first, "f:metadata" | "f:spec" | "f:status")
    {
        return false;
    }
    if first == "f:metadata"
        && matches!(
            p.get(1).map(String::as_str),
            Some(
                "f:name"
                    | "f:namespace"
                    | "f:uid"
                    | "f:resourceVersion"
                    | "f:generation"
                    | "f:creationTimestamp"
                    | "f:managedFields"
                    | "f:selfLink"
                    | "f:deletionTimestamp"
                    | "f:deletionGracePeriodSeconds"
            )
        )
    {
        return false;
    }
    match scope {
        Scope::Whole => true,
        Scope::MainWithoutStatus => first != "f:status",
        Scope::StatusOnly => first == "f:status",
    }
}

fn scoped(s: FieldSet, scope: Scope) -> FieldSet {
    s.into_iter().filter(|p| in_scope(p, scope)).collect()
}

// ---------- FieldsV1 ----------

/// The `FieldsV1` JSON of a set.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    let mut paths = set.iter().peekable();
    while let Some(p) = paths.next() {
        // Sorted: a path's descendants come right after it.
        let has_children = paths.peek().is_some_and(|q| q.starts_with(p));
        let mut node = &mut root;
        for (i, tok) in p.iter().enumerate() {
            let e = node.entry(tok.clone()).or_insert_with(|| json!({}));
            let m = e.as_object_mut().expect("nodes are objects");
            if i + 1 == p.len() && !has_children {
                break;
            }
            if i + 1 == p.len() {
                m.insert(".".into(), json!({}));
            }
            node = m;
        }
    }
    Value::Object(root)
}

/// The set a `FieldsV1` JSON describes.
pub fn from_fields_v1(v: &Value) -> FieldSet {
    fn walk(v: &Value, path: &mut Path, out: &mut FieldSet) {
        let Some(m) = v.as_object() else { return };
        if m.is_empty() && !path.is_empty() {
            out.insert(path.clone());
        }
        for (k, c) in m {
            if k == "." {
                out.insert(path.clone());
            } else {
                path.push(k.clone());
                walk(c, path, out);
                path.pop();
            }
        }
    }
    let mut out = FieldSet::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

/// `.spec.template.spec.containers[name="c"].image`, as Kubernetes prints
/// a path in conflict messages.
pub fn display(p: &Path) -> String {
    let mut s = String::new();
    for tok in p {
        if let Some(f) = tok.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = tok.strip_prefix("k:") {
            let fields: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = write!(s, "[{}]", parts.join(","));
        } else if let Some(v) = tok.strip_prefix("v:") {
            let _ = write!(s, "[={v}]");
        }
    }
    s
}

// ---------- managers ----------

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: String,
    pub fields: FieldSet,
}

impl Entry {
    fn same_manager(&self, other: &Entry) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
            && (self.operation == "Apply" || self.api_version == other.api_version)
    }

    /// How Kubernetes names a manager in conflict messages.
    pub fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            let _ = write!(s, " with subresource {:?}", self.subresource);
        }
        if self.operation == "Update" {
            let _ = write!(s, " using {}", self.api_version);
        }
        s
    }
}

pub fn parse_entries(managed: Option<&Value>) -> Vec<Entry> {
    let s = |e: &Value, k: &str| {
        e.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    managed
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|e| e.as_object().is_some_and(|m| !m.is_empty()))
        .map(|e| Entry {
            manager: s(e, "manager"),
            operation: s(e, "operation"),
            api_version: s(e, "apiVersion"),
            time: s(e, "time"),
            subresource: s(e, "subresource"),
            fields: from_fields_v1(e.get("fieldsV1").unwrap_or(&Value::Null)),
        })
        .collect()
}

pub fn entries_json(entries: &[Entry]) -> Value {
    Value::Array(
        entries
            .iter()
            .map(|e| {
                let mut v = json!({
                    "manager": e.manager,
                    "operation": e.operation,
                    "apiVersion": e.api_version,
                    "time": e.time,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": to_fields_v1(&e.fields),
                });
                if !e.subresource.is_empty() {
                    v["subresource"] = json!(e.subresource);
                }
                v
            })
            .collect(),
    )
}

/// Records a non-apply write by `me` (its `fields` are ignored): it owns
/// what it added or changed, nobody owns what it removed.
pub fn track_update(entries: &mut Vec<Entry>, old: &Value, new: &Value, me: Entry, scope: Scope) {
    let c = compare(old, new);
    let changed: FieldSet = scoped(c.added.union(&c.modified).cloned().collect(), scope);
    let removed = scoped(c.removed, scope);
    for e in entries.iter_mut().filter(|e| !e.same_manager(&me)) {
        e.fields
            .retain(|p| !changed.contains(p) && !removed.contains(p));
    }
    let mine = match entries.iter().position(|e| e.same_manager(&me)) {
        Some(i) => entries.remove(i),
        None => Entry {
            fields: FieldSet::new(),
            ..me.clone()
        },
    };
    let mut fields: FieldSet = mine.fields.difference(&removed).cloned().collect();
    fields.extend(changed);
    let time = if fields == mine.fields {
        mine.time
    } else {
        me.time
    };
    entries.retain(|e| !e.fields.is_empty());
    if !fields.is_empty() {
        entries.push(Entry { time, fields, ..me });
    }
}

/// One field another manager owns with a different value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    pub path: Path,
}

/// Server-side apply of `config` by `me` onto `live`: the merged object, or
/// the conflicts (when not forced). `entries` is updated in place.
pub fn apply(
    live: &Value,
    config: &Value,
    entries: &mut Vec<Entry>,
    me: Entry,
    force: bool,
    scope: Scope,
) -> Result<Value, Vec<Conflict>> {
    let set = scoped(config_fields(config), scope);
    let mut merged = live.clone();
    merge(&mut merged, config, "");
    let last = entries
        .iter()
        .position(|e| e.same_manager(&me))
        .map(|i| entries.remove(i));
    let others: FieldSet = entries
        .iter()
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    if let Some(last) = &last {
        let owned: FieldSet = others.union(&set).cloned().collect();
        let dropped: Vec<&Path> = last
            .fields
            .difference(&owned)
            .filter(|p| !owned.iter().any(|q| q.len() > p.len() && q.starts_with(p)))
            .collect();
        for p in dropped {
            remove_path(&mut merged, p, &owned);
        }
    }
    let c = compare(live, &merged);
    let changed: FieldSet = scoped(c.added.union(&c.modified).cloned().collect(), scope);
    let removed = scoped(c.removed, scope);
    let mut conflicts = Vec::new();
    for e in entries.iter() {
        for p in e.fields.intersection(&changed) {
            conflicts.push(Conflict {
                manager: e.describe(),
                path: p.clone(),
            });
        }
    }
    if !force && !conflicts.is_empty() {
        return Err(conflicts);
    }
    for e in entries.iter_mut() {
        e.fields
            .retain(|p| !changed.contains(p) && !removed.contains(p));
    }
    entries.retain(|e| !e.fields.is_empty());
    let time = match &last {
        Some(l) if l.fields == set => l.time.clone(),
        _ => me.time.clone(),
    };
    if !set.is_empty() {
        entries.push(Entry {
            fields: set,
            time,
            ..me
        });
    }
    Ok(merged)
}

/// Merges an applied configuration into an object: maps field by field,
/// keyed lists item by item, sets by union; everything else is replaced.
pub fn merge(target: &mut Value, config: &Value, field: &str) {
    let (Value::Object(t), Value::Object(c)) = (&mut *target, config) else {
        *target = config.clone();
        return;
    };
    for (k, cv) in c {
        if cv.is_null() {
            continue;
        }
        let tv = t.entry(k.clone()).or_insert(Value::Null);
        match cv {
            Value::Object(_) if !is_atomic(k) && tv.is_object() => merge(tv, cv, k),
            Value::Array(items) if is_associative(field, k) && tv.is_array() => {
                let list = tv.as_array_mut().expect("checked");
                for (tok, it) in items_with_tokens(items, field, k) {
                    let pos = list.iter().position(|x| {
                        items_with_tokens(std::slice::from_ref(x), field, k)
                            .first()
                            .is_some_and(|(t, _)| *t == tok)
                    });
                    match pos {
                        Some(i) => merge(&mut list[i], it, k),
                        None => list.push(it.clone()),
                    }
                }
            }
            _ => *tv = cv.clone(),
        }
    }
}

/// Removes the value at `p` from `v`, then parents it leaves empty that no
/// one in `owned` owns.
fn remove_path(v: &mut Value, p: &[String], owned: &FieldSet) {
    fn go(node: &mut Value, path: &[String], prefix: &mut Path, owned: &FieldSet) {
        let Some((tok, rest)) = path.split_first() else {
            return;
        };
        if let Some(name) = tok.strip_prefix("f:") {
            let Some(map) = node.as_object_mut() else {
                return;
            };
            if rest.is_empty() {
                map.remove(name);
                return;
            }
            let Some(child) = map.get_mut(name) else {
                return;
            };
            prefix.push(tok.clone());
            go(child, rest, prefix, owned);
            let emptied = match &*child {
                Value::Object(x) => x.is_empty(),
                Value::Array(x) => x.is_empty(),
                _ => false,
            };
            if emptied && !owned.contains(prefix) {
                map.remove(name);
            }
            prefix.pop();
        } else if let Value::Array(items) = node {
            let field = prefix
                .last()
                .and_then(|t| t.strip_prefix("f:"))
                .unwrap_or_default()
                .to_string();
            let parent = grand_parent(prefix);
            let matches = |x: &Value| {
                items_with_tokens(std::slice::from_ref(x), &parent, &field)
                    .first()
                    .is_some_and(|(t, _)| t == tok)
            };
            if rest.is_empty() {
                items.retain(|x| !matches(x));
                return;
            }
            if let Some(it) = items.iter_mut().find(|x| matches(x)) {
                prefix.push(tok.clone());
                go(it, rest, prefix, owned);
                prefix.pop();
            }
        }
    }
    go(v, p, &mut Vec::new(), owned);
}

/// The field name enclosing the list at the end of `prefix`.
fn grand_parent(prefix: &Path) -> String {
    prefix
        .iter()
        .rev()
        .skip(1)
        .find_map(|t| t.strip_prefix("f:"))
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(manager: &str, op: &str) -> Entry {
        Entry {
            manager: manager.into(),
            operation: op.into(),
            api_version: "apps/v1".into(),
            time: "t".into(),
            subresource: String::new(),
            fields: FieldSet::new(),
        }
    }

    fn deployment(replicas: i64, image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "labels": {"app": "d"}},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "c", "image": image, "ports": [{"containerPort": 80}]}]}}}})
    }

    #[test]
    fn fields_v1_round_trip_and_display() {
        let set = config_fields(&deployment(1, "i"));
        let v1 = to_fields_v1(&set);
        assert_eq!(
            v1["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"]["."],
            json!({})
        );
        assert_eq!(
            v1["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"]["f:ports"]["k:{\"containerPort\":80,\"protocol\":\"TCP\"}"]
                ["."],
            json!({})
        );
        assert_eq!(from_fields_v1(&v1), set);
        let p: Path = vec![
            "f:spec".into(),
            "f:containers".into(),
            "k:{\"name\":\"c\"}".into(),
            "f:image".into(),
        ];
        assert_eq!(display(&p), ".spec.containers[name=\"c\"].image");
        assert_eq!(
            display(&vec![
                "f:metadata".into(),
                "f:finalizers".into(),
                "v:\"x\"".into()
            ]),
            ".metadata.finalizers[=\"x\"]"
        );
    }

    #[test]
    fn apply_conflicts_unless_same_value_or_forced() {
        let mut entries = Vec::new();
        let live = apply(
            &json!({}),
            &deployment(1, "i"),
            &mut entries,
            entry("a", "Apply"),
            false,
            Scope::Whole,
        )
        .unwrap();
        // Same values co-own.
        let live = apply(
            &live,
            &deployment(1, "i"),
            &mut entries,
            entry("b", "Apply"),
            false,
            Scope::Whole,
        )
        .unwrap();
        assert_eq!(entries.len(), 2);
        // A different value conflicts, one conflict per field.
        let err = apply(
            &live,
            &deployment(2, "j"),
            &mut entries.clone(),
            entry("b", "Apply"),
            false,
            Scope::Whole,
        )
        .unwrap_err();
        let paths: Vec<String> = err.iter().map(|c| display(&c.path)).collect();
        assert_eq!(
            paths,
            [
                ".spec.replicas",
                ".spec.template.spec.containers[name=\"c\"].image"
            ]
        );
        assert_eq!(err[0].manager, "\"a\"");
        // Forced: b takes the fields, a keeps the rest.
        let live = apply(
            &live,
            &deployment(2, "j"),
            &mut entries,
            entry("b", "Apply"),
            true,
            Scope::Whole,
        )
        .unwrap();
        assert_eq!(live["spec"]["replicas"], 2);
        let a = entries.iter().find(|e| e.manager == "a").unwrap();
        assert!(!a.fields.iter().any(|p| display(p) == ".spec.replicas"));
        assert!(
            a.fields
                .iter()
                .any(|p| display(p) == ".metadata.labels.app")
        );
    }

    #[test]
    fn updates_take_ownership_and_dropped_fields_are_released() {
        let mut entries = Vec::new();
        let cfg = deployment(1, "i");
        let live = apply(
            &json!({}),
            &cfg,
            &mut entries,
            entry("a", "Apply"),
            false,
            Scope::Whole,
        )
        .unwrap();
        let mut scaled = live.clone();
        scaled["spec"]["replicas"] = json!(5);
        let mut scaler = entry("kubectl", "Update");
        scaler.subresource = "scale".into();
        track_update(&mut entries, &live, &scaled, scaler, Scope::Whole);
        let err = apply(
            &scaled,
            &deployment(3, "i"),
            &mut entries.clone(),
            entry("a", "Apply"),
            false,
            Scope::Whole,
        )
        .unwrap_err();
        assert_eq!(
            err[0].manager,
            "\"kubectl\" with subresource \"scale\" using apps/v1"
        );
        // a stops applying labels: removed, as no one else owns them; a
        // label someone else set stays.
        let mut other = scaled.clone();
        other["metadata"]["labels"]["team"] = json!("x");
        track_update(
            &mut entries,
            &scaled,
            &other,
            entry("kubectl-label", "Update"),
            Scope::Whole,
        );
        let mut cfg2 = cfg.clone();
        cfg2["metadata"].as_object_mut().unwrap().remove("labels");
        cfg2["spec"].as_object_mut().unwrap().remove("replicas");
        let out = apply(
            &other,
            &cfg2,
            &mut entries,
            entry("a", "Apply"),
            false,
            Scope::Whole,
        )
        .unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"team": "x"}));
        assert_eq!(out["spec"]["replicas"], 5, "owned by the scaler");
        // Dropping the whole label map of a sole owner removes it.
        let mut entries = Vec::new();
        let live = apply(
            &json!({}),
            &cfg,
            &mut entries,
            entry("a", "Apply"),
            false,
            Scope::Whole,
        )
        .unwrap();
        let out = apply(
            &live,
            &cfg2,
            &mut entries,
            entry("a", "Apply"),
            false,
            Scope::Whole,
        )
        .unwrap();
        assert!(out["metadata"].get("labels").is_none(), "{out}");
        assert!(out["spec"].get("replicas").is_none(), "{out}");
    }

    #[test]
    fn created_objects_are_owned_item_by_item() {
        let mut entries = Vec::new();
        track_update(
            &mut entries,
            &json!({}),
            &deployment(1, "i"),
            entry("creator", "Update"),
            Scope::Whole,
        );
        let v1 = to_fields_v1(&entries[0].fields);
        let c = &v1["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"];
        assert_eq!(c["."], json!({}));
        assert_eq!(c["f:image"], json!({}));
        assert_eq!(v1["f:metadata"]["f:labels"]["."], json!({}));
        assert!(v1.get("f:apiVersion").is_none() && v1["f:metadata"].get("f:name").is_none());
        // The creator's image conflicts with an applier's other image.
        let live = deployment(1, "i");
        let err = apply(
            &live,
            &deployment(1, "j"),
            &mut entries,
            entry("a", "Apply"),
            false,
            Scope::Whole,
        )
        .unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].manager, "\"creator\" using apps/v1");
    }

    #[test]
    fn status_scope_is_separate() {
        let mut entries = Vec::new();
        let live = json!({"spec": {"replicas": 1}, "status": {"replicas": 0}});
        let mut new = live.clone();
        new["status"]["replicas"] = json!(1);
        new["spec"]["replicas"] = json!(2);
        track_update(
            &mut entries,
            &live,
            &new,
            entry("ctrl", "Update"),
            Scope::StatusOnly,
        );
        let fields: Vec<String> = entries[0].fields.iter().map(display).collect();
        assert_eq!(fields, [".status.replicas"]);
    }
}
