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
//! Every case must pass, including those GitHub's own TypeScript parser is
//! known to fail (`skipped-tests.txt`: there GitHub's C# parser, the one
//! that runs workflows, is the reference). Each case's options (limits,
//! permissions policy) are passed as GitHub's harness passes them, and the
//! reusable workflows it carries are loaded through [`reusable::load`].
//! A reusable-workflow job's `outputs` come from the called file at run
//! time in keel, so they are not compared here.

mod common;

use std::collections::BTreeSet;

use keel_ci::reusable::{self, PermissionsPolicy};
use keel_ci::template::{Diag, TKind, Token};
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
                    [("directive".to_string(), json!("insert"))]
                        .into_iter()
                        .collect(),
                    4,
                )
            } else {
                json!({"type": 4, "directive": "insert"})
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
    // A wait/cancel step has no condition.
    if s.control.is_none() {
        o.insert("if".into(), expr(&s.if_));
    }
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
    // GitHub leaves `steps` out of a job that has none.
    if j.uses.is_none() && !j.steps.is_empty() {
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

/// The case's parser options (its first document), over GitHub's defaults.
fn case_options(doc: &str) -> workflow::ParseOptions {
    use keel_ci::yaml::{self, Scalar, YKind};
    let mut opts = workflow::ParseOptions::github();
    let Ok(Some(root)) = yaml::parse(doc) else {
        return opts;
    };
    let YKind::Map(entries) = root.kind else {
        return opts;
    };
    for (key, value) in entries {
        let (YKind::Scalar(Scalar::String(key)), YKind::Scalar(value)) = (key.kind, value.kind)
        else {
            continue;
        };
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let num = || match value {
            Scalar::Number(n) => n as usize,
            _ => panic!("{key}: a number"),
        };
        match key.as_str() {
            "max-file-size" => opts.max_file_size = num(),
            "max-depth" => opts.max_depth = num(),
            "max-result-size" => opts.max_result_size = num(),
            "max-job-limit" => opts.max_job_limit = num(),
            "max-nested-reusable-workflows-depth" => opts.max_nested_reusable_depth = num(),
            "skip-reusable-workflows" => opts.skip_reusable_workflows = value == Scalar::Bool(true),
            "permissions-policy" => {
                opts.permissions_policy = match value {
                    Scalar::String(p) if p == "LimitedRead" => PermissionsPolicy::LimitedRead,
                    Scalar::String(p) if p == "Write" => PermissionsPolicy::Write,
                    p => panic!("permissions-policy {p:?}"),
                };
            }
            _ => {}
        }
    }
    opts
}

#[test]
fn github_workflow_reader_corpus() {
    let dir = common::data_dir("gha-workflow-parser/workflow-parser/testdata");
    let mut files: Vec<_> = std::fs::read_dir(dir.join("reader"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut total = 0;
    let mut failures = Vec::new();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let docs = regex_split(&text);
        total += 1;
        let mut options = case_options(&docs[0]);
        options.background_steps = docs[0].contains("allowBackgroundSteps: true");
        // A case GitHub runs against its TypeScript parser only (`skip:`
        // both Go and C#) checks the editor's strict reading of `on:`.
        options.strict_events = docs[0].contains("- Go") && docs[0].contains("- C#");
        let include_source = docs[0].contains("include-source: true");
        let file = format!(".github/workflows/{name}");
        let want: J = serde_json::from_str(docs.last().unwrap()).unwrap();
        // Reusable workflows: pairs of (ref, content) between the workflow and the result.
        let called: Vec<(String, String)> = docs[2..docs.len() - 1]
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (c[0].trim().to_string(), c[1].clone()))
            .collect();
        let result = workflow::parse_with(&file, &docs[1], &options).and_then(|wf| {
            let errors = reusable::load(&wf, &options, &mut |uses| {
                called
                    .iter()
                    .find(|(r, _)| r == uses)
                    .map(|(_, c)| c.clone())
            });
            if errors.is_empty() {
                Ok(wf)
            } else {
                Err(workflow::WorkflowError::new(
                    &file,
                    errors.into_iter().map(Diag::whole).collect(),
                ))
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
        if let Err(e) = verdict {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert_eq!(total, 195, "the corpus has 195 cases");
    assert!(
        failures.is_empty(),
        "{} of {total} failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// Splits a case file as GitHub's harness does (`/\r?\n---\r?\n/`): the
/// line breaks around a separator belong to it, so a document's last line
/// has none (a block scalar there ends without one).
fn regex_split(text: &str) -> Vec<String> {
    let re = regex::Regex::new(r"\r?\n---\r?\n").unwrap();
    re.split(text).map(str::to_string).collect()
}

/// Two cases GitHub's TypeScript parser fails and its service accepts:
/// `inputs:` left empty and an input without a definition. keel refused both
/// as "Unexpected value ''"; GitHub runs such workflows, so keel must too.
/// (Unknown keys under `workflow_dispatch` are an error in `keel ci`, as in
/// GitHub's editor, `events-single-invalid.yml`; GitHub's runtime reading,
/// `ParseOptions::github()`, ignores them,
/// `on-workflow_dispatch-unknown-keys-ignored.yml`.)
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

/// `keel ci` reads real workflows as before: anchors expanded (github.com
/// accepts them), `on:` keys checked strictly; GitHub's parser defaults
/// (the corpus's) refuse anchors with its message.
#[test]
fn keel_defaults_differ_from_githubs_parser_only_where_chosen() {
    let src = "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: &cmd echo hi\n      - run: *cmd\n";
    let wf = workflow::parse("w.yml", src).unwrap();
    assert_eq!(
        wf.jobs[0].steps[1].run.as_ref().unwrap().display(),
        "echo hi"
    );
    let e = workflow::parse_with("w.yml", src, &workflow::ParseOptions::github()).unwrap_err();
    assert_eq!(
        e.messages(),
        ["w.yml: Anchors are not currently supported. Remove the anchor 'cmd'"]
    );
    let typo = "on:\n  push:\n    branchs: [main]\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo\n";
    assert!(workflow::parse("w.yml", typo).is_err());
    assert!(workflow::parse_with("w.yml", typo, &workflow::ParseOptions::github()).is_ok());
}

/// A called workflow asking for more than the caller grants is refused
/// before anything runs, and the job count covers called files.
#[test]
fn reusable_permissions_and_job_limit() {
    let caller = "permissions:\n  contents: read\non: push\njobs:\n  call:\n    uses: o/r/.github/workflows/c.yml@v1\n";
    let called = "on: workflow_call\njobs:\n  a:\n    permissions:\n      contents: write\n    runs-on: x\n    steps:\n      - run: echo\n  b:\n    runs-on: x\n    steps:\n      - run: echo\n";
    let opts = workflow::ParseOptions::default();
    let wf = workflow::parse_with("w.yml", caller, &opts).unwrap();
    let errors = reusable::load(&wf, &opts, &mut |_| Some(called.to_string()));
    assert_eq!(
        errors,
        [
            "w.yml (Line: 5, Col: 3): Error calling workflow 'o/r/.github/workflows/c.yml@v1'. The nested job 'a' is requesting 'contents: write', but is only allowed 'contents: read'."
        ]
    );
    let fine = called.replace("contents: write", "contents: read");
    let limited = workflow::ParseOptions {
        max_job_limit: 2,
        ..opts
    };
    let errors = reusable::load(&wf, &limited, &mut |_| Some(fine.clone()));
    assert_eq!(errors, ["The workflow may not contain more than 2 jobs"]);
    assert!(reusable::load(&wf, &opts, &mut |_| Some(fine.clone())).is_empty());
}

/// A chain of calls stops at GitHub's depth (the caller and nine called
/// levels), and at its count of distinct files.
#[test]
fn reusable_nesting_and_file_limits() {
    let caller = "on: push\njobs:\n  call:\n    uses: o/r/.github/workflows/w1.yml@v1\n";
    // Each called file calls the next one.
    let mut next = |uses: &str| {
        let n: u32 = uses
            .trim_start_matches("o/r/.github/workflows/w")
            .trim_end_matches(".yml@v1")
            .parse()
            .ok()?;
        Some(format!(
            "on: workflow_call\njobs:\n  call:\n    uses: o/r/.github/workflows/w{}.yml@v1\n",
            n + 1
        ))
    };
    let opts = workflow::ParseOptions::default();
    let wf = workflow::parse_with("w.yml", caller, &opts).unwrap();
    assert_eq!(
        reusable::load(&wf, &opts, &mut next),
        ["Nested reusable workflow depth exceeded 9."]
    );
    let few_files = workflow::ParseOptions {
        max_files: 3,
        ..opts
    };
    assert_eq!(
        reusable::load(&wf, &few_files, &mut next),
        ["The maximum file count of 3 has been exceeded"]
    );
}

/// Generated step ids go up to `__run_999`, as GitHub's id builder does,
/// which gives up past it (keel handed out duplicates, slowly: each id
/// rescanned every suffix tried before).
#[test]
fn generated_step_ids_stop_where_githubs_do() {
    let job = |n: usize| {
        format!(
            "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n{}",
            "      - run: echo\n".repeat(n)
        )
    };
    let wf = workflow::parse("w.yml", &job(999)).unwrap();
    assert_eq!(wf.jobs[0].steps[998].id, "__run_999");
    let e = workflow::parse("w.yml", &job(1000)).unwrap_err();
    assert_eq!(
        e.messages(),
        ["w.yml (Line: 1005, Col: 9): Unable to create a unique name"]
    );
}

/// With no `permissions:` from the caller, a called workflow gets the
/// policy's, but an OIDC token only inside the caller's repository.
#[test]
fn id_token_only_for_the_callers_own_workflows() {
    let called = "on: workflow_call\njobs:\n  a:\n    permissions:\n      id-token: write\n    runs-on: x\n    steps:\n      - run: echo\n";
    let opts = workflow::ParseOptions::default();
    for (uses, refused) in [
        ("./.github/workflows/c.yml", false),
        ("other/repo/.github/workflows/c.yml@v1", true),
    ] {
        let caller = format!("on: push\njobs:\n  call:\n    uses: {uses}\n");
        let wf = workflow::parse_with("w.yml", &caller, &opts).unwrap();
        let errors = reusable::load(&wf, &opts, &mut |_| Some(called.to_string()));
        if refused {
            assert_eq!(
                errors,
                [format!(
                    "w.yml (Line: 3, Col: 3): Error calling workflow '{uses}'. The nested job 'a' is requesting 'id-token: write', but is only allowed 'id-token: none'."
                )]
            );
        } else {
            assert!(errors.is_empty(), "{errors:?}");
        }
    }
}

/// Expression limits are reported as GitHub's parser reports them: the
/// limit alone, no position within the expression.
#[test]
fn expression_limits_say_only_the_limit() {
    let deep = format!("{}true", "!".repeat(51));
    let src = format!(
        "on: push\njobs:\n  a:\n    if: ${{{{ {deep} }}}}\n    runs-on: x\n    steps:\n      - run: echo\n"
    );
    let e = workflow::parse("w.yml", &src).unwrap_err();
    assert_eq!(
        e.messages(),
        ["w.yml (Line: 4, Col: 9): Exceeded max expression depth 50"]
    );
    let long = format!("echo ${{{{ github.sha }}}} {}", "x".repeat(21_000));
    let src = format!("on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: {long}\n");
    let e = workflow::parse("w.yml", &src).unwrap_err();
    assert_eq!(
        e.messages(),
        ["w.yml (Line: 6, Col: 14): Exceeded max expression length 21000"]
    );
}
