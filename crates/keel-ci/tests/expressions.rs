//! GitHub's cross-language expression cases (actions/languageservices
//! `expressions/testdata`, in ../shared/conformance/github-expressions): all
//! 1,020 run. Cases whose `options.skip` names TypeScript encode the C#
//! runner's behaviour (keel follows it: they run too, and must pass).

mod common;

use std::collections::BTreeMap;

use keel_ci::expr::json::Js;
use keel_ci::expr::{self, ExprError, NoFunctions, Object, Value};

#[derive(serde::Deserialize)]
struct Case {
    expr: String,
    contexts: Option<Js>,
    result: Option<Expected>,
    err: Option<Err>,
}

#[derive(serde::Deserialize)]
struct Expected {
    kind: String,
    value: Js,
}

#[derive(serde::Deserialize)]
struct Err {
    kind: String,
    value: String,
}

#[test]
fn github_expression_corpus() {
    let dir = common::data_dir("github-expressions");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let (mut total, mut failures) = (0, Vec::new());
    for file in files {
        let doc: BTreeMap<String, Vec<Case>> =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        for (name, cases) in &doc {
            for case in cases {
                total += 1;
                let src = case.expr.as_str();
                let ctx = match &case.contexts {
                    Some(Js(Value::Object(o))) => (**o).clone(),
                    _ => Object::new(),
                };
                let names: Vec<&str> = ctx.iter().map(|(k, _)| k.as_str()).collect();
                let got = expr::compile(src, &names, &[])
                    .and_then(|e| expr::evaluate(e.as_ref(), &ctx, &NoFunctions));
                let label = format!(
                    "{}:{name}: {src:?}",
                    file.file_name().unwrap().to_string_lossy()
                );
                match (&case.err, got) {
                    (Some(err), Err(e)) => {
                        let want_kind = err.kind.as_str();
                        let kind = match e {
                            ExprError::Lex(_) => "lexing",
                            ExprError::Parse { .. } | ExprError::Limit(_) => "parsing",
                            ExprError::Eval(_) => "evaluation",
                        };
                        let want = err.value.as_str();
                        // A lexing error in GitHub's TypeScript is a parsing one in C#.
                        let kind_ok = kind == want_kind
                            || (want_kind == "parsing" && kind == "lexing")
                            || (want_kind == "lexing" && kind == "parsing");
                        if !kind_ok || !e.to_string().contains(want) {
                            failures.push(format!(
                                "{label}: want {want_kind} {want:?}, got {kind} {:?}",
                                e.to_string()
                            ));
                        }
                    }
                    (Some(err), Ok(v)) => failures.push(format!(
                        "{label}: want error {:?}, got {}",
                        err.value,
                        v.to_json()
                    )),
                    (None, Err(e)) => failures.push(format!("{label}: unexpected error {e}")),
                    (None, Ok(v)) => {
                        let result = case
                            .result
                            .as_ref()
                            .expect("a case has a result or an error");
                        let want = &result.value.0;
                        let want_kind = result.kind.as_str();
                        if v.kind().name() != want_kind || v.to_json() != want.to_json() {
                            failures.push(format!(
                                "{label}: want {want_kind} {}, got {} {}",
                                want.to_json(),
                                v.kind().name(),
                                v.to_json()
                            ));
                        }
                    }
                }
            }
        }
    }
    assert_eq!(total, 1020, "the corpus has 1,020 cases");
    assert!(
        failures.is_empty(),
        "{} of {total} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
