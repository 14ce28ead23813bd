//! `keel infra` state safety: an apply killed with SIGKILL keeps every
//! resource it finished and the next apply neither loses nor duplicates
//! any; two concurrent applies exclude each other by the lock; saved plans
//! go stale when the state moves.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn keel(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("infra")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run keel")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn state_ids(dir: &Path) -> Vec<(String, String)> {
    let mut s: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("terraform.tfstate")).unwrap_or_default(),
    )
    .unwrap_or(serde_json::Value::Null);
    let mut out = Vec::new();
    for r in s["resources"].as_array_mut().into_iter().flatten() {
        for i in r["instances"].as_array().into_iter().flatten() {
            out.push((
                format!(
                    "{}.{}[{}]",
                    r["type"].as_str().unwrap(),
                    r["name"].as_str().unwrap(),
                    i["index_key"]
                ),
                i["attributes"]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ));
        }
    }
    out.sort();
    out
}

/// The journal lines written so far (one per finished resource).
fn journal_lines(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join(".terraform.tfstate.keel-journal"))
        .map_or(0, |t| t.lines().count())
}

const SLOW: &str = r#"
resource "time_sleep" "s" {
  count           = 8
  create_duration = "400ms"
}
resource "terraform_data" "after" {
  count = 8
  input = time_sleep.s[count.index].id
}
"#;

#[test]
fn kill_during_apply_loses_and_duplicates_nothing() {
    let base = tempfile::tempdir().unwrap();
    let d = base.path();
    std::fs::write(d.join("main.tf"), SLOW).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args([
            "infra",
            "apply",
            "-auto-approve",
            "-no-color",
            "-parallelism=2",
        ])
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while journal_lines(d) < 4 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "apply made no progress"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // The journal holds what finished; the next run takes it up.
    let done_before = journal_lines(d);
    assert!(
        (4..16).contains(&done_before),
        "killed too late to prove anything: {done_before} done"
    );
    let list = keel(d, &["state", "list"]);
    let listed: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert!(listed.len() >= 4, "state after the kill: {listed:?}");
    let second = keel(d, &["apply", "-auto-approve", "-no-color"]);
    assert!(second.status.success(), "{}", text(&second));
    let out = String::from_utf8_lossy(&second.stdout).into_owned();
    let created = out
        .lines()
        .filter(|l| l.contains("Creation complete"))
        .count();
    assert_eq!(
        created + listed.len(),
        16,
        "second run created {created} after {} survived:\n{out}",
        listed.len()
    );
    let ids = state_ids(d);
    assert_eq!(ids.len(), 16, "{ids:?}");
    let mut uniq: Vec<&String> = ids.iter().map(|(a, _)| a).collect();
    uniq.dedup();
    assert_eq!(uniq.len(), 16, "no address twice: {ids:?}");
    // Nothing left to do, and the journal is gone after a clean run.
    let plan = keel(d, &["plan", "-no-color", "-detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    assert_eq!(journal_lines(d), 0);
    // The next change backs up the state it replaces.
    std::fs::write(
        d.join("main.tf"),
        SLOW.replace("count = 8\n  input", "count = 7\n  input"),
    )
    .unwrap();
    let third = keel(d, &["apply", "-auto-approve", "-no-color"]);
    assert!(third.status.success(), "{}", text(&third));
    let backup = std::fs::read_to_string(d.join("terraform.tfstate.backup"))
        .expect("the previous state is backed up");
    assert_eq!(backup.matches("\"index_key\"").count(), 16);
    assert_eq!(state_ids(d).len(), 15);
}

#[test]
fn concurrent_applies_one_waits_or_fails_naming_the_holder() {
    let base = tempfile::tempdir().unwrap();
    let d = base.path();
    std::fs::write(
        d.join("main.tf"),
        "resource \"time_sleep\" \"s\" {\n  create_duration = \"2s\"\n}\n",
    )
    .unwrap();
    let first = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["infra", "apply", "-auto-approve", "-no-color"])
        .current_dir(d)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !d.join(".terraform.tfstate.lock.info").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "first apply never locked"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let info: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(d.join(".terraform.tfstate.lock.info")).unwrap(),
    )
    .unwrap();
    let second = keel(d, &["apply", "-auto-approve", "-no-color"]);
    assert!(!second.status.success());
    let t = text(&second);
    assert!(t.contains("Error acquiring the state lock"), "{t}");
    assert!(
        t.contains(info["ID"].as_str().unwrap()) && t.contains("OperationTypeApply"),
        "names the holder: {t}"
    );
    // With -lock-timeout the second one waits for the first and then succeeds.
    let third = keel(
        d,
        &["apply", "-auto-approve", "-no-color", "-lock-timeout=20s"],
    );
    assert!(third.status.success(), "{}", text(&third));
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success(), "{}", text(&first));
    assert_eq!(state_ids(d).len(), 1);
}

#[test]
fn saved_plan_goes_stale() {
    let base = tempfile::tempdir().unwrap();
    let d = base.path();
    std::fs::write(
        d.join("main.tf"),
        "resource \"terraform_data\" \"a\" {\n  input = 1\n}\n",
    )
    .unwrap();
    let p = keel(d, &["plan", "-out=tfplan", "-no-color"]);
    assert!(p.status.success(), "{}", text(&p));
    let a = keel(d, &["apply", "-auto-approve", "-no-color"]);
    assert!(a.status.success(), "{}", text(&a));
    let stale = keel(d, &["apply", "tfplan", "-no-color"]);
    assert!(!stale.status.success());
    assert!(
        text(&stale).contains("Saved plan is stale"),
        "{}",
        text(&stale)
    );
    // A fresh saved plan applies without a prompt.
    std::fs::write(
        d.join("main.tf"),
        "resource \"terraform_data\" \"a\" {\n  input = 2\n}\n",
    )
    .unwrap();
    assert!(
        keel(d, &["plan", "-out=tfplan", "-no-color"])
            .status
            .success()
    );
    let ok = keel(d, &["apply", "tfplan", "-no-color"]);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("0 added, 1 changed, 0 destroyed"));
}
