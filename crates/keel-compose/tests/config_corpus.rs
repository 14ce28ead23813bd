//! `keel compose config` corpus: every directory under tests/fixtures/config
//! is a project with `args` (command-line options, one per line), `env` (the
//! process environment) and `expected.yaml` (the normalized output, with the
//! fixture's directory written as `$DIR` and its parent as `$PARENT`).
//!
//! These expectations were written for keel (modelled on docker compose's
//! output): they guard against regressions and are no evidence of
//! compatibility. That evidence is `compose_go_full_example.rs`, against
//! compose-go's own golden. They are compared only; nothing rewrites them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use keel_compose::{Options, emit, load};

fn options(dir: &Path) -> Options {
    let mut o = Options {
        cwd: dir.to_path_buf(),
        ..Options::default()
    };
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert("HOME".into(), "/home/test".into());
    if let Ok(s) = std::fs::read_to_string(dir.join("env")) {
        for l in s.lines().filter(|l| !l.is_empty()) {
            let (k, v) = l.split_once('=').unwrap();
            env.insert(k.into(), v.into());
        }
    }
    o.env = env;
    let args: Vec<String> = std::fs::read_to_string(dir.join("args"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-f" => o.files.push(PathBuf::from(it.next().unwrap())),
            "-p" => o.project_name = it.next(),
            "--profile" => o.profiles.push(it.next().unwrap()),
            "--env-file" => o.env_files.push(PathBuf::from(it.next().unwrap())),
            "--project-directory" => o.project_directory = it.next().map(PathBuf::from),
            s => o.services.push(s.to_string()),
        }
    }
    o
}

fn render(dir: &Path) -> Result<String, keel_compose::Error> {
    let project = load(&options(dir))?;
    // The typed view the reconciler uses must accept every normalized output.
    let model = project.model()?;
    assert_eq!(model.services.len(), project.service_names().len());
    let out = emit::escape_dollars(&emit::to_yaml(&project.to_value()));
    let d = dir.display().to_string();
    let parent = dir.parent().unwrap().display().to_string();
    Ok(out.replace(&d, "$DIR").replace(&parent, "$PARENT"))
}

#[test]
fn corpus_matches_expected() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 12, "corpus too small");
    let mut failures = Vec::new();
    for dir in &dirs {
        let expected = std::fs::read_to_string(dir.join("expected.yaml")).unwrap();
        match render(dir) {
            Ok(got) if got == expected => {}
            Ok(got) => failures.push(format!(
                "{}:\n--- expected\n{expected}\n--- got\n{got}",
                dir.display()
            )),
            Err(e) => failures.push(format!("{}: error: {e}", dir.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
