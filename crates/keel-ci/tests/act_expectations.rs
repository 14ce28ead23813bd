//! act's expectations transcribed from its Go tests
//! (`../shared/conformance/act/extracted_expectations.json`): `hashFiles()` over
//! act's fixtures, and the matrix expansion of `pkg/model/testdata/strategy`.
//!
//! act's `hashFiles` hashes the matched files' concatenated contents, while
//! GitHub's runner (which keel follows) hashes the files' hashes; so the
//! test checks that keel selects exactly the files act does (act's value is
//! recomputed from keel's selection), and that keel's value is GitHub's.

mod common;

use keel_ci::expr::{Object, Value};
use keel_ci::run::context::{Host, Status, eval, eval_token};
use sha2::{Digest, Sha256};

fn expectations() -> (std::path::PathBuf, serde_json::Value) {
    let dir = common::data_dir("act");
    let v = serde_json::from_str(
        &std::fs::read_to_string(dir.join("extracted_expectations.json")).unwrap(),
    )
    .unwrap();
    (dir, v)
}

#[test]
fn hash_files_matches_act() {
    let (dir, e) = expectations();
    let ws = dir.join(e["hashFiles"]["working_dir"].as_str().unwrap());
    let host = Host {
        status: Status::Success,
        workspace: &ws,
    };
    let cases = e["hashFiles"]["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 8);
    for c in cases {
        let expr = c["expr"].as_str().unwrap();
        let args: Vec<String> = expr
            .trim_start_matches("hashFiles(")
            .trim_end_matches(')')
            .split(", ")
            .map(|a| a.trim_matches('\'').to_string())
            .collect();
        let files = keel_ci::run::context::matched_files(&ws, &args);
        let act_style = if files.is_empty() {
            String::new()
        } else {
            let mut h = Sha256::new();
            for f in &files {
                h.update(std::fs::read(ws.join(f)).unwrap());
            }
            keel_ci::run::context::hex(&h.finalize())
        };
        assert_eq!(
            act_style,
            c["expected"].as_str().unwrap(),
            "{expr}: files {files:?}"
        );
        let mut github = Sha256::new();
        for f in &files {
            github.update(Sha256::digest(std::fs::read(ws.join(f)).unwrap()));
        }
        let want = if files.is_empty() {
            String::new()
        } else {
            keel_ci::run::context::hex(&github.finalize())
        };
        let got = eval(expr, &Object::new(), &host).unwrap();
        assert_eq!(got.coerce_string(), want, "{expr}");
    }
}

#[test]
fn matrix_expansion_matches_act() {
    let (dir, e) = expectations();
    let m = &e["matrix_expansion"];
    let src = std::fs::read_to_string(dir.join(m["workflow"].as_str().unwrap())).unwrap();
    let wf = keel_ci::workflow::parse("push.yml", &src).unwrap();
    let ws = std::path::PathBuf::from("/");
    let host = Host {
        status: Status::Success,
        workspace: &ws,
    };
    for (id, want) in m["jobs"].as_object().unwrap() {
        let job = wf.jobs.iter().find(|j| &j.id == id).unwrap();
        let strategy = job.strategy.as_ref().map_or(Value::Null, |s| {
            eval_token(s, &Object::new(), &host).unwrap()
        });
        let got = keel_ci::matrix::expand(strategy.get("matrix")).unwrap();
        let got: Vec<serde_json::Value> = got
            .into_iter()
            .map(|o| Value::object(o).to_serde())
            .collect();
        let want_m: Vec<serde_json::Value> = want["matrixes"].as_array().unwrap().clone();
        // act compares Go maps: order of keys does not matter, order of combinations does.
        assert_eq!(got, want_m, "{id}");
        let fail_fast = strategy.get("fail-fast").is_none_or(Value::is_truthy);
        assert_eq!(
            fail_fast,
            want["fail_fast"].as_bool().unwrap(),
            "{id} fail-fast"
        );
        if let Some(mp) = strategy.get("max-parallel") {
            assert_eq!(
                mp.number().to_string(),
                want["max_parallel"].as_f64().unwrap().to_string(),
                "{id} max-parallel"
            );
        }
    }
}
