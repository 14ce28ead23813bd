//! JSON patch (RFC 6902) through `keel server`'s patch endpoint: every case
//! of the json-patch-tests suite in ../shared/conformance/json-patch-rfc6902
//! (the RFC's own examples and the community cases) is sent by the real
//! `kubectl patch --type=json` to a custom object whose `spec.doc` holds the
//! case's document. A case with `expected` must leave exactly that document;
//! a case with `error` must be refused and leave the object unchanged.

#[path = "server_common/mod.rs"]
mod common;

use std::path::Path;

use common::{KeelServer, conformance, kubectls};
use serde_json::{Value, json};

const CRD: &str = r"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: docs.patch.keel.test}
spec:
  group: patch.keel.test
  scope: Namespaced
  names: {plural: docs, singular: doc, kind: Doc}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
";

/// JSON pointers of the case, moved under `/spec/doc`; one without its
/// leading slash stays as it is (invalid anywhere).
fn under_doc(patch: &Value) -> Value {
    let mut p = patch.clone();
    for op in p.as_array_mut().into_iter().flatten() {
        for k in ["path", "from"] {
            if let Some(Value::String(s)) = op.get(k)
                && (s.is_empty() || s.starts_with('/'))
            {
                let moved = format!("/spec/doc{s}");
                op[k] = json!(moved);
            }
        }
    }
    p
}

/// Numbers compared by value (1 and 1.0 are the same JSON number).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn doc_of(s: &KeelServer, k: &Path, name: &str) -> Value {
    let got = s.ok(k, &["get", "doc", name, "-o", "json"]);
    let obj: Value = serde_json::from_str(&got).unwrap();
    obj.pointer("/spec/doc").cloned().unwrap_or(Value::Null)
}

fn rfc6902(s: &KeelServer, k: &Path) {
    s.ok_in(k, &["create", "-f", "-"], Some(CRD));
    s.ok(
        k,
        &[
            "wait",
            "--for",
            "condition=established",
            "crd/docs.patch.keel.test",
            "--timeout=30s",
        ],
    );
    let dir = conformance("json-patch-rfc6902");
    let mut ran = 0;
    let mut wrong = Vec::new();
    for file in ["spec_tests.json", "tests.json"] {
        let cases: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap();
        for (i, case) in cases.iter().enumerate() {
            if case.get("disabled") == Some(&json!(true))
                || case.get("doc").is_none()
                || case.get("patch").is_none()
            {
                continue;
            }
            let what = format!(
                "{file}[{i}] {}",
                case.get("comment")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            );
            let name = format!("{}-{i}", file.trim_end_matches(".json").replace('_', "-"));
            let obj = json!({"apiVersion": "patch.keel.test/v1", "kind": "Doc",
                "metadata": {"name": name, "namespace": "default"}, "spec": {"doc": case["doc"]}});
            s.ok_in(k, &["create", "-f", "-"], Some(&obj.to_string()));
            let patch = under_doc(&case["patch"]).to_string();
            let out = s.kubectl_with(
                k,
                &["patch", "doc", &name, "--type=json", "-p", &patch],
                None,
            );
            let after = doc_of(s, k, &name);
            ran += 1;
            if let Some(want) = case.get("expected") {
                if !out.status.success() {
                    wrong.push(format!(
                        "{what}: refused: {}",
                        String::from_utf8_lossy(&out.stderr)
                    ));
                } else if !same(&after, want) {
                    wrong.push(format!("{what}: got {after}, want {want}"));
                }
            } else if out.status.success() {
                wrong.push(format!(
                    "{what}: accepted (want an error: {}), gave {after}",
                    case["error"]
                ));
            } else if !same(&after, &case["doc"]) {
                wrong.push(format!("{what}: refused but changed to {after}"));
            }
        }
    }
    assert!(ran >= 100, "only {ran} cases ran");
    assert!(
        wrong.is_empty(),
        "{} of {ran} cases wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn rfc6902_suite_through_the_patch_endpoint() {
    let s = KeelServer::start(None);
    rfc6902(&s, &kubectls()[0]);
}
