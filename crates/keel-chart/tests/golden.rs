//! Regression snapshots: keel's own test charts rendered like `helm template`
//! and compared with checked-in files that keel wrote. They guard against
//! unintended change only; the evidence that the output is Helm's comes from
//! the real Helm 4.1.4 (`crates/keel/tests/chart_helm_diff.rs` renders these
//! same charts with both, `chart_helm_corpus.rs` checks `../shared/charts`).
//! `UPDATE_GOLDEN=1` rewrites the snapshots after an intended change, and
//! refuses to under `CI` (a snapshot updated by CI proves nothing).

#![allow(clippy::format_push_string)]

use std::path::{Path, PathBuf};

use keel_chart::{TemplateOptions, ValueOptions};

fn charts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/charts")
}

fn render(chart: &Path, opts: &TemplateOptions, vals: &ValueOptions) -> Result<String, String> {
    let c = keel_chart::load(chart).map_err(|e| e.to_string())?;
    let user = keel_chart::user_values(vals).map_err(|e| e.to_string())?;
    let r = keel_chart::render(&c, &user, opts).map_err(|e| e.to_string())?;
    keel_chart::template_text(&r, opts).map_err(|e| e.to_string())
}

fn check(name: &str, got: &str) {
    let path = charts().join(format!("{name}.golden.yaml"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        assert!(
            std::env::var_os("CI").is_none(),
            "UPDATE_GOLDEN is refused under CI: snapshots are updated by a person, after checking the output against helm"
        );
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    if want != got {
        let diff = similar_lines(&want, got);
        panic!("{name}: output differs from {}:\n{diff}", path.display());
    }
}

fn similar_lines(a: &str, b: &str) -> String {
    let mut out = String::new();
    for (i, (x, y)) in a.lines().zip(b.lines()).enumerate() {
        if x != y {
            out.push_str(&format!("line {}:\n- {x}\n+ {y}\n", i + 1));
        }
    }
    if a.lines().count() != b.lines().count() {
        out.push_str(&format!(
            "line count {} vs {}\n",
            a.lines().count(),
            b.lines().count()
        ));
    }
    out
}

fn opts(release: &str, ns: &str) -> TemplateOptions {
    TemplateOptions {
        release_name: release.into(),
        namespace: ns.into(),
        ..TemplateOptions::default()
    }
}

#[test]
fn created_chart() {
    let dir = tempfile::tempdir().unwrap();
    let root = keel_chart::create::create(dir.path(), "mychart").unwrap();
    let got = render(
        &root,
        &opts("release-name", "default"),
        &ValueOptions::default(),
    )
    .unwrap();
    check("created", &got);
    // every feature switched on
    let vals = ValueOptions {
        set: vec![
            "ingress.enabled=true,autoscaling.enabled=true,serviceAccount.create=false".into(),
            "ingress.tls[0].secretName=tls,ingress.tls[0].hosts={a.example.com,b.example.com}"
                .into(),
            "podAnnotations.checksum=abc,service.type=NodePort".into(),
        ],
        ..ValueOptions::default()
    };
    let got = render(&root, &opts("web", "prod"), &vals).unwrap();
    check("created-all", &got);
    let mut o = opts("web", "prod");
    o.show_only = vec!["templates/service.yaml".into(), "templates/tests/*".into()];
    o.skip_tests = false;
    check(
        "created-show-only",
        &render(&root, &o, &ValueOptions::default()).unwrap(),
    );
}

#[test]
fn umbrella_chart_with_subcharts() {
    let mut o = opts("prod", "shop");
    o.include_crds = true;
    check(
        "webapp",
        &render(&charts().join("webapp"), &o, &ValueOptions::default()).unwrap(),
    );
    let vals = ValueOptions {
        files: vec![charts().join("webapp-overrides.yaml")],
        set: vec![
            "redis.enabled=false".into(),
            "tags.observability=true".into(),
        ],
        string: vec!["monitoring.interval=10".into()],
        json: vec![r#"ingress.paths=["/v2"]"#.into()],
        ..ValueOptions::default()
    };
    let mut o = opts("canary", "shop");
    o.skip_tests = true;
    o.is_upgrade = true;
    check(
        "webapp-overrides",
        &render(&charts().join("webapp"), &o, &vals).unwrap(),
    );
}

#[test]
fn library_chart_tpl_and_files() {
    let vals = ValueOptions {
        set: vec!["database.url=postgres://db:5432/app".into()],
        ..ValueOptions::default()
    };
    check(
        "libuser",
        &render(&charts().join("libuser"), &opts("demo", "default"), &vals).unwrap(),
    );
}

#[test]
fn v1_chart_rbac_and_capabilities() {
    check(
        "operator",
        &render(
            &charts().join("operator"),
            &opts("op", "ops"),
            &ValueOptions::default(),
        )
        .unwrap(),
    );
    let mut o = opts("op", "ops");
    o.kube_version = Some("1.20.4".into());
    let got = render(&charts().join("operator"), &o, &ValueOptions::default()).unwrap();
    assert!(
        got.contains("apiVersion: batch/v1beta1\nkind: CronJob"),
        "{got}"
    );
    assert!(got.contains("kube-version: v1.20.4"), "{got}");
}

#[test]
fn packaged_chart_renders_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let tgz = keel_chart::package(&charts().join("libuser"), dir.path()).unwrap();
    assert_eq!(tgz.file_name().unwrap(), "libuser-0.5.0.tgz");
    let vals = ValueOptions {
        set: vec!["database.url=postgres://db:5432/app".into()],
        ..ValueOptions::default()
    };
    let a = render(&tgz, &opts("demo", "default"), &vals).unwrap();
    let b = render(&charts().join("libuser"), &opts("demo", "default"), &vals).unwrap();
    assert_eq!(a, b);
}

#[test]
fn errors_read_like_helm() {
    // schema violations
    let vals = ValueOptions {
        set: vec!["replicaCount=0,image.pullPolicy=Sometimes,service.port=70000".into()],
        ..ValueOptions::default()
    };
    let e = render(&charts().join("webapp"), &opts("prod", "shop"), &vals).unwrap_err();
    // Helm 4's jsonschema messages; with several failures Helm's order follows
    // Go's random map order, keel's is key order
    assert_eq!(
        e,
        "values don't meet the specifications of the schema(s) in the following chart(s):\nwebapp:\n- at '/image/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'\n- at '/replicaCount': minimum: got 0, want 1\n- at '/service/port': maximum: got 70,000, want 65,535\n"
    );
    let vals = ValueOptions {
        string: vec!["replicaCount=3".into()],
        ..ValueOptions::default()
    };
    let e = render(&charts().join("webapp"), &opts("prod", "shop"), &vals).unwrap_err();
    assert!(
        e.contains("- at '/replicaCount': got string, want integer"),
        "{e}"
    );
    // required
    let e = render(
        &charts().join("libuser"),
        &opts("demo", "default"),
        &ValueOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        e,
        "execution error at (libuser/templates/secret.yaml:8:19): database.url is required: set --set database.url=..."
    );
    // kubeVersion constraint
    let mut o = opts("prod", "shop");
    o.kube_version = Some("1.24".into());
    let e = render(&charts().join("webapp"), &o, &ValueOptions::default()).unwrap_err();
    assert_eq!(
        e,
        "chart requires kubeVersion: >=1.25.0-0 which is incompatible with Kubernetes v1.24"
    );
    // release name
    let e = render(
        &charts().join("webapp"),
        &opts("Bad_Name", "x"),
        &ValueOptions::default(),
    )
    .unwrap_err();
    assert!(
        e.starts_with("release name check failed: release name \"Bad_Name\": invalid release name"),
        "{e}"
    );
    // show-only of a missing template
    let mut o = opts("prod", "shop");
    o.show_only = vec!["templates/nope.yaml".into()];
    let e = render(&charts().join("webapp"), &o, &ValueOptions::default()).unwrap_err();
    assert_eq!(e, "could not find template templates/nope.yaml in chart");
}

fn bad_chart(template: &str) -> Result<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("bad");
    std::fs::create_dir_all(root.join("templates")).unwrap();
    std::fs::write(
        root.join("Chart.yaml"),
        "apiVersion: v2\nname: bad\nversion: 0.1.0\n",
    )
    .unwrap();
    std::fs::write(root.join("values.yaml"), "n: 3\nm:\n  a: 1\n").unwrap();
    std::fs::write(root.join("templates/x.yaml"), template).unwrap();
    render(&root, &opts("r", "default"), &ValueOptions::default())
}

#[test]
fn template_errors_have_locations() {
    assert_eq!(
        bad_chart("a: 1\nb: {{ nope . }}\n").unwrap_err(),
        "parse error at (bad/templates/x.yaml:2): function \"nope\" not defined"
    );
    assert_eq!(
        bad_chart("a: {{ .Values.n \n").unwrap_err(),
        "parse error at (bad/templates/x.yaml:2): unclosed action started at bad/templates/x.yaml:1"
    );
    assert_eq!(
        bad_chart("a: {{ upper .Values.n }}\n").unwrap_err(),
        "bad/templates/x.yaml:1:19\n  executing \"bad/templates/x.yaml\" at <.Values.n>:\n    wrong type for value; expected string; got interface {}"
    );
    assert_eq!(
        bad_chart("a: {{ .Values.missing.key }}\n").unwrap_err(),
        "bad/templates/x.yaml:1:13\n  executing \"bad/templates/x.yaml\" at <.Values.missing.key>:\n    nil pointer evaluating interface {}.key"
    );
    assert_eq!(
        bad_chart("{{ fail \"stop here\" }}").unwrap_err(),
        "execution error at (bad/templates/x.yaml:1:3): stop here"
    );
    assert_eq!(
        bad_chart("a: b\n  c: d\n").unwrap_err(),
        "YAML parse error on bad/templates/x.yaml: error converting YAML to JSON: yaml: line 2: mapping values are not allowed in this context"
    );
    let e = bad_chart("{{- define \"loop\" -}}{{ include \"loop\" . }}{{- end -}}\nkind: {{ include \"loop\" . }}\n").unwrap_err();
    assert!(e.ends_with("error calling include: rendering template has a nested reference name: loop: unable to execute template"), "{}", &e[e.len() - 200..]);
    // values numbers are float64 (1), template literals stay int; missing values print nothing
    assert_eq!(
        bad_chart("a: {{ .Values.m.a }}{{ .Values.none }}\nb: {{ 12345678901 }}\n").unwrap(),
        "---\n# Source: bad/templates/x.yaml\na: 1\nb: 12345678901\n"
    );
}

#[test]
fn v1_requirements_yaml_and_subchart_archive() {
    let dir = tempfile::tempdir().unwrap();
    // a subchart packaged as charts/sub-0.1.0.tgz
    let sub = dir.path().join("src/sub");
    std::fs::create_dir_all(sub.join("templates")).unwrap();
    std::fs::write(
        sub.join("Chart.yaml"),
        "apiVersion: v1\nname: sub\nversion: 0.1.0\n",
    )
    .unwrap();
    std::fs::write(sub.join("values.yaml"), "msg: from-sub\n").unwrap();
    std::fs::write(sub.join("templates/cm.yaml"), "kind: ConfigMap\nmetadata:\n  name: {{ .Chart.Name }}-{{ .Values.msg }}-{{ .Values.global.env }}\n").unwrap();
    let root = dir.path().join("v1app");
    std::fs::create_dir_all(root.join("templates")).unwrap();
    std::fs::create_dir_all(root.join("charts")).unwrap();
    keel_chart::package(&sub, &root.join("charts")).unwrap();
    std::fs::write(
        root.join("Chart.yaml"),
        "apiVersion: v1\nname: v1app\nversion: 1.0.0\n",
    )
    .unwrap();
    std::fs::write(
        root.join("requirements.yaml"),
        "dependencies:\n  - name: sub\n    version: 0.1.0\n    condition: sub.enabled\n",
    )
    .unwrap();
    std::fs::write(
        root.join("values.yaml"),
        "global:\n  env: dev\nsub:\n  enabled: true\n  msg: from-parent\n",
    )
    .unwrap();
    std::fs::write(
        root.join("templates/svc.yaml"),
        "kind: Service\nmetadata:\n  name: {{ .Release.Name }}\n",
    )
    .unwrap();
    let got = render(&root, &opts("r", "default"), &ValueOptions::default()).unwrap();
    assert_eq!(
        got,
        "---\n# Source: v1app/charts/sub/templates/cm.yaml\nkind: ConfigMap\nmetadata:\n  name: sub-from-parent-dev\n---\n# Source: v1app/templates/svc.yaml\nkind: Service\nmetadata:\n  name: r\n"
    );
    let vals = ValueOptions {
        set: vec!["sub.enabled=false".into()],
        ..ValueOptions::default()
    };
    let got = render(&root, &opts("r", "default"), &vals).unwrap();
    assert!(!got.contains("ConfigMap"), "{got}");
}
