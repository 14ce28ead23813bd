//! GitHub's cross-language workflow reader cases
//! (actions/languageservices `workflow-parser/testdata/reader`, in
//! ../shared/conformance/gha-workflow-parser): all 195 are parsed.
//!
//! - Error cases: keel's messages (`file (Line: L, Col: C): text`) must equal
//!   GitHub's, as a set.
//! - Success cases: each job's fields that keel models (type, id, name,
//!   needs, if, runs-on, strategy, env, outputs, container, services,
//!   environment, concurrency, timeouts, continue-on-error, reusable call
//!   ref/with/secrets, and each step's id, name, if, run, uses, with, env,
//!   shell, working-directory, timeout, continue-on-error) serialized the way
//!   GitHub's TypeScript does, must equal the expected JSON.
//!
//! Known divergent (GitHub marks them so for its own TypeScript parser:
//! `skipped-tests.txt`, or `skip: [TypeScript]` in the case) are still run;
//! the test prints how many of them keel passes and requires that none of
//! them panics, but does not fail on their differences. So are the cases
//! that switch on `experimental-features` (background steps), which keel
//! does not implement. A reusable-workflow job's `outputs` come from the
//! called file at run time in keel, so they are not compared here.

mod common;

use std::collections::BTreeSet;

use keel_ci::template::{TKind, Token};
use keel_ci::workflow::{self, Job, Secrets, Step};
use serde_json::{Value as J, json};

fn tok(t: &Token, src: bool) -> J {
    let with_src = |mut o: serde_json::Map<String, J>, ty: u8| {
        let mut m = serde_json::Map::new();
        m.insert("type".into(), json!(ty));
        m.insert("file".into(), json!(1));
        m.insert("line".into(), json!(t.pos.line));
        m.insert("col".into(), json!(t.pos.col));
        m.append(&mut o);
        J::Object(m)
    };
    let num = |n: f64| {
        if n.is_finite() {
            serde_json::from_str::<J>(&keel_ci::expr::value::js_number_to_string(n))
                .unwrap_or(J::Null)
        } else {
            json!(keel_ci::expr::value::js_number_to_string(n))
        }
    };
    match &t.kind {
        TKind::String(s) => {
            if src {
                with_src([("lit".to_string(), json!(s))].into_iter().collect(), 0)
            } else {
                json!(s)
            }
        }
        TKind::Null => {
            if src {
                with_src(serde_json::Map::new(), 7)
            } else {
                J::Null
            }
        }
        TKind::Bool(b) => {
            if src {
                with_src([("bool".to_string(), json!(b))].into_iter().collect(), 5)
            } else {
                json!(b)
            }
        }
        TKind::Number(n) => {
            if src {
                with_src([("num".to_string(), num(*n))].into_iter().collect(), 6)
            } else {
                num(*n)
            }
        }
        TKind::Expr(e) => {
            if src {
                with_src([("expr".to_string(), json!(e))].into_iter().collect(), 3)
            } else {
                json!({"type": 3, "expr": e})
            }
        }
        TKind::Insert => {
            if src {
                with_src(
                    [("expr".to_string(), json!("insert"))]
                        .into_iter()
                        .collect(),
                    4,
                )
            } else {
                json!({"type": 4, "expr": "insert"})
            }
        }
        TKind::Seq(items) => {
            let seq: Vec<J> = items.iter().map(|i| tok(i, src)).collect();
            if src {
                with_src(
                    [("seq".to_string(), J::Array(seq))].into_iter().collect(),
                    1,
                )
            } else {
                json!({"type": 1, "seq": seq})
            }
        }
        TKind::Map(m) => {
            let map: Vec<J> = m
                .iter()
                .map(|(k, v)| json!({"Key": tok(k, src), "Value": tok(v, src)}))
                .collect();
            if src {
                with_src(
                    [("map".to_string(), J::Array(map))].into_iter().collect(),
                    2,
                )
            } else {
                json!({"type": 2, "map": map})
            }
        }
    }
}

fn expr(e: &str) -> J {
    json!({"type": 3, "expr": e})
}

fn step_json(s: &Step, src: bool) -> serde_json::Map<String, J> {
    let mut o = serde_json::Map::new();
    o.insert("id".into(), json!(s.id));
    let put = |o: &mut serde_json::Map<String, J>, k: &str, t: &Option<Token>| {
        if let Some(t) = t {
            o.insert(k.into(), tok(t, src));
        }
    };
    put(&mut o, "name", &s.name);
    o.insert("if".into(), expr(&s.if_));
    if let Some(c) = &s.continue_on_error {
        o.insert(
            "continue-on-error".into(),
            match &c.kind {
                TKind::Bool(b) => json!(b),
                _ => tok(c, src),
            },
        );
    }
    put(&mut o, "env", &s.env);
    put(&mut o, "run", &s.run);
    put(&mut o, "uses", &s.uses);
    put(&mut o, "with", &s.with);
    put(&mut o, "timeout-minutes", &s.timeout_minutes);
    put(&mut o, "working-directory", &s.working_directory);
    put(&mut o, "shell", &s.shell);
    o
}

fn job_json(j: &Job, src: bool) -> serde_json::Map<String, J> {
    let mut o = serde_json::Map::new();
    let id = Token::new(TKind::String(j.id.clone()), j.pos);
    o.insert(
        "type".into(),
        json!(if j.uses.is_some() {
            "reusableWorkflowJob"
        } else {
            "job"
        }),
    );
    o.insert("id".into(), tok(&id, src));
    o.insert("name".into(), tok(j.name.as_ref().unwrap_or(&id), src));
    if !j.needs.is_empty() || j.uses.is_some() {
        let needs: Vec<J> = j
            .needs
            .iter()
            .zip(&j.needs_pos)
            .map(|(n, p)| tok(&Token::new(TKind::String(n.clone()), *p), src))
            .collect();
        o.insert("needs".into(), J::Array(needs));
    }
    o.insert("if".into(), expr(&j.if_));
    let put = |o: &mut serde_json::Map<String, J>, k: &str, t: &Option<Token>| {
        if let Some(t) = t {
            o.insert(k.into(), tok(t, src));
        }
    };
    put(&mut o, "env", &j.env);
    put(&mut o, "concurrency", &j.concurrency);
    put(&mut o, "environment", &j.environment);
    put(&mut o, "strategy", &j.strategy);
    put(&mut o, "runs-on", &j.runs_on);
    put(&mut o, "container", &j.container);
    put(&mut o, "services", &j.services);
    put(&mut o, "outputs", &j.outputs);
    put(&mut o, "timeout-minutes", &j.timeout_minutes);
    put(&mut o, "continue-on-error", &j.continue_on_error);
    put(&mut o, "ref", &j.uses);
    put(&mut o, "input-values", &j.with);
    match &j.secrets {
        Secrets::Map(m) => {
            o.insert("secret-values".into(), tok(m, src));
        }
        Secrets::Inherit => {
            o.insert("inherit-secrets".into(), json!(true));
        }
        Secrets::None => {}
    }
    if j.uses.is_none() {
        o.insert(
            "steps".into(),
            J::Array(
                j.steps
                    .iter()
                    .map(|s| J::Object(step_json(s, src)))
                    .collect(),
            ),
        );
    }
    o
}

/// Keeps in `want` only the keys keel models (what `got` can have).
fn project(want: &J, got: &serde_json::Map<String, J>, step_keys: &[&str], job_keys: &[&str]) -> J {
    let mut out = serde_json::Map::new();
    let reusable = want["type"] == "reusableWorkflowJob";
    for (k, v) in want.as_object().unwrap() {
        if !job_keys.contains(&k.as_str()) || (reusable && k == "outputs") {
            continue;
        }
        if k == "steps" {
            let steps: Vec<J> = v
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    J::Object(
                        s.as_object()
                            .unwrap()
                            .iter()
                            .filter(|(k, _)| step_keys.contains(&k.as_str()))
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                    )
                })
                .collect();
            out.insert(k.clone(), J::Array(steps));
        } else {
            out.insert(k.clone(), v.clone());
        }
    }
    let _ = got;
    J::Object(out)
}

const JOB_KEYS: &[&str] = &[
    "type",
    "id",
    "name",
    "needs",
    "if",
    "env",
    "concurrency",
    "environment",
    "strategy",
    "runs-on",
    "container",
    "services",
    "outputs",
    "timeout-minutes",
    "continue-on-error",
    "ref",
    "input-values",
    "secret-values",
    "inherit-secrets",
    "steps",
];
const STEP_KEYS: &[&str] = &[
    "id",
    "name",
    "if",
    "continue-on-error",
    "env",
    "run",
    "uses",
    "with",
    "timeout-minutes",
    "working-directory",
    "shell",
];

#[test]
fn github_workflow_reader_corpus() {
    let dir = common::data_dir("gha-workflow-parser/workflow-parser/testdata");
    let skipped: BTreeSet<String> = std::fs::read_to_string(dir.join("skipped-tests.txt"))
        .unwrap()
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    let mut files: Vec<_> = std::fs::read_dir(dir.join("reader"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let split = regex_split;
    let (mut total, mut divergent, mut divergent_pass) = (0, 0, 0);
    let mut failures = Vec::new();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let docs = split(&text);
        total += 1;
        let options = &docs[0];
        // `experimental-features` (background steps) are GitHub features
        // behind a flag that keel does not implement.
        let known_divergent = skipped.contains(&name)
            || options.contains("experimental-features:")
            || options
                .lines()
                .skip_while(|l| !l.starts_with("skip:"))
                .any(|l| l.trim() == "- TypeScript");
        let include_source = options.contains("include-source: true");
        let file = format!(".github/workflows/{name}");
        let want: J = serde_json::from_str(docs.last().unwrap()).unwrap();
        // Reusable workflows: pairs of (ref, content) between the workflow and the result.
        let called: Vec<(String, String)> = docs[2..docs.len() - 1]
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (c[0].trim().to_string(), c[1].clone()))
            .collect();
        let result = workflow::parse(&file, &docs[1]).and_then(|wf| {
            let mut diags = Vec::new();
            for job in &wf.jobs {
                let Some(uses) = job.uses.as_ref().and_then(Token::as_str) else {
                    continue;
                };
                if let Some((r, content)) = called.iter().find(|(r, _)| r == uses) {
                    match workflow::parse(r, content) {
                        Ok(c) => workflow::check_call(job, &c, &mut diags),
                        Err(e) => diags.extend(e.diags),
                    }
                }
            }
            if diags.is_empty() {
                Ok(wf)
            } else {
                Err(workflow::WorkflowError {
                    file: file.clone(),
                    diags,
                })
            }
        });
        let verdict: Result<(), String> = match (want.get("errors"), result) {
            (Some(errs), Err(e)) => {
                let want: BTreeSet<String> = errs
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["Message"].as_str().unwrap().to_string())
                    .collect();
                let got: BTreeSet<String> = e.messages().into_iter().collect();
                if want == got {
                    Ok(())
                } else {
                    Err(format!("want errors {want:#?}\n got {got:#?}"))
                }
            }
            (Some(errs), Ok(_)) => Err(format!("want errors {errs}, parsed fine")),
            (None, Err(e)) => Err(format!("unexpected errors: {e}")),
            (None, Ok(wf)) => {
                let want_jobs = want["jobs"].as_array().cloned().unwrap_or_default();
                if want_jobs.len() == wf.jobs.len() {
                    let mut diff = Vec::new();
                    for (w, j) in want_jobs.iter().zip(&wf.jobs) {
                        let got = job_json(j, include_source);
                        let w = project(w, &got, STEP_KEYS, JOB_KEYS);
                        let got = J::Object(got);
                        if w != got {
                            diff.push(format!(
                                "job {}: want {}\n got {}",
                                j.id,
                                serde_json::to_string(&w).unwrap(),
                                serde_json::to_string(&got).unwrap()
                            ));
                        }
                    }
                    if diff.is_empty() {
                        Ok(())
                    } else {
                        Err(diff.join("\n"))
                    }
                } else {
                    Err(format!(
                        "want {} jobs, got {}",
                        want_jobs.len(),
                        wf.jobs.len()
                    ))
                }
            }
        };
        if known_divergent {
            divergent += 1;
            if verdict.is_ok() {
                divergent_pass += 1;
            }
        } else if let Err(e) = verdict {
            failures.push(format!("{name}: {e}"));
        }
    }
    eprintln!(
        "workflow reader: {total} cases, {} must pass; {divergent_pass} of {divergent} known-divergent pass as well",
        total - divergent
    );
    assert_eq!(total, 195, "the corpus has 195 cases");
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// Splits a case file on lines that are exactly `---`.
fn regex_split(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.split('\n') {
        if line.trim_end_matches('\r') == "---" {
            docs.push(String::new());
        } else {
            let d = docs.last_mut().unwrap();
            d.push_str(line);
            d.push('\n');
        }
    }
    docs
}

/// Two of the known-divergent cases (the TypeScript parser fails them,
/// GitHub's service accepts them): `inputs:` left empty and an input without
/// a definition. keel refused both as "Unexpected value ''"; GitHub runs such
/// workflows, so keel must too. (Unknown keys under `workflow_dispatch` stay
/// an error: `events-single-invalid.yml` wants one, the divergent
/// `on-workflow_dispatch-unknown-keys-ignored.yml` none; a typo is likelier.)
#[test]
fn workflow_dispatch_read_as_githubs_service_reads_it() {
    let dir = common::data_dir("gha-workflow-parser/workflow-parser/testdata/reader");
    for (case, inputs) in [
        ("on-workflow_dispatch-inputs-null.yml", vec![]),
        (
            "on-workflow_dispatch-inputs.yml",
            vec!["input1", "input2", "input3", "input4", "input5-Env"],
        ),
    ] {
        let docs = regex_split(&std::fs::read_to_string(dir.join(case)).unwrap());
        let wf = workflow::parse(&format!(".github/workflows/{case}"), &docs[1])
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        let names: Vec<&str> = wf.on["workflow_dispatch"]
            .inputs
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(names, inputs, "{case}");
    }
}
