//! `keel server` command-line behaviour: one-line errors with hints.

use std::process::Command;

#[test]
fn port_in_use_is_one_error_line_and_a_hint() {
    let root = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let out = Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("--root")
        .arg(root.path())
        .args(["server", "--listen", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        err,
        format!(
            "error: start keel server: listen on 127.0.0.1:{port}: Address already in use (os error 98)\nhint: another server may be running; pick a free port with --listen 127.0.0.1:PORT\n"
        )
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_datastore_url_is_rejected() {
    let root = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("--root")
        .arg(root.path())
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--datastore",
            "mysql://db",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with(
            "error: start keel server: open datastore mysql://db: invalid datastore url"
        ),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn token_create_prints_only_the_token() {
    let root = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("--root")
        .arg(root.path())
        .args(["server", "token", "create", "--read-only"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap();
    assert_eq!(token.trim().len(), 48);
    let file = std::fs::read_to_string(root.path().join("server/tokens")).unwrap();
    assert_eq!(file, format!("{} read-only\n", token.trim()));
}
