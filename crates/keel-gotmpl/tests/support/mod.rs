//! Shared helpers for the differential tests: builds the Go reference
//! renderer (tests/goref/main.go) once per target dir and runs batches of cases.

#![allow(dead_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use keel_gotmpl::{MissingKey, Templates, Value};

#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub tmpl: String,
    pub data: serde_json::Value,
    pub ints: bool,
    pub missing: MissingKey,
    /// Only require both sides to fail, not the same message.
    pub loose_err: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub out: String,
    pub err: Option<String>,
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    )
}

/// Builds (or reuses) the Go reference binary, once per test process: the
/// tests of one binary run on several threads and must not race on the build.
pub fn goref() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(build_goref).clone()
}

fn build_goref() -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/goref/main.go");
    let dir = target_dir().join("goref");
    std::fs::create_dir_all(&dir).expect("create goref dir");
    let bin = dir.join("goref");
    let fresh = match (std::fs::metadata(&bin), std::fs::metadata(&src)) {
        (Ok(b), Ok(s)) => b.modified().unwrap() >= s.modified().unwrap(),
        _ => false,
    };
    if !fresh {
        // A per-process temp name, then rename: parallel test binaries may race here.
        let tmp = dir.join(format!("goref.{}", std::process::id()));
        let st = Command::new("go")
            .args(["build", "-o"])
            .arg(&tmp)
            .arg(&src)
            .env("GOPATH", "/usr/share/gocode")
            .env("GO111MODULE", "off")
            .env("GOCACHE", dir.join("cache"))
            .env("GOFLAGS", "")
            .status()
            .expect("run go build (is golang-go installed? see scripts/lib.sh)");
        assert!(st.success(), "building the Go reference renderer failed");
        std::fs::rename(&tmp, &bin).expect("install goref");
    }
    bin
}

/// Runs cases through Go, in one process.
pub fn run_go(cases: &[Case], repeat: usize) -> Vec<(Outcome, u64)> {
    let mut child = Command::new(goref())
        // sprig formats dates in Local; keel treats Local as UTC
        .env("TZ", "UTC")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start goref");
    let mut input = String::new();
    for c in cases {
        let missing = match c.missing {
            MissingKey::Invalid => "default",
            MissingKey::Zero => "zero",
            MissingKey::Error => "error",
        };
        let line = serde_json::json!({
            "tmpl": c.tmpl, "data": c.data, "ints": c.ints, "missing": missing, "repeat": repeat,
        });
        input.push_str(&line.to_string());
        input.push('\n');
    }
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("goref output");
    writer.join().unwrap().expect("write cases");
    assert!(out.status.success(), "goref failed");
    let text = String::from_utf8(out.stdout).expect("utf8");
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("goref json");
            (
                Outcome {
                    out: v["out"].as_str().unwrap_or("").to_string(),
                    err: v.get("err").and_then(|e| e.as_str()).map(str::to_string),
                },
                v["ns"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// Renders one case with keel, the way the Go program does (template "t").
pub fn run_keel(c: &Case) -> Outcome {
    let mut t = Templates::new();
    t.missing_key = c.missing;
    let data = if c.data.is_null() {
        Value::Invalid
    } else {
        Value::from_json(&c.data, c.ints)
    };
    if let Err(e) = t.parse("t", &c.tmpl) {
        return Outcome {
            out: String::new(),
            err: Some(e.to_string()),
        };
    }
    match t.execute_partial("t", &data) {
        (out, None) => Outcome { out, err: None },
        (out, Some(e)) => Outcome {
            out,
            err: Some(e.to_string()),
        },
    }
}

/// The reference is Go 1.19; keel follows the Go Helm 4 is built with (1.25),
/// which names the types in "incompatible types for comparison: float64 and int".
fn same_but_newer_go(go: &str, keel: &str) -> bool {
    const MSG: &str = "incompatible types for comparison";
    match keel.find(&format!("{MSG}: ")) {
        Some(i) => go.ends_with(MSG) && go[..go.len() - MSG.len()] == keel[..i],
        None => false,
    }
}

/// Compares keel with Go on all cases; returns a report of mismatches.
pub fn compare(cases: &[Case]) -> Vec<String> {
    let go = run_go(cases, 1);
    assert_eq!(go.len(), cases.len(), "goref answered every case");
    let mut bad = Vec::new();
    for (c, (g, _)) in cases.iter().zip(go) {
        let k = run_keel(c);
        let ok = match (&g.err, &k.err) {
            (None, None) => g.out == k.out,
            (Some(ge), Some(ke)) => c.loose_err || ge == ke || same_but_newer_go(ge, ke),
            _ => false,
        };
        if !ok {
            bad.push(format!(
                "case {}: template {:?}\n  go:   {:?} err={:?}\n  keel: {:?} err={:?}",
                c.name, c.tmpl, g.out, g.err, k.out, k.err
            ));
        }
    }
    bad
}

/// Parses the corpus format (see tests/corpus/README.md).
pub fn parse_corpus(text: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut cur: Option<Case> = None;
    let mut body: Vec<&str> = Vec::new();
    let flush = |cur: &mut Option<Case>, body: &mut Vec<&str>, cases: &mut Vec<Case>| {
        if let Some(mut c) = cur.take() {
            c.tmpl = body.join("\n");
            cases.push(c);
        }
        body.clear();
    };
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("### ") {
            flush(&mut cur, &mut body, &mut cases);
            let mut words = h.split_whitespace();
            let name = words.next().unwrap_or("?").to_string();
            let mut c = Case {
                name,
                tmpl: String::new(),
                data: serde_json::Value::Null,
                ints: false,
                missing: MissingKey::Invalid,
                loose_err: false,
            };
            for w in words {
                match w {
                    "ints" => c.ints = true,
                    "zero" => c.missing = MissingKey::Zero,
                    "strict" => c.missing = MissingKey::Error,
                    "looseerr" => c.loose_err = true,
                    other => panic!("unknown corpus flag {other}"),
                }
            }
            cur = Some(c);
        } else if let (Some(c), Some(d)) = (cur.as_mut(), line.strip_prefix("@data ")) {
            c.data =
                serde_json::from_str(d).unwrap_or_else(|e| panic!("bad data in {}: {e}", c.name));
        } else if cur.is_some() {
            body.push(line);
        }
    }
    flush(&mut cur, &mut body, &mut cases);
    cases
}
