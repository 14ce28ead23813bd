//! The real Helm 4.1.4 against `keel server`: `helm install --no-hooks` of
//! every chart of ../shared/charts that Helm renders with its default values
//! (RBAC, CRDs, PDBs, webhook configurations, stateful sets with claim
//! templates), `helm list` shows them deployed, and `helm uninstall` leaves
//! nothing behind but what Helm keeps by design (CRDs from `crds/`, the
//! namespaces `--create-namespace` made, with their default account and CA,
//! and stateful sets' claims). Webhooks with a Service reference
//! fail as they fail on a Kubernetes cluster whose webhook pods do not run.

#[path = "server_common/mod.rs"]
mod common;
mod helm_peer;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;

use common::KeelServer;

fn helm(s: &KeelServer, args: &[&str]) -> Output {
    helm_peer::helm_on(&s.kubeconfig, s.home.path(), args)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every object the server holds, as `kind namespace/name`.
fn everything(s: &KeelServer, k: &Path) -> BTreeSet<String> {
    let kinds = s.ok(k, &["api-resources", "--verbs=list", "-o", "name"]);
    let list: Vec<&str> = kinds.lines().collect();
    let out = s.ok(
        k,
        &[
            "get",
            &list.join(","),
            "-A",
            "--no-headers",
            "-o",
            "custom-columns=K:.kind,N:.metadata.namespace,M:.metadata.name",
        ],
    );
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// The charts whose default rendering succeeds (`rc-default.txt` is 0).
fn charts() -> Vec<String> {
    let corpus = helm_peer::corpus();
    let mut names: Vec<String> = std::fs::read_dir(&corpus)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            std::fs::read_to_string(e.path().join("rc-default.txt"))
                .is_ok_and(|rc| rc.trim() == "0")
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn install_all(s: &KeelServer, only: Option<&[&str]>) {
    let k = &common::kubectls()[1];
    let corpus = helm_peer::corpus();
    let mut charts = charts();
    if let Some(only) = only {
        charts.retain(|c| only.contains(&c.as_str()));
    }
    assert!(!charts.is_empty());
    let before = everything(s, k);

    // opentelemetry-operator issues cert-manager Certificates: its CRDs go in
    // first, the documented way (`kubectl apply` of cert-manager's CRDs), and
    // the operator before cert-manager, whose webhook would refuse them.
    let cm = corpus.join("cert-manager/chart");
    let cm = cm.to_str().unwrap();
    let all_crds = helm(s, &["template", "crds", cm, "--set", "crds.enabled=true"]);
    assert!(all_crds.status.success(), "{}", text(&all_crds));
    let rendered = String::from_utf8(all_crds.stdout).unwrap();
    let only_crds: Vec<&str> = rendered
        .split("\n---")
        .filter(|d| d.contains("\nkind: CustomResourceDefinition"))
        .collect();
    assert!(
        only_crds.len() >= 6,
        "cert-manager CRDs: {}",
        only_crds.len()
    );
    s.ok_in(k, &["apply", "-f", "-"], Some(&only_crds.join("\n---\n")));
    charts.sort_by_key(|c| c != "opentelemetry-operator");

    let mut failed = Vec::new();
    for c in &charts {
        let dir = corpus.join(c).join("chart");
        let (release, ns) = (format!("r-{c}"), format!("ns-{c}"));
        let mut args = vec![
            "install",
            &release,
            dir.to_str().unwrap(),
            "-n",
            &ns,
            "--create-namespace",
            "--no-hooks",
        ];
        // keel serves Argo Rollouts' CRDs itself (Helm will not adopt
        // objects it did not create): the chart goes in without its own,
        // as on k3s with a built-in's CRDs.
        if c == "argo-rollouts" {
            args.extend(["--set", "installCRDs=false"]);
        }
        let out = helm(s, &args);
        if !out.status.success() {
            failed.push(format!("{c}: {}", text(&out)));
        }
    }
    assert!(
        failed.is_empty(),
        "helm install failed:\n{}",
        failed.join("\n")
    );

    let list = helm(s, &["list", "-A", "-o", "json"]);
    assert!(list.status.success(), "{}", text(&list));
    let releases: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let deployed: BTreeSet<String> = releases
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "deployed")
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    let want: BTreeSet<String> = charts.iter().map(|c| format!("r-{c}")).collect();
    assert_eq!(deployed, want);

    // cert-manager's webhook refers to a Service whose pods do not run: as on
    // Kubernetes, its resources are refused until they do.
    if charts.iter().any(|c| c == "cert-manager") {
        let issuer = "apiVersion: cert-manager.io/v1\nkind: Issuer\nmetadata: {name: self, namespace: default}\nspec: {selfSigned: {}}\n";
        let err = s.fails(k, &["create", "-f", "-"], Some(issuer));
        assert!(
            err.contains("failed calling webhook \"webhook.cert-manager.io\"")
                && err.contains("no endpoints available for service \"r-cert-manager-webhook\""),
            "{err}"
        );
    }

    for c in &charts {
        let out = helm(
            s,
            &["uninstall", &format!("r-{c}"), "-n", &format!("ns-{c}")],
        );
        assert!(out.status.success(), "uninstall {c}: {}", text(&out));
    }
    // Dependents go through the garbage collector: give it a moment.
    // Kept: CRDs, namespaces, what every namespace holds from its creation,
    // and the controllers' Events (they stay until their TTL, as on
    // Kubernetes).
    let kept = |line: &String| {
        line.starts_with("CustomResourceDefinition ")
            || line.starts_with("Event ")
            || line.starts_with("Namespace ")
            || line.starts_with("ServiceAccount ") && line.ends_with(" default")
            || line.starts_with("ConfigMap ") && line.ends_with(" kube-root-ca.crt")
            // a StatefulSet's claims (TEMPLATE-SET-ORDINAL) outlive it, as
            // its default persistentVolumeClaimRetentionPolicy says
            || line.starts_with("PersistentVolumeClaim ")
                && line
                    .rsplit_once('-')
                    .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    let mut left: Vec<String> = Vec::new();
    for _ in 0..50 {
        left = everything(s, k)
            .difference(&before)
            .filter(|l| !kept(l))
            .cloned()
            .collect();
        if left.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(
        left.is_empty(),
        "left behind after helm uninstall: {left:#?}"
    );
}

#[test]
fn helm_installs_every_chart_and_uninstall_leaves_nothing() {
    let s = KeelServer::start(None);
    install_all(&s, None);
}

/// `keel server --disable-rollouts` leaves Argo Rollouts to Argo: Argo's
/// own chart installs with its CRDs (`installCRDs=true`, the default),
/// Rollouts are validated by Argo's schemas, and keel's controller does not
/// run them (Argo's would, once its pods run).
#[test]
fn argo_rollouts_chart_installs_its_crds_on_a_server_without_rollouts() {
    let s = KeelServer::start_with_args(&["--disable-rollouts"]);
    let k = &common::kubectls()[1];
    let crds = || s.ok(k, &["get", "crd", "-o", "name"]);
    assert!(!crds().contains("argoproj.io"), "{}", crds());
    let chart = helm_peer::corpus().join("argo-rollouts/chart");
    let out = helm(
        &s,
        &[
            "install",
            "r-argo-rollouts",
            chart.to_str().unwrap(),
            "-n",
            "argo-rollouts",
            "--create-namespace",
            "--no-hooks",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let managed = s.ok(
        k,
        &[
            "get",
            "crd",
            "rollouts.argoproj.io",
            "analysistemplates.argoproj.io",
            "clusteranalysistemplates.argoproj.io",
            "analysisruns.argoproj.io",
            "experiments.argoproj.io",
            "-o",
            "jsonpath={range .items[*]}{.metadata.annotations.meta\\.helm\\.sh/release-name}{\"\\n\"}{end}",
        ],
    );
    assert_eq!(managed.lines().collect::<Vec<_>>(), ["r-argo-rollouts"; 5]);

    // Argo's example is accepted by Argo's schema; a mistyped one refused.
    let example = std::fs::read_to_string(
        common::conformance("argo-rollouts/examples").join("rollout-canary.yaml"),
    )
    .unwrap();
    s.ok_in(k, &["apply", "-f", "-"], Some(&example));
    let bad = example.replace("replicas: 5", "replicas: five");
    assert_ne!(bad, example);
    let err = s.fails(k, &["apply", "--dry-run=server", "-f", "-"], Some(&bad));
    assert!(
        err.contains("spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\""),
        "{err}"
    );
    // keel's controllers run a Deployment created after the Rollout, but
    // not the Rollout.
    s.ok(
        k,
        &[
            "create",
            "deployment",
            "after",
            "--image=busybox",
            "--",
            "true",
        ],
    );
    common::eventually(
        "the Deployment's ReplicaSet",
        std::time::Duration::from_secs(30),
        || {
            !s.ok(k, &["get", "rs", "-l", "app=after", "-o", "name"])
                .is_empty()
        },
    );
    assert_eq!(
        s.ok(k, &["get", "rs", "-l", "app=rollout-canary", "-o", "name"]),
        ""
    );
    assert_eq!(
        s.ok(
            k,
            &[
                "get",
                "rollout",
                "rollout-canary",
                "-o",
                "jsonpath={.status}"
            ]
        ),
        ""
    );

    let out = helm(&s, &["uninstall", "r-argo-rollouts", "-n", "argo-rollouts"]);
    assert!(out.status.success(), "{}", text(&out));
    // keepCRDs: Argo's chart keeps them (and so the Rollout).
    assert!(crds().contains("rollouts.argoproj.io"), "{}", crds());
}

#[test]
fn helm_charts_on_three_member_etcd() {
    let cluster = keel_store::testing::EtcdCluster::start(3);
    let s = KeelServer::start(Some(cluster.datastore_url()));
    install_all(
        &s,
        Some(&[
            "argo-rollouts",
            "cert-manager",
            "kube-prometheus-stack",
            "opentelemetry-operator",
            "vault",
        ]),
    );
}
