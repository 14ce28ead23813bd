//! Strategic merge patch, `ResourceQuota` status and `PodSecurity` audit
//! through a real `keel server`:
//! - the 146 strategic-merge-patch cases of kubernetes/apimachinery
//!   (../shared/conformance/k8s-strategic-merge-patch) sent as
//!   `application/strategic-merge-patch+json` patches. They are written for
//!   a test type no cluster serves (`mergeItem`), so the server is started
//!   with its test hook (`KEEL_SMP_TEST_SCHEMA`) giving one custom kind that
//!   type's patch metadata (from upstream's own `OpenAPI` file) under `spec`;
//! - kubectl 1.32's `patch --type=strategic` on built-in kinds, and its 415
//!   refusal for other custom resources, as with Kubernetes;
//! - concurrent creates against a quota of N leave exactly N, and
//!   `kubectl describe quota` shows Used/Hard;
//! - a namespace's `PodSecurity` `audit` level writes upstream's
//!   `pod-security.kubernetes.io/audit-violations` annotation to the audit log.

#[path = "server_common/mod.rs"]
mod common;

use std::path::Path;

use common::{KeelServer, conformance, kubectls};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

const CRD: &str = r"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: mergeitems.smp.keel.test}
spec:
  group: smp.keel.test
  scope: Cluster
  names: {plural: mergeitems, singular: mergeitem, kind: MergeItem}
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

fn doc(c: &Value, k: &str) -> Value {
    match c.get(k) {
        None | Some(Value::Null) => json!({}),
        Some(v) => v.clone(),
    }
}

fn cases(dir: &Path, file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join(file)).unwrap();
    let d: Value = if Path::new(file).extension().is_some_and(|e| e == "yaml") {
        serde_yaml_ng::from_str(&text).unwrap()
    } else {
        serde_json::from_str(&text).unwrap()
    };
    d.get("testCases")
        .or_else(|| d.get("cases"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap()
}

/// Creates an object with `spec` = `start`, patches it with `{"spec": patch}` and
/// returns the stored spec, or the server's message.
async fn through_api(
    api: &Api<DynamicObject>,
    name: &str,
    start: &Value,
    patch: &Value,
) -> Result<Value, String> {
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "smp.keel.test/v1", "kind": "MergeItem",
        "metadata": {"name": name}, "spec": start
    }))
    .unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
    let got = api
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": patch})),
        )
        .await;
    match got {
        Ok(o) => Ok(o.data.get("spec").cloned().unwrap_or_else(|| json!({}))),
        Err(kube::Error::Api(e)) => Err(e.message),
        Err(e) => Err(e.to_string()),
    }
}

async fn apimachinery_cases(s: &KeelServer, k: &Path) {
    s.ok_in(k, &["create", "-f", "-"], Some(CRD));
    s.ok(
        k,
        &[
            "wait",
            "--for",
            "condition=established",
            "crd/mergeitems.smp.keel.test",
            "--timeout=30s",
        ],
    );
    let client = s.kube_client().await;
    let gvk = GroupVersionKind::gvk("smp.keel.test", "v1", "MergeItem");
    let api: Api<DynamicObject> = Api::all_with(
        client,
        &ApiResource::from_gvk_with_plural(&gvk, "mergeitems"),
    );
    let dir = conformance("k8s-strategic-merge-patch");
    let mut total = 0;
    let mut failed = Vec::new();
    for (file, custom) in [
        ("smp_cases.yaml", false),
        ("custom_smp_cases.yaml", true),
        ("smp_raw_cases.json", false),
        ("custom_smp_raw_cases.json", true),
        ("replace_raw_extension_cases.json", false),
    ] {
        for c in cases(&dir, file) {
            total += 1;
            let what = format!("{file}: {}", c["description"]);
            if let Some(two) = c.get("twoWay") {
                let got =
                    through_api(&api, &format!("c{total}-two"), &doc(&c, "original"), two).await;
                match (c.get("expectedError").and_then(Value::as_str), got) {
                    (Some(e), Err(m)) if m.contains(e) => {}
                    (Some(e), other) => {
                        failed.push(format!("{what}: want error {e:?}, got {other:?}"));
                    }
                    (None, Ok(got)) => {
                        let want = c.get("twoWayResult").unwrap_or(&c["modified"]);
                        if !same(&got, want) {
                            failed.push(format!("{what}: two-way gave {got}, want {want}"));
                        }
                    }
                    (None, Err(m)) => failed.push(format!("{what}: two-way refused: {m}")),
                }
            }
            let result = c.get("result").filter(|r| !r.is_null());
            if !custom && let (Some(three), Some(want)) = (c.get("threeWay"), result) {
                match through_api(&api, &format!("c{total}-three"), &doc(&c, "current"), three)
                    .await
                {
                    Ok(got) if same(&got, want) => {}
                    other => failed.push(format!("{what}: three-way gave {other:?}, want {want}")),
                }
            }
        }
    }
    assert_eq!(total, 146);
    assert!(
        failed.is_empty(),
        "{} of 146 failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

fn builtin_and_custom(s: &KeelServer, k: &Path) {
    s.ok(k, &["create", "namespace", "smp"]);
    s.ok_in(
        k,
        &["-n", "smp", "apply", "-f", "-"],
        Some("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{name: http, port: 80}]\n"),
    );
    // Ports merge by `port` (the generated metadata), not replaced.
    s.ok(
        k,
        &[
            "-n",
            "smp",
            "patch",
            "svc",
            "web",
            "--type=strategic",
            "-p",
            r#"{"spec":{"ports":[{"name":"https","port":443}]}}"#,
        ],
    );
    let out = s.ok(
        k,
        &[
            "-n",
            "smp",
            "get",
            "svc",
            "web",
            "-o",
            "jsonpath={.spec.ports[*].port}",
        ],
    );
    assert_eq!(out.trim(), "443 80");
    // Client-side apply's three-way strategic patch: removing a port
    // removes only it.
    s.ok_in(
        k,
        &["-n", "smp", "apply", "-f", "-"],
        Some("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{name: https, port: 443}]\n"),
    );
    let out = s.ok(
        k,
        &[
            "-n",
            "smp",
            "get",
            "svc",
            "web",
            "-o",
            "jsonpath={.spec.ports[*].port}",
        ],
    );
    assert_eq!(out.trim(), "443");
    // A Deployment applied without a strategy gets RollingUpdate defaults;
    // applying `type: Recreate` then works because kubectl's patch carries
    // `$retainKeys` for the strategy (its patch strategy is retainKeys) and
    // the server drops the defaulted rollingUpdate.
    let deploy = |strategy: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n{strategy}  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec: {{containers: [{{name: c, image: busybox}}]}}\n"
        )
    };
    s.ok_in(k, &["-n", "smp", "apply", "-f", "-"], Some(&deploy("")));
    s.ok_in(
        k,
        &["-n", "smp", "apply", "-f", "-"],
        Some(&deploy("  strategy: {type: Recreate}\n")),
    );
    let out = s.ok(
        k,
        &[
            "-n",
            "smp",
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.strategy}",
        ],
    );
    assert_eq!(out.trim(), r#"{"type":"Recreate"}"#);
    // Other custom resources take no strategic merge patch: upstream's 415,
    // which kubectl reports with the kind.
    s.ok_in(
        k,
        &["create", "-f", "-"],
        Some(
            &CRD.replace("mergeitems", "notes")
                .replace("mergeitem", "note")
                .replace("MergeItem", "Note"),
        ),
    );
    s.ok(
        k,
        &[
            "wait",
            "--for",
            "condition=established",
            "crd/notes.smp.keel.test",
            "--timeout=30s",
        ],
    );
    s.ok_in(
        k,
        &["create", "-f", "-"],
        Some("apiVersion: smp.keel.test/v1\nkind: Note\nmetadata: {name: note1}\nspec: {a: 1}\n"),
    );
    let err = s.fails(
        k,
        &[
            "patch",
            "note",
            "note1",
            "--type=strategic",
            "-p",
            r#"{"spec":{"a":2}}"#,
        ],
        None,
    );
    assert!(
        err.contains("application/strategic-merge-patch+json is not supported by smp.keel.test/v1, Kind=Note: the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"),
        "{err}"
    );
    s.ok(
        k,
        &[
            "patch",
            "note",
            "note1",
            "--type=merge",
            "-p",
            r#"{"spec":{"a":2}}"#,
        ],
    );
}

fn quota(s: &KeelServer, k: &Path) {
    s.ok(k, &["create", "namespace", "q"]);
    s.ok(
        k,
        &[
            "-n",
            "q",
            "create",
            "quota",
            "small",
            "--hard=count/configmaps=6,pods=2,requests.cpu=1",
        ],
    );
    // Parallel creates: exactly as many as the quota allows (the namespace
    // already holds kube-root-ca.crt).
    let handles: Vec<_> = (0..16)
        .map(|i| {
            let kubeconfig = s.kubeconfig.clone();
            let home = s.home.path().to_path_buf();
            let k = k.to_path_buf();
            std::thread::spawn(move || {
                std::process::Command::new(k)
                    .args(["-n", "q", "create", "configmap", &format!("cm{i}")])
                    .env("KUBECONFIG", kubeconfig)
                    .env("HOME", home)
                    .output()
                    .unwrap()
            })
        })
        .collect();
    let outs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let ok = outs.iter().filter(|o| o.status.success()).count();
    assert_eq!(ok, 5, "{outs:?}");
    let refused =
        String::from_utf8_lossy(&outs.iter().find(|o| !o.status.success()).unwrap().stderr)
            .to_string();
    assert!(refused.contains("exceeded quota: small, requested: count/configmaps=1, used: count/configmaps=6, limited: count/configmaps=6"), "{refused}");
    let n = s.ok(k, &["-n", "q", "get", "configmaps", "-o", "name"]);
    assert_eq!(n.lines().count(), 6, "{n}");
    let pod = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers: [{{name: c, image: busybox, resources: {{requests: {{cpu: 300m}}}}}}]\n"
        )
    };
    s.ok_in(k, &["-n", "q", "create", "-f", "-"], Some(&pod("p1")));
    let out = s.ok(k, &["-n", "q", "describe", "quota", "small"]);
    assert!(out.contains("count/configmaps  6     6"), "{out}");
    assert!(out.contains("pods              1     2"), "{out}");
    assert!(out.contains("requests.cpu      300m  1"), "{out}");
    // Deleting gives the usage back.
    s.ok(
        k,
        &[
            "-n",
            "q",
            "delete",
            "configmap",
            "cm-x",
            "--ignore-not-found",
        ],
    );
    let victim = n.lines().find(|l| l.contains("/cm")).unwrap().to_string();
    s.ok(k, &["-n", "q", "delete", &victim]);
    let used = s.ok(
        k,
        &[
            "-n",
            "q",
            "get",
            "quota",
            "small",
            "-o",
            "jsonpath={.status.used.count/configmaps}",
        ],
    );
    assert_eq!(used.trim(), "5");
    let hard = s.ok(
        k,
        &[
            "-n",
            "q",
            "get",
            "quota",
            "small",
            "-o",
            "jsonpath={.status.hard.pods}",
        ],
    );
    assert_eq!(hard.trim(), "2");
    // A scoped quota tracks only the pods its scope matches.
    s.ok(k, &["create", "namespace", "qs"]);
    s.ok(
        k,
        &[
            "-n",
            "qs",
            "create",
            "quota",
            "be",
            "--hard=pods=1",
            "--scopes=BestEffort",
        ],
    );
    let plain = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers: [{{name: c, image: busybox}}]\n"
        )
    };
    s.ok_in(k, &["-n", "qs", "create", "-f", "-"], Some(&plain("be1")));
    let err = s.fails(k, &["-n", "qs", "create", "-f", "-"], Some(&plain("be2")));
    assert!(
        err.contains("exceeded quota: be, requested: pods=1, used: pods=1, limited: pods=1"),
        "{err}"
    );
    s.ok_in(k, &["-n", "qs", "create", "-f", "-"], Some(&pod("burst")));
    let used = s.ok(
        k,
        &[
            "-n",
            "qs",
            "get",
            "quota",
            "be",
            "-o",
            "jsonpath={.status.used.pods}",
        ],
    );
    assert_eq!(used.trim(), "1");
}

fn audit(s: &KeelServer, k: &Path) {
    s.ok(k, &["create", "namespace", "aud"]);
    s.ok(
        k,
        &[
            "label",
            "namespace",
            "aud",
            "pod-security.kubernetes.io/audit=restricted",
        ],
    );
    s.ok_in(
        k,
        &["-n", "aud", "create", "-f", "-"],
        Some("apiVersion: v1\nkind: Pod\nmetadata: {name: priv}\nspec:\n  containers: [{name: c, image: busybox, securityContext: {privileged: true}}]\n"),
    );
    let log = std::fs::read_to_string(s.state_dir().join("audit.log")).unwrap();
    let event: Value = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["objectRef"]["name"] == "priv")
        .unwrap_or_else(|| panic!("no audit event for the pod: {log}"));
    let v = event["annotations"]["pod-security.kubernetes.io/audit-violations"]
        .as_str()
        .unwrap();
    assert!(
        v.starts_with("would violate PodSecurity \"restricted:latest\": "),
        "{v}"
    );
    assert!(
        v.contains("privileged (container \"c\" must not set securityContext.privileged=true)"),
        "{v}"
    );
    assert_eq!(event["verb"], "create");
    assert_eq!(event["apiVersion"], "audit.k8s.io/v1");
}

#[tokio::test(flavor = "multi_thread")]
async fn strategic_patch_quota_and_audit_with_kubectl_1_32() {
    // kubectl on PATH is 1.32.
    let k = kubectls().remove(0);
    let schema = conformance("k8s-strategic-merge-patch")
        .join("pkg/util/strategicpatch/testdata/swagger-merge-item-v3.json");
    let s = KeelServer::start_with_env(
        None,
        vec![(
            "KEEL_SMP_TEST_SCHEMA".into(),
            format!("smp.keel.test/v1/MergeItem=mergeItem@{}", schema.display()),
        )],
    );
    apimachinery_cases(&s, &k).await;
    builtin_and_custom(&s, &k);
    quota(&s, &k);
    audit(&s, &k);
}

/// Quota charges are compare-and-swaps on etcd's revisions too.
#[test]
fn quota_and_audit_on_three_member_etcd_with_kubectl_1_33() {
    let cluster = keel_store::testing::EtcdCluster::start(3);
    let s = KeelServer::start(Some(cluster.datastore_url()));
    let k = &kubectls()[1];
    quota(&s, k);
    audit(&s, k);
}
