//! `keel chart …` driven through the real binary.

use std::path::Path;
use std::process::{Command, Output};

fn keel(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run keel")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn charts() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../keel-chart/tests/charts")
}

#[test]
fn create_then_template_lint_package() {
    let dir = tempfile::tempdir().unwrap();
    let out = keel(dir.path(), &["chart", "create", "mychart"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for f in [
        "Chart.yaml",
        "values.yaml",
        ".helmignore",
        "templates/deployment.yaml",
        "templates/service.yaml",
        "templates/ingress.yaml",
        "templates/hpa.yaml",
        "templates/serviceaccount.yaml",
        "templates/_helpers.tpl",
        "templates/NOTES.txt",
        "templates/tests/test-connection.yaml",
    ] {
        assert!(dir.path().join("mychart").join(f).is_file(), "{f} missing");
    }
    let out = keel(
        dir.path(),
        &["chart", "template", "release-name", "mychart"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let want = std::fs::read_to_string(charts().join("created.golden.yaml")).unwrap();
    assert_eq!(text(&out.stdout), want);

    let out = keel(
        dir.path(),
        &[
            "chart",
            "template",
            "web",
            "mychart",
            "-n",
            "prod",
            "--show-only",
            "templates/service.yaml",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    insta::assert_snapshot!("show_only_service", text(&out.stdout));

    let out = keel(dir.path(), &["chart", "lint", "mychart"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "==> Linting mychart\n[INFO] Chart.yaml: icon is recommended\n\n1 chart(s) linted, 0 chart(s) failed\n"
    );

    let out = keel(dir.path(), &["chart", "package", "mychart", "-d", "."]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("Successfully packaged chart and saved it to: "));
    let out = keel(
        dir.path(),
        &["chart", "template", "release-name", "mychart-0.1.0.tgz"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), want);
}

#[test]
fn values_flags_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let webapp = charts().join("webapp");
    let w = webapp.to_str().unwrap();
    let out = keel(
        dir.path(),
        &[
            "chart",
            "template",
            "prod",
            w,
            "-n",
            "shop",
            "--include-crds",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        std::fs::read_to_string(charts().join("webapp.golden.yaml")).unwrap()
    );

    // schema violation: one error line, non-zero exit
    let out = keel(
        dir.path(),
        &["chart", "template", "prod", w, "--set", "replicaCount=0"],
    );
    assert!(!out.status.success());
    assert_eq!(
        text(&out.stderr),
        "error: values don't meet the specifications of the schema(s) in the following chart(s): webapp: - at '/replicaCount': minimum: got 0, want 1\n"
    );
    // bad --set syntax
    let out = keel(
        dir.path(),
        &["chart", "template", "prod", w, "--set", "a.b"],
    );
    assert!(!out.status.success());
    assert_eq!(
        text(&out.stderr),
        "error: failed parsing --set data: key \"b\" has no value\n"
    );
    // missing chart: error plus hint
    let out = keel(dir.path(), &["chart", "template", "prod", "nope"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.starts_with("error: stat nope: no such file or directory\n"),
        "{err}"
    );
    assert!(
        err.contains("\nhint: pass a chart directory or .tgz"),
        "{err}"
    );
    // required value
    let lib = charts().join("libuser");
    let out = keel(
        dir.path(),
        &["chart", "template", "demo", lib.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert_eq!(
        text(&out.stderr),
        "error: execution error at (libuser/templates/secret.yaml:8:19): database.url is required: set --set database.url=...\n"
    );
    // lint renders in Helm's lint mode: the missing value is logged, and
    // the Deployment without a selector is what fails it (as helm lint)
    let out = keel(dir.path(), &["chart", "lint", lib.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out.stdout).contains(
            "[ERROR] templates/deployment.yaml: a Deployment must contain matchLabels or matchExpressions, and \"test-release-libuser\" does not"
        ),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        text(&out.stderr),
        "level=WARN msg=\"missing required values\" message=\"database.url is required: set --set database.url=...\"\nerror: 1 chart(s) linted, 1 chart(s) failed\n"
    );
}
