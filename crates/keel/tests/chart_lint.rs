//! `keel chart lint` beside the real Helm 4.1.4's `helm lint`: the same
//! findings, words, order and exit status for every chart of
//! ../shared/charts and for broken charts written here (bad Chart.yaml,
//! values that do not parse, templates whose output is not YAML, with its
//! line number, `required` values missing, `--strict`), and the same lines
//! Helm's lint mode logs while rendering.

mod helm_peer;

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn run(bin: &Path, dir: &Path, home: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .current_dir(dir)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .stdin(Stdio::null())
        .output()
        .expect("run")
}

/// stdout, the `level=` lines of stderr, and whether it succeeded.
fn seen(o: &Output) -> (String, Vec<String>, bool) {
    let err = String::from_utf8_lossy(&o.stderr);
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        err.lines()
            .filter(|l| l.starts_with("level="))
            .map(str::to_string)
            .collect(),
        o.status.success(),
    )
}

fn compare(dir: &Path, args: &[&str]) -> (String, Vec<String>, bool) {
    let home = tempfile::tempdir().unwrap();
    let mut k = vec!["chart", "lint"];
    k.extend_from_slice(args);
    let keel = seen(&run(
        Path::new(env!("CARGO_BIN_EXE_keel")),
        dir,
        home.path(),
        &k,
    ));
    let mut h = vec!["lint"];
    h.extend_from_slice(args);
    let helm = seen(&run(&helm_peer::helm(), dir, home.path(), &h));
    assert_eq!(keel, helm, "keel chart lint {args:?} in {}", dir.display());
    keel
}

#[test]
fn lint_prints_what_helm_lint_prints_for_every_corpus_chart() {
    let corpus = helm_peer::corpus();
    let mut n = 0;
    for e in std::fs::read_dir(&corpus).unwrap() {
        let d = e.unwrap().path();
        if d.join("chart/Chart.yaml").is_file() {
            compare(&d, &["chart"]);
            n += 1;
        }
    }
    assert!(n >= 30, "only {n} corpus charts");
}

fn write(root: &Path, files: &[(&str, &str)]) {
    for (p, text) in files {
        let p = root.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

#[test]
fn lint_of_broken_charts_matches_helm() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    // a template whose output is not YAML (line 7), a required value
    // missing, a maintainer without a name, a version that is SemVer but not SemVer 2
    write(
        t,
        &[
            (
                "bad/Chart.yaml",
                "apiVersion: v2\nname: bad\nversion: v1.0\nmaintainers:\n- email: x@y.z\n",
            ),
            ("bad/values.yaml", "x: 1\n"),
            (
                "bad/templates/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ required \"name please\" .Values.name }}\ndata:\n  a: b\n   c: d\n",
            ),
            // apiVersion v1 with a type, a template indented at the top
            (
                "v1/Chart.yaml",
                "apiVersion: v1\nname: v1\nversion: 1.0.0\ntype: application\nicon: https://x.test/i.png\n",
            ),
            ("v1/values.yaml", "name: ok\n"),
            (
                "v1/templates/cm.yaml",
                "  apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: {{ .Values.name }}\n",
            ),
            // no name, an unknown apiVersion, no values, no templates
            ("bare/Chart.yaml", "apiVersion: v3\nversion: 1.0.0\n"),
            // values that do not parse
            (
                "vals/Chart.yaml",
                "apiVersion: v2\nname: vals\nversion: 1.0.0\n",
            ),
            ("vals/values.yaml", "a: b\n  c: d\n"),
            ("vals/templates/x.yaml", ""),
            // only a warning: passes, but not with --strict
            (
                "warn/Chart.yaml",
                "apiVersion: v2\nname: warn\nversion: \"1.0\"\nicon: https://x.test/i.png\n",
            ),
            ("warn/values.yaml", "fail: false\n"),
            (
                "warn/templates/cm.yaml",
                "{{ if not .Values.fail }}{{ fail \"told to fail\" }}{{ end }}apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: w\n",
            ),
        ],
    );
    let (out, log, ok) = compare(t, &["bad"]);
    assert!(!ok);
    assert!(out.contains("[ERROR] templates/cm.yaml: unable to parse YAML: error converting YAML to JSON: yaml: line 7:"), "{out}");
    assert_eq!(
        log,
        ["level=WARN msg=\"missing required value\" message=\"name please\""]
    );
    compare(t, &["v1"]);
    compare(t, &["bare"]);
    compare(t, &["vals"]);
    let (_, log, ok) = compare(t, &["warn"]);
    assert!(ok, "a warning alone fails");
    assert_eq!(
        log,
        ["level=INFO msg=\"funcMap fail\" message=\"told to fail\""]
    );
    let (_, _, ok) = compare(t, &["warn", "--strict"]);
    assert!(!ok, "--strict passed a warning");
    compare(t, &["bad", "v1", "bare", "warn"]);
    // Chart.yaml's version as a YAML number: Helm's type check
    write(
        t,
        &[(
            "num/Chart.yaml",
            "apiVersion: v2\nname: num\nversion: 1.0\nappVersion: 2\n",
        )],
    );
    let (out, _, _) = compare(t, &["num"]);
    assert!(
        out.contains("version should be of type string but it's of type float64"),
        "{out}"
    );
}

/// The object rules: names each kind's API validation refuses, deprecated
/// APIs (for Helm's default Kubernetes and for `--kube-version`), a `List`
/// with a resource policy, template files with other extensions, CRDs that
/// are not CRDs, and Chart.yaml's dependencies against charts/.
#[test]
fn lint_object_crd_and_dependency_rules_match_helm() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let chart = "apiVersion: v2\nname: NAME\nversion: 1.0.0\nicon: https://x.test/i.png\n";
    write(
        t,
        &[
            ("names/Chart.yaml", &chart.replace("NAME", "names")),
            ("names/values.yaml", "{}\n"),
            (
                "names/templates/objs.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: 1svc\nspec:\n  ports: [{port: 80}]\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: a.b\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: a/b\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: \"system:ok\"\n---\n# only a comment\n",
            ),
            (
                "names/templates/long.yaml",
                &format!(
                    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {}\n",
                    "x".repeat(254)
                ),
            ),
            (
                "names/templates/list.yaml",
                "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: in-list\n    annotations:\n      helm.sh/resource-policy: keep\n",
            ),
            ("names/templates/data.json", "{}\n"),
            (
                "names/templates/_helpers.tpl",
                "{{- define \"x\" }}x{{ end }}\n",
            ),
            (
                "deprecated/Chart.yaml",
                &chart.replace("NAME", "deprecated"),
            ),
            (
                "deprecated/templates/old.yaml",
                "apiVersion: batch/v1beta1\nkind: CronJob\nmetadata:\n  name: old\nspec:\n  schedule: \"* * * * *\"\n---\napiVersion: policy/v1beta1\nkind: PodDisruptionBudget\nmetadata:\n  name: pdb\n---\napiVersion: autoscaling/v2beta2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: hpa\n---\napiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n",
            ),
            ("crds/Chart.yaml", &chart.replace("NAME", "crds")),
            (
                "crds/templates/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n",
            ),
            (
                "crds/crds/ok.yaml",
                "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.example.com\n",
            ),
            (
                "crds/crds/wrong.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: not-a-crd\n",
            ),
            ("crds/crds/notes.md", "not a manifest\n"),
            ("badcrd/Chart.yaml", &chart.replace("NAME", "badcrd")),
            (
                "badcrd/templates/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n",
            ),
            ("badcrd/crds/broken.yaml", "a: b\n  c: d\n"),
            ("crdfile/Chart.yaml", &chart.replace("NAME", "crdfile")),
            ("crdfile/crds", "a file\n"),
            (
                "deps/Chart.yaml",
                "apiVersion: v2\nname: deps\nversion: 1.0.0\nicon: https://x.test/i.png\ndependencies:\n- name: sub\n  version: 1.0.0\n- name: gone\n  version: 1.0.0\n",
            ),
            // a name twice: Helm's loader refuses the chart
            (
                "dupdeps/Chart.yaml",
                "apiVersion: v2\nname: dupdeps\nversion: 1.0.0\ndependencies:\n- name: sub\n  version: 1.0.0\n- name: sub2\n  alias: sub\n  version: 1.0.0\n",
            ),
            (
                "deps/templates/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n",
            ),
            (
                "deps/charts/sub/Chart.yaml",
                "apiVersion: v2\nname: sub\nversion: 1.0.0\n",
            ),
            (
                "deps/charts/extra/Chart.yaml",
                "apiVersion: v2\nname: extra\nversion: 1.0.0\n",
            ),
        ],
    );
    let (out, _, ok) = compare(t, &["names"]);
    assert!(!ok, "{out}");
    for want in [
        "[WARNING] templates/objs.yaml: object name does not conform to Kubernetes naming requirements: \"Bad_Name\"",
        "[WARNING] templates/objs.yaml: object name does not conform to Kubernetes naming requirements: \"1svc\": metadata.name: Invalid value: \"1svc\": a DNS-1035 label",
        "must not contain dots",
        "may not contain '/'",
        "[ERROR] templates/list.yaml: annotation 'helm.sh/resource-policy' within List objects are ignored",
        "[ERROR] templates/data.json: file extension '.json' not valid.",
    ] {
        assert!(out.contains(want), "{want:?} missing from:\n{out}");
    }
    let (out, _, ok) = compare(t, &["deprecated"]);
    assert!(ok, "deprecations are warnings");
    assert!(
        out.contains("[WARNING] templates/old.yaml: batch/v1beta1 CronJob is deprecated in v1.21+, unavailable in v1.25+; use batch/v1 CronJob"),
        "{out}"
    );
    // before 1.21 nothing of it was deprecated; only the HPA (1.23) with 1.22
    let (out, _, _) = compare(t, &["deprecated", "--kube-version", "1.20.0"]);
    assert!(!out.contains("deprecated in"), "{out}");
    compare(t, &["deprecated", "--kube-version", "v1.22"]);
    let (_, _, ok) = compare(t, &["deprecated", "--strict"]);
    assert!(!ok);
    let (out, _, ok) = compare(t, &["crds"]);
    assert!(!ok);
    assert!(
        out.contains("[ERROR] crds/wrong.yaml: apiVersion is not in 'apiextensions.k8s.io'"),
        "{out}"
    );
    compare(t, &["badcrd"]);
    compare(t, &["crdfile"]);
    let (out, _, ok) = compare(t, &["deps"]);
    assert!(!ok);
    assert!(
        out.contains("chart metadata is missing these dependencies: extra"),
        "{out}"
    );
    assert!(
        out.contains("chart directory is missing these dependencies: gone"),
        "{out}"
    );
    let (out, _, _) = compare(t, &["dupdeps"]);
    assert!(
        out.contains("more than one dependency with name or alias \"sub\""),
        "{out}"
    );
    compare(t, &["names", "deprecated", "crds", "deps"]);
}

#[test]
fn lint_refuses_a_kube_version_it_cannot_read_as_helm_does() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let home = tempfile::tempdir().unwrap();
    write(
        t,
        &[("c/Chart.yaml", "apiVersion: v2\nname: c\nversion: 1.0.0\n")],
    );
    let k = run(
        Path::new(env!("CARGO_BIN_EXE_keel")),
        t,
        home.path(),
        &["chart", "lint", "c", "--kube-version", "banana"],
    );
    let h = run(
        &helm_peer::helm(),
        t,
        home.path(),
        &["lint", "c", "--kube-version", "banana"],
    );
    assert!(!k.status.success() && !h.status.success());
    let herr = String::from_utf8_lossy(&h.stderr);
    let kerr = String::from_utf8_lossy(&k.stderr);
    assert!(herr.contains("invalid kube version 'banana': "), "{herr}");
    let want = herr
        .lines()
        .find(|l| l.contains("invalid kube version"))
        .unwrap();
    let want = want.trim_start_matches("Error: ");
    assert!(kerr.contains(want), "keel: {kerr}\nhelm: {herr}");
}
