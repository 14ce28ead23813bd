//! Admission on `keel server` through the real kubectl: `PodSecurity`
//! (restricted and baseline namespaces refuse pods with upstream's
//! messages), `DefaultTolerationSeconds`, `Priority`, `LimitRanger` and
//! `DefaultStorageClass`; refused objects are not stored. URL admission
//! webhooks (a Python HTTPS server with its own CA): a mutating webhook
//! labels objects, a validating one refuses some, with kube-apiserver's
//! messages; namespace selectors, `failurePolicy`, timeouts, and invalid
//! configurations refused.

#[path = "server_common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use base64::Engine as _;

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

    // PodSecurity warn: the object is stored, kubectl prints the warning;
    // workload templates are judged too.
    s.ok(k, &["create", "namespace", "warned"]);
    s.ok(
        k,
        &[
            "label",
            "namespace",
            "warned",
            "pod-security.kubernetes.io/warn=baseline",
            "pod-security.kubernetes.io/warn-version=v1.32",
        ],
    );
    let out = s.kubectl_with(
        k,
        &["create", "-f", "-"],
        Some(&pod("warned", "host", "  hostNetwork: true\n")),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("Warning: would violate PodSecurity \"baseline:v1.32\": host namespaces (hostNetwork=true)"),
        "{err}"
    );
    let out = s.kubectl_with(
        k,
        &[
            "-n",
            "warned",
            "create",
            "deployment",
            "web",
            "--image=busybox",
        ],
        None,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("Warning"), "{err}");
    let priv_deploy = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: root, namespace: warned}\nspec:\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec:\n      containers:\n      - name: c\n        image: busybox\n        securityContext: {privileged: true}\n";
    let out = s.kubectl_with(k, &["create", "-f", "-"], Some(priv_deploy));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success()
            && err.contains("Warning: would violate PodSecurity \"baseline:v1.32\": privileged (container \"c\" must not set securityContext.privileged=true)"),
        "{err}"
    );

    // DefaultTolerationSeconds and Priority.
    s.ok(k, &["create", "namespace", "adm"]);
    // ServiceAccount: the namespace came with its account and CA; a pod runs
    // as `default` with the token, CA and namespace mounted; a missing
    // account refuses the pod.
    let ca = s.ok(
        k,
        &[
            "-n",
            "adm",
            "get",
            "cm",
            "kube-root-ca.crt",
            "-o",
            "jsonpath={.data.ca\\.crt}",
        ],
    );
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    s.ok_in(k, &["create", "-f", "-"], Some(&pod("adm", "sa", "")));
    let got = s.ok(k, &["-n", "adm", "get", "pod", "sa", "-o", "jsonpath={.spec.serviceAccountName} {.spec.containers[0].volumeMounts[0].mountPath} {.spec.volumes[0].projected.sources[0].serviceAccountToken.path}"]);
    assert_eq!(
        got,
        "default /var/run/secrets/kubernetes.io/serviceaccount token"
    );
    let err = s.fails(
        k,
        &["create", "-f", "-"],
        Some(&pod("adm", "ghost", "  serviceAccountName: ghost\n")),
    );
    assert!(
        err.contains("pods \"ghost\" is forbidden: error looking up service account adm/ghost: serviceaccount \"ghost\" not found"),
        "{err}"
    );
    s.ok_in(
        k,
        &["create", "-f", "-"],
        Some(&pod(
            "adm",
            "nomount",
            "  automountServiceAccountToken: false\n",
        )),
    );
    let got = s.ok(
        k,
        &[
            "-n",
            "adm",
            "get",
            "pod",
            "nomount",
            "-o",
            "jsonpath={.spec.volumes}",
        ],
    );
    assert_eq!(got, "");
    s.ok_in(k, &["create", "-f", "-"], Some(&pod("adm", "p1", "")));
    let tols = s.ok(k, &["-n", "adm", "get", "pod", "p1", "-o", "jsonpath={.spec.tolerations[*].key} {.spec.tolerations[0].tolerationSeconds} {.spec.priority}"]);
    // keel server's --default-toleration-seconds is 10 (Kubernetes: 300).
    assert_eq!(
        tols,
        "node.kubernetes.io/not-ready node.kubernetes.io/unreachable 10 0"
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

    // ResourceQuota: object counts and compute, with kube-apiserver's messages.
    s.ok(k, &["create", "namespace", "quota"]);
    let quota = "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: small, namespace: quota}\nspec:\n  hard: {pods: \"2\", requests.cpu: \"1\", count/configmaps: \"2\"}\n";
    s.ok_in(k, &["create", "-f", "-"], Some(quota));
    let sized = |name: &str, cpu: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: quota}}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    resources: {{requests: {{cpu: \"{cpu}\"}}}}\n"
        )
    };
    let err = s.fails(k, &["create", "-f", "-"], Some(&pod("quota", "bare", "")));
    assert!(
        err.contains(
            "pods \"bare\" is forbidden: failed quota: small: must specify requests.cpu for: c"
        ),
        "{err}"
    );
    s.ok_in(k, &["create", "-f", "-"], Some(&sized("q1", "500m")));
    let err = s.fails(k, &["create", "-f", "-"], Some(&sized("q2", "600m")));
    assert!(
        err.contains("pods \"q2\" is forbidden: exceeded quota: small, requested: requests.cpu=600m, used: requests.cpu=500m, limited: requests.cpu=1"),
        "{err}"
    );
    s.ok_in(k, &["create", "-f", "-"], Some(&sized("q2", "500m")));
    let err = s.fails(k, &["create", "-f", "-"], Some(&sized("q3", "0")));
    assert!(
        err.contains("exceeded quota: small, requested: pods=1, used: pods=2, limited: pods=2"),
        "{err}"
    );
    s.ok(k, &["-n", "quota", "create", "configmap", "one"]);
    let err = s.fails(k, &["-n", "quota", "create", "configmap", "two"], None);
    assert!(
        err.contains("exceeded quota: small, requested: count/configmaps=1, used: count/configmaps=2, limited: count/configmaps=2"),
        "{err}"
    );
    s.ok(k, &["-n", "quota", "delete", "pod", "q1"]);
    s.ok_in(k, &["create", "-f", "-"], Some(&sized("q3", "100m")));

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

/// A CA and a serving certificate for 127.0.0.1, made with openssl.
fn certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl (Debian's openssl package)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=webhook-ca",
            "-days",
            "1",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    ]
    .concat());
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.crt",
        "-days",
        "1",
        "-extfile",
        "san.ext",
    ]);
}

struct Webhook {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
    ca_bundle: String,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_webhook(dir: &Path) -> Webhook {
    certificates(dir);
    let port_file = dir.join("port");
    let log = dir.join("requests.log");
    let child = Command::new("python3")
        .arg(format!(
            "{}/tests/python/webhook_server.py",
            env!("CARGO_MANIFEST_DIR")
        ))
        .args([
            dir.join("srv.crt"),
            dir.join("srv.key"),
            port_file.clone(),
            log.clone(),
        ])
        .spawn()
        .expect("python3");
    let start = Instant::now();
    while !port_file.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "webhook server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let port = std::fs::read_to_string(&port_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let ca = std::fs::read(dir.join("ca.crt")).unwrap();
    Webhook {
        child,
        port,
        log,
        ca_bundle: base64::engine::general_purpose::STANDARD.encode(ca),
    }
}

/// Runs `f` until it returns true: configurations reach the server through
/// a watch, a moment after they are created (as in Kubernetes).
fn eventually(what: &str, f: impl FnMut() -> bool) {
    common::eventually(what, Duration::from_secs(15), f);
}

fn cm(ns: &str, name: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels: {{{labels}}}\ndata: {{a: b}}\n"
    )
}

fn webhooks(s: &KeelServer, k: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let hook = start_webhook(dir.path());
    let url = |path: &str| format!("https://127.0.0.1:{}{path}", hook.port);
    s.ok(k, &["create", "namespace", "hooked"]);
    s.ok(k, &["label", "namespace", "hooked", "hooks=on"]);
    s.ok(k, &["create", "namespace", "plain"]);
    let rules = "  rules:\n  - {operations: [CREATE, UPDATE], apiGroups: [\"\"], apiVersions: [v1], resources: [configmaps]}\n";
    let config = format!(
        "apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata: {{name: label-them}}\nwebhooks:\n- name: label.keel.test\n  clientConfig: {{url: \"{}\", caBundle: {}}}\n{rules}  namespaceSelector: {{matchLabels: {{hooks: \"on\"}}}}\n  sideEffects: None\n  admissionReviewVersions: [v1]\n---\napiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {{name: deny-some}}\nwebhooks:\n- name: deny.keel.test\n  clientConfig: {{url: \"{}\", caBundle: {}}}\n  rules:\n  - {{operations: [CREATE, UPDATE, DELETE], apiGroups: [\"\"], apiVersions: [v1], resources: [configmaps]}}\n  sideEffects: None\n  admissionReviewVersions: [v1, v1beta1]\n",
        url("/mutate"),
        hook.ca_bundle,
        url("/validate"),
        hook.ca_bundle
    );
    s.ok_in(k, &["apply", "-f", "-"], Some(&config));
    // Defaults as admissionregistration sets them.
    let got = s.ok(k, &["get", "mutatingwebhookconfiguration", "label-them", "-o", "jsonpath={.webhooks[0].failurePolicy} {.webhooks[0].timeoutSeconds} {.webhooks[0].reinvocationPolicy} {.webhooks[0].matchPolicy}"]);
    assert_eq!(got, "Fail 10 Never Equivalent");

    // The mutating webhook labels configmaps in namespaces labelled hooks=on.
    let mut n = 0;
    eventually("the mutating webhook labels new configmaps", || {
        n += 1;
        let name = format!("m{n}");
        s.ok_in(k, &["create", "-f", "-"], Some(&cm("hooked", &name, "")));
        s.ok(
            k,
            &[
                "-n",
                "hooked",
                "get",
                "cm",
                &name,
                "-o",
                "jsonpath={.metadata.labels.mutated-by}",
            ],
        ) == "webhook"
    });
    let out = s.kubectl_with(k, &["create", "-f", "-"], Some(&cm("hooked", "warned", "")));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.contains("Warning: labelled by the test webhook"),
        "{err}"
    );
    s.ok_in(
        k,
        &["create", "-f", "-"],
        Some(&cm("plain", "untouched", "")),
    );
    let labels = s.ok(
        k,
        &[
            "-n",
            "plain",
            "get",
            "cm",
            "untouched",
            "-o",
            "jsonpath={.metadata.labels}",
        ],
    );
    assert!(!labels.contains("mutated-by"), "{labels}");
    let log = std::fs::read_to_string(&hook.log).unwrap();
    assert!(log.contains("\"user\": \"keel:admin\""), "{log}");
    assert!(log.contains("?timeout=10s"), "{log}");

    // The validating webhook refuses, with kube-apiserver's words; nothing is stored.
    let err = s.fails(
        k,
        &["create", "-f", "-"],
        Some(&cm("plain", "bad", "deny: \"yes\"")),
    );
    assert!(
        err.contains("admission webhook \"deny.keel.test\" denied the request: objects labelled deny=yes are not allowed here"),
        "{err}"
    );
    assert!(
        !s.kubectl_with(k, &["-n", "plain", "get", "cm", "bad"], None)
            .status
            .success()
    );
    // Updates and deletes go through it too.
    let err = s.fails(
        k,
        &["-n", "plain", "label", "cm", "untouched", "deny=yes"],
        None,
    );
    assert!(err.contains("denied the request"), "{err}");
    let log = std::fs::read_to_string(&hook.log).unwrap();
    assert!(log.contains("\"operation\": \"UPDATE\""), "{log}");
    s.ok(k, &["-n", "plain", "delete", "cm", "untouched"]);
    let log = std::fs::read_to_string(&hook.log).unwrap();
    assert!(log.contains("\"operation\": \"DELETE\""), "{log}");

    // failurePolicy: a webhook nobody answers refuses with Fail, is skipped with Ignore.
    let dead = format!("https://127.0.0.1:{}/", common::free_port());
    let broken = |policy: &str, timeout: u32, u: &str| {
        format!(
            "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {{name: broken}}\nwebhooks:\n- name: broken.keel.test\n  clientConfig: {{url: \"{u}\", caBundle: {}}}\n  rules:\n  - {{operations: [CREATE], apiGroups: [\"\"], apiVersions: [v1], resources: [secrets]}}\n  failurePolicy: {policy}\n  timeoutSeconds: {timeout}\n  sideEffects: None\n  admissionReviewVersions: [v1]\n",
            hook.ca_bundle
        )
    };
    s.ok_in(k, &["apply", "-f", "-"], Some(&broken("Fail", 10, &dead)));
    let secret = |n: u32| {
        let name = format!("s{n}");
        let args = [
            "-n",
            "plain",
            "create",
            "secret",
            "generic",
            &name,
            "--from-literal=a=b",
        ];
        s.kubectl_with(k, &args, None)
    };
    let mut n = 0;
    let mut last = String::new();
    eventually("a failing webhook with failurePolicy Fail refuses", || {
        n += 1;
        let out = secret(n);
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        !out.status.success()
    });
    assert!(
        last.contains("Internal error occurred: failed calling webhook \"broken.keel.test\": failed to call webhook: Post"),
        "{last}"
    );
    s.ok_in(k, &["apply", "-f", "-"], Some(&broken("Ignore", 10, &dead)));
    eventually("failurePolicy Ignore lets the request through", || {
        n += 1;
        secret(n).status.success()
    });
    // timeoutSeconds: a webhook slower than its timeout fails the request.
    s.ok_in(
        k,
        &["apply", "-f", "-"],
        Some(&broken("Fail", 1, &url("/slow"))),
    );
    eventually("a slow webhook times out", || {
        n += 1;
        let out = secret(n);
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        !out.status.success() && last.contains("context deadline exceeded")
    });

    // Configurations are validated as admissionregistration validates them.
    let bad = "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {name: bad}\nwebhooks:\n- name: short\n  clientConfig: {url: \"http://127.0.0.1:1/\"}\n  admissionReviewVersions: [v1]\n";
    let err = s.fails(k, &["create", "-f", "-"], Some(bad));
    assert!(
        err.contains("webhooks[0].name: Invalid value: \"short\""),
        "{err}"
    );
    assert!(err.contains("webhooks[0].clientConfig.url: Invalid value: \"http://127.0.0.1:1/\": 'https' is the only allowed URL scheme"), "{err}");
    assert!(
        err.contains("webhooks[0].sideEffects: Required value"),
        "{err}"
    );
    assert!(
        !s.kubectl_with(k, &["get", "validatingwebhookconfiguration", "bad"], None)
            .status
            .success()
    );
    s.ok(
        k,
        &[
            "delete",
            "validatingwebhookconfiguration",
            "broken",
            "deny-some",
        ],
    );
    s.ok(k, &["delete", "mutatingwebhookconfiguration", "label-them"]);
}

#[test]
fn url_webhooks_mutate_and_deny_with_kubectl_1_32() {
    let s = KeelServer::start(None);
    webhooks(&s, &kubectls()[0]);
}

#[test]
fn admission_and_webhooks_on_three_member_etcd() {
    let cluster = keel_store::testing::EtcdCluster::start(3);
    let s = KeelServer::start(Some(cluster.datastore_url()));
    admission(&s, &kubectls()[1]);
    webhooks(&s, &kubectls()[1]);
}
