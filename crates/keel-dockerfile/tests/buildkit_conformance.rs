//! `BuildKit`'s own parser and shell-lexer fixtures (../shared/conformance/buildkit-dockerfile).
//! The data lives outside the repository; a missing directory fails the tests.

use std::fs;
use std::path::PathBuf;

use keel_dockerfile::{Options, expand, expand_words, parse};

fn data_dir() -> PathBuf {
    // `KEEL_CONFORMANCE` names the conformance folder; otherwise the nearest
    // ancestor of the repo holding shared/conformance (a clone beside
    // shared/, or a git worktree a level deeper).
    let sub = "buildkit-dockerfile";
    let dir = std::env::var_os("KEEL_CONFORMANCE").map_or_else(
        || {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .ancestors()
                .map(|a| a.join("shared/conformance").join(sub))
                .find(|d| d.is_dir())
                .unwrap_or_else(|| PathBuf::from("../shared/conformance").join(sub))
        },
        |c| PathBuf::from(c).join(sub),
    );
    assert!(
        dir.is_dir(),
        "conformance data missing at {} (the repo must sit beside shared/, or set KEEL_CONFORMANCE)",
        dir.display()
    );
    dir
}

fn read(path: &PathBuf) -> String {
    // Fixtures are UTF-8; read bytes so a stray invalid byte shows up as U+FFFD rather than a skip.
    String::from_utf8_lossy(&fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .into_owned()
}

fn case_dirs(sub: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(data_dir().join(sub))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn parse_cases_match_buildkit_dump() {
    let dirs = case_dirs("testfiles");
    assert_eq!(dirs.len(), 33, "expected BuildKit's 33 parse cases");
    let mut failures = Vec::new();
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let src = read(&dir.join("Dockerfile"));
        let expected = read(&dir.join("result"));
        match parse(&src, &format!("{name}/Dockerfile")) {
            Ok(ast) => {
                let got = ast.dump();
                if got != expected {
                    failures.push(format!("{name}:\n--- expected\n{expected}--- got\n{got}"));
                }
            }
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        dirs.len(),
        failures.join("\n")
    );
}

#[test]
fn negative_cases_fail() {
    let dirs = case_dirs("testfiles-negative");
    assert_eq!(dirs.len(), 4);
    for dir in &dirs {
        let src = read(&dir.join("Dockerfile"));
        let r = parse(&src, "Dockerfile");
        assert!(r.is_err(), "{} parsed: {:?}", dir.display(), r);
        let e = r.unwrap_err();
        assert!(
            e.location().is_some_and(|l| l.line >= 1 && l.col >= 1),
            "{e}"
        );
    }
}

#[test]
fn testfile_line_spans() {
    // BuildKit's TestLineInformation: start/end lines of each instruction.
    let src = read(&data_dir().join("testfile-line/Dockerfile"));
    let ast = parse(&src, "Dockerfile").unwrap();
    let spans: Vec<(usize, usize)> = ast
        .nodes
        .iter()
        .map(|n| (n.span.start_line, n.span.end_line))
        .collect();
    assert_eq!(spans, [(5, 5), (11, 12), (17, 31)]);
    assert_eq!(ast.nodes[1].words(), ["GOPATH", "/go", ""]);
}

fn envvar_env() -> Vec<(String, String)> {
    [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
    .collect()
}

#[test]
fn env_var_test_rows() {
    let text = read(&data_dir().join("envVarTest"));
    let env = envvar_env();
    let opts = Options::default();
    let mut checked = 0;
    let mut failures = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split('|').collect();
        assert_eq!(fields.len(), 3, "bad row {line:?}");
        let platform = fields[0].trim();
        if platform != "A" && platform != "U" {
            continue;
        }
        let source = fields[1].trim();
        let expected = fields[2].trim();
        checked += 1;
        let got = expand(source, &env, &opts);
        match (expected, got) {
            ("error", Err(_)) => {}
            ("error", Ok(v)) => failures.push(format!("{source:?}: expected error, got {v:?}")),
            (want, Ok(v)) if v == want => {}
            (want, got) => failures.push(format!("{source:?}: expected {want:?}, got {got:?}")),
        }
    }
    assert!(checked >= 200, "only {checked} rows read");
    assert!(
        failures.is_empty(),
        "{} of {checked} rows differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn words_test_rows() {
    let text = read(&data_dir().join("wordsTest"));
    let mut env: Vec<(String, String)> = Vec::new();
    let opts = Options::default();
    let mut checked = 0;
    let mut failures = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if let Some(def) = line.strip_prefix("ENV ") {
            let def = def.trim_start_matches(' ');
            let (k, v) = def.split_once('=').expect("ENV k=v");
            env.push((k.to_string(), v.to_string()));
            continue;
        }
        let (input, expected) = line.split_once('|').expect("input | words");
        let input = input.trim();
        let expected: Vec<&str> = expected.trim_start_matches(' ').split(',').collect();
        checked += 1;
        let got = expand_words(input, &env, &opts);
        match got {
            Err(_) if expected == ["error"] => {}
            Ok(words) if words == expected => {}
            other => failures.push(format!("{input:?}: expected {expected:?}, got {other:?}")),
        }
    }
    assert!(checked >= 20, "only {checked} rows read");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
