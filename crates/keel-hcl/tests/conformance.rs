//! HCL conformance: the tree-sitter-hcl corpus must parse, the HCL spec suite
//! must decode to its expected values (or fail at its expected lines), and
//! the functions must give `OpenTofu`'s documented example values.
//! Data lives in ../shared/conformance (or $`KEEL_CONFORMANCE`); missing data fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use keel_hcl::convert::convert;
use keel_hcl::eval::{Scope, eval};
use keel_hcl::funcs::Functions;
use keel_hcl::syntax::{Body, Expr, parse_body, parse_expr};
use keel_hcl::typeexpr::type_constraint;
use keel_hcl::{Diagnostics, Type, Value};

fn data_dir(sub: &str) -> PathBuf {
    let dir = std::env::var_os("KEEL_CONFORMANCE").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .ancestors()
                .map(|a| a.join("shared/conformance").join(sub))
                .find(|d| d.is_dir())
                .unwrap_or_else(|| PathBuf::from("../shared/conformance").join(sub))
        },
        |c| PathBuf::from(c).join(sub),
    );
    assert!(
        dir.is_dir(),
        "conformance data missing at {} (set KEEL_CONFORMANCE)",
        dir.display()
    );
    dir
}

/// Corpus cases tree-sitter's grammar accepts but terraform 1.11 rejects
/// (checked with `terraform validate`): keel must reject them too.
const NOT_HCL: &[&str] = &["empty template interpolation", "numeric literal hex 1"];
/// A known hcl-edit bug: a heredoc line starting with the delimiter followed
/// by more text ends the heredoc early; terraform accepts this input.
/// Listed so the test notices when the bug is gone.
const HCL_EDIT_BUGS: &[&str] = &["tricky heredoc"];

#[test]
fn tree_sitter_corpus_parses() {
    let dir = data_dir("hcl-tree-sitter-corpus/test/corpus");
    let mut n = 0;
    let mut failed = Vec::new();
    for e in std::fs::read_dir(&dir).expect("corpus") {
        let path = e.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        let sep = "=".repeat(80);
        let mut parts = text.split(&sep).skip(1);
        while let (Some(name), Some(rest)) = (parts.next(), parts.next()) {
            let name = name.trim();
            let src = rest
                .split(&"-".repeat(80))
                .next()
                .unwrap_or("")
                .trim_start_matches('\n');
            let src = src.strip_suffix("\n\n").unwrap_or(src);
            n += 1;
            let res = if path.file_name().is_some_and(|f| f == "json.txt") {
                keel_hcl::json::parse_json_body(
                    "case.json",
                    src,
                    &keel_hcl::json::JsonSchema::default(),
                )
                .map(|_| ())
            } else {
                parse_body("case.hcl", src).map(|_| ())
            };
            if res.is_err() != (NOT_HCL.contains(&name) || HCL_EDIT_BUGS.contains(&name)) {
                failed.push(format!(
                    "{}: {name}: {:?}",
                    path.display(),
                    res.err().map(|d| d.to_string())
                ));
            }
        }
    }
    assert!(n >= 100, "only {n} cases found");
    assert!(
        failed.is_empty(),
        "{} of {n} corpus cases:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

// ---- HCL spec suite: a small hcldec interpreter --------------------------

fn funcs() -> Functions {
    Functions::terraform()
}

fn value_of(e: &Expr, vars: &BTreeMap<String, Value>) -> Result<Value, Diagnostics> {
    let f = funcs();
    eval(
        e,
        &Scope {
            vars,
            funcs: &f,
            base_dir: PathBuf::new(),
        },
    )
}

/// Decodes `body` by the hcldec spec block `spec`.
fn decode(
    spec: &keel_hcl::Block,
    body: &Body,
    vars: &BTreeMap<String, Value>,
) -> Result<Value, Diagnostics> {
    match spec.kind.as_str() {
        "object" => {
            let mut out = BTreeMap::new();
            let mut known: Vec<String> = Vec::new();
            for child in &spec.body.blocks {
                let name = child.labels.first().cloned().unwrap_or_default();
                known.push(name.clone());
                if child.kind == "attr" {
                    let ty = child
                        .body
                        .attr("type")
                        .map(|a| type_constraint(&a.expr).map(|t| t.0))
                        .transpose()?
                        .unwrap_or(Type::Dynamic);
                    let v = match body.attr(&name) {
                        Some(a) => {
                            let v = value_of(&a.expr, vars)?;
                            convert(&v, &ty).map_err(|e| {
                                Diagnostics::error(
                                    "Incorrect attribute value type",
                                    e.to_string(),
                                    Some(a.expr.range().clone()),
                                )
                            })?
                        }
                        None => Value::null(ty),
                    };
                    out.insert(name, v);
                } else {
                    out.insert(
                        if name.is_empty() {
                            child_block_type(child)
                        } else {
                            name
                        },
                        decode(child, body, vars)?,
                    );
                }
            }
            for a in &body.attributes {
                if spec.body.blocks.iter().any(|b| b.kind == "attr") && !known.contains(&a.name) {
                    return Err(Diagnostics::error(
                        "Unsupported argument",
                        format!("An argument named {:?} is not expected here.", a.name),
                        Some(a.name_range.clone()),
                    ));
                }
            }
            Ok(Value::object(out))
        }
        "block" | "block_list" | "block_map" => {
            let bt = child_block_type(spec);
            let inner = spec
                .body
                .blocks
                .first()
                .expect("block spec has a nested spec");
            let blocks: Vec<&keel_hcl::Block> = body.blocks_of(&bt).collect();
            match spec.kind.as_str() {
                "block" => match blocks.as_slice() {
                    [] => Ok(Value::dyn_null()),
                    [b] => decode(inner, &b.body, vars),
                    [_, b, ..] => Err(Diagnostics::error(
                        "Duplicate block",
                        "",
                        Some(b.range.clone()),
                    )),
                },
                "block_list" => Ok(Value::tuple(
                    blocks
                        .iter()
                        .map(|b| decode(inner, &b.body, vars))
                        .collect::<Result<_, _>>()?,
                )),
                _ => {
                    let mut out = BTreeMap::new();
                    for b in blocks {
                        out.insert(
                            b.labels.first().cloned().unwrap_or_default(),
                            decode(inner, &b.body, vars)?,
                        );
                    }
                    Ok(Value::object(out))
                }
            }
        }
        "literal" => value_of(&spec.body.attr("value").expect("literal value").expr, vars),
        other => panic!("hcldec spec {other} not supported by this harness"),
    }
}

fn child_block_type(spec: &keel_hcl::Block) -> String {
    spec.body
        .attr("block_type")
        .and_then(|a| value_of(&a.expr, &BTreeMap::new()).ok())
        .and_then(|v| v.as_str().map(str::to_string))
        .or_else(|| spec.labels.first().cloned())
        .unwrap_or_default()
}

/// Loose equality after conversion: numbers by value, collections by content.
fn same(a: &Value, b: &Value) -> bool {
    if let (Some(x), Some(y)) = (a.as_seq(), b.as_seq()) {
        return x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q));
    }
    if let (Some(x), Some(y)) = (a.as_map(), b.as_map()) {
        return x.len() == y.len()
            && x.iter()
                .zip(y)
                .all(|((k1, v1), (k2, v2))| k1 == k2 && same(v1, v2));
    }
    if a.is_null() && b.is_null() {
        return true;
    }
    a.equals(b) == Some(true)
        || keel_hcl::render::to_json_string(a) == keel_hcl::render::to_json_string(b)
}

#[test]
fn hcl_spec_suite() {
    let dir = data_dir("hcl-specsuite/specsuite/tests");
    let mut cases = 0;
    let mut failed = Vec::new();
    for e in walk(&dir) {
        if e.extension().is_none_or(|x| x != "t") {
            continue;
        }
        let base = e.with_extension("");
        let t =
            parse_body("case.t", &std::fs::read_to_string(&e).expect("t")).expect("the .t parses");
        let spec_body = parse_body(
            "case.hcldec",
            &std::fs::read_to_string(base.with_extension("hcldec")).expect("hcldec"),
        )
        .expect("spec parses");
        let mut vars = BTreeMap::new();
        for v in spec_body.blocks_of("variables") {
            for a in &v.body.attributes {
                vars.insert(
                    a.name.clone(),
                    value_of(&a.expr, &BTreeMap::new()).expect("var"),
                );
            }
        }
        let spec = spec_body
            .blocks
            .iter()
            .find(|b| b.kind != "variables")
            .expect("spec block");
        let input = base.with_extension("hcl");
        if !input.exists() {
            continue;
        }
        cases += 1;
        let name = input.display().to_string();
        let src = std::fs::read_to_string(&input).expect("input");
        let res = parse_body(&name, &src).and_then(|b| decode(spec, &b, &vars));
        if let Some(d) = t.blocks_of("diagnostics").next() {
            let want: Vec<usize> = d
                .body
                .blocks
                .iter()
                .filter_map(|e| e.body.blocks_of("from").next())
                .filter_map(|f| {
                    f.body
                        .attr("line")
                        .and_then(|a| value_of(&a.expr, &BTreeMap::new()).ok())
                        .and_then(|v| v.as_number().and_then(keel_hcl::Number::to_i64))
                })
                .map(|l| l as usize)
                .collect();
            match res {
                Ok(v) => failed.push(format!(
                    "{name}: expected errors on lines {want:?}, got value {}",
                    keel_hcl::render::to_json_string(&v)
                )),
                Err(diags) => {
                    let first = diags
                        .0
                        .first()
                        .and_then(|x| x.subject.as_ref())
                        .map(|r| r.start.line);
                    if !first.is_some_and(|l| want.contains(&l)) {
                        failed.push(format!(
                            "{name}: expected an error on lines {want:?}, got {diags}"
                        ));
                    }
                }
            }
            continue;
        }
        let v = match res {
            Ok(v) => v,
            Err(d) => {
                failed.push(format!("{name}: {d}"));
                continue;
            }
        };
        if let Some(rt) = t.attr("result_type") {
            let (ty, _) = type_constraint(&rt.expr).expect("result_type");
            if convert(&v, &ty).is_err() {
                failed.push(format!("{name}: value does not conform to {ty}"));
            }
        }
        if let Some(r) = t.attr("result") {
            let want = value_of(&r.expr, &BTreeMap::new()).expect("result");
            if !same(&v, &want) {
                failed.push(format!(
                    "{name}:\n  got  {}\n  want {}",
                    keel_hcl::render::to_json_string(&v),
                    keel_hcl::render::to_json_string(&want)
                ));
            }
        }
    }
    assert!(cases >= 14, "only {cases} cases");
    assert!(
        failed.is_empty(),
        "{} of {cases} spec cases failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

// ---- OpenTofu's documented function examples ------------------------------

#[test]
fn function_doc_examples() {
    let path = data_dir("opentofu").join("function_doc_examples.json");
    let cases: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(path).expect("examples")).expect("json");
    let f = funcs();
    let vars = BTreeMap::new();
    let scope = Scope {
        vars: &vars,
        funcs: &f,
        base_dir: PathBuf::new(),
    };
    let mut checked = 0;
    let mut failed = Vec::new();
    for c in &cases {
        let flags: Vec<&str> = c["flags"]
            .as_array()
            .expect("flags")
            .iter()
            .filter_map(|x| x.as_str())
            .collect();
        let (expr, expected) = (
            c["expr"].as_str().expect("expr"),
            c["expected"].as_str().expect("expected"),
        );
        if flags.contains(&"needs_env_or_nondeterministic") || opentofu_only(expr) {
            continue;
        }
        let got = parse_expr("example", expr).and_then(|e| eval(&e, &scope));
        if flags.contains(&"expects_error") {
            checked += 1;
            if got.is_ok() {
                failed.push(format!("{expr}: expected an error"));
            }
            continue;
        }
        // The docs print some strings unquoted.
        if let Ok(v) = &got
            && v.as_str() == Some(expected.trim())
        {
            checked += 1;
            continue;
        }
        // The docs abbreviate some results; those cannot be compared.
        let Ok(want) = parse_expr("expected", expected.trim()).and_then(|e| eval(&e, &scope))
        else {
            continue;
        };
        checked += 1;
        match got {
            Ok(v) if same(&v, &want) || same_unordered(&v, &want) => {}
            Ok(v) => failed.push(format!(
                "{expr}\n  got  {}\n  want {expected}",
                keel_hcl::render::format_value(&v, 0)
            )),
            Err(d) => failed.push(format!("{expr}: {d}")),
        }
    }
    assert!(checked >= 160, "only {checked} examples checked");
    assert!(
        failed.is_empty(),
        "{} of {checked} examples differ:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// Examples of `OpenTofu`'s own extensions (not in terraform 1.11), and
/// examples that refer to resources no console has.
fn opentofu_only(expr: &str) -> bool {
    [
        "cidrcontains(",
        "convert(",
        "element([\"a\", \"b\", \"c\"], -1)",
        "aws_instance.",
        "ephemeral.",
    ]
    .iter()
    .any(|p| expr.contains(p))
}

/// Sets print in the docs in any order.
fn same_unordered(a: &Value, b: &Value) -> bool {
    let (Some(x), Some(y)) = (a.as_seq(), b.as_seq()) else {
        return false;
    };
    let mut x: Vec<String> = x.iter().map(keel_hcl::render::to_json_string).collect();
    let mut y: Vec<String> = y.iter().map(keel_hcl::render::to_json_string).collect();
    x.sort();
    y.sort();
    x == y
}

// ---- parsers never panic --------------------------------------------------

proptest::proptest! {
    #[test]
    fn parsers_never_panic(s in "\\PC{0,64}") {
        let _ = parse_body("p.tf", &s);
        let _ = parse_expr("p", &s);
        let _ = keel_hcl::syntax::parse_template("p", &s);
        let _ = keel_hcl::json::parse_json_body("p.json", &s, &keel_hcl::json::JsonSchema::default());
        let _ = keel_hcl::fmt::format(&s);
    }

    #[test]
    fn hcl_shaped_input_never_panics(s in "[a-z{}\\[\\]()=\"$%~<>!?:.,*+/ \\n0-9-]{0,80}") {
        let _ = parse_body("p.tf", &s);
        let _ = keel_hcl::fmt::format(&s);
        if let Ok(e) = parse_expr("p", &s) {
            let f = Functions::terraform();
            let vars = BTreeMap::new();
            let _ = eval(&e, &Scope { vars: &vars, funcs: &f, base_dir: PathBuf::new() });
        }
    }
}

// ---- terraform fmt goldens ---------------------------------------------------

#[test]
fn fmt_goldens() {
    let dir = data_dir("opentofu/internal/command/testdata/fmt");
    for case in ["variable_type", "general"] {
        let src = std::fs::read_to_string(dir.join(format!("{case}_in.tf"))).expect("in");
        let want = std::fs::read_to_string(dir.join(format!("{case}_out.tf"))).expect("out");
        let got = keel_hcl::fmt::format(&src);
        assert_eq!(got, want, "{case}");
        // Formatting is idempotent.
        assert_eq!(keel_hcl::fmt::format(&got), got, "{case} twice");
    }
}

// ---- terraform's function signatures -------------------------------------

/// `terraform metadata functions -json` (terraform-json's fixture, 113
/// functions): keel has each, with the same parameter names, types,
/// nullability, variadic parameter and return type.
#[test]
fn function_signatures_match_terraform() {
    let path = data_dir("terraform-json").join("testdata/basic/functions.json");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("functions.json")).unwrap();
    let sigs = doc["function_signatures"].as_object().expect("signatures");
    assert_eq!(sigs.len(), 113);
    let f = funcs();
    let param = |p: &keel_hcl::funcs::Param| {
        let mut j = serde_json::json!({ "name": p.name, "type": p.ty.to_json() });
        if p.nullable {
            j["is_nullable"] = serde_json::Value::Bool(true);
        }
        j
    };
    let strip = |p: &serde_json::Value| {
        let mut p = p.clone();
        p.as_object_mut().unwrap().remove("description");
        p
    };
    let mut failed = Vec::new();
    for (name, want) in sigs {
        let Some(got) = f.get(name) else {
            failed.push(format!("{name}: missing"));
            continue;
        };
        let want_params: Vec<_> = want["parameters"]
            .as_array()
            .map(|a| a.iter().map(strip).collect())
            .unwrap_or_default();
        let got_params: Vec<_> = got.params.iter().map(param).collect();
        if got_params != want_params {
            failed.push(format!(
                "{name}: parameters\n  keel: {got_params:?}\n  want: {want_params:?}"
            ));
        }
        let want_var = want.get("variadic_parameter").map(strip);
        let got_var = got.variadic.as_ref().map(param);
        if got_var != want_var {
            failed.push(format!(
                "{name}: variadic\n  keel: {got_var:?}\n  want: {want_var:?}"
            ));
        }
        // terraform prints `dynamic` where cty derives the result type from
        // the arguments' (format, formatlist, contains); keel's table holds
        // the type it derives for known argument types there.
        let derived = want["return_type"] == "dynamic"
            && ["format", "formatlist", "contains"].contains(&name.as_str());
        if got.ret.to_json() != want["return_type"] && !derived {
            failed.push(format!(
                "{name}: returns {} want {}",
                got.ret.to_json(),
                want["return_type"]
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of 113 differ:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

// ---- terraform fmt, differentially ---------------------------------------

fn tf_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            tf_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "tf")
            && e.metadata().is_ok_and(|m| m.len() < 40_000)
        {
            out.push(p);
        }
    }
}

/// Every `.tf` file of the conformance data (`OpenTofu`'s and
/// terraform-json's test configurations) formatted by the real `terraform
/// fmt` (terraform 1.11 on this machine) and by keel's `fmt::format` must
/// come out byte for byte the same, and formatting keel's output again must
/// not change it. Files terraform refuses (syntax errors on purpose) are
/// left out.
#[test]
fn same_output_as_terraform_fmt() {
    let mut files = Vec::new();
    tf_files(&data_dir(""), &mut files);
    files.sort();
    assert!(files.len() > 300, "only {} .tf files found", files.len());
    let tmp = tempfile::tempdir().expect("tmp");
    let results: Vec<(PathBuf, Option<String>, String)> = std::thread::scope(|s| {
        let chunks: Vec<&[PathBuf]> = files.chunks(files.len().div_ceil(2)).collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .enumerate()
            .map(|(n, c)| {
                let dir = tmp.path().join(n.to_string());
                s.spawn(move || {
                    std::fs::create_dir_all(&dir).expect("dir");
                    c.iter()
                        .map(|f| {
                            let src = std::fs::read_to_string(f).unwrap_or_default();
                            let copy = dir.join("x.tf");
                            std::fs::write(&copy, &src).expect("copy");
                            let ok = Command::new("terraform")
                                .args(["fmt", "-no-color", "x.tf"])
                                .current_dir(&dir)
                                .env("TF_CLI_CONFIG_FILE", "/dev/null")
                                .output()
                                .expect("terraform 1.11 must be installed (scripts/test.sh installs it)")
                                .status
                                .success();
                            let want = ok.then(|| std::fs::read_to_string(&copy).expect("read"));
                            (f.clone(), want, src)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect()
    });
    let mut compared = 0;
    let mut failures = Vec::new();
    for (f, want, src) in &results {
        let Some(want) = want else { continue };
        compared += 1;
        let got = keel_hcl::fmt::format(src);
        if keel_hcl::fmt::format(&got) != got {
            failures.push(format!("{}: formatting twice changes it", f.display()));
        }
        if &got != want {
            let line = got
                .lines()
                .zip(want.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| got.lines().count().min(want.lines().count()));
            failures.push(format!(
                "{} (line {}):\n  keel:      {:?}\n  terraform: {:?}",
                f.display(),
                line + 1,
                got.lines().nth(line).unwrap_or("<end>"),
                want.lines().nth(line).unwrap_or("<end>")
            ));
        }
    }
    assert!(
        compared > 300,
        "only {compared} files formatted by terraform"
    );
    assert!(
        failures.is_empty(),
        "{} of {compared} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
