//! Patches: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic
//! merge patch with the merge keys of the built-in types. Server-side apply
//! lives in [`crate::managed`].

use serde_json::{Map, Value};

/// RFC 7386: objects merge recursively, `null` deletes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    if let Value::Object(p) = patch {
        if !target.is_object() {
            *target = Value::Object(Map::new());
        }
        let t = target.as_object_mut().expect("just made an object");
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    } else {
        *target = patch.clone();
    }
}

/// RFC 6902.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), String> {
    let ops: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| format!("invalid JSON patch: {e}"))?;
    json_patch::patch(target, &ops).map_err(|e| e.to_string())
}

/// The merge key of list `field` whose enclosing field is `parent`, as the
/// built-in types declare with `patchMergeKey`; `None` means the list is
/// replaced as a whole.
pub fn merge_key(parent: &str, field: &str) -> Option<&'static str> {
    Some(match (parent, field) {
        ("containers" | "initContainers" | "ephemeralContainers", "ports") => "containerPort",
        (_, "ports") => "port",
        (
            _,
            "containers"
            | "initContainers"
            | "ephemeralContainers"
            | "env"
            | "volumes"
            | "imagePullSecrets"
            | "resourceClaims"
            // Mutating/ValidatingWebhookConfiguration.webhooks.
            | "webhooks",
        ) => "name",
        (_, "volumeMounts") => "mountPath",
        (_, "volumeDevices") => "devicePath",
        (_, "hostAliases") => "ip",
        (_, "topologySpreadConstraints") => "topologyKey",
        (_, "ownerReferences") => "uid",
        (_, "conditions") => "type",
        (_, "readinessGates") => "conditionType",
        _ => return None,
    })
}

/// Primitive lists whose strategy is "merge" (set union) rather than replace.
fn primitive_merge(field: &str) -> bool {
    matches!(field, "finalizers")
}

/// Applies a strategic merge patch to `target`.
pub fn strategic_merge(target: &mut Value, patch: &Value) -> Result<(), String> {
    smp(target, patch, "")
}

fn smp(target: &mut Value, patch: &Value, parent: &str) -> Result<(), String> {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut v = p.clone();
            v.remove("$patch");
            *target = Value::Object(v);
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Object(Map::new());
            return Ok(());
        }
        Some("merge") | None => {}
        Some(other) => return Err(format!("unknown patch type {other:?}")),
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("just made an object");
    if let Some(keep) = p.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        t.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (k, v) in p {
        if k == "$patch" || k == "$retainKeys" || k.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(del)) = (t.get_mut(field), v.as_array()) {
                list.retain(|x| !del.contains(x));
            }
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        match v {
            Value::Array(items) => {
                let cur = t.entry(k.clone()).or_insert(Value::Null);
                merge_list(cur, items, parent, k)?;
            }
            Value::Object(_) => {
                let cur = t.entry(k.clone()).or_insert(Value::Null);
                smp(cur, v, k)?;
                if v.get("$patch").and_then(Value::as_str) == Some("delete") {
                    t.remove(k);
                }
            }
            _ => {
                t.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(())
}

fn merge_list(cur: &mut Value, items: &[Value], parent: &str, field: &str) -> Result<(), String> {
    // A `{"$patch": "replace"}` element means: the rest is the whole list.
    if items
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        let rest: Vec<Value> = items
            .iter()
            .filter(|i| i.get("$patch").is_none())
            .cloned()
            .collect();
        *cur = Value::Array(rest);
        return Ok(());
    }
    if let Some(key) = merge_key(parent, field) {
        if !cur.is_array() {
            *cur = Value::Array(Vec::new());
        }
        let list = cur.as_array_mut().expect("just made an array");
        for item in items {
            let Some(kv) = item.get(key) else {
                // No merge key on the element: nothing to match, append it.
                list.push(item.clone());
                continue;
            };
            let pos = list.iter().position(|x| x.get(key) == Some(kv));
            if item.get("$patch").and_then(Value::as_str) == Some("delete") {
                if let Some(i) = pos {
                    list.remove(i);
                }
                continue;
            }
            if let Some(i) = pos {
                smp(&mut list[i], item, field)?;
            } else {
                let mut fresh = Value::Null;
                smp(&mut fresh, item, field)?;
                list.push(fresh);
            }
        }
        Ok(())
    } else if primitive_merge(field) {
        if !cur.is_array() {
            *cur = Value::Array(Vec::new());
        }
        let list = cur.as_array_mut().expect("just made an array");
        for item in items {
            if !list.contains(item) {
                list.push(item.clone());
            }
        }
        Ok(())
    } else {
        *cur = Value::Array(items.to_vec());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_rfc7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
    }

    #[test]
    fn json_patch_ops() {
        let mut t = json!({"a": [1, 2]});
        json_patch(&mut t, &json!([{"op": "add", "path": "/a/-", "value": 3}, {"op": "replace", "path": "/b", "value": 1}])).unwrap_err();
        json_patch(&mut t, &json!([{"op": "add", "path": "/a/-", "value": 3}])).unwrap();
        assert_eq!(t, json!({"a": [1, 2, 3]}));
        assert!(json_patch(&mut t, &json!({"not": "a list"})).is_err());
    }

    #[test]
    fn strategic_merge_by_key() {
        let mut t = json!({"spec": {"containers": [
            {"name": "a", "image": "x:1", "env": [{"name": "E", "value": "1"}]},
            {"name": "b", "image": "y:1"}
        ]}, "metadata": {"finalizers": ["f1"]}});
        strategic_merge(
            &mut t,
            &json!({
                "spec": {"containers": [
                    {"name": "a", "image": "x:2", "env": [{"name": "F", "value": "2"}]},
                    {"name": "b", "$patch": "delete"},
                    {"name": "c", "image": "z"}
                ]},
                "metadata": {"finalizers": ["f2"]}
            }),
        )
        .unwrap();
        assert_eq!(
            t,
            json!({"spec": {"containers": [
            {"name": "a", "image": "x:2", "env": [{"name": "E", "value": "1"}, {"name": "F", "value": "2"}]},
            {"name": "c", "image": "z"}
        ]}, "metadata": {"finalizers": ["f1", "f2"]}})
        );
        // Lists without a merge key are replaced; null deletes.
        let mut t = json!({"spec": {"args": ["a"], "x": 1}});
        strategic_merge(&mut t, &json!({"spec": {"args": ["b"], "x": null}})).unwrap();
        assert_eq!(t, json!({"spec": {"args": ["b"]}}));
        let mut t = json!({"m": {"a": 1, "b": 2}});
        strategic_merge(&mut t, &json!({"m": {"$patch": "replace", "c": 3}})).unwrap();
        assert_eq!(t, json!({"m": {"c": 3}}));
        let mut t = json!({"f": ["a", "b"]});
        strategic_merge(&mut t, &json!({"$deleteFromPrimitiveList/f": ["a"]})).unwrap();
        assert_eq!(t, json!({"f": ["b"]}));
        assert!(strategic_merge(&mut t, &json!({"$patch": "bogus"})).is_err());
    }

    #[test]
    fn webhooks_merge_by_name() {
        // Regression: kubectl apply of a changed webhook sent only the
        // changed fields, and the list was replaced by them.
        let mut cfg = json!({"webhooks": [{"name": "a.x.y", "sideEffects": "None", "failurePolicy": "Fail"}]});
        strategic_merge(
            &mut cfg,
            &json!({"$setElementOrder/webhooks": [{"name": "a.x.y"}], "webhooks": [{"name": "a.x.y", "failurePolicy": "Ignore"}]}),
        )
        .unwrap();
        assert_eq!(
            cfg,
            json!({"webhooks": [{"name": "a.x.y", "sideEffects": "None", "failurePolicy": "Ignore"}]})
        );
    }

    #[test]
    fn service_and_container_ports_use_their_keys() {
        assert_eq!(merge_key("spec", "ports"), Some("port"));
        assert_eq!(merge_key("containers", "ports"), Some("containerPort"));
    }
}
