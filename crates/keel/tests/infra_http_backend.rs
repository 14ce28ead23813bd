//! `keel server` as terraform's http state backend (`/infra/state/NAME`),
//! driven by the real terraform 1.11: init, apply, a second apply blocked by
//! the lock (the holder named), force-unlock after the holder died, and
//! authentication by keel tokens.

mod server_common;

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use server_common::KeelServer;

fn terraform(dir: &Path, args: &[&str]) -> Output {
    Command::new("terraform")
        .args(args)
        .current_dir(dir)
        .env("TF_CLI_CONFIG_FILE", "/dev/null")
        .env("CHECKPOINT_DISABLE", "1")
        .output()
        .expect("terraform 1.11 must be installed (scripts/test.sh checks it)")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Reads keel's stdout up to apply's `Enter a value` prompt (the lock is held then).
fn read_to_prompt(mut out: std::process::ChildStdout) -> std::process::ChildStdout {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("Enter a value") {
        let n = out.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "keel apply ended before prompting: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    out
}

fn init(dir: &Path, server: &KeelServer, password: &str) -> Output {
    let url = format!("https://127.0.0.1:{}/infra/state/demo", server.port);
    let ca = std::fs::read_to_string(server.state_dir().join("tls/ca.crt")).unwrap();
    let args: Vec<String> = vec![
        "init".into(),
        "-no-color".into(),
        "-reconfigure".into(),
        format!("-backend-config=address={url}"),
        format!("-backend-config=lock_address={url}"),
        format!("-backend-config=unlock_address={url}"),
        "-backend-config=username=keel".into(),
        format!("-backend-config=password={password}"),
        format!("-backend-config=client_ca_certificate_pem={ca}"),
    ];
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    terraform(dir, &refs)
}

#[test]
fn terraform_keeps_its_state_in_keel_server() {
    let server = KeelServer::start(None);
    let token = server.admin_token();
    let base = tempfile::tempdir().unwrap();
    let d = base.path();
    std::fs::write(
        d.join("main.tf"),
        "terraform {\n  backend \"http\" {}\n}\nresource \"terraform_data\" \"a\" {\n  input = \"one\"\n}\noutput \"o\" {\n  value = terraform_data.a.output\n}\n",
    )
    .unwrap();

    // A wrong token is refused.
    let bad = init(d, &server, "not-a-token");
    assert!(bad.status.success() || !text(&bad).is_empty());
    let plan = terraform(d, &["plan", "-no-color", "-lock=false"]);
    assert!(
        !plan.status.success(),
        "a wrong token must not read state: {}",
        text(&plan)
    );
    assert!(text(&plan).contains("requires auth"), "{}", text(&plan));

    let ok = init(d, &server, &token);
    assert!(ok.status.success(), "{}", text(&ok));
    let apply = terraform(d, &["apply", "-auto-approve", "-no-color"]);
    assert!(apply.status.success(), "{}", text(&apply));
    // The state is in keel: a fresh directory with the same backend sees it.
    let other = tempfile::tempdir().unwrap();
    std::fs::copy(d.join("main.tf"), other.path().join("main.tf")).unwrap();
    assert!(init(other.path(), &server, &token).status.success());
    let pull = terraform(other.path(), &["state", "pull"]);
    let st: serde_json::Value =
        serde_json::from_slice(&pull.stdout).unwrap_or_else(|_| panic!("{}", text(&pull)));
    assert_eq!(st["resources"][0]["type"], "terraform_data");
    assert_eq!(st["outputs"]["o"]["value"], "one");

    // An apply waiting at its prompt holds the lock; a second one is refused, naming it.
    std::fs::write(
        d.join("main.tf"),
        std::fs::read_to_string(d.join("main.tf"))
            .unwrap()
            .replace("\"one\"", "\"two\""),
    )
    .unwrap();
    let mut holder = Command::new("terraform")
        .args(["apply", "-no-color"])
        .current_dir(d)
        .env("TF_CLI_CONFIG_FILE", "/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = holder.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("Enter a value") {
        let n = out.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "apply ended before prompting: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    let second = terraform(
        other.path(),
        &["apply", "-auto-approve", "-no-color", "-lock-timeout=0s"],
    );
    assert!(!second.status.success());
    let t = text(&second);
    assert!(
        t.contains("Error acquiring the state lock") && t.contains("OperationTypeApply"),
        "{t}"
    );
    let id = t
        .lines()
        .find_map(|l| l.trim().strip_prefix("ID:"))
        .map_or_else(|| panic!("no lock ID in: {t}"), |s| s.trim().to_string());

    // The holder dies without unlocking; force-unlock frees the state.
    holder.kill().unwrap();
    let _ = holder.wait();
    let still = terraform(other.path(), &["plan", "-no-color", "-lock-timeout=0s"]);
    assert!(
        !still.status.success(),
        "the dead holder's lock stays: {}",
        text(&still)
    );
    let fu = terraform(other.path(), &["force-unlock", "-force", &id]);
    assert!(fu.status.success(), "{}", text(&fu));
    std::fs::copy(d.join("main.tf"), other.path().join("main.tf")).unwrap();
    let again = terraform(other.path(), &["apply", "-auto-approve", "-no-color"]);
    assert!(again.status.success(), "{}", text(&again));
    let pull = terraform(other.path(), &["state", "pull"]);
    let st: serde_json::Value = serde_json::from_slice(&pull.stdout).unwrap();
    assert_eq!(st["outputs"]["o"]["value"], "two");
}

#[test]
fn keel_infra_keeps_its_state_in_keel_server_beside_terraform() {
    let server = KeelServer::start(None);
    let token = server.admin_token();
    let url = format!("https://127.0.0.1:{}/infra/state/shared", server.port);
    let ca = std::fs::read_to_string(server.state_dir().join("tls/ca.crt")).unwrap();
    let cfg: Vec<String> = vec![
        format!("-backend-config=address={url}"),
        format!("-backend-config=lock_address={url}"),
        format!("-backend-config=unlock_address={url}"),
        "-backend-config=username=keel".into(),
        format!("-backend-config=password={token}"),
        format!("-backend-config=client_ca_certificate_pem={ca}"),
    ];
    let main = "terraform {\n  backend \"http\" {}\n}\nresource \"terraform_data\" \"a\" {\n  input = \"k\"\n}\noutput \"o\" {\n  value = terraform_data.a.output\n}\n";
    let (kd, td) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for d in [kd.path(), td.path()] {
        std::fs::write(d.join("main.tf"), main).unwrap();
    }
    let keel = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_keel"))
            .arg("infra")
            .args(args)
            .current_dir(kd.path())
            .output()
            .unwrap()
    };
    let mut init_args = vec!["init", "-no-color"];
    init_args.extend(cfg.iter().map(String::as_str));
    let ki = keel(&init_args);
    assert!(ki.status.success(), "{}", text(&ki));
    let ka = keel(&["apply", "-auto-approve", "-no-color"]);
    assert!(ka.status.success(), "{}", text(&ka));
    assert!(
        !kd.path().join("terraform.tfstate").exists(),
        "the state went to the server"
    );

    // terraform on the same backend sees keel's state and has nothing to do.
    let mut targs = vec!["init", "-no-color", "-reconfigure"];
    targs.extend(cfg.iter().map(String::as_str));
    assert!(terraform(td.path(), &targs).status.success());
    let tp = terraform(td.path(), &["plan", "-no-color", "-detailed-exitcode"]);
    assert!(tp.status.success(), "{}", text(&tp));
    assert!(text(&tp).contains("No changes."), "{}", text(&tp));

    // keel waiting at its prompt holds the server's lock: terraform is refused.
    let mut holder = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["infra", "apply", "-no-color", "-replace=terraform_data.a"])
        .current_dir(kd.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = holder.stdout.take().unwrap();
    let _out = read_to_prompt(out);
    let t = terraform(
        td.path(),
        &["apply", "-auto-approve", "-no-color", "-lock-timeout=0s"],
    );
    assert!(!t.status.success());
    assert!(
        text(&t).contains("Error acquiring the state lock"),
        "{}",
        text(&t)
    );
    std::io::Write::write_all(&mut holder.stdin.take().unwrap(), b"no\n").unwrap();
    let _ = holder.wait();
    // Released on exit: terraform can take it now.
    let t = terraform(td.path(), &["apply", "-auto-approve", "-no-color"]);
    assert!(t.status.success(), "{}", text(&t));
    let ko = keel(&["output", "-raw", "o"]);
    assert_eq!(String::from_utf8_lossy(&ko.stdout), "k");
}

/// `keel infra apply | head`: the reader goes away while keel holds the
/// server's lock. The CLI's broken-pipe hook used to `exit(141)` on the
/// spot, skipping the drop that UNLOCKs, so the lock stayed held and the
/// next apply was refused. Now the apply unwinds, gives the lock back and
/// still ends with 141.
#[test]
fn keel_infra_apply_whose_stdout_closes_releases_the_servers_lock() {
    let server = KeelServer::start(None);
    let token = server.admin_token();
    let url = format!("https://127.0.0.1:{}/infra/state/pipe", server.port);
    let ca = std::fs::read_to_string(server.state_dir().join("tls/ca.crt")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("main.tf"),
        "terraform {\n  backend \"http\" {}\n}\nresource \"terraform_data\" \"a\" {\n  input = \"x\"\n}\n",
    )
    .unwrap();
    let keel = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_keel"))
            .arg("infra")
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let args = [
        "init".to_string(),
        "-no-color".into(),
        format!("-backend-config=address={url}"),
        format!("-backend-config=lock_address={url}"),
        format!("-backend-config=unlock_address={url}"),
        "-backend-config=username=keel".into(),
        format!("-backend-config=password={token}"),
        format!("-backend-config=client_ca_certificate_pem={ca}"),
    ];
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = keel(&refs);
    assert!(o.status.success(), "{}", text(&o));

    let mut apply = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["infra", "apply", "-no-color"])
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = read_to_prompt(apply.stdout.take().unwrap());
    // The lock is held at the prompt; the reader leaves, then the user says yes.
    drop(out);
    std::io::Write::write_all(&mut apply.stdin.take().unwrap(), b"yes\n").unwrap();
    let o = apply.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(141), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");

    let again = keel(&["apply", "-auto-approve", "-no-color", "-lock-timeout=0s"]);
    assert!(
        again.status.success(),
        "the lock was left held: {}",
        text(&again)
    );
}
