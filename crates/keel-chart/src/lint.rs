//! `helm lint`'s rules and words (`pkg/chart/v2/lint/rules`): Chart.yaml
//! (name, `apiVersion`, version as `SemVer` and strict `SemVer` 2, maintainers,
//! icon, v1 restrictions), values.yaml (present, parseable), templates
//! (directory, a render in Helm's lint mode where `required` and
//! `fail` only log, then each YAML file parsed with its line numbers);
//! the object, CRD and dependency rules are in `lint_rules`.

use std::path::Path;

use crate::ChartError;
use crate::render::{TemplateOptions, render_lint};
use crate::values::Table;

/// One finding of `lint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LintMessage {
    /// `INFO`, `WARNING` or `ERROR`.
    pub severity: &'static str,
    pub path: String,
    pub text: String,
}

/// Findings, and what lint mode logged while rendering (Helm's slog lines).
#[derive(Debug, Clone, Default)]
pub struct LintReport {
    pub messages: Vec<LintMessage>,
    pub log: Vec<String>,
}

impl LintReport {
    pub(crate) fn add(&mut self, severity: &'static str, path: &str, text: impl Into<String>) {
        self.messages.push(LintMessage {
            severity,
            path: path.to_string(),
            text: text.into(),
        });
    }
}

fn strict_semver(v: &str) -> bool {
    regex::Regex::new(
        r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$",
    )
    .expect("static regex")
    .is_match(v)
}

/// Masterminds' `NewVersion` (loose): `v` prefix, missing minor/patch allowed.
fn loose_semver(v: &str) -> bool {
    regex::Regex::new(
        r"^v?([0-9]+)(\.[0-9]+)?(\.[0-9]+)?(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?$",
    )
    .expect("static regex")
    .is_match(v)
}

fn chartfile(dir: &Path, r: &mut LintReport) -> bool {
    const F: &str = "Chart.yaml";
    let path = dir.join(F);
    if path.is_dir() {
        r.add("ERROR", F, "should be a file, not a directory");
        return false;
    }
    let m = match std::fs::read(&path)
        .map_err(|e| crate::go_io_error("open", &path.display().to_string(), &e))
        .and_then(|b| crate::chart::parse_metadata(&b))
    {
        Ok(m) => m,
        Err(e) => {
            r.add("ERROR", F, format!("unable to parse YAML\n\t{e}"));
            return false;
        }
    };
    if m.name.is_empty() {
        r.add("ERROR", F, "name is required");
    } else if m.name.contains('/') || m.name.contains('\\') || m.name == "." || m.name == ".." {
        r.add("ERROR", F, format!("chart name {:?} is invalid", m.name));
    }
    if m.api_version.is_empty() {
        r.add(
            "ERROR",
            F,
            "apiVersion is required. The value must be either \"v1\" or \"v2\"",
        );
    } else if m.api_version != "v1" && m.api_version != "v2" {
        r.add(
            "ERROR",
            F,
            format!(
                "apiVersion '{}' is not valid. The value must be either \"v1\" or \"v2\"",
                m.api_version
            ),
        );
    }
    let raw: serde_yaml_ng::Value = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_yaml_ng::from_slice(&b).ok())
        .unwrap_or_default();
    if let Some(e) = type_error(&raw, "version") {
        r.add("ERROR", F, e);
    }
    if m.version.is_empty() {
        r.add("ERROR", F, "version is required");
    } else if !loose_semver(&m.version) {
        r.add(
            "ERROR",
            F,
            format!("version '{}' is not a valid SemVer", m.version),
        );
    }
    if let Some(e) = type_error(&raw, "appVersion") {
        r.add("ERROR", F, e);
    }
    for x in &m.maintainers {
        if x.name.is_empty() && x.email.is_empty() && x.url.is_empty() {
            r.add("ERROR", F, "a maintainer entry is empty");
        } else if x.name.is_empty() {
            r.add("ERROR", F, "each maintainer requires a name");
        }
    }
    if m.icon.is_empty() {
        r.add("INFO", F, "icon is recommended");
    }
    if m.api_version == "v1" && !m.chart_type.is_empty() {
        r.add(
            "ERROR",
            F,
            "chart type is not valid in apiVersion 'v1'. It is valid in apiVersion 'v2'",
        );
    }
    if m.api_version == "v1" && !m.dependencies.is_empty() {
        r.add(
            "ERROR",
            F,
            "dependencies are not valid in the Chart file with apiVersion 'v1'. They are valid in apiVersion 'v2'",
        );
    }
    if !m.version.is_empty() && !strict_semver(&m.version) {
        r.add(
            "WARNING",
            F,
            format!("version '{}' is not a valid SemVerV2", m.version),
        );
    }
    true
}

fn values_file(dir: &Path, r: &mut LintReport) {
    const F: &str = "values.yaml";
    let Ok(text) = std::fs::read_to_string(dir.join(F)) else {
        r.add("INFO", F, "file does not exist");
        return;
    };
    if let Err(e) = keel_gotmpl::goyaml::yaml_to_value(&text) {
        r.add("ERROR", F, format!("unable to parse YAML: {e}"));
    }
}

/// The kube version linted against: `--kube-version`, else Helm's default.
fn kube_version(v: Option<&str>) -> (u64, u64) {
    let k = crate::render::parse_kube_version(v.unwrap_or(crate::render::DEFAULT_KUBE_VERSION))
        .or_else(|_| crate::render::parse_kube_version(crate::render::DEFAULT_KUBE_VERSION));
    k.map_or((1, 35), |k| {
        (k.major.parse().unwrap_or(1), k.minor.parse().unwrap_or(35))
    })
}

/// go-yaml's words for a document that does not parse (`serde_yaml_ng` as a
/// second opinion, so that a gap in keel's go-yaml port is no finding).
pub(crate) fn yaml_error(doc: &str) -> Option<String> {
    if let Err(e) = keel_gotmpl::goyaml::parse(doc)
        && serde_yaml_ng::from_str::<serde_yaml_ng::Value>(doc).is_err()
    {
        return Some(format!(
            "unable to parse YAML: error converting YAML to JSON: {e}"
        ));
    }
    None
}

#[allow(clippy::too_many_lines)]
fn templates(dir: &Path, user: &Table, namespace: &str, kube: Option<&str>, r: &mut LintReport) {
    const D: &str = "templates/";
    let tdir = dir.join("templates");
    if !tdir.exists() {
        r.add("WARNING", D, "directory does not exist");
        return;
    }
    if !tdir.is_dir() {
        r.add("ERROR", D, "not a directory");
        return;
    }
    let chart = match crate::load(dir) {
        Ok(c) => c,
        Err(e) => {
            r.add("ERROR", D, bare(&e));
            return;
        }
    };
    if chart.is_library() {
        return;
    }
    let opts = TemplateOptions {
        release_name: "test-release".into(),
        namespace: namespace.into(),
        kube_version: kube.map(str::to_string),
        ..TemplateOptions::default()
    };
    let (major, minor) = kube_version(kube);
    let rendered = match render_lint(&chart, user, &opts) {
        Ok(x) => x,
        Err(e) => {
            r.add("ERROR", D, e.to_string());
            return;
        }
    };
    r.log.extend(rendered.lint_log.iter().cloned());
    for t in &chart.templates {
        let name = &t.name;
        let ext = Path::new(name)
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        if ![".yaml", ".yml", ".tpl", ".txt"].contains(&ext.as_str()) {
            r.add(
                "ERROR",
                name,
                format!("file extension '{ext}' not valid. Valid extensions are .yaml, .yml, .tpl, or .txt"),
            );
        }
        let lower = ext.to_lowercase();
        if lower != ".yaml" && lower != ".yml" {
            continue;
        }
        let key = format!("{}/{name}", chart.metadata.name);
        let Some(content) = rendered.files.get(&key).filter(|c| !c.trim().is_empty()) else {
            continue;
        };
        if let Some(line) = content
            .lines()
            .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            && (line.starts_with(' ') || line.starts_with('\t'))
        {
            r.add(
                "WARNING",
                name,
                format!(
                    "document starts with an illegal indent: {}, which may cause parsing problems",
                    crate::go_quote(line)
                ),
            );
        }
        // Helm's YAML reader cuts the file at `---` lines and decodes each
        // document alone (line numbers count from the document's top)
        for doc in documents(content) {
            // Helm stops linting templates at the first that does not parse
            if let Some(e) = yaml_error(&doc) {
                r.add("ERROR", name, e);
                return;
            }
            let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&doc).unwrap_or_default();
            if v.is_null() {
                continue;
            }
            if let Some(e) = crate::lint_rules::not_an_object(&v) {
                r.add("ERROR", name, e);
                return;
            }
            let (api_version, kind, obj_name) = crate::lint_rules::header(&v);
            if let Some(w) = crate::lint_rules::metadata_name(kind, obj_name) {
                r.add("WARNING", name, w);
            }
            if let Some(w) = crate::lint_rules::deprecation(api_version, kind, major, minor) {
                r.add("WARNING", name, w);
            }
            if ["Deployment", "ReplicaSet", "DaemonSet", "StatefulSet"].contains(&kind)
                && !content.contains("matchLabels")
                && !content.contains("matchExpressions")
            {
                let obj = v
                    .get("metadata")
                    .and_then(|m| m.get("name"))
                    .and_then(serde_yaml_ng::Value::as_str)
                    .unwrap_or_default();
                r.add(
                    "ERROR",
                    name,
                    format!("a {kind} must contain matchLabels or matchExpressions, and {obj:?} does not"),
                );
            }
            if kind == "List"
                && let Some(e) = crate::lint_rules::list_annotations(content)
            {
                r.add("ERROR", name, e);
            }
        }
    }
}

/// k8s.io's `YAMLReader`: documents separated by `---` lines.
pub(crate) fn documents(content: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in content.split_inclusive('\n') {
        let rest = line.get(3..).unwrap_or_default().trim();
        // only spaces or a comment may follow the separator (`---# note`)
        if line.starts_with("---") && (rest.is_empty() || rest.starts_with('#')) {
            docs.push(String::new());
        } else if let Some(d) = docs.last_mut() {
            d.push_str(line);
        }
    }
    docs.retain(|d| !d.trim().is_empty());
    docs
}

/// Helm's type check of Chart.yaml's `version` and `appVersion`: Go's
/// `%T` of what YAML made of them when that is not a string.
fn type_error(raw: &serde_yaml_ng::Value, key: &str) -> Option<String> {
    let v = raw.get(key)?;
    let t = match v {
        serde_yaml_ng::Value::String(_)
        | serde_yaml_ng::Value::Null
        | serde_yaml_ng::Value::Tagged(_) => return None,
        // sigs.k8s.io/yaml goes through JSON: every number is a float64
        serde_yaml_ng::Value::Number(_) => "float64",
        serde_yaml_ng::Value::Bool(_) => "bool",
        serde_yaml_ng::Value::Sequence(_) => "[]interface {}",
        serde_yaml_ng::Value::Mapping(_) => "map[string]interface {}",
    };
    Some(format!(
        "{key} should be of type string but it's of type {t}"
    ))
}

/// A load error as Helm's loader words it: without keel's file prefix.
pub(crate) fn bare(e: &ChartError) -> String {
    match e {
        ChartError::ChartYaml { msg, .. }
        | ChartError::Values { msg, .. }
        | ChartError::Archive { msg, .. } => msg.clone(),
        e => e.to_string(),
    }
}

/// Helm's dependencies rule: the chart must load as a whole, then its
/// subcharts and Chart.yaml's list must agree.
fn dependencies(dir: &Path, r: &mut LintReport) {
    match crate::load(dir) {
        Err(e) => r.add("ERROR", "", format!("unable to load chart\n\t{}", bare(&e))),
        Ok(c) => crate::lint_rules::dependencies(dir, &c, r),
    }
}

/// Lints a chart directory like `helm lint` (values from `user`, objects in
/// `namespace`, APIs checked against `kube_version`, default Helm's).
#[must_use]
pub fn lint(path: &Path, user: &Table, namespace: &str, kube_version: Option<&str>) -> LintReport {
    let mut r = LintReport::default();
    if !chartfile(path, &mut r) {
        return r;
    }
    values_file(path, &mut r);
    templates(path, user, namespace, kube_version, &mut r);
    dependencies(path, &mut r);
    crate::lint_rules::crds(path, &mut r);
    r
}
