//! The strategic-merge-patch cases of kubernetes/apimachinery (in
//! ../shared/conformance/k8s-strategic-merge-patch), applied with the
//! patch metadata of upstream's own test schema (`swagger-merge-item-v3.json`).
//! The same cases also run through `keel server`'s patch endpoint in
//! `crates/keel/tests/server_smp.rs`.

use std::path::PathBuf;

use serde_json::{Map, Value, json};

use super::{Schema, apply, go_fmt, same};

pub(crate) fn data_dir() -> PathBuf {
    crate::conformance("k8s-strategic-merge-patch")
}

fn schema_defs() -> Map<String, Value> {
    let path = data_dir().join("pkg/util/strategicpatch/testdata/swagger-merge-item-v3.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    doc.pointer("/components/schemas")
        .and_then(Value::as_object)
        .cloned()
        .unwrap()
}

fn root() -> Value {
    json!({"$ref": "#/components/schemas/mergeItem"})
}

/// Upstream's normalisation before comparing the YAML cases: lists with the
/// merge strategy sorted (maps by merge key, scalars deduplicated), in
/// maps and in merging lists' elements.
fn sorted(value: &Value, schema: Schema<'_>) -> Value {
    let Value::Object(map) = value else {
        return value.clone();
    };
    let mut out = Map::new();
    for (key, field) in map {
        let normal = match field {
            Value::Object(_) => sorted(field, schema.for_map(key).unwrap().0),
            Value::Array(items) => {
                let (sub, meta) = schema.for_list(key).unwrap();
                if meta.strategy == "merge" {
                    let mut list: Vec<Value> = items.iter().map(|e| sorted(e, sub)).collect();
                    if meta.merge_key.is_empty() {
                        let mut unique: Vec<Value> = Vec::new();
                        for e in list {
                            if !unique.iter().any(|x| same(x, &e)) {
                                unique.push(e);
                            }
                        }
                        list = unique;
                        list.sort_by_key(go_fmt);
                    } else {
                        list.sort_by_key(|e| e.get(meta.merge_key).map(go_fmt).unwrap_or_default());
                    }
                    Value::Array(list)
                } else {
                    field.clone()
                }
            }
            _ => field.clone(),
        };
        out.insert(key.clone(), normal);
    }
    Value::Object(out)
}

fn obj(c: &Value, k: &str) -> Value {
    match c.get(k) {
        None | Some(Value::Null) => json!({}),
        Some(v) => v.clone(),
    }
}

/// Every application check of one case; `Err` names the first mismatch.
pub(crate) fn run_case(
    c: &Value,
    sort: bool,
    custom: bool,
    patch_fn: &mut dyn FnMut(&Value, &Value) -> Result<Value, String>,
    norm: &dyn Fn(&Value) -> Value,
) -> Result<(), String> {
    let cmp = |got: &Value, want: &Value| -> bool {
        if sort {
            same(&norm(got), &norm(want))
        } else {
            same(got, want)
        }
    };
    if let Some(two) = c.get("twoWay") {
        let got = patch_fn(&obj(c, "original"), two);
        if let Some(e) = c.get("expectedError").and_then(Value::as_str) {
            match got {
                Err(m) if m.contains(e) => {}
                other => return Err(format!("two-way: want error {e:?}, got {other:?}")),
            }
        } else {
            let want = c.get("twoWayResult").unwrap_or_else(|| &c["modified"]);
            let got = got.map_err(|e| format!("two-way: {e}"))?;
            if !cmp(&got, want) {
                return Err(format!("two-way: got {got}, want {want}"));
            }
        }
    }
    let has_result = c.get("result").is_some_and(|r| !r.is_null());
    if !custom
        && has_result
        && let Some(three) = c.get("threeWay")
    {
        let got = patch_fn(&obj(c, "current"), three).map_err(|e| format!("three-way: {e}"))?;
        if !cmp(&got, &c["result"]) {
            return Err(format!("three-way: got {got}, want {}", c["result"]));
        }
    }
    Ok(())
}

/// (file, whether results are compared sorted, whether only two-way applies)
pub(crate) const FILES: [(&str, bool, bool); 5] = [
    ("smp_cases.yaml", true, false),
    ("custom_smp_cases.yaml", true, true),
    ("smp_raw_cases.json", false, false),
    ("custom_smp_raw_cases.json", false, true),
    ("replace_raw_extension_cases.json", false, false),
];

pub(crate) fn cases(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(data_dir().join(file)).unwrap();
    let doc: Value = if std::path::Path::new(file)
        .extension()
        .is_some_and(|e| e == "yaml")
    {
        serde_yaml_ng::from_str(&text).unwrap()
    } else {
        serde_json::from_str(&text).unwrap()
    };
    doc.get("testCases")
        .or_else(|| doc.get("cases"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap()
}

#[test]
fn apimachinery_cases() {
    let defs = schema_defs();
    let r = root();
    let schema = Schema::new(&defs, Some(&r));
    let mut total = 0;
    let mut failed = Vec::new();
    for (file, sort, custom) in FILES {
        for c in cases(file) {
            total += 1;
            let mut f = |t: &Value, p: &Value| {
                let mut t = t.clone();
                apply(&mut t, p, schema)
                    .map(|()| t)
                    .map_err(|e| e.to_string())
            };
            if let Err(e) = run_case(&c, sort, custom, &mut f, &|v| sorted(v, schema)) {
                failed.push(format!("{file}: {}: {e}", c["description"]));
            }
        }
    }
    assert_eq!(total, 146, "the suite has 146 cases");
    assert!(
        failed.is_empty(),
        "{} of {total} failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

#[test]
fn sort_cases_match_upstream_normalisation() {
    let defs = schema_defs();
    let r = root();
    let schema = Schema::new(&defs, Some(&r));
    let cs = cases("sort_merge_list_cases.yaml");
    assert_eq!(cs.len(), 8);
    for c in cs {
        assert!(
            same(&sorted(&c["original"], schema), &c["sorted"]),
            "{}",
            c["description"]
        );
    }
}

#[test]
fn unknown_fields_and_missing_schema_replace() {
    let defs = Map::new();
    let none = Schema::new(&defs, None);
    let mut t = json!({"a": [1, 2], "m": {"x": 1, "y": 2}});
    apply(&mut t, &json!({"a": [3], "m": {"x": null, "z": 3}}), none).unwrap();
    assert_eq!(t, json!({"a": [3], "m": {"y": 2, "z": 3}}));
    assert_eq!(
        apply(&mut t, &json!([1]), none).unwrap_err().to_string(),
        "invalid JSON document"
    );
    let err = apply(&mut t, &json!({"$patch": "bogus"}), none).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown patch type: bogus in map: map[$patch:bogus]"
    );
}

/// The built-in kinds' metadata comes from the generated table.
fn builtin(kind: &str, target: &mut Value, patch: &Value) {
    let r = crate::resources::all()
        .into_iter()
        .find(|r| r.kind == kind)
        .unwrap();
    apply(target, patch, super::schema_of(r).unwrap()).unwrap();
}

#[test]
fn builtin_kinds_merge_by_their_keys() {
    let mut pod = json!({"metadata": {"finalizers": ["f1"]}, "spec": {"containers": [
        {"name": "a", "image": "x:1", "env": [{"name": "E", "value": "1"}],
         "ports": [{"containerPort": 80}]},
        {"name": "b", "image": "y:1"}
    ], "tolerations": [{"key": "t"}]}});
    builtin(
        "Pod",
        &mut pod,
        &json!({"metadata": {"finalizers": ["f2"]}, "spec": {"containers": [
            {"name": "a", "image": "x:2", "env": [{"name": "F", "value": "2"}],
             "ports": [{"containerPort": 81}]},
            {"name": "b", "$patch": "delete"},
            {"name": "c", "image": "z"}
        ], "tolerations": [{"key": "u"}]}}),
    );
    // Without $setElementOrder the patch's items come first, as upstream.
    assert_eq!(
        pod,
        json!({"metadata": {"finalizers": ["f2", "f1"]}, "spec": {"containers": [
            {"name": "a", "image": "x:2", "env": [{"name": "F", "value": "2"}, {"name": "E", "value": "1"}],
             "ports": [{"containerPort": 81}, {"containerPort": 80}]},
            {"name": "c", "image": "z"}
        ], "tolerations": [{"key": "u"}]}})
    );
    // Service ports merge by port; a Deployment's strategy keeps only the
    // keys $retainKeys names (kubectl sends it when the type changes).
    let mut svc = json!({"spec": {"ports": [{"port": 80, "name": "http"}]}});
    builtin(
        "Service",
        &mut svc,
        &json!({"spec": {"ports": [{"port": 443, "name": "https"}]}}),
    );
    assert_eq!(svc["spec"]["ports"].as_array().unwrap().len(), 2);
    let mut d =
        json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
    builtin(
        "Deployment",
        &mut d,
        &json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
    );
    assert_eq!(d, json!({"spec": {"strategy": {"type": "Recreate"}}}));
}

#[test]
fn webhooks_merge_by_name() {
    // Regression: kubectl apply of a changed webhook sent only the changed
    // fields, and the list was replaced by them.
    let mut cfg =
        json!({"webhooks": [{"name": "a.x.y", "sideEffects": "None", "failurePolicy": "Fail"}]});
    builtin(
        "MutatingWebhookConfiguration",
        &mut cfg,
        &json!({"$setElementOrder/webhooks": [{"name": "a.x.y"}], "webhooks": [{"name": "a.x.y", "failurePolicy": "Ignore"}]}),
    );
    assert_eq!(
        cfg,
        json!({"webhooks": [{"name": "a.x.y", "sideEffects": "None", "failurePolicy": "Ignore"}]})
    );
}

#[test]
fn served_openapi_carries_the_metadata() {
    let s = &*crate::openapi::SCHEMAS;
    let c = &s.defs["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(c["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(c["x-kubernetes-patch-strategy"], "merge");
    let v = &s.defs["io.k8s.api.core.v1.PodSpec"]["properties"]["volumes"];
    assert_eq!(v["x-kubernetes-patch-strategy"], "merge,retainKeys");
}

/// Random documents and patches (directives included) never panic the
/// engine: it answers a result or an error. A small deterministic
/// generator, so a failure reproduces.
#[test]
fn random_patches_never_panic() {
    struct Gen(u64);
    impl Gen {
        fn next(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % n
        }
        fn value(&mut self, depth: u32) -> Value {
            const KEYS: [&str; 14] = [
                "name",
                "value",
                "mergingList",
                "nonMergingList",
                "mergingIntList",
                "mergeItemPtr",
                "simpleMap",
                "replacingItem",
                "retainKeysMap",
                "retainKeysMergingList",
                "$patch",
                "$retainKeys",
                "$setElementOrder/mergingList",
                "$deleteFromPrimitiveList/mergingIntList",
            ];
            const WORDS: [&str; 5] = ["replace", "delete", "merge", "a", "name"];
            match (self.next(if depth > 3 { 4 } else { 7 }), depth) {
                (0, _) => Value::Null,
                (1, _) => json!(self.next(4)),
                (2, _) => json!(WORDS[self.next(5) as usize]),
                (3, _) => json!(self.next(2) == 1),
                (4 | 5, _) => {
                    let n = self.next(4);
                    let mut m = Map::new();
                    for _ in 0..n {
                        let k = KEYS[self.next(KEYS.len() as u64) as usize];
                        m.insert(k.into(), self.value(depth + 1));
                    }
                    Value::Object(m)
                }
                _ => Value::Array((0..self.next(4)).map(|_| self.value(depth + 1)).collect()),
            }
        }
    }
    let defs = schema_defs();
    let r = root();
    let schema = Schema::new(&defs, Some(&r));
    let mut g = Gen(16);
    for _ in 0..20_000 {
        let mut t = g.value(0);
        if !t.is_object() {
            t = json!({"mergingList": [t]});
        }
        let p = g.value(0);
        // creating a three-way patch from random documents never panics either
        let (before, after) = (g.value(0), g.value(0));
        let _ = super::three_way(&before, &after, &t, schema);
        let _ = super::merge_patch_diff(&before, &after);
        let _ = apply(&mut t, &p, schema);
    }
}

#[test]
fn merge_directive_is_refused_as_upstream_refuses_it() {
    // apimachinery accepts `$patch: merge` nowhere in a patch it applies:
    // maps take replace or delete, lists refuse merging elements.
    let defs = schema_defs();
    let r = root();
    let schema = Schema::new(&defs, Some(&r));
    let mut t = json!({"mergingList": [{"name": "a"}]});
    let e = apply(&mut t, &json!({"$patch": "merge"}), schema).unwrap_err();
    assert_eq!(
        e.to_string(),
        "unknown patch type: merge in map: map[$patch:merge]"
    );
    let e = apply(
        &mut t,
        &json!({"mergingList": [{"$patch": "merge"}]}),
        schema,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "merging lists cannot yet be specified in the patch"
    );
}

/// The upstream test schema's definitions and root (for the patch-creation tests).
pub(crate) fn schema_for_cases() -> (Map<String, Value>, Value) {
    (schema_defs(), root())
}

/// Upstream's normalisation before comparing the YAML cases.
pub(crate) fn sorted_for_cases(value: &Value, schema: Schema<'_>) -> Value {
    sorted(value, schema)
}
