//! Every built-in kind of Kubernetes 1.32 through the real kubectl (1.32 and
//! 1.33): `kubectl api-resources` lists each with its usual short names
//! (from aggregated discovery, without one request per group), one object
//! of every stored kind is created, read and deleted, the computed kinds
//! answer (binding, eviction, componentstatuses, whoami, can-i, reviews), and
//! `kubectl explain` reads the `OpenAPI` v3 schemas.

#[path = "server_common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;

use common::{KeelServer, kubectls};

/// `kubectl api-resources` of a Kubernetes 1.32 cluster with its default
/// groups: name, short names, apiVersion, namespaced, kind.
const API_RESOURCES: &[(&str, &str, &str, bool, &str)] = &[
    ("bindings", "", "v1", true, "Binding"),
    ("componentstatuses", "cs", "v1", false, "ComponentStatus"),
    ("configmaps", "cm", "v1", true, "ConfigMap"),
    ("endpoints", "ep", "v1", true, "Endpoints"),
    ("events", "ev", "v1", true, "Event"),
    ("limitranges", "limits", "v1", true, "LimitRange"),
    ("namespaces", "ns", "v1", false, "Namespace"),
    ("nodes", "no", "v1", false, "Node"),
    (
        "persistentvolumeclaims",
        "pvc",
        "v1",
        true,
        "PersistentVolumeClaim",
    ),
    ("persistentvolumes", "pv", "v1", false, "PersistentVolume"),
    ("pods", "po", "v1", true, "Pod"),
    ("podtemplates", "", "v1", true, "PodTemplate"),
    (
        "replicationcontrollers",
        "rc",
        "v1",
        true,
        "ReplicationController",
    ),
    ("resourcequotas", "quota", "v1", true, "ResourceQuota"),
    ("secrets", "", "v1", true, "Secret"),
    ("serviceaccounts", "sa", "v1", true, "ServiceAccount"),
    ("services", "svc", "v1", true, "Service"),
    (
        "mutatingwebhookconfigurations",
        "",
        "admissionregistration.k8s.io/v1",
        false,
        "MutatingWebhookConfiguration",
    ),
    (
        "validatingadmissionpolicies",
        "",
        "admissionregistration.k8s.io/v1",
        false,
        "ValidatingAdmissionPolicy",
    ),
    (
        "validatingadmissionpolicybindings",
        "",
        "admissionregistration.k8s.io/v1",
        false,
        "ValidatingAdmissionPolicyBinding",
    ),
    (
        "validatingwebhookconfigurations",
        "",
        "admissionregistration.k8s.io/v1",
        false,
        "ValidatingWebhookConfiguration",
    ),
    (
        "customresourcedefinitions",
        "crd,crds",
        "apiextensions.k8s.io/v1",
        false,
        "CustomResourceDefinition",
    ),
    (
        "apiservices",
        "",
        "apiregistration.k8s.io/v1",
        false,
        "APIService",
    ),
    (
        "controllerrevisions",
        "",
        "apps/v1",
        true,
        "ControllerRevision",
    ),
    ("daemonsets", "ds", "apps/v1", true, "DaemonSet"),
    ("deployments", "deploy", "apps/v1", true, "Deployment"),
    ("replicasets", "rs", "apps/v1", true, "ReplicaSet"),
    ("statefulsets", "sts", "apps/v1", true, "StatefulSet"),
    (
        "selfsubjectreviews",
        "",
        "authentication.k8s.io/v1",
        false,
        "SelfSubjectReview",
    ),
    (
        "tokenreviews",
        "",
        "authentication.k8s.io/v1",
        false,
        "TokenReview",
    ),
    (
        "localsubjectaccessreviews",
        "",
        "authorization.k8s.io/v1",
        true,
        "LocalSubjectAccessReview",
    ),
    (
        "selfsubjectaccessreviews",
        "",
        "authorization.k8s.io/v1",
        false,
        "SelfSubjectAccessReview",
    ),
    (
        "selfsubjectrulesreviews",
        "",
        "authorization.k8s.io/v1",
        false,
        "SelfSubjectRulesReview",
    ),
    (
        "subjectaccessreviews",
        "",
        "authorization.k8s.io/v1",
        false,
        "SubjectAccessReview",
    ),
    (
        "horizontalpodautoscalers",
        "hpa",
        "autoscaling/v2",
        true,
        "HorizontalPodAutoscaler",
    ),
    ("cronjobs", "cj", "batch/v1", true, "CronJob"),
    ("jobs", "", "batch/v1", true, "Job"),
    (
        "certificatesigningrequests",
        "csr",
        "certificates.k8s.io/v1",
        false,
        "CertificateSigningRequest",
    ),
    ("leases", "", "coordination.k8s.io/v1", true, "Lease"),
    (
        "endpointslices",
        "",
        "discovery.k8s.io/v1",
        true,
        "EndpointSlice",
    ),
    ("events", "ev", "events.k8s.io/v1", true, "Event"),
    (
        "flowschemas",
        "",
        "flowcontrol.apiserver.k8s.io/v1",
        false,
        "FlowSchema",
    ),
    (
        "prioritylevelconfigurations",
        "",
        "flowcontrol.apiserver.k8s.io/v1",
        false,
        "PriorityLevelConfiguration",
    ),
    (
        "ingressclasses",
        "",
        "networking.k8s.io/v1",
        false,
        "IngressClass",
    ),
    ("ingresses", "ing", "networking.k8s.io/v1", true, "Ingress"),
    // Gateway API, served as CRDs for keel's ingress gateway (keel-gateway).
    (
        "gatewayclasses",
        "gc",
        "gateway.networking.k8s.io/v1",
        false,
        "GatewayClass",
    ),
    (
        "gateways",
        "gtw",
        "gateway.networking.k8s.io/v1",
        true,
        "Gateway",
    ),
    (
        "httproutes",
        "",
        "gateway.networking.k8s.io/v1",
        true,
        "HTTPRoute",
    ),
    // Argo Rollouts' kinds, served as CRDs for keel's rollout controllers.
    ("rollouts", "ro", "argoproj.io/v1alpha1", true, "Rollout"),
    (
        "analysistemplates",
        "at",
        "argoproj.io/v1alpha1",
        true,
        "AnalysisTemplate",
    ),
    (
        "clusteranalysistemplates",
        "cat",
        "argoproj.io/v1alpha1",
        false,
        "ClusterAnalysisTemplate",
    ),
    (
        "analysisruns",
        "ar",
        "argoproj.io/v1alpha1",
        true,
        "AnalysisRun",
    ),
    (
        "experiments",
        "exp",
        "argoproj.io/v1alpha1",
        true,
        "Experiment",
    ),
    // Resource metrics (metrics-server's group), read-only: kubectl top.
    ("nodes", "", "metrics.k8s.io/v1beta1", false, "NodeMetrics"),
    ("pods", "", "metrics.k8s.io/v1beta1", true, "PodMetrics"),
    (
        "networkpolicies",
        "netpol",
        "networking.k8s.io/v1",
        true,
        "NetworkPolicy",
    ),
    (
        "runtimeclasses",
        "",
        "node.k8s.io/v1",
        false,
        "RuntimeClass",
    ),
    (
        "poddisruptionbudgets",
        "pdb",
        "policy/v1",
        true,
        "PodDisruptionBudget",
    ),
    (
        "clusterrolebindings",
        "",
        "rbac.authorization.k8s.io/v1",
        false,
        "ClusterRoleBinding",
    ),
    (
        "clusterroles",
        "",
        "rbac.authorization.k8s.io/v1",
        false,
        "ClusterRole",
    ),
    (
        "rolebindings",
        "",
        "rbac.authorization.k8s.io/v1",
        true,
        "RoleBinding",
    ),
    ("roles", "", "rbac.authorization.k8s.io/v1", true, "Role"),
    (
        "priorityclasses",
        "pc",
        "scheduling.k8s.io/v1",
        false,
        "PriorityClass",
    ),
    ("csidrivers", "", "storage.k8s.io/v1", false, "CSIDriver"),
    ("csinodes", "", "storage.k8s.io/v1", false, "CSINode"),
    (
        "csistoragecapacities",
        "",
        "storage.k8s.io/v1",
        true,
        "CSIStorageCapacity",
    ),
    (
        "storageclasses",
        "sc",
        "storage.k8s.io/v1",
        false,
        "StorageClass",
    ),
    (
        "volumeattachments",
        "",
        "storage.k8s.io/v1",
        false,
        "VolumeAttachment",
    ),
];

fn data(name: &str) -> String {
    let p = format!("{}/tests/data/server/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// Rows of `kubectl api-resources`, cut at the header's column starts.
fn api_resources(s: &KeelServer, k: &Path) -> Vec<(String, String, String, bool, String)> {
    let out = s.ok(k, &["api-resources"]);
    let mut lines = out.lines();
    let header = lines.next().unwrap();
    let col = |name: &str| header.find(name).unwrap();
    let cuts = [
        0,
        col("SHORTNAMES"),
        col("APIVERSION"),
        col("NAMESPACED"),
        col("KIND"),
    ];
    lines
        .map(|l| {
            let f = |i: usize| {
                let end = cuts.get(i + 1).copied().unwrap_or(l.len()).min(l.len());
                l[cuts[i].min(l.len())..end].trim().to_string()
            };
            (f(0), f(1), f(2), f(3) == "true", f(4))
        })
        .collect()
}

/// A certificate signing request in PEM, base64-encoded, made by openssl.
fn csr_request(dir: &Path) -> String {
    let key = dir.join("csr.key");
    let out = Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=k-user",
        ])
        .arg("-keyout")
        .arg(&key)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &out.stdout)
}

fn every_kind(s: &KeelServer, k: &Path) {
    // Discovery: every resource with kubectl's columns, from the aggregated
    // documents (no request per group version).
    let rows = api_resources(s, k);
    for (name, short, api_version, namespaced, kind) in API_RESOURCES {
        let want = (
            (*name).to_string(),
            (*short).to_string(),
            (*api_version).to_string(),
            *namespaced,
            (*kind).to_string(),
        );
        assert!(rows.contains(&want), "missing {want:?} in {rows:#?}");
    }
    assert_eq!(rows.len(), API_RESOURCES.len(), "{rows:#?}");
    let verbose = s.kubectl_with(k, &["api-resources", "-v=6"], None);
    let log = String::from_utf8_lossy(&verbose.stderr);
    assert!(log.contains("/apis?timeout"), "{log}");
    assert!(
        !log.contains("/apis/apps/v1?timeout"),
        "per-group discovery: {log}"
    );

    // One object of every stored kind: create, get, delete.
    s.ok(k, &["create", "namespace", "kinds"]);
    let mut manifest = data("every-kind.yaml");
    let csr = format!(
        "---\napiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata: {{name: k-csr}}\nspec:\n  request: {}\n  signerName: example.com/signer\n  usages: [client auth]\n",
        csr_request(s.root.path())
    );
    manifest.push_str(&csr);
    manifest.push_str("---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets.k.example.com}\nspec:\n  group: k.example.com\n  names: {plural: widgets, singular: widget, kind: Widget}\n  scope: Namespaced\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema: {type: object}\n");
    let file = s.root.path().join("every-kind.yaml");
    std::fs::write(&file, &manifest).unwrap();
    let f = file.to_str().unwrap();
    let created = s.ok(k, &["create", "-f", f, "-o", "name"]);
    let got = s.ok(k, &["get", "-f", f, "-o", "name"]);
    assert_eq!(created, got);
    // `kubectl get -o name` prints `kind[.group]/name`.
    for (plural, _, api_version, _, kind) in API_RESOURCES {
        // Gateway API's and Argo's CRDs get their objects in their own
        // tests; resource metrics are read-only (cluster_hpa).
        if matches!(*kind, "Binding" | "ComponentStatus" | "Namespace")
            || kind.ends_with("Review")
            || api_version.starts_with("gateway.networking.k8s.io/")
            || api_version.starts_with("argoproj.io/")
            || api_version.starts_with("metrics.k8s.io/")
        {
            continue;
        }
        let prefix = match api_version.rsplit_once('/') {
            Some((group, _)) => format!("{}.{group}/", kind.to_lowercase()),
            None => format!("{}/", kind.to_lowercase()),
        };
        assert!(
            got.lines().any(|l| l.starts_with(&prefix)),
            "no {plural} ({prefix}) among\n{got}"
        );
    }
    // Short names resolve as kubectl's usual ones.
    for (short, name) in [
        ("pvc", "k-pvc"),
        ("rc", "k-rc"),
        ("quota", "k-quota"),
        ("limits", "k-limits"),
        ("cj", "k-cj"),
        ("pdb", "k-pdb"),
        ("netpol", "k-netpol"),
        ("csr", "k-csr"),
        ("crd", "widgets.k.example.com"),
        ("sc", "k-sc"),
        ("pc", "k-pc"),
    ] {
        let out = s.ok(k, &["-n", "kinds", "get", short, name, "-o", "name"]);
        assert!(out.contains(name), "{short}: {out}");
    }

    // Computed kinds.
    let binding = "apiVersion: v1\nkind: Binding\nmetadata: {name: k-pod, namespace: kinds}\ntarget: {apiVersion: v1, kind: Node, name: k-node}\n";
    s.ok_in(k, &["create", "-f", "-"], Some(binding));
    let node = s.ok(
        k,
        &[
            "-n",
            "kinds",
            "get",
            "pod",
            "k-pod",
            "-o",
            "jsonpath={.spec.nodeName}",
        ],
    );
    assert_eq!(node, "k-node");
    let err = s.fails(k, &["create", "-f", "-"], Some(binding));
    assert!(
        err.contains("is already assigned to node \"k-node\""),
        "{err}"
    );
    let cs = s.ok(k, &["get", "componentstatuses"]);
    assert!(cs.contains("etcd-0") && cs.contains("Healthy"), "{cs}");
    let who = s.ok(
        k,
        &["auth", "whoami", "-o", "jsonpath={.status.userInfo.groups}"],
    );
    assert!(who.contains("system:masters"), "{who}");
    assert_eq!(s.ok(k, &["auth", "can-i", "create", "pods"]).trim(), "yes");

    let deleted = s.ok(k, &["delete", "-f", f, "--wait=true", "--timeout=60s"]);
    assert_eq!(
        deleted.lines().count(),
        created.lines().count(),
        "{deleted}"
    );
    let left = s.kubectl_with(
        k,
        &["get", "-f", f, "-o", "name", "--ignore-not-found"],
        None,
    );
    assert!(left.status.success());
    assert_eq!(
        String::from_utf8_lossy(&left.stdout).trim(),
        "",
        "left behind"
    );

    // kubectl explain reads the OpenAPI v3 schemas.
    let out = s.ok(k, &["explain", "deployment.spec.strategy"]);
    assert!(
        out.contains("DeploymentStrategy describes how to replace existing pods with new ones"),
        "{out}"
    );
    assert!(
        out.contains("rollingUpdate") && out.contains("type"),
        "{out}"
    );
    let out = s.ok(k, &["explain", "pdb.spec", "--recursive"]);
    assert!(
        out.contains("minAvailable") && out.contains("unhealthyPodEvictionPolicy"),
        "{out}"
    );
}

#[test]
fn every_kind_with_kubectl_1_32() {
    let s = KeelServer::start(None);
    every_kind(&s, &kubectls()[0]);
}

#[test]
fn every_kind_with_kubectl_1_33() {
    let s = KeelServer::start(None);
    every_kind(&s, &kubectls()[1]);
}
