//! `keel dockerfile parse` (hidden debugging command) through the real binary.

use std::process::{Command, Output};

fn keel(args: &[&str], dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run keel")
}

#[test]
fn prints_buildkit_sexpressions() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM alpine AS b\nCOPY --from=b a /x\nENV k=v\nCMD [\"sh\"]\n",
    )
    .unwrap();
    let out = keel(&["dockerfile", "parse", "Dockerfile"], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "(from \"alpine\" \"AS\" \"b\")\n(copy [\"--from=b\"] \"a\" \"/x\")\n(env \"k\" \"v\" \"=\")\n(cmd \"sh\")\n"
    );
}

#[test]
fn errors_have_location_and_hint() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), "FROM alpine\n  CPOY a b\n").unwrap();
    let out = keel(&["dockerfile", "parse", "Dockerfile"], dir.path());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines[0],
        "error: parsing the Dockerfile: Dockerfile:2:3: unknown instruction: CPOY"
    );
    assert!(lines[1].starts_with("hint: did you mean COPY?"), "{err}");
    assert!(out.stdout.is_empty());
}
