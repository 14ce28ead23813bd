//! Custom resource definitions through the real kubectl: a CRD becomes
//! Established and its resource is served (discovery, short names, printer
//! columns, status subresource); objects are pruned, defaulted and
//! validated against the schema with every failing field named; deleting
//! the CRD deletes its objects; bad CRDs are refused and leave nothing. The
//! Argo Rollouts CRDs from ../shared/conformance install, and Argo's example
//! manifests are accepted as Kubernetes accepts them, by keel's own typed
//! Rollout schema first and then by Argo's CRDs.

#[path = "server_common/mod.rs"]
mod common;

use std::path::Path;

use common::{KeelServer, conformance, kubectls};

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.k.example.com
spec:
  group: k.example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd], categories: [all]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Mode, type: string, jsonPath: .spec.mode}
    - {name: Ready, type: string, jsonPath: '.status.conditions[?(@.type=="Ready")].status'}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1, maximum: 10}
              mode: {type: string, enum: [fast, slow], default: slow}
              name: {type: string, pattern: '^[a-z]+$'}
              port: {x-kubernetes-int-or-string: true}
          status:
            type: object
            properties:
              conditions:
                type: array
                items:
                  type: object
                  properties:
                    type: {type: string}
                    status: {type: string}
"#;

fn widget(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: k.example.com/v1\nkind: Widget\nmetadata: {{name: {name}, namespace: default}}\nspec: {spec}\n"
    )
}

fn crds(s: &KeelServer, k: &Path) {
    s.ok_in(k, &["create", "-f", "-"], Some(CRD));
    s.ok(
        k,
        &[
            "wait",
            "--for",
            "condition=established",
            "crd/widgets.k.example.com",
            "--timeout=30s",
        ],
    );
    let res = s.ok(k, &["api-resources", "--api-group=k.example.com"]);
    assert!(
        res.contains("widgets") && res.contains("wd") && res.contains("k.example.com/v1"),
        "{res}"
    );

    // Pruned and defaulted (kubectl --validate=false lets the unknown field through).
    s.ok_in(
        k,
        &["create", "--validate=false", "-f", "-"],
        Some(&widget("a", "{size: 3, junk: 1}")),
    );
    let got = s.ok(k, &["get", "wd", "a", "-o", "jsonpath={.spec}"]);
    let spec: serde_json::Value = serde_json::from_str(&got).unwrap();
    assert_eq!(
        spec,
        serde_json::json!({"size": 3, "mode": "slow"}),
        "{got}"
    );
    // Strict validation (kubectl's default) names the unknown field.
    let err = s.fails(
        k,
        &["create", "-f", "-"],
        Some(&widget("u", "{size: 3, junk: 1}")),
    );
    assert!(err.contains("unknown field \"spec.junk\""), "{err}");
    // Every failing field is named.
    let err = s.fails(
        k,
        &["create", "-f", "-"],
        Some(&widget(
            "bad",
            "{size: 11, mode: medium, name: ABC, port: 1.5}",
        )),
    );
    for want in [
        "spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10",
        "spec.mode: Unsupported value: \"medium\": supported values: \"fast\", \"slow\"",
        "spec.name: Invalid value: \"ABC\": spec.name in body should match '^[a-z]+$'",
        "spec.port: Invalid value",
    ] {
        assert!(err.contains(want), "{want} not in {err}");
    }
    let err = s.fails(
        k,
        &["create", "-f", "-"],
        Some(&widget("none", "{mode: fast}")),
    );
    assert!(err.contains("spec.size: Required value"), "{err}");
    let out = s.kubectl_with(k, &["get", "wd", "bad"], None);
    assert!(!out.status.success(), "a refused object is not stored");

    // Status is a subresource; printer columns show in kubectl get.
    s.ok(
        k,
        &[
            "patch",
            "wd",
            "a",
            "--type=merge",
            "-p",
            r#"{"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#,
        ],
    );
    assert_eq!(
        s.ok(k, &["get", "wd", "a", "-o", "jsonpath={.status}"]),
        "",
        "main resource ignores status"
    );
    s.ok(
        k,
        &[
            "patch",
            "wd",
            "a",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#,
        ],
    );
    let table = s.ok(k, &["get", "widgets"]);
    let header = table.lines().next().unwrap();
    assert!(
        header.contains("SIZE")
            && header.contains("MODE")
            && header.contains("READY")
            && header.contains("AGE"),
        "{table}"
    );
    let row = table.lines().nth(1).unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[..4], ["a", "3", "slow", "True"], "{table}");
    // The `all` category includes widgets.
    assert!(
        s.ok(k, &["get", "all", "-o", "name"])
            .contains("widget.k.example.com/a")
    );

    // Bad CRDs are refused and leave nothing.
    let bad = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: things.nodot}\nspec:\n  group: nodot\n  scope: Everywhere\n  names: {plural: things, kind: Thing}\n  versions:\n  - {name: v1, served: true, storage: true}\n";
    let err = s.fails(k, &["create", "-f", "-"], Some(bad));
    assert!(
        err.contains(
            "spec.group: Invalid value: \"nodot\": should be a domain with at least one dot"
        ) && err.contains("spec.scope: Unsupported value: \"Everywhere\"")
            && err.contains("schemas are required"),
        "{err}"
    );
    assert!(
        !s.kubectl_with(k, &["get", "crd", "things.nodot"], None)
            .status
            .success()
    );

    // Deleting the CRD deletes its objects.
    s.ok(
        k,
        &["delete", "crd", "widgets.k.example.com", "--timeout=30s"],
    );
    let out = s.kubectl_with(k, &["get", "widgets.k.example.com", "-A"], None);
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    s.ok_in(k, &["create", "-f", "-"], Some(CRD));
    s.ok(
        k,
        &[
            "wait",
            "--for",
            "condition=established",
            "crd/widgets.k.example.com",
            "--timeout=30s",
        ],
    );
    let out = s.ok(k, &["get", "widgets", "-A", "-o", "name"]);
    assert_eq!(out.trim(), "", "objects of the deleted CRD came back");

    // keel's own Rollout schema (typed as Argo's CRD): Argo's example
    // Rollouts are accepted, a mistyped one is refused with every field
    // named in Kubernetes' words.
    let dir = conformance("argo-rollouts");
    s.ok(k, &["create", "namespace", "argo"]);
    let mut examples = Vec::new();
    for f in std::fs::read_dir(dir.join("examples")).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "yaml") {
            examples.push(p);
        }
    }
    examples.sort();
    for p in &examples {
        s.ok(
            k,
            &[
                "-n",
                "argo",
                "create",
                "--dry-run=server",
                "-f",
                p.to_str().unwrap(),
            ],
        );
    }
    let bad = "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {name: bad, namespace: argo}\nspec:\n  replicas: three\n  selector: {matchLabels: {app: x}}\n  template: {metadata: {labels: {app: x}}, spec: {containers: [{name: c, image: nginx, ports: [{containerPort: '80'}]}]}}\n  strategy: {canary: {steps: [{setWeight: '20'}, {pause: {duration: 1.5}}]}}\n";
    let err = s.fails(k, &["create", "-f", "-"], Some(bad));
    for line in [
        "The Rollout \"bad\" is invalid: ",
        "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\"",
        "spec.strategy.canary.steps[0].setWeight: Invalid value: \"string\": spec.strategy.canary.steps[0].setWeight in body must be of type integer: \"string\"",
        "spec.strategy.canary.steps[1].pause.duration: Invalid value: \"number\": spec.strategy.canary.steps[1].pause.duration in body must be of type integer,string: \"number\"",
        "spec.template.spec.containers[0].ports[0].containerPort: Invalid value: \"string\": spec.template.spec.containers[0].ports[0].containerPort in body must be of type integer: \"string\"",
    ] {
        assert!(err.contains(line), "{line}\nnot in: {err}");
    }

    // Argo Rollouts: keel serves Argo's kinds itself; Argo's own CRDs still
    // install over them as Argo's docs say (server-side apply: they are too
    // big for apply's last-applied annotation); examples are accepted, a
    // mistyped Rollout is refused with its field named.
    let mut args: Vec<String> = ["apply", "--server-side", "--force-conflicts"]
        .map(String::from)
        .into();
    for f in [
        "rollout",
        "analysis-template",
        "cluster-analysis-template",
        "analysis-run",
        "experiment",
    ] {
        args.push("-f".into());
        args.push(
            dir.join(format!("manifests/crds/{f}-crd.yaml"))
                .display()
                .to_string(),
        );
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    s.ok(k, &args);
    s.ok(
        k,
        &[
            "wait",
            "--for",
            "condition=established",
            "crd",
            "--all",
            "--timeout=60s",
        ],
    );
    let mut accepted = 0;
    for f in std::fs::read_dir(dir.join("examples")).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "yaml") {
            s.ok(k, &["-n", "argo", "create", "-f", p.to_str().unwrap()]);
            accepted += 1;
        }
    }
    assert!(accepted >= 10, "{accepted}");
    let rollouts = s.ok(
        k,
        &["-n", "argo", "get", "rollouts.argoproj.io", "-o", "name"],
    );
    assert!(rollouts.lines().count() >= 9, "{rollouts}");
    for f in [
        "malformed-analysistemplate.yaml",
        "malformed-experiment.yaml",
    ] {
        let p = dir.join("test/e2e/expectedfailures").join(f);
        s.ok(k, &["-n", "argo", "create", "-f", p.to_str().unwrap()]);
    }
    let bad = "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {name: bad, namespace: argo}\nspec:\n  replicas: three\n  selector: {matchLabels: {app: x}}\n  template: {metadata: {labels: {app: x}}, spec: {containers: [{name: c, image: nginx}]}}\n";
    let err = s.fails(k, &["create", "-f", "-"], Some(bad));
    assert!(err.contains("spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\""), "{err}");
}

#[test]
fn crds_with_kubectl_1_32() {
    let s = KeelServer::start(None);
    crds(&s, &kubectls()[0]);
}

#[test]
fn crds_with_kubectl_1_33_on_three_member_etcd() {
    let cluster = keel_store::testing::EtcdCluster::start(3);
    let s = KeelServer::start(Some(cluster.datastore_url()));
    crds(&s, &kubectls()[1]);
}

/// A root from before keel typed the Experiment schema (its CRD stored with
/// `spec` open) gets the typed schema when the server starts again; a
/// mistyped Experiment is then refused with its field named.
#[test]
fn a_restarted_server_types_its_own_open_crd() {
    let mut s = KeelServer::start(None);
    let k = &kubectls()[1];
    let crd = "experiments.argoproj.io";
    let mut old: serde_json::Value =
        serde_json::from_str(&s.ok(k, &["get", "crd", crd, "-o", "json"])).unwrap();
    old["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = serde_json::json!({
        "type": "object", "properties": {
            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}});
    // Unconditional: the server may still be writing the CRD's status.
    old["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    old.as_object_mut().unwrap().remove("status");
    s.ok_in(k, &["replace", "-f", "-"], Some(&old.to_string()));
    let bad = "apiVersion: argoproj.io/v1alpha1\nkind: Experiment\nmetadata: {name: bad}\nspec:\n  duration: 30\n  templates: [{name: a, selector: {matchLabels: {app: a}}, template: {spec: {containers: [{name: c, image: busybox}]}}}]\n";
    s.ok_in(k, &["create", "--dry-run=server", "-f", "-"], Some(bad));
    s.restart();
    let err = s.fails(k, &["create", "-f", "-"], Some(bad));
    assert!(
        err.contains("spec.duration: Invalid value: \"integer\": spec.duration in body must be of type string: \"integer\""),
        "{err}"
    );
}
