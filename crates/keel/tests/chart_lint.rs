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
