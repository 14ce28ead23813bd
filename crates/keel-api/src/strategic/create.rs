//! Creating patches, as apimachinery's `CreateThreeWayMergePatch` (with
//! overwrite: what Helm 3's client-side updates send), `CreateMergePatch`
//! (the JSON merge patch Helm sends for custom resources) and
//! `CreateThreeWayJSONMergePatch` (custom resources Helm 4 adopts
//! client-side) create them.
//!
//! The three-way patch is the difference from the live object to the new
//! configuration, without deletions, plus the deletions from the old
//! configuration to the new one: what the live object gained elsewhere
//! (fields the configuration never had) survives, what the configuration
//! sets is set back, what it dropped is removed.

use serde_json::{Map, Value};

use super::{
    DELETE_FROM, DIRECTIVE, ELEMENT_ORDER, RETAIN_KEYS, Schema, SmpError, go_fmt, no_merge_key,
    other, same,
};

/// What one diff leaves out (apimachinery's `DiffOptions`).
#[derive(Debug, Clone, Copy, Default)]
struct Opts {
    ignore_deletions: bool,
    ignore_changes: bool,
    retain_keys: bool,
}

/// The strategic merge patch that turns `current` into `modified` while
/// deleting only what `original` had and `modified` dropped.
///
/// # Errors
/// Lists of lists, list elements of mixed types, elements without their
/// merge key, as apimachinery refuses them.
pub fn three_way(
    original: &Value,
    modified: &Value,
    current: &Value,
    schema: Schema<'_>,
) -> Result<Value, SmpError> {
    let empty = Map::new();
    let obj = |v: &Value| v.as_object().cloned().unwrap_or_else(|| empty.clone());
    let (original, modified, current) = (obj(original), obj(modified), obj(current));
    let delta = diff_maps(
        &current,
        &modified,
        schema,
        Opts {
            ignore_deletions: true,
            ..Opts::default()
        },
    )?;
    let deletions = diff_maps(
        &original,
        &modified,
        schema,
        Opts {
            ignore_changes: true,
            ..Opts::default()
        },
    )?;
    Ok(Value::Object(combine(deletions, delta, schema)))
}

/// RFC 7386's patch from `original` to `modified` (`null` deletes; lists are
/// replaced whole).
#[must_use]
pub fn merge_patch_diff(original: &Value, modified: &Value) -> Value {
    let (Value::Object(o), Value::Object(m)) = (original, modified) else {
        return modified.clone();
    };
    let mut patch = Map::new();
    for (k, mv) in m {
        match o.get(k) {
            Some(ov) if same(ov, mv) => {}
            Some(ov @ Value::Object(_)) if mv.is_object() => {
                patch.insert(k.clone(), merge_patch_diff(ov, mv));
            }
            _ => {
                patch.insert(k.clone(), mv.clone());
            }
        }
    }
    for k in o.keys() {
        if !m.contains_key(k) {
            patch.insert(k.clone(), Value::Null);
        }
    }
    Value::Object(patch)
}

/// apimachinery's `CreateThreeWayJSONMergePatch` with kubectl's
/// preconditions (`apiVersion`, `kind` and `metadata.name` unchanged): the
/// additions and changes from `current` to `modified` (its `null`s left
/// out) joined with the deletions from `original` to `modified` (only its
/// `null`s). The two never touch the same leaf, so upstream's conflict check
/// cannot fire here and is left out.
///
/// # Errors
/// The patch would change `apiVersion`, `kind` or the name (upstream's
/// `precondition failed for: map[…]`).
pub fn three_way_json(
    original: &Value,
    modified: &Value,
    current: &Value,
) -> Result<Value, SmpError> {
    let empty = Value::Object(Map::new());
    let or_empty = |v: &Value| {
        if v.is_object() {
            v.clone()
        } else {
            empty.clone()
        }
    };
    let (original, modified, current) = (or_empty(original), or_empty(modified), or_empty(current));
    let changes = keep_nulls(&merge_patch_diff(&current, &modified), false);
    let mut patch = keep_nulls(&merge_patch_diff(&original, &modified), true);
    merge_into(&mut patch, changes);
    let changes_identity = patch.contains_key("apiVersion")
        || patch.contains_key("kind")
        || patch
            .get("metadata")
            .and_then(Value::as_object)
            .is_some_and(|m| m.contains_key("name"));
    let patch = Value::Object(patch);
    if changes_identity {
        return Err(other(format!(
            "precondition failed for: {}",
            go_fmt(&patch)
        )));
    }
    Ok(patch)
}

/// apimachinery's `keepOrDeleteNullInObj`: only the `null`s (`keep`), or
/// everything but them; a map left empty goes, an empty map given as a value stays.
fn keep_nulls(patch: &Value, keep: bool) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in patch.as_object().into_iter().flatten() {
        match v {
            Value::Null if keep => {
                out.insert(k.clone(), Value::Null);
            }
            Value::Object(m) if !m.is_empty() => {
                let sub = keep_nulls(v, keep);
                if !sub.is_empty() {
                    out.insert(k.clone(), Value::Object(sub));
                }
            }
            Value::Null => {}
            // values, lists and empty maps (an empty map given is a value)
            _ if !keep => {
                out.insert(k.clone(), v.clone());
            }
            _ => {}
        }
    }
    out
}

/// RFC 7386's merge of `patch` into `doc` for two patches that share no leaf.
fn merge_into(doc: &mut Map<String, Value>, patch: Map<String, Value>) {
    for (k, v) in patch {
        match (doc.get_mut(&k), v) {
            (Some(Value::Object(d)), Value::Object(p)) => merge_into(d, p),
            (_, v) => {
                doc.insert(k, v);
            }
        }
    }
}

/// JSON kinds as Go's `reflect.TypeOf` tells decoded values apart.
fn kind(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

fn diff_maps(
    original: &Map<String, Value>,
    modified: &Map<String, Value>,
    schema: Schema<'_>,
    o: Opts,
) -> Result<Map<String, Value>, SmpError> {
    let mut patch = Map::new();
    let mut retain: Vec<Value> = Vec::new();
    for (key, mv) in modified {
        if o.retain_keys && !mv.is_null() {
            retain.push(Value::String(key.clone()));
        }
        let Some(ov) = original.get(key) else {
            if !o.ignore_changes {
                patch.insert(key.clone(), mv.clone());
            }
            continue;
        };
        if key == DIRECTIVE {
            let (Some(a), Some(b)) = (ov.as_str(), mv.as_str()) else {
                return Err(other(format!("invalid value for special key: {DIRECTIVE}")));
            };
            if a != b {
                patch.insert(key.clone(), mv.clone());
            }
            continue;
        }
        if kind(ov) != kind(mv) {
            if !o.ignore_changes {
                patch.insert(key.clone(), mv.clone());
            }
            continue;
        }
        match (ov, mv) {
            (Value::Object(om), Value::Object(mm)) => {
                let (sub, meta) = schema.for_map(key)?;
                if meta.strategy == "replace" {
                    if !o.ignore_changes {
                        patch.insert(key.clone(), mv.clone());
                    }
                } else {
                    let sub_opts = Opts {
                        retain_keys: meta.retain_keys,
                        ..o
                    };
                    let p = diff_maps(om, mm, sub, sub_opts)?;
                    if !p.is_empty() {
                        patch.insert(key.clone(), Value::Object(p));
                    }
                }
            }
            (Value::Array(ol), Value::Array(ml)) => {
                let (sub, meta) = schema.for_list(key)?;
                if meta.strategy == "merge" {
                    let sub_opts = Opts {
                        retain_keys: meta.retain_keys,
                        ..o
                    };
                    let (add, del, order) = diff_lists(ol, ml, sub, meta.merge_key, sub_opts)?;
                    if !add.is_empty() {
                        patch.insert(key.clone(), Value::Array(add));
                    }
                    if !del.is_empty() {
                        patch.insert(format!("{DELETE_FROM}/{key}"), Value::Array(del));
                    }
                    if !order.is_empty() {
                        patch.insert(format!("{ELEMENT_ORDER}/{key}"), Value::Array(order));
                    }
                } else if !o.ignore_changes && !same(ov, mv) {
                    patch.insert(key.clone(), mv.clone());
                }
            }
            _ => {
                if !o.ignore_changes && !same(ov, mv) {
                    patch.insert(key.clone(), mv.clone());
                }
            }
        }
    }
    if !o.ignore_deletions {
        for key in original.keys() {
            if !modified.contains_key(key) {
                patch.insert(key.clone(), Value::Null);
            }
        }
    }
    let more = original
        .iter()
        .any(|(k, v)| !v.is_null() && !modified.contains_key(k));
    if !retain.is_empty() && (!patch.is_empty() || more) {
        retain.sort_by_key(go_fmt);
        patch.insert(RETAIN_KEYS.into(), Value::Array(retain));
    }
    Ok(patch)
}

/// (additions and changes, primitive deletions, element order) of a list
/// with the merge strategy.
type ListDiff = (Vec<Value>, Vec<Value>, Vec<Value>);

fn diff_lists(
    original: &[Value],
    modified: &[Value],
    schema: Schema<'_>,
    merge_key: &str,
    o: Opts,
) -> Result<ListDiff, SmpError> {
    if original.is_empty() {
        if modified.is_empty() || o.ignore_changes {
            return Ok(Default::default());
        }
        return Ok((modified.to_vec(), Vec::new(), Vec::new()));
    }
    let mut first: Option<u8> = None;
    for v in original.iter().chain(modified) {
        let k = kind(v);
        if k == 4 {
            return Err(other("lists of lists are not supported"));
        }
        match first {
            None => first = Some(k),
            Some(f) if f != k => {
                return Err(other(format!(
                    "list element types are not identical: {}",
                    go_fmt(&Value::Array(vec![
                        Value::Array(original.to_vec()),
                        Value::Array(modified.to_vec())
                    ]))
                )));
            }
            Some(_) => {}
        }
    }
    if first == Some(5) {
        diff_lists_of_maps(original, modified, schema, merge_key, o)
    } else {
        Ok(diff_lists_of_scalars(original, modified, o))
    }
}

fn key_of<'v>(e: &'v Value, merge_key: &str) -> Result<&'v Value, SmpError> {
    let m = e.as_object().ok_or_else(|| other("expected a map"))?;
    m.get(merge_key).ok_or_else(|| no_merge_key(m, merge_key))
}

fn diff_lists_of_maps(
    original: &[Value],
    modified: &[Value],
    schema: Schema<'_>,
    merge_key: &str,
    o: Opts,
) -> Result<ListDiff, SmpError> {
    let mut patch = Vec::new();
    // in modified's order, as apimachinery normalises the patch list; the
    // n-th element with a key pairs with the n-th in original (duplicates)
    let mut seen: Vec<String> = Vec::new();
    for m in modified {
        let mk = go_fmt(key_of(m, merge_key)?);
        let n = seen.iter().filter(|k| **k == mk).count();
        seen.push(mk.clone());
        let mut found = None;
        let mut i = 0;
        for e in original {
            if go_fmt(key_of(e, merge_key)?) == mk {
                if i == n {
                    found = Some(e);
                    break;
                }
                i += 1;
            }
        }
        let mk = key_of(m, merge_key)?;
        match found {
            Some(Value::Object(om)) => {
                let mm = m.as_object().ok_or_else(|| other("expected a map"))?;
                let mut p = diff_maps(om, mm, schema, o)?;
                if !p.is_empty() {
                    p.insert(merge_key.into(), mk.clone());
                    patch.push(Value::Object(p));
                }
            }
            _ if !o.ignore_changes => patch.push(m.clone()),
            _ => {}
        }
    }
    let mut deletions = Vec::new();
    if !o.ignore_deletions {
        for e in original {
            let ok = key_of(e, merge_key)?;
            let kept = modified
                .iter()
                .any(|m| key_of(m, merge_key).is_ok_and(|k| go_fmt(k) == go_fmt(ok)));
            let dup = deletions
                .iter()
                .any(|d: &Value| d.get(merge_key).map(go_fmt) == Some(go_fmt(ok)));
            if !kept && !dup {
                let mut d = Map::new();
                d.insert(DIRECTIVE.into(), Value::String("delete".into()));
                d.insert(merge_key.into(), ok.clone());
                deletions.push(Value::Object(d));
            }
        }
    }
    let same_order = original.len() == modified.len()
        && original.iter().zip(modified).all(|(a, b)| {
            matches!((key_of(a, merge_key), key_of(b, merge_key)), (Ok(x), Ok(y)) if go_fmt(x) == go_fmt(y))
        });
    patch.extend(deletions);
    let mut order = Vec::new();
    if (!o.ignore_changes && (!patch.is_empty() || !same_order))
        || (!o.ignore_deletions && !patch.is_empty())
    {
        for m in modified {
            let mut e = Map::new();
            e.insert(merge_key.into(), key_of(m, merge_key)?.clone());
            order.push(Value::Object(e));
        }
    }
    Ok((patch, Vec::new(), order))
}

fn diff_lists_of_scalars(original: &[Value], modified: &[Value], o: Opts) -> ListDiff {
    let fmt = |l: &[Value]| -> Vec<String> { l.iter().map(go_fmt).collect() };
    let (of, mf) = (fmt(original), fmt(modified));
    let mut add = Vec::new();
    if !o.ignore_changes {
        for (v, f) in modified.iter().zip(&mf) {
            if !of.contains(f) {
                add.push(v.clone());
            }
        }
    }
    let mut del: Vec<Value> = Vec::new();
    if !o.ignore_deletions {
        let mut sorted: Vec<(&String, &Value)> = of.iter().zip(original).collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        for (f, v) in sorted {
            if !mf.contains(f) && !del.iter().any(|d| go_fmt(d) == *f) {
                del.push(v.clone());
            }
        }
    }
    let order = if (!o.ignore_deletions && !del.is_empty())
        || (!o.ignore_changes
            && !same(
                &Value::Array(original.to_vec()),
                &Value::Array(modified.to_vec()),
            )) {
        modified.to_vec()
    } else {
        Vec::new()
    };
    (add, del, order)
}

/// Merges the deletions patch with the delta patch (apimachinery applies
/// one onto the other; they touch different keys except where both
/// descend into the same map or list element).
fn combine(
    mut deletions: Map<String, Value>,
    delta: Map<String, Value>,
    schema: Schema<'_>,
) -> Map<String, Value> {
    for (key, dv) in delta {
        let Some(cur) = deletions.remove(&key) else {
            deletions.insert(key, dv);
            continue;
        };
        let merged = match (cur, dv) {
            (Value::Object(a), Value::Object(b)) => match schema.for_map(&key) {
                Ok((sub, _)) => Value::Object(combine(a, b, sub)),
                Err(_) => Value::Object(b),
            },
            (Value::Array(a), Value::Array(b)) if !key.starts_with('$') => {
                match schema.for_list(&key) {
                    Ok((sub, meta)) if !meta.merge_key.is_empty() => {
                        let order = deletions
                            .get(&format!("{ELEMENT_ORDER}/{key}"))
                            .and_then(Value::as_array)
                            .cloned()
                            .unwrap_or_default();
                        let mut l = combine_lists(a, b, sub, meta.merge_key);
                        // the patch list in the element order's order, deletions last
                        let rank = |e: &Value| {
                            let k = e.get(meta.merge_key).map(go_fmt);
                            if e.get(DIRECTIVE).is_some() {
                                return usize::MAX;
                            }
                            order
                                .iter()
                                .position(|o| o.get(meta.merge_key).map(go_fmt) == k)
                                .unwrap_or(usize::MAX - 1)
                        };
                        l.sort_by_key(rank);
                        Value::Array(l)
                    }
                    _ => Value::Array(b),
                }
            }
            (_, b) => b,
        };
        deletions.insert(key, merged);
    }
    deletions
}

/// Elements with the same merge key are combined; the delta's come first
/// (in the new configuration's order), then the deletions' others.
fn combine_lists(a: Vec<Value>, b: Vec<Value>, schema: Schema<'_>, merge_key: &str) -> Vec<Value> {
    let mut rest: Vec<Value> = a;
    let mut out = Vec::new();
    for e in b {
        let k = e.get(merge_key).map(go_fmt);
        let pos = rest
            .iter()
            .position(|x| x.get(DIRECTIVE).is_none() && x.get(merge_key).map(go_fmt) == k);
        match (pos, e) {
            (Some(i), Value::Object(em)) => {
                if let Value::Object(xm) = rest.remove(i) {
                    out.push(Value::Object(combine(xm, em, schema)));
                }
            }
            (_, e) => out.push(e),
        }
    }
    out.extend(rest);
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::{FILES, cases, schema_for_cases, sorted_for_cases};
    use super::super::{apply, same};
    use super::*;

    /// Every apimachinery case with a three-way result: the patch created
    /// here, applied to `current`, gives upstream's `result`.
    #[test]
    fn three_way_patches_give_upstreams_results() {
        let (defs, root) = schema_for_cases();
        let schema = Schema::new(&defs, Some(&root));
        let mut total = 0;
        let mut failed = Vec::new();
        for (file, sort, custom) in FILES {
            if custom {
                continue;
            }
            for c in cases(file) {
                let Some(result) = c.get("result").filter(|r| !r.is_null()) else {
                    continue;
                };
                if c.get("expectedError").is_some() {
                    continue;
                }
                total += 1;
                let get = |k: &str| c.get(k).cloned().unwrap_or(json!({}));
                let (o, m, cur) = (get("original"), get("modified"), get("current"));
                let outcome = three_way(&o, &m, &cur, schema).and_then(|p| {
                    let mut t = cur.clone();
                    apply(&mut t, &p, schema).map(|()| (p, t))
                });
                match outcome {
                    Err(e) => failed.push(format!("{file}: {}: {e}", c["description"])),
                    Ok((p, got)) => {
                        let ok = if sort {
                            same(
                                &sorted_for_cases(&got, schema),
                                &sorted_for_cases(result, schema),
                            )
                        } else {
                            same(&got, result)
                        };
                        if !ok {
                            failed.push(format!(
                                "{file}: {}: patch {p} gave {got}, want {result}",
                                c["description"]
                            ));
                        }
                    }
                }
            }
        }
        assert!(total > 60, "only {total} three-way cases found");
        assert!(
            failed.is_empty(),
            "{} of {total} failed:\n{}",
            failed.len(),
            failed.join("\n")
        );
    }

    #[test]
    fn live_fields_the_configuration_never_had_survive() {
        let defs = Map::new();
        let none = Schema::new(&defs, None);
        let original = json!({"data": {"a": "1", "b": "2"}});
        let modified = json!({"data": {"a": "1", "c": "3"}});
        let current = json!({"data": {"a": "live", "b": "2", "extra": "mine"}});
        let p = three_way(&original, &modified, &current, none).unwrap();
        assert_eq!(p, json!({"data": {"a": "1", "b": null, "c": "3"}}));
    }

    #[test]
    fn three_way_json_keeps_what_only_the_live_object_has() {
        // Helm 4 adopting a custom resource: the chart's object is both the
        // original and the modified configuration
        let chart = json!({"apiVersion": "x.io/v1", "kind": "W", "metadata": {"name": "w",
            "labels": {"app.kubernetes.io/managed-by": "Helm"}},
            "spec": {"size": 2, "tags": ["a"], "opts": {}}});
        let live = json!({"apiVersion": "x.io/v1", "kind": "W", "metadata": {"name": "w",
            "resourceVersion": "7", "labels": {"team": "ops"}},
            "spec": {"size": 1, "tags": ["a", "b"], "color": "red"}, "status": {"ok": true}});
        let p = three_way_json(&chart, &chart, &live).unwrap();
        assert_eq!(
            p,
            json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": "Helm"}},
                "spec": {"size": 2, "tags": ["a"], "opts": {}}})
        );
        // a real original: what the chart dropped goes, nested deletions too
        let original = json!({"spec": {"size": 1, "old": "x", "deep": {"gone": 1, "kept": 2}}});
        let modified = json!({"spec": {"size": 1, "deep": {"kept": 2}}});
        let live =
            json!({"spec": {"size": 1, "old": "x", "deep": {"gone": 1, "kept": 3}, "mine": 1}});
        let p = three_way_json(&original, &modified, &live).unwrap();
        assert_eq!(
            p,
            json!({"spec": {"old": null, "deep": {"gone": null, "kept": 2}}})
        );
        // nothing to do is an empty patch
        assert_eq!(three_way_json(&chart, &chart, &chart).unwrap(), json!({}));
    }

    #[test]
    fn three_way_json_refuses_to_rename() {
        let original = json!({"kind": "W", "metadata": {"name": "w"}});
        let modified = json!({"kind": "W", "metadata": {"name": "v"}});
        let e = three_way_json(&original, &modified, &original).unwrap_err();
        assert_eq!(
            e.to_string(),
            "precondition failed for: map[metadata:map[name:v]]"
        );
        let modified = json!({"kind": "V", "metadata": {"name": "w"}});
        assert!(three_way_json(&original, &modified, &original).is_err());
    }

    #[test]
    fn merge_patch_diff_nulls_what_went() {
        let p = merge_patch_diff(
            &json!({"spec": {"a": 1, "b": [1, 2], "c": {"d": 1}}}),
            &json!({"spec": {"a": 1, "b": [2], "e": true}}),
        );
        assert_eq!(p, json!({"spec": {"b": [2], "c": null, "e": true}}));
    }
}
