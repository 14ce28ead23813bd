//! Admission on `keel server` through the real kubectl: `PodSecurity`
//! (restricted and baseline namespaces refuse pods with upstream's
//! messages), `DefaultTolerationSeconds`, `Priority`, `LimitRanger` and
//! `DefaultStorageClass`; refused objects are not stored.

#[path = "server_common/mod.rs"]
mod common;

use std::path::Path;

use common::{KeelServer, kubectls};

fn pod(ns: &str, name: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{extra}  containers:\n  - name: c\n    image: busybox\n"
    )
}

fn admission(s: &KeelServer, k: &Path) {
    // PodSecurity.
    s.ok(k, &["create", "namespace", "strict"]);
    s.ok(
        k,
        &[
            "label",
            "namespace",
            "strict",
            "pod-security.kubernetes.io/enforce=restricted",
        ],
    );
    let err = s.fails(k, &["create", "-f", "-"], Some(&pod("strict", "plain", "")));
    assert!(
        err.contains("pods \"plain\" is forbidden: violates PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false (container \"c\" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container \"c\" must set securityContext.capabilities.drop=[\"ALL\"]), runAsNonRoot != true (pod or container \"c\" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container \"c\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"),
        "{err}"
    );
    let privileged = "apiVersion: v1\nkind: Pod\nmetadata: {name: priv, namespace: strict}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    securityContext: {privileged: true}\n";
    let err = s.fails(k, &["create", "-f", "-"], Some(privileged));
    assert!(
        err.contains("privileged (container \"c\" must not set securityContext.privileged=true)"),
        "{err}"
    );
    let good = "apiVersion: v1\nkind: Pod\nmetadata: {name: good, namespace: strict}\nspec:\n  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}\n  containers:\n  - name: c\n    image: busybox\n    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}\n";
    s.ok_in(k, &["create", "-f", "-"], Some(good));
    assert!(
        !s.kubectl_with(k, &["-n", "strict", "get", "pod", "priv"], None)
            .status
            .success()
    );
    s.ok(k, &["create", "namespace", "base"]);
    s.ok(
        k,
        &[
            "label",
            "namespace",
            "base",
            "pod-security.kubernetes.io/enforce=baseline",
        ],
    );
    s.ok_in(k, &["create", "-f", "-"], Some(&pod("base", "plain", "")));
    let err = s.fails(
        k,
        &["create", "-f", "-"],
        Some(&pod("base", "host", "  hostNetwork: true\n")),
    );
    assert!(
        err.contains(
            "violates PodSecurity \"baseline:latest\": host namespaces (hostNetwork=true)"
        ),
        "{err}"
    );

    // DefaultTolerationSeconds and Priority.
    s.ok(k, &["create", "namespace", "adm"]);
    s.ok_in(k, &["create", "-f", "-"], Some(&pod("adm", "p1", "")));
    let tols = s.ok(k, &["-n", "adm", "get", "pod", "p1", "-o", "jsonpath={.spec.tolerations[*].key} {.spec.tolerations[0].tolerationSeconds} {.spec.priority}"]);
    assert_eq!(
        tols,
        "node.kubernetes.io/not-ready node.kubernetes.io/unreachable 300 0"
    );
    s.ok_in(
        k,
        &["create", "-f", "-"],
        Some(&pod(
            "adm",
            "crit",
            "  priorityClassName: system-cluster-critical\n",
        )),
    );
    let prio = s.ok(
        k,
        &[
            "-n",
            "adm",
            "get",
            "pod",
            "crit",
            "-o",
            "jsonpath={.spec.priority}",
        ],
    );
    assert_eq!(prio, "2000000000");
    let err = s.fails(
        k,
        &["create", "-f", "-"],
        Some(&pod("adm", "nope", "  priorityClassName: missing\n")),
    );
    assert!(
        err.contains("no PriorityClass with name missing was found"),
        "{err}"
    );

    // LimitRanger: defaults, then the maximum.
    let lr = "apiVersion: v1\nkind: LimitRange\nmetadata: {name: lr, namespace: adm}\nspec:\n  limits:\n  - type: Container\n    default: {cpu: 500m}\n    defaultRequest: {cpu: 100m}\n    max: {cpu: \"1\"}\n";
    s.ok_in(k, &["create", "-f", "-"], Some(lr));
    s.ok_in(k, &["create", "-f", "-"], Some(&pod("adm", "limited", "")));
    let res = s.ok(k, &["-n", "adm", "get", "pod", "limited", "-o", "jsonpath={.spec.containers[0].resources.limits.cpu} {.spec.containers[0].resources.requests.cpu}"]);
    assert_eq!(res, "500m 100m");
    let big = "apiVersion: v1\nkind: Pod\nmetadata: {name: big, namespace: adm}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    resources: {limits: {cpu: \"2\"}}\n";
    let err = s.fails(k, &["create", "-f", "-"], Some(big));
    assert!(
        err.contains("maximum cpu usage per Container is 1, but limit is 2"),
        "{err}"
    );

    // DefaultStorageClass.
    let sc = "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: local\n  annotations: {storageclass.kubernetes.io/is-default-class: \"true\"}\nprovisioner: example.com/local\n";
    s.ok_in(k, &["create", "-f", "-"], Some(sc));
    let pvc = "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data, namespace: adm}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n";
    s.ok_in(k, &["create", "-f", "-"], Some(pvc));
    let class = s.ok(
        k,
        &[
            "-n",
            "adm",
            "get",
            "pvc",
            "data",
            "-o",
            "jsonpath={.spec.storageClassName}",
        ],
    );
    assert_eq!(class, "local");
}

#[test]
fn admission_plugins_with_kubectl_1_33() {
    let s = KeelServer::start(None);
    admission(&s, &kubectls()[1]);
}
