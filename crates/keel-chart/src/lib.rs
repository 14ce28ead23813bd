//! Helm charts: loading a [`Chart`] from a directory or `.tgz` (Chart.yaml v1/v2,
//! values, values.schema.json, templates, crds, subcharts, .helmignore),
//! Helm's values coalescing ([`values`]: globals, conditions, tags,
//! import-values, `--set` syntax), rendering with `keel-gotmpl` and the
//! built-in objects ([`render`]), and the `create`/`lint`/`package` helpers.
//! Releases (install, upgrade, rollback) are not here: this crate renders and does no network I/O.

pub mod chart;
pub mod create;
pub mod deps;
mod glob;
pub mod lint;
mod lint_rules;
pub mod objects;
pub mod oci;
pub mod release;
pub mod render;
mod schema;
pub mod values;

use std::path::{Path, PathBuf};

pub use chart::{Chart, ChartFile, Metadata, expand, load, load_archive};
/// Go strings are bytes: rendered text carries non-UTF-8 bytes as described there.
pub use keel_gotmpl::go_bytes;
/// Go's `strconv.Quote`.
pub use keel_gotmpl::gofmt::quote as go_quote;
pub use lint::{LintMessage, LintReport, lint};
pub use render::{Manifest, Rendered, TemplateOptions, render, render_lint, template_text};
pub use values::{SetKind, Table};

/// Errors of chart operations; messages follow Helm's where users know them.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// Go's `os.Stat` error text, as Helm reports a chart path that is not there.
    #[error("stat {0}: no such file or directory")]
    Missing(String),
    #[error("read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    ChartYaml { path: String, msg: String },
    #[error("{path}: {msg}")]
    Values { path: String, msg: String },
    #[error("{path}: {msg}")]
    Archive { path: String, msg: String },
    /// `-f` and `--set*` problems, worded as Helm words them.
    #[error("{0}")]
    UserValues(String),
    #[error("{0}")]
    Schema(String),
    #[error("{0}")]
    Parse(String),
    #[error("{0}")]
    Render(String),
    #[error("{0}")]
    Manifest(String),
    #[error("{0}")]
    KubeVersion(String),
    #[error("{0} charts are not installable")]
    NotInstallable(String),
    #[error(
        "release name check failed: release name {0:?}: invalid release name, must match regex ^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$ and the length must not be longer than 53"
    )]
    ReleaseName(String),
    #[error("{0}")]
    ShowOnly(String),
    #[error("create chart: {0}")]
    Create(String),
    #[error("package chart: {0}")]
    Package(String),
}

/// User-supplied values: `-f` files in order, then `--set-json`, `--set`,
/// `--set-string`, `--set-file`, `--set-literal` (Helm's order).
#[derive(Debug, Clone, Default)]
pub struct ValueOptions {
    pub files: Vec<PathBuf>,
    pub json: Vec<String>,
    pub set: Vec<String>,
    pub string: Vec<String>,
    pub file: Vec<String>,
    pub literal: Vec<String>,
}

/// An I/O error as Go's `os` package words it (`open x: no such file or directory`).
pub(crate) fn go_io_error(op: &str, path: &str, e: &std::io::Error) -> String {
    let msg = match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        std::io::ErrorKind::IsADirectory => "is a directory".to_string(),
        _ => {
            let s = e.to_string();
            let s = s.split(" (os error").next().unwrap_or(&s).to_string();
            let mut c = s.chars();
            c.next()
                .map_or(s.clone(), |f| f.to_lowercase().chain(c).collect())
        }
    };
    format!("{op} {path}: {msg}")
}

/// Merges the user's values like Helm's `MergeValues`.
pub fn user_values(opts: &ValueOptions) -> Result<Table, ChartError> {
    let mut base = Table::new();
    for f in &opts.files {
        let p = f.display().to_string();
        // Go reads the bytes; a directory fails at read, as with os.ReadFile
        let text = std::fs::read(f).map_err(|e| {
            let op = if f.is_dir() { "read" } else { "open" };
            ChartError::UserValues(go_io_error(op, &p, &e))
        })?;
        let t = keel_gotmpl::goyaml::load_values(&String::from_utf8_lossy(&text))
            .map_err(|e| ChartError::UserValues(format!("failed to parse {p}: {e}")))?;
        base = values::merge_maps(&base, &t);
    }
    let no_file = |_: &str| -> Result<String, String> { Err("unexpected file".into()) };
    for s in &opts.json {
        values::parse_set(s, SetKind::Json, &mut base, &no_file)?;
    }
    for s in &opts.set {
        values::parse_set(s, SetKind::Typed, &mut base, &no_file)?;
    }
    for s in &opts.string {
        values::parse_set(s, SetKind::String, &mut base, &no_file)?;
    }
    let read = |p: &str| {
        std::fs::read(p)
            .map(|b| keel_gotmpl::go_string(&b))
            .map_err(|e| go_io_error("open", p, &e))
    };
    for s in &opts.file {
        values::parse_set(s, SetKind::File, &mut base, &read)?;
    }
    for s in &opts.literal {
        values::parse_set(s, SetKind::Literal, &mut base, &no_file)?;
    }
    Ok(base)
}

/// Packages a chart directory into `dest/NAME-VERSION.tgz`.
pub fn package(path: &Path, dest: &Path) -> Result<PathBuf, ChartError> {
    let chart = load(path)?;
    if !path.is_dir() {
        return Err(ChartError::Package(format!(
            "{} is not a chart directory",
            path.display()
        )));
    }
    let name = &chart.metadata.name;
    let out = dest.join(format!("{name}-{}.tgz", chart.metadata.version));
    // The same .helmignore-aware walk that loading uses.
    let files = chart::read_dir_files(path)?;
    let f = std::fs::File::create(&out)
        .map_err(|e| ChartError::Package(format!("create {}: {e}", out.display())))?;
    let gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
    let mut tb = tar::Builder::new(gz);
    for chart::ChartFile { name: rel, data } in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        tb.append_data(&mut h, format!("{name}/{rel}"), data.as_slice())
            .map_err(|e| ChartError::Package(e.to_string()))?;
    }
    let gz = tb
        .into_inner()
        .map_err(|e| ChartError::Package(e.to_string()))?;
    let f = gz
        .finish()
        .map_err(|e| ChartError::Package(e.to_string()))?;
    f.sync_all()
        .map_err(|e| ChartError::Package(e.to_string()))?;
    Ok(out)
}

/// The template engine's value type (values tables hold it).
pub use keel_gotmpl::Value as GoValue;

/// JSON as Helm's `sigs.k8s.io/yaml` marshals it (keys sorted, Go's quoting).
#[must_use]
pub fn json_to_yaml(j: &serde_json::Value) -> String {
    keel_gotmpl::yaml::marshal(&keel_gotmpl::Value::from_json(j, true))
}

/// Whether `version` satisfies the semver `constraint` (Masterminds' rules, as Helm).
pub fn semver_matches(constraint: &str, version: &str) -> Result<bool, String> {
    keel_gotmpl::semver_compare(constraint, version)
}
