//! `keel chart template` against the real Helm 4.1.4's goldens of 30
//! real-world charts (../shared/charts, 92 variants): stdout byte for byte,
//! the same exit code, for failing variants the same error message, and for
//! the others the same warnings on stderr (as a set: Helm's order is Go's
//! random map order). Where
//! Helm's own output varies between runs (random passwords, generated
//! certificates, `now`), exactly the templates and keys that determinism.json
//! lists are masked on both sides before comparing.

mod helm_peer;

use std::collections::BTreeMap;
use std::path::Path;

use helm_peer::{corpus, first_difference, helm_error, keel_error, keel_template};

struct Variant {
    chart: String,
    name: String,
    args: Vec<String>,
    /// template path -> keys whose values vary between Helm runs
    masked: BTreeMap<String, Vec<String>>,
}

fn variants(root: &Path) -> Vec<Variant> {
    let det: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("determinism.json")).unwrap()).unwrap();
    let mut out = Vec::new();
    let mut charts: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("variants.tsv").is_file())
        .collect();
    charts.sort();
    for dir in charts {
        let chart = dir.file_name().unwrap().to_string_lossy().into_owned();
        let tsv = std::fs::read_to_string(dir.join("variants.tsv")).unwrap();
        for line in tsv.lines() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let cols: Vec<&str> = line.split('\t').collect();
            let (name, files, extra) = (cols[0], cols[1], cols.get(2).copied().unwrap_or("-"));
            // render.sh's argument list
            let mut args: Vec<String> = [
                "rel",
                "chart/",
                "--namespace",
                "ns1",
                "--kube-version",
                "1.32.0",
            ]
            .iter()
            .map(ToString::to_string)
            .collect();
            if files != "-" {
                for f in files.split_whitespace() {
                    args.push("-f".into());
                    args.push(f.into());
                }
            }
            if extra != "-" {
                args.extend(extra.split_whitespace().map(str::to_string));
            }
            let d = &det[format!("{chart}/{name}")];
            assert!(
                d.is_object(),
                "determinism.json has no entry for {chart}/{name}"
            );
            let masked = d["nondeterministic_templates"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(t, keys)| {
                    let keys = keys
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|k| k.as_str().unwrap().to_string())
                        .collect();
                    (t.clone(), keys)
                })
                .collect();
            out.push(Variant {
                chart: chart.clone(),
                name: name.to_string(),
                args,
                masked,
            });
        }
    }
    out
}

/// Masks the values of `keys` inside the documents rendered from the listed
/// templates (`# Source: T`), and nothing else.
fn mask(text: &str, masked: &BTreeMap<String, Vec<String>>) -> String {
    if masked.is_empty() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut keys: Option<&Vec<String>> = None;
    for line in text.split_inclusive('\n') {
        if line == "---\n" {
            keys = None;
        } else if let Some(src) = line.strip_prefix("# Source: ") {
            keys = masked.get(src.trim_end());
        } else if let Some(keys) = keys {
            let body = line.trim_start();
            if let Some(k) = keys.iter().find(|k| body.starts_with(&format!("{k}:"))) {
                let indent = &line[..line.len() - body.len()];
                out.push_str(indent);
                out.push_str(k);
                out.push_str(": <varies between helm runs>\n");
                continue;
            }
        }
        out.push_str(line);
    }
    out
}

#[test]
fn keel_renders_the_corpus_as_helm_4_1_4_does() {
    let root = corpus();
    let all = variants(&root);
    assert_eq!(all.len(), 92, "the corpus README says 92 variants");
    let results: Vec<(usize, Option<String>)> = std::thread::scope(|s| {
        let chunks: Vec<Vec<(usize, &Variant)>> = (0..2)
            .map(|k| all.iter().enumerate().filter(|(i, _)| i % 2 == k).collect())
            .collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let root = &root;
                s.spawn(move || {
                    chunk
                        .into_iter()
                        .map(|(i, v)| (i, check(root, v)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut r: Vec<_> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        r.sort_by_key(|x| x.0);
        r
    });
    let bad: Vec<String> = results.into_iter().filter_map(|(_, r)| r).collect();
    assert!(
        bad.is_empty(),
        "{} of {} variants differ from Helm 4.1.4's goldens:\n{}",
        bad.len(),
        all.len(),
        bad.join("\n")
    );
}

/// Compares one variant; `None` when keel matches Helm.
fn check(root: &Path, v: &Variant) -> Option<String> {
    let dir = root.join(&v.chart);
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let want_rc: i32 = read(&format!("rc-{}.txt", v.name)).trim().parse().unwrap();
    let want_out = read(&format!("golden-{}.yaml", v.name));
    let want_err = read(&format!("err-{}.txt", v.name));
    let out = keel_template(&dir, &v.args);
    let got_out = String::from_utf8_lossy(&out.stdout);
    let got_err = String::from_utf8_lossy(&out.stderr);
    let got_rc = out.status.code().unwrap_or(-1);
    let id = format!("  {}/{}", v.chart, v.name);
    if got_rc != want_rc {
        let why = if got_rc == 0 {
            first_difference(&mask(&want_out, &v.masked), &mask(&got_out, &v.masked))
        } else {
            format!("keel: {}", got_err.trim_end())
        };
        return Some(format!("{id}: exit code {got_rc}, helm's {want_rc}; {why}"));
    }
    if want_rc != 0 {
        let (h, k) = (helm_error(&want_err), keel_error(&got_err));
        return (h != k).then(|| format!("{id}: error differs\n      helm: {h}\n      keel: {k}"));
    }
    let (w, g) = (mask(&want_out, &v.masked), mask(&got_out, &v.masked));
    if w != g {
        return Some(format!("{id}: {}", first_difference(&w, &g)));
    }
    // Helm's warnings (values coalescing) follow Go's map order: compare as sets
    let sorted = |s: &str| {
        let mut l: Vec<String> = s.lines().map(str::to_string).collect();
        l.sort();
        l.join("\n")
    };
    let (w, g) = (sorted(&want_err), sorted(&got_err));
    (w != g).then(|| format!("{id}: stderr differs:\n      helm: {w:?}\n      keel: {g:?}"))
}

#[test]
fn masking_touches_only_the_listed_keys_of_the_listed_templates() {
    let text = "---\n# Source: c/templates/a.yaml\ndata:\n  pw: abc\n  keep: x\n---\n# Source: c/templates/b.yaml\ndata:\n  pw: abc\n";
    let mut m = BTreeMap::new();
    m.insert("c/templates/a.yaml".to_string(), vec!["pw".to_string()]);
    assert_eq!(
        mask(text, &m),
        "---\n# Source: c/templates/a.yaml\ndata:\n  pw: <varies between helm runs>\n  keep: x\n---\n# Source: c/templates/b.yaml\ndata:\n  pw: abc\n"
    );
}
