//! Patches: JSON merge patch (RFC 7386) and JSON patch (RFC 6902). Strategic
//! merge patch lives in [`crate::strategic`], server-side apply in
//! [`crate::managed`].

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
}
