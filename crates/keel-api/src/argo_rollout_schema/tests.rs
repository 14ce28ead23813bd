use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize as _;
use serde_json::{Value, json};

fn argos(file: &str) -> Value {
    let path = crate::conformance("argo-rollouts/manifests/crds").join(file);
    let crd: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// Without what does not change validation or pruning: descriptions, and
/// the `default: ""`/`false` controller-gen writes for Go zero values (a
/// Kubernetes server writes those; keel's pod defaulting does the same
/// downstream).
fn normal(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "description" | "default"))
                .map(|(k, x)| (k.clone(), normal(x)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normal).collect()),
        other => other.clone(),
    }
}

/// Every node below `s` as `path -> node without its children`.
fn nodes(s: &Value, path: &str, out: &mut BTreeMap<String, Value>) {
    let mut own = s.clone();
    if let Some(o) = own.as_object_mut() {
        for k in ["properties", "items", "additionalProperties"] {
            o.remove(k);
        }
        // list/map types steer server-side apply merges, not validation.
        for k in [
            "x-kubernetes-list-type",
            "x-kubernetes-list-map-keys",
            "x-kubernetes-map-type",
            "x-kubernetes-patch-strategy",
            "x-kubernetes-patch-merge-key",
        ] {
            o.remove(k);
        }
        if let Some(Value::Array(r)) = o.get_mut("required") {
            r.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
        }
    }
    out.insert(path.to_string(), own);
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        for (k, p) in props {
            nodes(p, &format!("{path}.{k}"), out);
        }
    }
    if let Some(items) = s.get("items") {
        nodes(items, &format!("{path}[]"), out);
    }
    if let Some(extra) = s.get("additionalProperties").filter(|a| a.is_object()) {
        nodes(extra, &format!("{path}{{}}"), out);
    }
}

/// Everything outside the pod spec is Argo's schema exactly; the pod spec
/// (generated from keel's Kubernetes 1.33 definitions) agrees with Argo's
/// on every field both have, and the fields only Argo's has are the
/// Kubernetes versions' difference, listed here.
#[test]
fn rollout_schema_is_argos() {
    is_argos(&super::schema(), "rollout-crd.yaml", ".spec.template.spec.");
}

#[test]
fn experiment_schema_is_argos() {
    is_argos(
        &super::experiment_schema(),
        "experiment-crd.yaml",
        ".spec.templates[].template.spec.",
    );
}

/// `ours` is the schema of Argo's CRD `file` but for the pod spec at `pod`.
fn is_argos(ours: &Value, file: &str, pod: &str) {
    let (ours, theirs) = (normal(ours), normal(&argos(file)));
    let (mut o, mut t) = (BTreeMap::default(), BTreeMap::default());
    nodes(&ours, "", &mut o);
    nodes(&theirs, "", &mut t);
    let mut differ = Vec::new();
    for (path, node) in &t {
        match o.get(path) {
            Some(mine) if mine == node => {}
            Some(mine) => differ.push(format!("{path}: ours {mine} theirs {node}")),
            None if path.starts_with(pod) => {}
            None => differ.push(format!("{path}: missing")),
        }
    }
    for path in o.keys() {
        if !t.contains_key(path) && !path.starts_with(pod) {
            differ.push(format!("{path}: not in Argo's"));
        }
    }
    assert!(differ.is_empty(), "{differ:#?}");
    // Top-level fields only one side has (their subtrees follow them).
    let only = |a: &BTreeMap<String, Value>, b: &BTreeMap<String, Value>| {
        let mut out: BTreeSet<String> = BTreeSet::new();
        for p in a
            .keys()
            .filter(|p| p.starts_with(pod) && !b.contains_key(*p))
        {
            if !out
                .iter()
                .any(|q| p.starts_with(&format!("{q}.")) || p.starts_with(&format!("{q}[")))
            {
                out.insert(p.clone());
            }
        }
        out
    };
    // Argo's CRD is generated from Kubernetes 1.34's types: these fields
    // are newer than keel's Pods (1.33), which could not carry them either.
    let newer: BTreeSet<String> = [
        "containers[].env[].valueFrom.fileKeyRef",
        "containers[].restartPolicyRules",
        "ephemeralContainers[].env[].valueFrom.fileKeyRef",
        "ephemeralContainers[].restartPolicyRules",
        "hostnameOverride",
        "initContainers[].env[].valueFrom.fileKeyRef",
        "initContainers[].restartPolicyRules",
    ]
    .iter()
    .map(|f| format!("{pod}{f}"))
    .collect();
    assert_eq!(only(&t, &o), newer, "pod spec fields only Argo's has");
    assert_eq!(
        only(&o, &t),
        BTreeSet::new(),
        "pod spec fields only ours has"
    );
    assert!(o.len() > 1000, "{} schema nodes", o.len());
}

fn version() -> crate::crd::Version {
    version_with(super::schema())
}

fn version_with(schema: Value) -> crate::crd::Version {
    crate::crd::Version {
        resource: crate::resources::find("", "v1", "configmaps").unwrap(),
        schema,
        columns: Vec::new(),
    }
}

/// Every object of `kind` in Argo's examples and end-to-end manifests,
/// admitted by `schema`: each is accepted and nothing is pruned. Returns
/// how many there were.
fn argos_are_accepted_unchanged(kind: &str, schema: Value) -> usize {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "yaml") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&crate::conformance("argo-rollouts/examples"), &mut files);
    walk(&crate::conformance("argo-rollouts/test"), &mut files);
    let v = version_with(schema);
    let mut seen = 0;
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            // After a document that does not parse, the stream yields the
            // same error forever.
            let Ok(mut obj) = Value::deserialize(doc) else {
                break;
            };
            if obj["kind"] != kind || obj["apiVersion"] != "argoproj.io/v1alpha1" {
                continue;
            }
            let before = obj.clone();
            let causes = crate::crd::admit(&v, &mut obj);
            assert!(causes.is_empty(), "{}: {causes:?}", path.display());
            assert_eq!(obj, before, "{}: pruned", path.display());
            seen += 1;
        }
    }
    seen
}

/// Argo's Rollouts, including those it expects to fail later (in its
/// controller, not at the API).
#[test]
fn argos_rollouts_are_accepted_unchanged() {
    let seen = argos_are_accepted_unchanged("Rollout", super::schema());
    // All 84 of the corpus (helm templates and a broken YAML do not parse).
    assert!(seen >= 84, "{seen} Rollouts");
}

/// Argo's Experiments, the malformed ones too: Argo's CRD leaves a
/// container's resources open and a template's pod spec optional, and its
/// controller fails them.
#[test]
fn argos_experiments_are_accepted_unchanged() {
    let seen = argos_are_accepted_unchanged("Experiment", super::experiment_schema());
    assert!(seen >= 10, "{seen} Experiments");
}

/// Mistyped and missing fields of an Experiment are refused with
/// Kubernetes' messages, unknown ones pruned.
#[test]
fn mistyped_experiments_are_refused_and_unknown_fields_pruned() {
    let v = version_with(super::experiment_schema());
    let mut obj = json!({"spec": {"duration": 30, "templates": [
        {"name": "a", "replicas": "one", "template": {"spec": {"containers": [{"name": "c"}]}}}],
        "analyses": [{"name": "x", "templateName": "t",
            "args": [{"name": "n", "valueFrom": {"podTemplateHashValue": "Stable"}}]}]}});
    let causes = crate::crd::admit(&v, &mut obj);
    let fields: Vec<(&str, &str)> = causes
        .iter()
        .map(|c| (c.field.as_str(), c.message.as_str()))
        .collect();
    assert_eq!(
        fields,
        [
            (
                "spec.duration",
                "Invalid value: \"integer\": spec.duration in body must be of type string: \"integer\""
            ),
            ("spec.templates[0].selector", "Required value"),
            (
                "spec.templates[0].replicas",
                "Invalid value: \"string\": spec.templates[0].replicas in body must be of type integer: \"string\""
            ),
        ],
        "{causes:?}"
    );
    let mut obj = json!({"spec": {"typo": true, "templates": [{"name": "a",
        "selector": {"matchLabels": {"app": "a"}}, "specRef": "canary",
        "template": {"spec": {"containers": [{"name": "c"}]}}}],
        "analyses": [{"name": "x", "templateName": "t",
            "args": [{"name": "n", "valueFrom": {"podTemplateHashValue": "Stable"}}]}]}});
    assert!(crate::crd::admit(&v, &mut obj).is_empty());
    assert_eq!(
        obj,
        json!({"spec": {"templates": [{"name": "a", "selector": {"matchLabels": {"app": "a"}},
            "template": {"spec": {"containers": [{"name": "c"}]}}}],
            "analyses": [{"name": "x", "templateName": "t",
                "args": [{"name": "n", "valueFrom": {}}]}]}})
    );
}

fn causes_of(obj: Value) -> Vec<crate::validate::Cause> {
    let mut obj = obj;
    crate::crd::admit(&version(), &mut obj)
}

#[test]
fn mistyped_rollouts_are_refused_with_kubernetes_messages() {
    let causes = causes_of(
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "r"},
        "spec": {"replicas": "three",
            "selector": {"matchLabels": {"app": "r"}},
            "template": {"metadata": {"labels": {"app": "r"}}, "spec": {"containers": [
                {"name": "c", "image": "nginx", "ports": [{"containerPort": "80"}]}]}},
            "strategy": {"canary": {"steps": [{"setWeight": "20"}, {"pause": {"duration": 1.5}}],
                "maxSurge": true}}}}),
    );
    let msg = |f: &str| {
        causes
            .iter()
            .find(|c| c.field == f)
            .unwrap_or_else(|| panic!("{f} not refused: {causes:?}"))
            .message
            .clone()
    };
    assert_eq!(
        msg("spec.replicas"),
        "Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\""
    );
    assert_eq!(
        msg("spec.strategy.canary.steps[0].setWeight"),
        "Invalid value: \"string\": spec.strategy.canary.steps[0].setWeight in body must be of type integer: \"string\""
    );
    assert_eq!(
        msg("spec.strategy.canary.steps[1].pause.duration"),
        "Invalid value: \"number\": spec.strategy.canary.steps[1].pause.duration in body must be of type integer,string: \"number\""
    );
    assert_eq!(
        msg("spec.strategy.canary.maxSurge"),
        "Invalid value: \"boolean\": spec.strategy.canary.maxSurge in body must be of type integer,string: \"boolean\""
    );
    assert_eq!(
        msg("spec.template.spec.containers[0].ports[0].containerPort"),
        "Invalid value: \"string\": spec.template.spec.containers[0].ports[0].containerPort in body must be of type integer: \"string\""
    );
    assert_eq!(causes.len(), 5, "{causes:?}");

    let causes = causes_of(
        json!({"spec": {"strategy": {"blueGreen": {"previewService": "p"}},
        "template": {"spec": {"containers": [{"name": "c"}], "overhead": {"cpu": "lots"}}}}}),
    );
    let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.strategy.blueGreen.activeService",
            "spec.template.spec.overhead[cpu]"
        ],
        "{causes:?}"
    );
    assert_eq!(causes[0].message, "Required value");
    assert!(
        causes[1]
            .message
            .starts_with("Invalid value: \"lots\": spec.template.spec.overhead[cpu] in body should match '^(\\+|-)?"),
        "{causes:?}"
    );
}

/// Fields Argo's CRD does not have are pruned, as a Kubernetes server
/// prunes them; open parts (plugin configuration) keep theirs.
#[test]
fn unknown_fields_are_pruned_and_plugin_config_kept() {
    let mut obj = json!({"spec": {"typo": 1, "strategy": {"canary": {"stepz": [],
        "trafficRouting": {"plugins": {"argoproj-labs/gatewayAPI": {"httpRoute": "r"}}}}},
        "template": {"spec": {"containers": [{"name": "c", "colour": "red"}]}}}});
    assert!(crate::crd::admit(&version(), &mut obj).is_empty());
    assert_eq!(
        obj,
        json!({"spec": {"strategy": {"canary": {
            "trafficRouting": {"plugins": {"argoproj-labs/gatewayAPI": {"httpRoute": "r"}}}}},
            "template": {"spec": {"containers": [{"name": "c"}]}}}})
    );
}
