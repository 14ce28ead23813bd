//! Releases shared with the real Helm 4.1.4 on one `keel server`: helm
//! installs and keel lists, shows and upgrades it; helm rolls back keel's
//! revision and keel rolls back helm's; either uninstalls. `list`,
//! `history`, `status` and `get` print byte for byte what helm prints for the
//! same records. Also: Helm's ownership refusal, a failing pre-upgrade hook
//! with `--atomic`, `--wait` on a Deployment's pods, uninstall leaving
//! only what `helm.sh/resource-policy: keep` keeps, `--force-replace`,
//! `--history-max`, adoption (`--take-ownership`) client-side, and
//! per-environment values files.

#[path = "server_common/mod.rs"]
mod common;
mod helm_peer;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::KeelServer;

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn helm(s: &KeelServer, args: &[&str]) -> Output {
    helm_peer::helm_on(&s.kubeconfig, s.home.path(), args)
}

fn keel(s: &KeelServer, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("chart")
        .args(args)
        .arg("--kubeconfig")
        .arg(&s.kubeconfig)
        .env_remove("KUBECONFIG")
        .env("HOME", s.home.path())
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .output()
        .expect("run keel")
}

fn ok(o: Output, what: &str) -> String {
    assert!(o.status.success(), "{what} failed: {}", text(&o));
    String::from_utf8(o.stdout).unwrap()
}

fn helm_ok(s: &KeelServer, args: &[&str]) -> String {
    ok(helm(s, args), &format!("helm {}", args.join(" ")))
}

fn keel_ok(s: &KeelServer, args: &[&str]) -> String {
    ok(keel(s, args), &format!("keel chart {}", args.join(" ")))
}

/// Helm 4's `status` lists the live objects with their ages (and in Go's
/// random map order): both tools' RESOURCES blocks are compared apart.
fn split_resources(out: &str) -> (String, String) {
    match (out.find("RESOURCES:\n"), out.find("TEST SUITE:")) {
        (Some(a), Some(b)) if a < b => {
            (format!("{}{}", &out[..a], &out[b..]), out[a..b].to_string())
        }
        _ => (out.to_string(), String::new()),
    }
}

/// The same read-only command through both tools prints the same bytes.
fn same(s: &KeelServer, args: &[&str]) -> String {
    let (h, hres) = split_resources(&helm_ok(s, args));
    let (k, kres) = split_resources(&keel_ok(s, args));
    let kinds = |r: &str| -> Vec<String> {
        let mut v: Vec<String> = r
            .lines()
            .filter(|l| l.starts_with("==> "))
            .map(str::to_string)
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        kinds(&kres),
        kinds(&hres),
        "RESOURCES of keel chart {}",
        args.join(" ")
    );
    assert_eq!(k, h, "keel chart {} differs from helm", args.join(" "));
    k
}

fn write(dir: &Path, rel: &str, body: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, body).unwrap();
}

/// A chart with a plain `ConfigMap`, one that only `extra=true` renders, one
/// kept by resource policy, a weighted pre-install/pre-upgrade hook, one
/// pre-upgrade hook the server refuses when `badHook=true`, and notes.
fn demo_chart(dir: &Path) {
    write(
        dir,
        "Chart.yaml",
        "apiVersion: v2\nname: demo\nversion: 0.1.0\nappVersion: \"1.0\"\n",
    );
    write(
        dir,
        "values.yaml",
        "greeting: hello\nextra: false\nbadHook: false\nreplicas: 0\n",
    );
    write(
        dir,
        "templates/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\ndata:\n  greeting: {{ .Values.greeting | quote }}\n  revision: \"{{ .Release.Revision }}\"\n",
    );
    write(
        dir,
        "templates/extra.yaml",
        "{{- if .Values.extra }}\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-extra\ndata:\n  a: b\n{{- end }}\n",
    );
    write(
        dir,
        "templates/kept.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-kept\n  annotations:\n    helm.sh/resource-policy: keep\ndata:\n  a: b\n",
    );
    write(
        dir,
        "templates/hook.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-hook\n  annotations:\n    helm.sh/hook: pre-install,pre-upgrade\n    helm.sh/hook-weight: \"-1\"\ndata:\n  revision: \"{{ .Release.Revision }}\"\n",
    );
    write(
        dir,
        "templates/bad-hook.yaml",
        "{{- if .Values.badHook }}\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Not_A_Valid_Name\n  annotations:\n    helm.sh/hook: pre-upgrade\n{{- end }}\n",
    );
    write(
        dir,
        "templates/deploy.yaml",
        "{{- if .Values.replicas }}\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}-web\nspec:\n  replicas: {{ .Values.replicas }}\n  selector:\n    matchLabels: {app: {{ .Release.Name }}}\n  template:\n    metadata:\n      labels:\n        app: {{ .Release.Name }}\n        {{- if .Values.neverReady }}\n        keel.test/never-ready: \"true\"\n        {{- end }}\n    spec:\n      containers:\n      - name: web\n        image: nginx\n{{- end }}\n",
    );
    write(
        dir,
        "templates/NOTES.txt",
        "Release {{ .Release.Name }} says {{ .Values.greeting }}.\n",
    );
}

fn configmap(s: &KeelServer, ns: &str, name: &str) -> Option<serde_json::Value> {
    let k = &common::kubectls()[1];
    let out = s.kubectl_with(k, &["get", "configmap", name, "-n", ns, "-o", "json"], None);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

fn release_secrets(s: &KeelServer, ns: &str) -> Vec<String> {
    let k = &common::kubectls()[1];
    let out = s.ok(
        k,
        &["get", "secrets", "-n", ns, "-l", "owner=helm", "-o", "name"],
    );
    out.lines().map(str::to_string).collect()
}

fn history_json(s: &KeelServer, tool: &str, name: &str, ns: &str) -> Vec<(i64, String, String)> {
    let args = ["history", name, "-n", ns, "-o", "json"];
    let out = if tool == "helm" {
        helm_ok(s, &args)
    } else {
        keel_ok(s, &args)
    };
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["revision"].as_i64().unwrap(),
                r["status"].as_str().unwrap().to_string(),
                r["description"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn helm_and_keel_share_releases() {
    let s = KeelServer::start(None);
    let chart = tempfile::tempdir().unwrap();
    demo_chart(chart.path());
    let c = chart.path().to_str().unwrap();
    let ns = "apps";

    // helm installs; keel reads exactly what helm reads
    helm_ok(
        &s,
        &[
            "install",
            "web",
            c,
            "-n",
            ns,
            "--create-namespace",
            "--set",
            "greeting=hi",
        ],
    );
    let list = same(&s, &["list", "-n", ns]);
    assert!(
        list.contains("web ") && list.contains("deployed") && list.contains("demo-0.1.0"),
        "{list}"
    );
    same(&s, &["list", "-A", "-o", "json"]);
    same(&s, &["list", "-n", ns, "-o", "yaml"]);
    same(&s, &["history", "web", "-n", ns]);
    same(&s, &["history", "web", "-n", ns, "-o", "json"]);
    same(&s, &["status", "web", "-n", ns]);
    same(&s, &["status", "web", "-n", ns, "-o", "json"]);
    same(&s, &["get", "values", "web", "-n", ns]);
    same(&s, &["get", "values", "web", "-n", ns, "-o", "json"]);
    same(&s, &["get", "manifest", "web", "-n", ns]);
    same(&s, &["get", "notes", "web", "-n", ns]);
    same(&s, &["get", "hooks", "web", "-n", ns]);

    // keel upgrades; helm sees revision 2 and the new object
    let up = keel_ok(
        &s,
        &[
            "upgrade",
            "web",
            c,
            "-n",
            ns,
            "--reuse-values",
            "--set",
            "extra=true",
        ],
    );
    assert!(
        up.starts_with("Release \"web\" has been upgraded. Happy Helming!\nNAME: web\n"),
        "{up}"
    );
    assert_eq!(
        history_json(&s, "helm", "web", ns),
        [
            (1, "superseded".into(), "Install complete".into()),
            (2, "deployed".into(), "Upgrade complete".into()),
        ]
    );
    let extra = configmap(&s, ns, "web-extra").expect("keel's upgrade created web-extra");
    assert_eq!(
        extra["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "Helm"
    );
    assert_eq!(
        extra["metadata"]["annotations"]["meta.helm.sh/release-name"],
        "web"
    );
    assert_eq!(
        configmap(&s, ns, "web-cm").unwrap()["data"]["greeting"],
        "hi",
        "--reuse-values kept greeting=hi"
    );
    assert_eq!(
        configmap(&s, ns, "web-hook").unwrap()["data"]["revision"],
        "2",
        "pre-upgrade hook ran"
    );
    same(&s, &["history", "web", "-n", ns]);
    same(&s, &["status", "web", "-n", ns]);
    same(&s, &["get", "values", "web", "-n", ns]);
    same(&s, &["get", "all", "web", "-n", ns]);

    // helm rolls back keel's revision: what rev 2 added goes away
    helm_ok(&s, &["rollback", "web", "1", "-n", ns]);
    assert!(
        configmap(&s, ns, "web-extra").is_none(),
        "rollback to 1 deletes web-extra"
    );
    same(&s, &["history", "web", "-n", ns]);

    // helm upgrades, keel rolls back helm's upgrade
    helm_ok(
        &s,
        &["upgrade", "web", c, "-n", ns, "--set", "greeting=bye"],
    );
    assert_eq!(
        configmap(&s, ns, "web-cm").unwrap()["data"]["greeting"],
        "bye"
    );
    let rb = keel_ok(&s, &["rollback", "web", "-n", ns]);
    assert_eq!(rb, "Rollback was a success! Happy Helming!\n");
    assert_eq!(
        configmap(&s, ns, "web-cm").unwrap()["data"]["greeting"],
        "hi"
    );
    assert_eq!(
        history_json(&s, "helm", "web", ns),
        [
            (1, "superseded".into(), "Install complete".into()),
            (2, "superseded".into(), "Upgrade complete".into()),
            (3, "superseded".into(), "Rollback to 1".into()),
            (4, "superseded".into(), "Upgrade complete".into()),
            (5, "deployed".into(), "Rollback to 3".into()),
        ]
    );
    same(&s, &["history", "web", "-n", ns]);
    same(&s, &["list", "-n", ns, "--superseded"]);
    helm_ok(&s, &["rollback", "web", "4", "-n", ns]);
    assert_eq!(
        configmap(&s, ns, "web-cm").unwrap()["data"]["greeting"],
        "bye"
    );

    // keel uninstalls: only the kept ConfigMap stays, no records left
    let un = keel_ok(&s, &["uninstall", "web", "-n", ns]);
    assert!(un.ends_with("release \"web\" uninstalled\n"), "{un}");
    assert!(un.contains("[ConfigMap] web-kept"), "{un}");
    assert!(configmap(&s, ns, "web-cm").is_none());
    assert!(configmap(&s, ns, "web-kept").is_some());
    assert!(release_secrets(&s, ns).is_empty());
    assert_eq!(helm_ok(&s, &["list", "-n", ns, "-q"]), "");

    // a name in use is refused by both, in Helm's words
    let again = keel(&s, &["install", "web", c, "-n", ns]);
    keel_ok(&s, &["install", "busy", c, "-n", ns]);
    let (h, k) = (
        helm(&s, &["install", "busy", c, "-n", ns]),
        keel(&s, &["install", "busy", c, "-n", ns]),
    );
    let msg =
        "INSTALLATION FAILED: release name check failed: cannot reuse a name that is still in use";
    assert!(
        again.status.success(),
        "web was uninstalled: {}",
        text(&again)
    );
    assert!(
        text(&h).contains(msg) && text(&k).contains(msg),
        "helm: {}\nkeel: {}",
        text(&h),
        text(&k)
    );
    keel_ok(&s, &["uninstall", "web", "busy", "-n", ns]);

    // keel installs; helm lists and uninstalls it (keeping history)
    let out = keel_ok(
        &s,
        &["install", "api", c, "-n", "other", "--create-namespace"],
    );
    assert!(out.starts_with("NAME: api\nLAST DEPLOYED: "), "{out}");
    assert!(
        out.contains("STATUS: deployed\nREVISION: 1\nDESCRIPTION: Install complete\n"),
        "{out}"
    );
    let hl: serde_json::Value =
        serde_json::from_str(&helm_ok(&s, &["list", "-A", "-o", "json"])).unwrap();
    assert_eq!(hl[0]["name"], "api");
    assert_eq!(hl[0]["status"], "deployed");
    assert_eq!(hl[0]["chart"], "demo-0.1.0");
    same(&s, &["status", "api", "-n", "other"]);
    same(&s, &["get", "all", "api", "-n", "other"]);
    helm_ok(&s, &["uninstall", "api", "-n", "other", "--keep-history"]);
    same(&s, &["list", "-n", "other", "--uninstalled"]);
    same(&s, &["history", "api", "-n", "other"]);
    assert!(configmap(&s, "other", "api-cm").is_none());
}

#[test]
fn keel_refuses_objects_another_release_owns_as_helm_does() {
    let s = KeelServer::start(None);
    let chart = tempfile::tempdir().unwrap();
    demo_chart(chart.path());
    let c = chart.path().to_str().unwrap();
    let k = &common::kubectls()[1];
    s.ok_in(
        k,
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: taken-cm, namespace: default}\n"),
    );
    let h = helm(&s, &["install", "taken", c, "--no-hooks"]);
    let kk = keel(&s, &["install", "taken", c, "--no-hooks"]);
    assert!(!h.status.success() && !kk.status.success());
    let herr = String::from_utf8_lossy(&h.stderr).into_owned();
    let kerr = String::from_utf8_lossy(&kk.stderr).into_owned();
    let expect = "unable to continue with install: ConfigMap \"taken-cm\" in namespace \"default\" exists and cannot be imported into the current release: invalid ownership metadata; label validation error: missing key \"app.kubernetes.io/managed-by\": must be set to \"Helm\"; annotation validation error: missing key \"meta.helm.sh/release-name\": must be set to \"taken\"; annotation validation error: missing key \"meta.helm.sh/release-namespace\": must be set to \"default\"";
    assert!(herr.contains(expect), "helm said: {herr}");
    assert!(kerr.contains(expect), "keel said: {kerr}");
    // nothing recorded by keel's refusal
    assert!(release_secrets(&s, "default").is_empty());
    // `upgrade --install` says it installs before it fails, as helm does.
    let h = helm(&s, &["upgrade", "--install", "taken", c, "--no-hooks"]);
    let kk = keel(&s, &["upgrade", "--install", "taken", c, "--no-hooks"]);
    assert!(!h.status.success() && !kk.status.success());
    let hout = String::from_utf8_lossy(&h.stdout).into_owned();
    assert!(hout.contains("Installing it now."), "helm printed: {hout}");
    assert_eq!(String::from_utf8_lossy(&kk.stdout), hout);
    assert!(release_secrets(&s, "default").is_empty());
}

#[test]
fn failing_pre_upgrade_hook_with_atomic_leaves_the_previous_revision_deployed() {
    let s = KeelServer::start(None);
    let chart = tempfile::tempdir().unwrap();
    demo_chart(chart.path());
    let c = chart.path().to_str().unwrap();
    keel_ok(&s, &["install", "h", c]);
    let out = keel(
        &s,
        &["upgrade", "h", c, "--set", "badHook=true", "--atomic"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("UPGRADE FAILED: release h failed, and has been rolled back due to rollback-on-failure being set: pre-upgrade hooks failed: warning: Hook pre-upgrade demo/templates/bad-hook.yaml failed"),
        "{err}"
    );
    let h = history_json(&s, "helm", "h", "default");
    assert_eq!(h.len(), 3, "{h:?}");
    assert_eq!(h[1].1, "failed");
    assert!(
        h[1].2
            .starts_with("Upgrade \"h\" failed: pre-upgrade hooks failed"),
        "{h:?}"
    );
    assert_eq!(h[2], (3, "deployed".into(), "Rollback to 1".into()));
    assert_eq!(h, history_json(&s, "keel", "h", "default"));
    same(&s, &["history", "h"]);
}

#[test]
fn wait_returns_when_pods_are_ready_and_names_what_is_not() {
    let s = KeelServer::start(None);
    let _kubelet = common::FakeKubelet::start(&s, Duration::from_millis(300));
    let chart = tempfile::tempdir().unwrap();
    demo_chart(chart.path());
    let c = chart.path().to_str().unwrap();
    keel_ok(
        &s,
        &[
            "install",
            "w",
            c,
            "--set",
            "replicas=2",
            "--wait",
            "--timeout",
            "60s",
        ],
    );
    let k = &common::kubectls()[1];
    let avail = s.ok(
        k,
        &[
            "get",
            "deployment",
            "w-web",
            "-o",
            "jsonpath={.status.availableReplicas}",
        ],
    );
    assert_eq!(avail, "2", "--wait returned before the pods were ready");

    // Helm 4.1.4's status watcher names what is not ready, kstatus's words
    let mut seen = Vec::new();
    for (tool, name) in [("helm", "stuckh"), ("keel", "stuckk")] {
        let out = run(
            &s,
            tool,
            &[
                "install",
                name,
                c,
                "--set",
                "replicas=1",
                "--set",
                "neverReady=true",
                "--wait",
                "--timeout",
                "3s",
            ],
        );
        let err = error_of(tool, &out).replace(name, "NAME");
        let h = history_json(&s, "helm", name, "default");
        seen.push((err, h[0].1.clone()));
    }
    assert_eq!(
        seen[0],
        (
            "INSTALLATION FAILED: resource Deployment/default/NAME-web not ready. status: InProgress, message: Available: 0/1 context deadline exceeded".to_string(),
            "failed".to_string()
        )
    );
    assert_eq!(seen[1], seen[0], "keel (right) against helm (left)");
}

#[test]
fn chart_test_runs_test_hooks_and_records_them_where_helm_reads_them() {
    let s = KeelServer::start(None);
    let chart = tempfile::tempdir().unwrap();
    demo_chart(chart.path());
    write(
        chart.path(),
        "templates/tests/ping.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {{ .Release.Name }}-ping\n  annotations:\n    helm.sh/hook: test\nspec:\n  restartPolicy: Never\n  containers:\n  - name: ping\n    image: busybox\n",
    );
    let c = chart.path().to_str().unwrap();
    keel_ok(&s, &["install", "t", c]);
    // no kubelet here: the test plays it and finishes the pod
    let kubeconfig = s.kubeconfig.clone();
    let finisher = std::thread::spawn(move || {
        let k = &common::kubectls()[1];
        for _ in 0..200 {
            let out = Command::new(k)
                .args(["--kubeconfig", kubeconfig.to_str().unwrap()])
                .args([
                    "patch",
                    "pod",
                    "t-ping",
                    "--subresource=status",
                    "--type=merge",
                ])
                .args(["-p", r#"{"status":{"phase":"Succeeded"}}"#])
                .output()
                .unwrap();
            if out.status.success() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    });
    let out = keel_ok(&s, &["test", "t", "--timeout", "60s"]);
    assert!(finisher.join().unwrap());
    assert!(
        out.contains("TEST SUITE:     t-ping\nLast Started:   "),
        "{out}"
    );
    assert!(out.contains("\nPhase:          Succeeded\n"), "{out}");
    assert!(!out.contains("NOTES:"), "helm test hides notes: {out}");
    // the run is in the record: helm's status shows it as keel's does
    let st = same(&s, &["status", "t"]);
    assert!(st.contains("Phase:          Succeeded"), "{st}");
}

/// Every chart directory of ../shared/charts, sorted.
fn corpus_charts() -> Vec<std::path::PathBuf> {
    let mut charts: Vec<_> = std::fs::read_dir(helm_peer::corpus())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path().join("chart"))
        .filter(|p| p.join("Chart.yaml").is_file())
        .collect();
    charts.sort();
    assert!(charts.len() >= 10, "corpus too small: {}", charts.len());
    charts
}

#[test]
fn chart_show_prints_what_helm_show_prints_for_every_corpus_chart() {
    let home = tempfile::tempdir().unwrap();
    let kc = home.path().join("no-kubeconfig");
    let mut differ = Vec::new();
    let charts = corpus_charts();
    for c in &charts {
        for what in ["chart", "values", "readme", "crds", "all"] {
            let args = ["show", what, c.to_str().unwrap()];
            let h = helm_peer::helm_on(&kc, home.path(), &args);
            let k = Command::new(env!("CARGO_BIN_EXE_keel"))
                .arg("chart")
                .args(args)
                .output()
                .unwrap();
            assert!(h.status.success(), "helm {args:?}: {}", text(&h));
            // Helm orders subcharts' CRDs as its loader meets the subcharts,
            // which varies from run to run (tempo-distributed): for `crds`
            // and `all` the documents are compared as a multiset.
            // Split at `---` lines, wherever a document lands (the first one
            // has no newline before its separator).
            let docs = |o: &Output| {
                let mut d: Vec<String> = vec![String::new()];
                for l in String::from_utf8_lossy(&o.stdout).lines() {
                    if l.trim_end() == "---" {
                        d.push(String::new());
                    } else if let Some(cur) = d.last_mut() {
                        cur.push_str(l);
                        cur.push('\n');
                    }
                }
                let mut d: Vec<String> = d
                    .into_iter()
                    .map(|x| x.trim().to_string())
                    .filter(|x| !x.is_empty())
                    .collect();
                d.sort();
                d
            };
            let alike =
                k.stdout == h.stdout || (matches!(what, "crds" | "all") && docs(&k) == docs(&h));
            if !alike || !k.status.success() {
                let (hs, ks) = (
                    String::from_utf8_lossy(&h.stdout),
                    String::from_utf8_lossy(&k.stdout),
                );
                let first = hs.lines().zip(ks.lines()).position(|(a, b)| a != b);
                differ.push(format!(
                    "{what} {}: {} ({} vs {} bytes), first differing line {first:?}",
                    c.display(),
                    text(&k).lines().last().unwrap_or_default(),
                    hs.len(),
                    ks.len()
                ));
            }
        }
    }
    assert!(
        differ.is_empty(),
        "keel chart show differs from helm show: {differ:#?}"
    );
}

#[test]
fn chart_dependency_list_prints_what_helm_prints() {
    let home = tempfile::tempdir().unwrap();
    let kc = home.path().join("no-kubeconfig");
    // a chart whose dependencies are missing, of the wrong version, and an
    // unlisted one in charts/, beside every corpus chart (ok, unpacked)
    let odd = tempfile::tempdir().unwrap();
    write(
        odd.path(),
        "Chart.yaml",
        "apiVersion: v2\nname: odd\nversion: 1.0.0\ndependencies:\n- name: gone\n  version: 1.x\n  repository: https://example.invalid/charts\n- name: old\n  version: '>=2.0.0'\n  repository: file://../old\n",
    );
    write(
        odd.path(),
        "charts/old/Chart.yaml",
        "apiVersion: v2\nname: old\nversion: 1.0.0\n",
    );
    write(
        odd.path(),
        "charts/stray/Chart.yaml",
        "apiVersion: v2\nname: stray\nversion: 0.1.0\n",
    );
    let mut charts = corpus_charts();
    charts.push(odd.path().to_path_buf());
    let mut differ = Vec::new();
    for c in &charts {
        let args = ["dependency", "list", c.to_str().unwrap()];
        let h = helm_peer::helm_on(&kc, home.path(), &args);
        let k = Command::new(env!("CARGO_BIN_EXE_keel"))
            .arg("chart")
            .args(args)
            .output()
            .unwrap();
        if text(&h) != text(&k) {
            differ.push(format!(
                "{}:\nhelm:\n{}\nkeel:\n{}",
                c.display(),
                text(&h),
                text(&k)
            ));
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    let odd_out = text(
        &Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(["chart", "dependency", "list", odd.path().to_str().unwrap()])
            .output()
            .unwrap(),
    );
    assert!(
        odd_out.contains("missing")
            && odd_out.contains("wrong version")
            && odd_out.contains("is not in Chart.yaml"),
        "{odd_out}"
    );
}

#[test]
fn dry_run_prints_what_helm_prints_and_records_nothing() {
    let s = KeelServer::start(None);
    let chart = tempfile::tempdir().unwrap();
    demo_chart(chart.path());
    let c = chart.path().to_str().unwrap();
    let drop_time = |o: &Output| -> String {
        text(o)
            .lines()
            .filter(|l| !l.starts_with("LAST DEPLOYED: "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    for args in [
        &["install", "dry", c, "--dry-run"][..],
        &[
            "install",
            "dry",
            c,
            "--dry-run=server",
            "--set",
            "extra=true",
        ],
    ] {
        let (h, k) = (helm(&s, args), keel(&s, args));
        assert!(
            h.status.success() && k.status.success(),
            "{}\n{}",
            text(&h),
            text(&k)
        );
        assert_eq!(drop_time(&k), drop_time(&h), "{args:?}");
        assert!(text(&k).contains("MANIFEST:\n---\n# Source: demo/templates/cm.yaml\n"));
    }
    assert!(release_secrets(&s, "default").is_empty());
    assert!(configmap(&s, "default", "dry-cm").is_none());
}

/// A release record's JSON (`sh.helm.release.v1.NAME.vREV`), decoded as Helm stores it.
fn record(s: &KeelServer, ns: &str, name: &str, rev: i64) -> serde_json::Value {
    use base64::Engine as _;
    use std::io::Read as _;
    let k = &common::kubectls()[1];
    let secret = format!("sh.helm.release.v1.{name}.v{rev}");
    let out = s.ok(
        k,
        &[
            "get",
            "secret",
            &secret,
            "-n",
            ns,
            "-o",
            "jsonpath={.data.release}",
        ],
    );
    let b64 = base64::engine::general_purpose::STANDARD;
    let once = b64.decode(out.trim()).unwrap();
    let gz = b64.decode(once).unwrap();
    let mut json = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut json)
        .unwrap();
    serde_json::from_str(&json).unwrap()
}

/// Rewrites a record as Helm 3 wrote it: Helm 3 knew no `apply_method`.
fn as_helm3_record(s: &KeelServer, ns: &str, name: &str, rev: i64) {
    use base64::Engine as _;
    use std::io::Write as _;
    let mut rel = record(s, ns, name, rev);
    rel.as_object_mut().unwrap().remove("apply_method");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(serde_json::to_string(&rel).unwrap().as_bytes())
        .unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let data = b64.encode(b64.encode(gz.finish().unwrap()));
    let k = &common::kubectls()[1];
    let patch = format!("{{\"data\":{{\"release\":\"{data}\"}}}}");
    s.ok(
        k,
        &[
            "patch",
            "secret",
            &format!("sh.helm.release.v1.{name}.v{rev}"),
            "-n",
            ns,
            "--type",
            "merge",
            "-p",
            &patch,
        ],
    );
    assert!(record(s, ns, name, rev).get("apply_method").is_none());
}

/// What an upgrade left live: the `ConfigMap`'s data and labels (without
/// Helm's), the `Deployment`'s container names.
fn live_state(s: &KeelServer, ns: &str, name: &str) -> serde_json::Value {
    let k = &common::kubectls()[1];
    let cm = configmap(s, ns, &format!("{name}-cfg")).unwrap();
    let out = s.ok(
        k,
        &[
            "get",
            "deployment",
            &format!("{name}-web"),
            "-n",
            ns,
            "-o",
            "json",
        ],
    );
    let d: serde_json::Value = serde_json::from_str(&out).unwrap();
    let containers: Vec<String> = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{}={}",
                c["name"].as_str().unwrap(),
                c["image"].as_str().unwrap()
            )
        })
        .collect();
    serde_json::json!({
        "data": cm["data"],
        "team": cm["metadata"]["labels"]["team"],
        "containers": containers,
    })
}

/// Regression (issue 22): keel upgraded every release server-side, so an
/// upgrade of a release Helm 3 made failed on the field `kubectl` had
/// changed (a conflict with its manager) and never deleted what the chart
/// dropped. Helm 4 applies those client-side with a three-way merge and
/// records `csa`: keel now does the same, checked against real helm
/// upgrading a twin release on the same server.
#[test]
fn releases_helm3_made_upgrade_with_a_three_way_merge_as_helm_does() {
    let s = KeelServer::start(None);
    let chart = tempfile::tempdir().unwrap();
    write(
        chart.path(),
        "Chart.yaml",
        "apiVersion: v2\nname: three\nversion: 0.1.0\n",
    );
    write(chart.path(), "values.yaml", "v2: false\nimage: nginx:1\n");
    write(
        chart.path(),
        "templates/cfg.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cfg\ndata:\n  a: \"1\"\n  {{- if .Values.v2 }}\n  c: \"3\"\n  {{- else }}\n  b: \"2\"\n  {{- end }}\n",
    );
    write(
        chart.path(),
        "templates/web.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}-web\nspec:\n  replicas: 0\n  selector:\n    matchLabels: {app: {{ .Release.Name }}}\n  template:\n    metadata:\n      labels: {app: {{ .Release.Name }}}\n    spec:\n      containers:\n      - name: web\n        image: {{ .Values.image }}\n",
    );
    let c = chart.path().to_str().unwrap();
    let ns = "default";
    let k = &common::kubectls()[1];
    let mut states = Vec::new();
    for (tool, name) in [("helm", "byhelm"), ("keel", "bykeel")] {
        // a release as Helm 3 leaves it: applied client-side, no apply_method
        helm_ok(&s, &["install", name, c, "--server-side=false"]);
        assert_eq!(record(&s, ns, name, 1)["apply_method"], "csa");
        as_helm3_record(&s, ns, name, 1);
        // changed live: a field the chart sets, one it never had, a label, a sidecar
        s.ok(
            k,
            &[
                "patch",
                "configmap",
                &format!("{name}-cfg"),
                "--type",
                "merge",
                "-p",
                r#"{"data":{"a":"live","extra":"mine"}}"#,
            ],
        );
        s.ok(
            k,
            &["label", "configmap", &format!("{name}-cfg"), "team=ops"],
        );
        s.ok(
            k,
            &[
                "patch", "deployment", &format!("{name}-web"), "-p",
                r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox"}]}}}}"#,
            ],
        );
        let args = ["upgrade", name, c, "--set", "v2=true,image=nginx:2"];
        if tool == "helm" {
            helm_ok(&s, &args);
        } else {
            keel_ok(&s, &args);
        }
        assert_eq!(record(&s, ns, name, 2)["apply_method"], "csa", "{tool}");
        let up = live_state(&s, ns, name);
        // rollback to the Helm 3 revision: client-side again
        let args = ["rollback", name, "1"];
        if tool == "helm" {
            helm_ok(&s, &args);
        } else {
            keel_ok(&s, &args);
        }
        assert_eq!(record(&s, ns, name, 3)["apply_method"], "csa", "{tool}");
        states.push((up, live_state(&s, ns, name)));
    }
    // what Helm 3's semantics say: the chart's field set back, what it
    // dropped deleted, what it never had kept; the sidecar kept, web's image changed
    assert_eq!(
        states[0].0,
        serde_json::json!({
            "data": {"a": "1", "c": "3", "extra": "mine"},
            "team": "ops",
            "containers": ["sidecar=busybox", "web=nginx:2"],
        }),
        "helm's upgrade"
    );
    assert_eq!(states[1], states[0], "keel (right) against helm (left)");
    assert_eq!(
        states[0].1["data"],
        serde_json::json!({"a": "1", "b": "2", "extra": "mine"}),
        "helm's rollback"
    );
    // --server-side=true moves a release to server-side apply: helm's
    // client-side fields go to its apply entry first (csaupgrade), so the
    // key the chart drops is removed, what kubectl set stays
    let mut after = Vec::new();
    for (tool, name) in [("helm", "byhelm"), ("keel", "bykeel")] {
        let args = ["upgrade", name, c, "--server-side=true", "--set", "v2=true"];
        if tool == "helm" {
            helm_ok(&s, &args);
        } else {
            keel_ok(&s, &args);
        }
        assert_eq!(record(&s, ns, name, 4)["apply_method"], "ssa", "{tool}");
        after.push(live_state(&s, ns, name)["data"].clone());
    }
    assert_eq!(
        after[0],
        serde_json::json!({"a": "1", "c": "3", "extra": "mine"}),
        "helm's server-side upgrade"
    );
    assert_eq!(after[1], after[0], "keel (right) against helm (left)");
}

/// Runs `args` through helm or keel.
fn run(s: &KeelServer, tool: &str, args: &[&str]) -> Output {
    if tool == "helm" {
        helm(s, args)
    } else {
        keel(s, args)
    }
}

/// The error line each tool printed, without its `Error: `/`error: ` prefix.
fn error_of(tool: &str, o: &Output) -> String {
    assert!(!o.status.success(), "{tool} succeeded: {}", text(o));
    let err = String::from_utf8_lossy(&o.stderr);
    if tool == "helm" {
        helm_peer::helm_error(&err)
    } else {
        helm_peer::keel_error(&err)
    }
}

/// The stderr lines before the error: what flag parsing warned about.
fn notices(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .take_while(|l| !l.starts_with("Error: ") && !l.starts_with("error: "))
        .map(str::to_string)
        .collect()
}

fn cfg_chart(dir: &Path) {
    write(
        dir,
        "Chart.yaml",
        "apiVersion: v2\nname: fr\nversion: 0.1.0\n",
    );
    write(dir, "values.yaml", "a: \"1\"\n");
    write(
        dir,
        "templates/cfg.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cfg\ndata:\n  a: {{ .Values.a | quote }}\n",
    );
}

/// The live `ConfigMap`'s data and its `team` label.
fn cfg_state(s: &KeelServer, name: &str) -> serde_json::Value {
    let cm = configmap(s, "default", &format!("{name}-cfg")).unwrap();
    serde_json::json!({"data": cm["data"], "team": cm["metadata"]["labels"]["team"]})
}

/// What someone else changes live: a key the chart never had, a label.
fn drift(s: &KeelServer, name: &str) {
    let k = &common::kubectls()[1];
    let cm = format!("{name}-cfg");
    s.ok(
        k,
        &[
            "patch",
            "configmap",
            &cm,
            "--type",
            "merge",
            "-p",
            r#"{"data":{"extra":"mine"}}"#,
        ],
    );
    s.ok(k, &["label", "--overwrite", "configmap", &cm, "team=ops"]);
}

/// Helm 4.1.4's `--force-replace` (and `--force`, its deprecated spelling):
/// client-side, existing objects are PUT whole instead of patched, so what
/// others added live goes; with server-side apply Helm refuses it. keel and
/// the real helm do the same to twin releases on one server, print the same
/// deprecation notice and the same refusals, and leave the same histories.
#[test]
fn force_replace_puts_objects_whole_as_helm_does() {
    let s = KeelServer::start(None);
    let chart = tempfile::tempdir().unwrap();
    cfg_chart(chart.path());
    let c = chart.path().to_str().unwrap();
    let mut seen = Vec::new();
    for (tool, name) in [("helm", "byhelm"), ("keel", "bykeel")] {
        helm_ok(&s, &["install", name, c, "--server-side=false"]);
        // the patch keeps what it never had
        drift(&s, name);
        let out = run(&s, tool, &["upgrade", name, c, "--set", "a=2"]);
        assert!(out.status.success(), "{tool}: {}", text(&out));
        let patched = cfg_state(&s, name);
        // --force (deprecated): replaced whole
        drift(&s, name);
        let out = run(&s, tool, &["upgrade", name, c, "--force", "--set", "a=3"]);
        assert!(out.status.success(), "{tool}: {}", text(&out));
        let forced = (notices(&out), cfg_state(&s, name));
        // rollback --force-replace to the first revision
        drift(&s, name);
        let out = run(&s, tool, &["rollback", name, "1", "--force-replace"]);
        assert!(out.status.success(), "{tool}: {}", text(&out));
        let rolled = (notices(&out), cfg_state(&s, name));
        // the flag groups Helm's command line refuses
        let both = run(
            &s,
            tool,
            &["upgrade", name, c, "--force", "--force-conflicts"],
        );
        let both = (notices(&both), error_of(tool, &both));
        let both2 = run(
            &s,
            tool,
            &["rollback", name, "--force-replace", "--force-conflicts"],
        );
        // conflicts are forced only server-side
        let csa_force = run(&s, tool, &["upgrade", name, c, "--force-conflicts"]);
        seen.push(serde_json::json!({
            "patched": patched,
            "forced": forced,
            "rolled": rolled,
            "groups": [both, error_of(tool, &both2)],
            "csa_force_conflicts": error_of(tool, &csa_force),
            "history": history_json(&s, "helm", name, "default")
                .into_iter()
                .map(|(r, st, d)| (r, st, d.replace(name, "NAME")))
                .collect::<Vec<_>>(),
        }));
    }
    assert_eq!(
        seen[0]["patched"],
        serde_json::json!({"data": {"a": "2", "extra": "mine"}, "team": "ops"})
    );
    assert_eq!(
        seen[0]["forced"],
        serde_json::json!([
            ["Flag --force has been deprecated, use --force-replace instead"],
            {"data": {"a": "3"}, "team": null}
        ])
    );
    assert_eq!(
        seen[0]["rolled"],
        serde_json::json!([[], {"data": {"a": "1"}, "team": null}])
    );
    assert_eq!(seen[1], seen[0], "keel (right) against helm (left)");

    // a server-side release: Helm refuses to replace, after the record is made
    let mut refused = Vec::new();
    for (tool, name) in [("helm", "ssahelm"), ("keel", "ssakeel")] {
        helm_ok(&s, &["install", name, c]);
        let out = run(
            &s,
            tool,
            &["upgrade", name, c, "--force-replace", "--set", "a=2"],
        );
        let err = error_of(tool, &out).replace(name, "NAME");
        // --server-side=false makes it client-side, and the replace goes through
        drift(&s, name);
        let args = [
            "upgrade",
            name,
            c,
            "--force-replace",
            "--server-side=false",
            "--set",
            "a=4",
        ];
        let out = run(&s, tool, &args);
        assert!(out.status.success(), "{tool}: {}", text(&out));
        let history: Vec<_> = history_json(&s, "helm", name, "default")
            .into_iter()
            .map(|(r, st, d)| (r, st, d.replace(name, "NAME")))
            .collect();
        refused.push((err, history, cfg_state(&s, name)));
    }
    assert_eq!(
        refused[0].0,
        "UPGRADE FAILED: invalid operation: cannot use server-side apply and force replace together"
    );
    assert_eq!(refused[0].1[1].1, "failed");
    assert_eq!(
        refused[0].2,
        serde_json::json!({"data": {"a": "4"}, "team": null})
    );
    assert_eq!(refused[1], refused[0], "keel (right) against helm (left)");
}

/// `helm upgrade --history-max N`: before each new record Helm's storage
/// drops the oldest ones but the last deployed, failed ones too, until
/// N - 1 are left. keel's histories match helm's revision for revision.
#[test]
fn history_max_prunes_as_helms_storage_does() {
    let s = KeelServer::start(None);
    let chart = tempfile::tempdir().unwrap();
    demo_chart(chart.path());
    let c = chart.path().to_str().unwrap();
    let mut seen = Vec::new();
    for (tool, name) in [("helm", "hh"), ("keel", "hk")] {
        helm_ok(&s, &["install", name, c]);
        for (i, extra) in ["", "badHook=true", "", "badHook=true", ""]
            .iter()
            .enumerate()
        {
            let mut args = vec!["upgrade", name, c, "--history-max", "3"];
            if !extra.is_empty() {
                args.extend(["--set", extra]);
            }
            let out = run(&s, tool, &args);
            assert_eq!(
                out.status.success(),
                extra.is_empty(),
                "{tool} step {i}: {}",
                text(&out)
            );
        }
        let hist = |s: &KeelServer| -> Vec<(i64, String)> {
            history_json(s, "helm", name, "default")
                .into_iter()
                .map(|(r, st, _)| (r, st))
                .collect()
        };
        let upgraded = hist(&s);
        // the revision rolled back to goes too: it was read before
        let out = run(&s, tool, &["rollback", name, "4", "--history-max", "2"]);
        assert!(out.status.success(), "{tool}: {}", text(&out));
        seen.push((upgraded, hist(&s)));
    }
    let st = |v: &[(i64, &str)]| -> Vec<(i64, String)> {
        v.iter().map(|(r, s)| (*r, (*s).to_string())).collect()
    };
    assert_eq!(
        seen[0],
        (
            st(&[(4, "superseded"), (5, "failed"), (6, "deployed")]),
            st(&[(6, "superseded"), (7, "deployed")])
        )
    );
    assert_eq!(seen[1], seen[0], "keel (right) against helm (left)");
}

/// A namespaced kind whose spec takes anything (flow style: one document).
const WIDGET_CRD: &str = "{apiVersion: apiextensions.k8s.io/v1, kind: CustomResourceDefinition, \
    metadata: {name: widgets.keel.test}, spec: {group: keel.test, scope: Namespaced, \
    names: {plural: widgets, singular: widget, kind: Widget}, versions: [{name: v1, \
    served: true, storage: true, schema: {openAPIV3Schema: {type: object, properties: \
    {spec: {type: object, x-kubernetes-preserve-unknown-fields: true}}}}}]}}";

/// A Widget (custom resource) and a `ConfigMap`, named by `.Values.name`.
fn adopt_chart(dir: &Path) {
    write(
        dir,
        "Chart.yaml",
        "apiVersion: v2\nname: adopt\nversion: 0.1.0\n",
    );
    write(dir, "values.yaml", "name: w\n");
    write(
        dir,
        "templates/w.yaml",
        "apiVersion: keel.test/v1\nkind: Widget\nmetadata:\n  name: {{ .Values.name }}\nspec:\n  size: 2\n  tags: [a]\n",
    );
    write(
        dir,
        "templates/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Values.name }}-cm\ndata:\n  a: \"1\"\n",
    );
}

/// Objects made by hand before a release adopts them.
fn pre_existing(s: &KeelServer, w: &str) {
    let k = &common::kubectls()[1];
    let objs = format!(
        "apiVersion: keel.test/v1\nkind: Widget\nmetadata: {{name: {w}, namespace: default, labels: {{team: ops}}}}\nspec: {{size: 1, color: red, tags: [a, b]}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {w}-cm, namespace: default, labels: {{team: ops}}}}\ndata: {{a: live, extra: mine}}\n"
    );
    s.ok_in(k, &["apply", "-f", "-"], Some(&objs));
}

/// The adopted objects as they are live: the Widget's spec, both labels and
/// release annotations, the `ConfigMap`'s data.
fn adopted_state(s: &KeelServer, w: &str, release: &str) -> serde_json::Value {
    let k = &common::kubectls()[1];
    let out = s.ok(k, &["get", "widget", w, "-n", "default", "-o", "json"]);
    let widget: serde_json::Value = serde_json::from_str(&out).unwrap();
    let cm = configmap(s, "default", &format!("{w}-cm")).unwrap();
    let marks = |o: &serde_json::Value| {
        serde_json::json!([
            o["metadata"]["labels"]["team"],
            o["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            o["metadata"]["annotations"]["meta.helm.sh/release-name"] == release,
        ])
    };
    serde_json::json!({
        "spec": widget["spec"],
        "widget": marks(&widget),
        "data": cm["data"],
        "cm": marks(&cm),
    })
}

/// Helm 4.1.4's `install --take-ownership --server-side=false`: objects that
/// exist are updated client-side with the chart's objects as their
/// originals; a custom resource gets a three-way JSON merge patch (live
/// fields the chart never had stay, its own fields and ownership marks are
/// set), where a two-way patch between two equal objects sent nothing.
/// With `--force-replace` both are PUT whole; server-side, Helm refuses to
/// replace what it adopts. keel and the real helm side by side.
#[test]
fn install_taking_ownership_client_side_merges_custom_resources_three_way_as_helm_does() {
    let s = KeelServer::start(None);
    let k = &common::kubectls()[1];
    s.ok_in(k, &["apply", "-f", "-"], Some(WIDGET_CRD));
    common::eventually("the Widget kind served", Duration::from_secs(30), || {
        s.kubectl_with(k, &["get", "widgets", "-n", "default"], None)
            .status
            .success()
    });
    let chart = tempfile::tempdir().unwrap();
    adopt_chart(chart.path());
    let c = chart.path().to_str().unwrap();
    let mut seen = Vec::new();
    for tool in ["helm", "keel"] {
        let (merged, replaced, refused) = (
            format!("m-{tool}"),
            format!("r-{tool}"),
            format!("x-{tool}"),
        );
        for w in [&merged, &replaced, &refused] {
            pre_existing(&s, w);
        }
        let base = ["--take-ownership", "--server-side=false"];
        let set = format!("name={merged}");
        let mut args = vec!["install", &merged, c, "--set", &set];
        args.extend(base);
        let out = run(&s, tool, &args);
        assert!(out.status.success(), "{tool}: {}", text(&out));
        let set = format!("name={replaced}");
        let mut args = vec!["install", &replaced, c, "--set", &set, "--force-replace"];
        args.extend(base);
        let out = run(&s, tool, &args);
        assert!(out.status.success(), "{tool}: {}", text(&out));
        let set = format!("name={refused}");
        let args = [
            "install",
            &refused,
            c,
            "--set",
            &set,
            "--take-ownership",
            "--force-replace",
        ];
        let out = run(&s, tool, &args);
        let refusal = error_of(tool, &out).replace(&refused, "NAME");
        seen.push(serde_json::json!({
            "merged": adopted_state(&s, &merged, &merged),
            "replaced": adopted_state(&s, &replaced, &replaced),
            "refused": [refusal, history_json(&s, "helm", &refused, "default")[0].1],
        }));
    }
    assert_eq!(
        seen[0]["merged"],
        serde_json::json!({
            "spec": {"size": 2, "color": "red", "tags": ["a"]},
            "widget": ["ops", "Helm", true],
            "data": {"a": "1", "extra": "mine"},
            "cm": ["ops", "Helm", true],
        }),
        "helm's adoption"
    );
    assert_eq!(
        seen[0]["replaced"],
        serde_json::json!({
            "spec": {"size": 2, "tags": ["a"]},
            "widget": [null, "Helm", true],
            "data": {"a": "1"},
            "cm": [null, "Helm", true],
        }),
        "helm's adoption with --force-replace"
    );
    assert_eq!(
        seen[0]["refused"],
        serde_json::json!([
            "INSTALLATION FAILED: invalid operation: cannot use server-side apply and force replace together",
            "failed"
        ])
    );
    assert_eq!(seen[1], seen[0], "keel (right) against helm (left)");
}

/// Per-environment values files: keel installs one chart into staging and
/// prod with each file; the objects differ as the files say, and helm reads
/// back each release's values.
#[test]
fn prod_and_staging_values_files_give_different_objects() {
    let s = KeelServer::start(None);
    let chart = tempfile::tempdir().unwrap();
    demo_chart(chart.path());
    write(
        chart.path(),
        "values-staging.yaml",
        "greeting: hi-staging\n",
    );
    write(
        chart.path(),
        "values-prod.yaml",
        "greeting: hi-prod\nextra: true\n",
    );
    let c = chart.path().to_str().unwrap();
    for env in ["staging", "prod"] {
        let file = chart.path().join(format!("values-{env}.yaml"));
        let args = [
            "install",
            "app",
            c,
            "-n",
            env,
            "--create-namespace",
            "-f",
            file.to_str().unwrap(),
        ];
        keel_ok(&s, &args);
    }
    let greeting = |ns: &str| configmap(&s, ns, "app-cm").unwrap()["data"]["greeting"].clone();
    assert_eq!(greeting("staging"), "hi-staging");
    assert_eq!(greeting("prod"), "hi-prod");
    assert!(configmap(&s, "staging", "app-extra").is_none());
    assert!(configmap(&s, "prod", "app-extra").is_some());
    assert_eq!(
        helm_ok(&s, &["get", "values", "app", "-n", "prod"]),
        "USER-SUPPLIED VALUES:\nextra: true\ngreeting: hi-prod\n"
    );
    assert_eq!(
        helm_ok(&s, &["get", "values", "app", "-n", "staging"]),
        "USER-SUPPLIED VALUES:\ngreeting: hi-staging\n"
    );
}

/// Regression (issue 22): keel checked who owns the objects an upgrade adds
/// only after it had recorded the revision and run the pre-upgrade hooks,
/// leaving a failed revision; Helm refuses first and records nothing.
#[test]
fn upgrade_refuses_foreign_objects_before_recording_as_helm_does() {
    let s = KeelServer::start(None);
    let chart = tempfile::tempdir().unwrap();
    demo_chart(chart.path());
    let c = chart.path().to_str().unwrap();
    let k = &common::kubectls()[1];
    let mut seen = Vec::new();
    for (tool, name) in [("helm", "uh"), ("keel", "uk")] {
        helm_ok(&s, &["install", name, c]);
        let cm = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}-extra, namespace: default}}\n"
        );
        s.ok_in(k, &["apply", "-f", "-"], Some(&cm));
        let out = run(&s, tool, &["upgrade", name, c, "--set", "extra=true"]);
        let err = error_of(tool, &out).replace(name, "NAME");
        let hook = configmap(&s, "default", &format!("{name}-hook")).unwrap();
        seen.push((
            err,
            history_json(&s, "helm", name, "default").len(),
            hook["data"]["revision"].clone(),
        ));
    }
    assert!(
        seen[0].0.starts_with("UPGRADE FAILED: unable to continue with update: ConfigMap \"NAME-extra\" in namespace \"default\" exists and cannot be imported into the current release: invalid ownership metadata; "),
        "{seen:?}"
    );
    // one revision, and the pre-upgrade hook did not run again
    assert_eq!((seen[0].1, seen[0].2.clone()), (1, serde_json::json!("1")));
    assert_eq!(seen[1], seen[0], "keel (right) against helm (left)");
}

/// A chart whose `ConfigMap` and `Service` both turn invalid with `bad=true`.
fn two_bad_chart(dir: &Path) {
    write(
        dir,
        "Chart.yaml",
        "apiVersion: v2\nname: two\nversion: 0.1.0\n",
    );
    write(dir, "values.yaml", "bad: false\n");
    write(
        dir,
        "templates/objects.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-a\ndata:\n  {{ if .Values.bad }}\"bad key!\"{{ else }}good{{ end }}: \"1\"\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {{ .Release.Name }}-s\nspec:\n  ports:\n  - port: {{ if .Values.bad }}70000{{ else }}80{{ end }}\n",
    );
}

/// What a failed command printed on stderr: its log lines and its error,
/// the release's name made `NAME`.
fn failure(tool: &str, o: &Output, name: &str) -> (Vec<String>, String) {
    let logs = notices(o).iter().map(|l| l.replace(name, "NAME")).collect();
    (logs, error_of(tool, o).replace(name, "NAME"))
}

/// Helm 4.1.4 applies every object and reports every failure: an install's
/// `Create` joins them one a line, an upgrade's or rollback's `Update` with
/// ` && `; a failed upgrade and a failed rollback log a `level=WARN` line,
/// a refused name a `level=ERROR` one (slog's text format). keel prints the
/// same, and leaves the same records.
#[test]
fn failures_of_several_objects_are_all_reported_as_helm_reports_them() {
    let s = KeelServer::start(None);
    let chart = tempfile::tempdir().unwrap();
    two_bad_chart(chart.path());
    let c = chart.path().to_str().unwrap();
    let mut seen = Vec::new();
    for (tool, name) in [("helm", "multih"), ("keel", "multik")] {
        let mut steps = Vec::new();
        let inst = format!("{name}-i");
        let o = run(&s, tool, &["install", &inst, c, "--set", "bad=true"]);
        steps.push(failure(tool, &o, &inst));
        helm_ok(&s, &["install", name, c]);
        let o = run(&s, tool, &["upgrade", name, c, "--set", "bad=true"]);
        steps.push(failure(tool, &o, name));
        let o = run(&s, tool, &["rollback", name, "2"]);
        steps.push(failure(tool, &o, name));
        let o = run(&s, tool, &["install", name, c]);
        steps.push(failure(tool, &o, name));
        let hist: Vec<(i64, String, String)> = history_json(&s, "helm", name, "default")
            .into_iter()
            .map(|(r, st, d)| (r, st, d.replace(name, "NAME")))
            .collect();
        seen.push((steps, hist));
    }
    let (steps, _) = &seen[0];
    let cm = "ConfigMap \"NAME-a\" is invalid: data[bad key!]";
    let svc = "Service \"NAME-s\" is invalid: [spec.ports[0].port: Invalid value: 70000";
    // helm names both objects in one error, and logs what it says it logs
    assert!(steps[0].0.is_empty(), "{steps:?}");
    assert!(
        steps[0]
            .1
            .starts_with(&format!("INSTALLATION FAILED: {cm}"))
            && steps[0].1.contains(svc),
        "{steps:?}"
    );
    assert!(
        steps[1].1.starts_with(&format!("UPGRADE FAILED: {cm}")),
        "{steps:?}"
    );
    assert!(steps[1].1.contains(&format!(" && {svc}")), "{steps:?}");
    assert_eq!(steps[1].0.len(), 1, "{steps:?}");
    assert!(
        steps[1].0[0].starts_with(&format!(
            "level=WARN msg=\"upgrade failed\" name=NAME error=\"{}",
            cm.replace('"', "\\\"")
        )),
        "{steps:?}"
    );
    assert!(
        steps[2].0[0].starts_with("level=WARN msg=\"Rollback \\\"NAME\\\" failed: "),
        "{steps:?}"
    );
    assert_eq!(
        steps[3].0,
        [
            "level=ERROR msg=\"release name check failed\" error=\"cannot reuse a name that is still in use\""
        ]
    );
    assert_eq!(seen[1], seen[0], "keel (right) against helm (left)");
}

/// pflag takes `--flag=true|false` for every boolean flag (and `--flag`
/// alone as true, never the next word as its value); a deprecated flag
/// given as false still says so, and cobra's exclusive groups go by the
/// flags given, whatever their values. keel's chart commands do the same.
#[test]
fn boolean_flags_take_explicit_values_as_helm_does() {
    let s = KeelServer::start(None);
    let chart = tempfile::tempdir().unwrap();
    two_bad_chart(chart.path());
    let c = chart.path().to_str().unwrap();
    let mut seen = Vec::new();
    for (tool, name) in [("helm", "flagh"), ("keel", "flagk")] {
        let mut got = Vec::new();
        // `--create-namespace` before NAME: the name is no flag value
        let o = run(
            &s,
            tool,
            &[
                "install",
                "--create-namespace",
                name,
                c,
                "--atomic=false",
                "--wait=false",
                "--force=false",
            ],
        );
        got.push((o.status.success(), notices(&o)));
        let o = run(
            &s,
            tool,
            &[
                "upgrade",
                name,
                c,
                "--force=false",
                "--install=true",
                "--reuse-values=false",
            ],
        );
        got.push((o.status.success(), notices(&o)));
        let o = run(
            &s,
            tool,
            &[
                "upgrade",
                name,
                c,
                "--force-replace=false",
                "--force-conflicts",
            ],
        );
        got.push((o.status.success(), vec![error_of(tool, &o)]));
        let o = run(
            &s,
            tool,
            &["rollback", name, "1", "--no-hooks=true", "--force=f"],
        );
        got.push((o.status.success(), notices(&o)));
        let o = run(
            &s,
            tool,
            &["list", "--short=false", "-q", "--deployed=true"],
        );
        got.push((
            o.status.success(),
            vec![String::from_utf8_lossy(&o.stdout).into_owned()],
        ));
        let o = run(&s, tool, &["uninstall", name, "--keep-history=false"]);
        got.push((o.status.success(), notices(&o)));
        seen.push(
            got.into_iter()
                .map(|(ok, lines)| {
                    (
                        ok,
                        lines
                            .iter()
                            .map(|l| l.replace(name, "NAME"))
                            .collect::<Vec<_>>(),
                    )
                })
                .collect::<Vec<_>>(),
        );
    }
    let h = &seen[0];
    assert!(
        h[0].0 && h[1].0 && !h[2].0 && h[3].0 && h[4].0 && h[5].0,
        "{h:?}"
    );
    assert!(
        h[1].1
            .contains(&"Flag --force has been deprecated, use --force-replace instead".to_string()),
        "{h:?}"
    );
    assert_eq!(seen[1], seen[0], "keel (right) against helm (left)");
}

/// Helm's CRDs: those in `crds/` go in before the templates (whose custom
/// resource needs them), and an upgrade never changes them nor an
/// uninstall deletes them. Each tool gets its own group; both leave the same.
#[test]
fn crds_go_in_first_and_are_never_upgraded_or_deleted_as_helm_does() {
    let s = KeelServer::start(None);
    let k = &common::kubectls()[1];
    let mut seen = Vec::new();
    for tool in ["helm", "keel"] {
        let chart = tempfile::tempdir().unwrap();
        let dir = chart.path();
        let c = dir.to_str().unwrap();
        let crd = |labels: &str| {
            WIDGET_CRD
                .replace("widgets.keel.test", &format!("widgets.{tool}.keel.test"))
                .replace("group: keel.test", &format!("group: {tool}.keel.test"))
                .replace(
                    "metadata: {name:",
                    &format!("metadata: {{labels: {{{labels}}}, name:"),
                )
        };
        write(
            dir,
            "Chart.yaml",
            "apiVersion: v2\nname: crdc\nversion: 0.1.0\n",
        );
        write(dir, "crds/widget.yaml", &crd("v: one"));
        write(
            dir,
            "templates/w.yaml",
            &format!(
                "apiVersion: {tool}.keel.test/v1\nkind: Widget\nmetadata:\n  name: w\nspec:\n  size: {{{{ .Release.Revision }}}}\n"
            ),
        );
        let crd_label = || {
            s.ok(
                k,
                &[
                    "get",
                    "crd",
                    &format!("widgets.{tool}.keel.test"),
                    "--ignore-not-found",
                    "-o",
                    "jsonpath={.metadata.labels.v}",
                ],
            )
        };
        let widget = || {
            s.ok(
                k,
                &[
                    "get",
                    &format!("widgets.{tool}.keel.test"),
                    "w",
                    "-n",
                    "default",
                    "--ignore-not-found",
                    "-o",
                    "jsonpath={.spec.size}",
                ],
            )
        };
        let name = format!("crd-{tool}");
        let mut got = Vec::new();
        ok(run(&s, tool, &["install", &name, c]), "install");
        got.push((crd_label(), widget()));
        write(dir, "crds/widget.yaml", &crd("v: two"));
        ok(run(&s, tool, &["upgrade", &name, c]), "upgrade");
        got.push((crd_label(), widget()));
        ok(run(&s, tool, &["uninstall", &name]), "uninstall");
        got.push((crd_label(), widget()));
        seen.push(got);
    }
    let one = |w: &str| ("one".to_string(), w.to_string());
    assert_eq!(seen[0], [one("1"), one("2"), one("")], "helm");
    assert_eq!(seen[1], seen[0], "keel (right) against helm (left)");
}

/// Helm 4.1.4's rollback returns a failed pre-rollback hook's error as it
/// is, records nothing more (the new revision stays `pending-rollback`) and
/// logs nothing; keel leaves the same history.
#[test]
fn failing_pre_rollback_hook_leaves_the_rollback_pending_as_helm_does() {
    let s = KeelServer::start(None);
    let chart = tempfile::tempdir().unwrap();
    let dir = chart.path();
    write(
        dir,
        "Chart.yaml",
        "apiVersion: v2\nname: rb\nversion: 0.1.0\n",
    );
    write(
        dir,
        "templates/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\ndata:\n  rev: \"{{ .Release.Revision }}\"\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-hook\n  annotations:\n    helm.sh/hook: pre-rollback\ndata:\n  \"bad key!\": x\n",
    );
    let c = dir.to_str().unwrap();
    let mut seen = Vec::new();
    for (tool, name) in [("helm", "rbh"), ("keel", "rbk")] {
        helm_ok(&s, &["install", name, c]);
        helm_ok(&s, &["upgrade", name, c]);
        let o = run(&s, tool, &["rollback", name, "1"]);
        let (logs, err) = failure(tool, &o, name);
        let hist = history_json(&s, "helm", name, "default");
        let cm = configmap(&s, "default", &format!("{name}-cm")).unwrap();
        seen.push((logs, err, hist, cm["data"]["rev"].clone()));
    }
    assert!(seen[0].0.is_empty(), "{seen:?}");
    assert!(
        seen[0].1.starts_with("warning: Hook pre-rollback rb/templates/cm.yaml failed: ConfigMap \"NAME-hook\" is invalid"),
        "{seen:?}"
    );
    assert_eq!(seen[0].2[2].1, "pending-rollback", "{seen:?}");
    assert_eq!(seen[0].3, serde_json::json!("2"));
    assert_eq!(seen[1], seen[0], "keel (right) against helm (left)");
}

/// A hook that never completes: Helm 4.1.4's `WatchUntilReady` names it in
/// its status watcher's words at the deadline (no `warning: Hook` prefix:
/// that is for a hook it could not create); keel says and records the same.
#[test]
fn hook_timeout_names_the_hook_as_helm_does() {
    let s = KeelServer::start(None);
    let chart = tempfile::tempdir().unwrap();
    let dir = chart.path();
    write(
        dir,
        "Chart.yaml",
        "apiVersion: v2\nname: hk\nversion: 0.1.0\n",
    );
    write(
        dir,
        "templates/h.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {{ .Release.Name }}-hook\n  annotations:\n    helm.sh/hook: pre-install\nspec:\n  containers: [{name: c, image: busybox}]\n",
    );
    let c = dir.to_str().unwrap();
    let mut seen = Vec::new();
    for (tool, name) in [("helm", "hkh"), ("keel", "hkk")] {
        let o = run(&s, tool, &["install", name, c, "--timeout", "2s"]);
        let (logs, err) = failure(tool, &o, name);
        let hist: Vec<(i64, String, String)> = history_json(&s, "helm", name, "default")
            .into_iter()
            .map(|(r, st, d)| (r, st, d.replace(name, "NAME")))
            .collect();
        seen.push((logs, err, hist));
    }
    assert_eq!(
        seen[0].1,
        "INSTALLATION FAILED: failed pre-install: resource Pod/default/NAME-hook not ready. status: InProgress, message: Pod in progress context deadline exceeded"
    );
    assert_eq!(seen[1], seen[0], "keel (right) against helm (left)");
}
