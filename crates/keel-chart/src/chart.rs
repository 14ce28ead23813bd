//! The chart model and loading from a directory or a `.tgz` archive.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use keel_gotmpl::Value;
use serde::{Deserialize, Serialize};

use crate::ChartError;
use crate::glob::Ignore;

/// Chart.yaml.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub home: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub maintainers: Vec<Maintainer>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub icon: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub condition: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tags: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub app_version: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deprecated: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kube_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<Dependency>,
    #[serde(default, rename = "type", skip_serializing_if = "String::is_empty")]
    pub chart_type: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Maintainer {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub email: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
}

#[allow(clippy::ref_option, clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn not_true(b: &Option<bool>) -> bool {
    *b != Some(true)
}

/// A `dependencies` entry of Chart.yaml (or requirements.yaml for v1).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Dependency {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// Always marshalled, as Helm's `json:"repository"` (no omitempty).
    #[serde(default)]
    pub repository: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub condition: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Helm's `bool` with omitempty: only `true` is marshalled.
    #[serde(default, skip_serializing_if = "not_true")]
    pub enabled: Option<bool>,
    #[serde(
        default,
        rename = "import-values",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub import_values: Vec<serde_yaml_ng::Value>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub alias: String,
}

/// Chart.yaml as Helm reads it (sigs.k8s.io/yaml into the Metadata struct):
/// go-yaml v2 resolves the scalars, and a number that lands in a string field
/// becomes the text Go prints for it (`appVersion: 1.10` is "1.1").
pub(crate) fn parse_metadata(data: &[u8]) -> Result<Metadata, String> {
    use keel_gotmpl::goyaml::{GoYaml, float32_string};
    fn to_json(y: &GoYaml) -> serde_json::Value {
        use serde_json::Value as J;
        match y {
            GoYaml::Null => J::Null,
            GoYaml::Bool(b) => J::Bool(*b),
            GoYaml::Int(i) => J::String(i.to_string()),
            GoYaml::Uint(u) => J::String(u.to_string()),
            GoYaml::Float(f) => J::String(float32_string(*f)),
            GoYaml::Str(s) => J::String(s.clone()),
            GoYaml::Seq(items) => J::Array(items.iter().map(to_json).collect()),
            GoYaml::Map(pairs) => J::Object(
                pairs
                    .iter()
                    .map(|(k, v)| {
                        let key = match to_json(k) {
                            J::String(s) => s,
                            other => other.to_string(),
                        };
                        (key, to_json(v))
                    })
                    .collect(),
            ),
        }
    }
    let text = String::from_utf8_lossy(data);
    let y = keel_gotmpl::goyaml::parse(&text)
        .map_err(|e| format!("error converting YAML to JSON: {e}"))?;
    let j = match to_json(&y) {
        serde_json::Value::Null => serde_json::Value::Object(serde_json::Map::new()),
        j => j,
    };
    serde_json::from_value(j).map_err(|e| format!("error unmarshaling JSON: {e}"))
}

/// One file of a chart, by its path relative to the chart root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartFile {
    pub name: String,
    pub data: Vec<u8>,
}

/// A loaded chart with its (already loaded) subcharts.
#[derive(Debug, Clone)]
pub struct Chart {
    pub metadata: Metadata,
    /// values.yaml as a map (never nil).
    pub values: Value,
    /// values.schema.json, if any.
    pub schema: Option<serde_json::Value>,
    /// values.yaml as written (`helm show values` prints it verbatim).
    pub raw_values: Option<Vec<u8>>,
    pub templates: Vec<ChartFile>,
    /// Everything that is not a template, Chart.yaml, values or a subchart (`.Files`).
    pub files: Vec<ChartFile>,
    pub crds: Vec<ChartFile>,
    pub dependencies: Vec<Chart>,
    /// Full path of the chart in the chart tree (`parent/charts/child`).
    pub full_path: String,
}

impl Chart {
    pub fn name(&self) -> &str {
        &self.metadata.name
    }
    pub fn is_library(&self) -> bool {
        self.metadata.chart_type == "library"
    }
}

/// Loads a chart from a directory or a `.tgz` archive.
pub fn load(path: &Path) -> Result<Chart, ChartError> {
    if !path.exists() {
        return Err(ChartError::Missing(path.display().to_string()));
    }
    if path.is_dir() {
        let files = read_dir_files(path)?;
        return from_files(&path.display().to_string(), files);
    }
    let data = std::fs::read(path).map_err(|e| ChartError::Read {
        path: path.display().to_string(),
        source: e,
    })?;
    let files = untar(&data).map_err(|m| ChartError::Archive {
        path: path.display().to_string(),
        msg: m,
    })?;
    from_files(&path.display().to_string(), files)
}

/// Loads a chart from the bytes of a `.tgz` archive; `origin` names it in errors.
pub fn load_archive(origin: &str, data: &[u8]) -> Result<Chart, ChartError> {
    let files = untar(data).map_err(|m| ChartError::Archive {
        path: origin.to_string(),
        msg: m,
    })?;
    from_files(origin, files)
}

/// Helm's `chartutil.Expand`: writes an archive's files under
/// `dest/NAME/` (NAME from its Chart.yaml). Entry paths with `..` are
/// refused when reading, so nothing lands outside `dest`.
pub fn expand(data: &[u8], dest: &Path) -> Result<PathBuf, ChartError> {
    let files = untar(data).map_err(|m| ChartError::Archive {
        path: dest.display().to_string(),
        msg: m,
    })?;
    let chart = from_files(&dest.display().to_string(), files.clone())?;
    let root = dest.join(&chart.metadata.name);
    for f in files {
        let p = root.join(&f.name);
        let write = || -> std::io::Result<()> {
            if let Some(d) = p.parent() {
                std::fs::create_dir_all(d)?;
            }
            std::fs::write(&p, &f.data)
        };
        write().map_err(|e| ChartError::Read {
            path: p.display().to_string(),
            source: e,
        })?;
    }
    Ok(root)
}

/// Every file of a chart directory that `.helmignore` keeps, sorted by path.
pub(crate) fn read_dir_files(root: &Path) -> Result<Vec<ChartFile>, ChartError> {
    let ignore = match std::fs::read_to_string(root.join(".helmignore")) {
        Ok(t) => Ignore::parse(&t),
        Err(_) => Ignore::parse(""),
    };
    let mut out = Vec::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let dir = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(&rel)
        };
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| ChartError::Read {
                path: dir.display().to_string(),
                source: e,
            })?
            .filter_map(Result::ok)
            .collect();
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let relp = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            if ignore.ignored(&relp, is_dir) {
                continue;
            }
            if is_dir {
                stack.push(relp);
            } else {
                let data = std::fs::read(e.path()).map_err(|err| ChartError::Read {
                    path: e.path().display().to_string(),
                    source: err,
                })?;
                out.push(ChartFile { name: relp, data });
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Reads a chart archive: every entry under one top directory.
fn untar(data: &[u8]) -> Result<Vec<ChartFile>, String> {
    let gz = flate2::read::GzDecoder::new(data);
    let mut ar = tar::Archive::new(gz);
    let mut out = Vec::new();
    for e in ar.entries().map_err(|e| e.to_string())? {
        let mut e = e.map_err(|e| e.to_string())?;
        if !e.header().entry_type().is_file() {
            continue;
        }
        let p = e
            .path()
            .map_err(|e| e.to_string())?
            .to_string_lossy()
            .replace('\\', "/");
        if p.split('/').any(|s| s == "..") {
            return Err(format!(
                "chart illegally contains content outside the base directory: {p:?}"
            ));
        }
        // strip the chart's top directory
        let Some((_, rel)) = p.split_once('/') else {
            continue;
        };
        let mut buf = Vec::new();
        e.read_to_end(&mut buf).map_err(|e| e.to_string())?;
        out.push(ChartFile {
            name: rel.to_string(),
            data: buf,
        });
    }
    if out.is_empty() {
        return Err("no files in chart archive".into());
    }
    // .helmignore applies to archives too
    let ignore = out.iter().find(|f| f.name == ".helmignore").map_or_else(
        || Ignore::parse(""),
        |f| Ignore::parse(&String::from_utf8_lossy(&f.data)),
    );
    out.retain(|f| !ignored_with_parents(&ignore, &f.name));
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn ignored_with_parents(ig: &Ignore, path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    for i in 1..parts.len() {
        if ig.ignored(&parts[..i].join("/"), true) {
            return true;
        }
    }
    ig.ignored(path, false)
}

/// Builds a chart from its files (paths relative to the chart root).
pub fn from_files(origin: &str, files: Vec<ChartFile>) -> Result<Chart, ChartError> {
    let chart_yaml = files
        .iter()
        .find(|f| f.name == "Chart.yaml")
        .ok_or_else(|| ChartError::ChartYaml {
            path: origin.to_string(),
            msg: "Chart.yaml file is missing".into(),
        })?;
    let mut metadata = parse_metadata(&chart_yaml.data).map_err(|msg| ChartError::ChartYaml {
        path: format!("{origin}/Chart.yaml"),
        msg,
    })?;
    if metadata.api_version.is_empty() {
        // Helm treats a missing apiVersion as v1
        metadata.api_version = "v1".into();
    }
    validate_metadata(&metadata).map_err(|msg| ChartError::ChartYaml {
        path: format!("{origin}/Chart.yaml"),
        msg,
    })?;
    let mut values = Value::map(BTreeMap::new());
    let mut schema = None;
    let mut raw_values = None;
    let mut templates = Vec::new();
    let mut other = Vec::new();
    let mut crds = Vec::new();
    let mut sub_files: BTreeMap<String, Vec<ChartFile>> = BTreeMap::new();
    let mut sub_archives: Vec<ChartFile> = Vec::new();
    for f in files {
        let n = f.name.clone();
        if n == "Chart.yaml" {
            continue;
        }
        if n == "values.yaml" {
            raw_values = Some(f.data.clone());
            let text = String::from_utf8_lossy(&f.data);
            values = match keel_gotmpl::goyaml::load_values(&text) {
                Ok(m) => Value::map(m),
                Err(e) => {
                    return Err(ChartError::Values {
                        path: format!("{origin}/values.yaml"),
                        msg: format!("cannot load values.yaml: {e}"),
                    });
                }
            };
        } else if n == "values.schema.json" {
            schema = Some(
                serde_json::from_slice(&f.data).map_err(|e| ChartError::Values {
                    path: format!("{origin}/values.schema.json"),
                    msg: e.to_string(),
                })?,
            );
        } else if n == "requirements.yaml" && metadata.api_version == "v1" {
            #[derive(Deserialize)]
            struct Req {
                #[serde(default)]
                dependencies: Vec<Dependency>,
            }
            let r: Req = serde_yaml_ng::from_slice(&f.data).map_err(|e| ChartError::ChartYaml {
                path: format!("{origin}/requirements.yaml"),
                msg: e.to_string(),
            })?;
            metadata.dependencies = r.dependencies;
        } else if n == "requirements.lock" || n == "Chart.lock" {
            // lock files are chart metadata, not part of .Files (Helm keeps them in c.Lock)
        } else if n.starts_with("templates/") {
            templates.push(f);
        } else if let Some(rest) = n.strip_prefix("charts/") {
            match rest.split_once('/') {
                Some((sub, inner)) => {
                    sub_files
                        .entry(sub.to_string())
                        .or_default()
                        .push(ChartFile {
                            name: inner.to_string(),
                            data: f.data,
                        });
                }
                None if is_archive(rest) => {
                    sub_archives.push(f);
                }
                None => other.push(f),
            }
        } else if n.starts_with("crds/") {
            crds.push(f.clone());
            other.push(f);
        } else {
            other.push(f);
        }
    }
    let mut dependencies = Vec::new();
    for (sub, fs) in sub_files {
        dependencies.push(from_files(&format!("{origin}/charts/{sub}"), fs)?);
    }
    for a in sub_archives {
        let fs = untar(&a.data).map_err(|m| ChartError::Archive {
            path: format!("{origin}/{}", a.name),
            msg: m,
        })?;
        dependencies.push(from_files(&format!("{origin}/{}", a.name), fs)?);
    }
    let full_path = metadata.name.clone();
    let mut c = Chart {
        metadata,
        values,
        schema,
        raw_values,
        templates,
        files: other,
        crds,
        dependencies,
        full_path,
    };
    set_full_paths(&mut c, None);
    Ok(c)
}

pub(crate) fn set_full_paths(c: &mut Chart, parent: Option<&str>) {
    c.full_path = match parent {
        None => c.metadata.name.clone(),
        Some(p) => format!("{p}/charts/{}", c.metadata.name),
    };
    let fp = c.full_path.clone();
    for d in &mut c.dependencies {
        set_full_paths(d, Some(&fp));
    }
}

fn validate_metadata(m: &Metadata) -> Result<(), String> {
    if m.name.is_empty() {
        return Err("validation: chart.metadata.name is required".into());
    }
    if m.name.contains('/') || m.name.contains('\\') {
        return Err(format!(
            "validation: chart.metadata.name {:?} is invalid",
            m.name
        ));
    }
    if m.version.is_empty() {
        return Err("validation: chart.metadata.version is required".into());
    }
    if !is_semver(&m.version) {
        return Err(format!(
            "validation: chart.metadata.version {:?} is invalid",
            m.version
        ));
    }
    if m.api_version != "v1" && m.api_version != "v2" {
        return Err(format!(
            "validation: chart.metadata.apiVersion {:?} is invalid",
            m.api_version
        ));
    }
    if !m.chart_type.is_empty() && m.chart_type != "application" && m.chart_type != "library" {
        return Err("validation: chart.metadata.type must be application or library".into());
    }
    let mut keys: Vec<&str> = Vec::new();
    for d in &m.dependencies {
        if d.name.is_empty() {
            return Err("validation: dependencies must have a name".into());
        }
        if !d.alias.is_empty()
            && !d
                .alias
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(format!(
                "validation: dependency {:?} has disallowed characters in the alias",
                d.name
            ));
        }
        let key = if d.alias.is_empty() {
            &d.name
        } else {
            &d.alias
        };
        if keys.contains(&key.as_str()) {
            return Err(format!(
                "validation: more than one dependency with name or alias {key:?}"
            ));
        }
        keys.push(key);
    }
    Ok(())
}

fn is_semver(v: &str) -> bool {
    let v = v.strip_prefix('v').unwrap_or(v);
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    !parts.is_empty()
        && parts.len() <= 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn is_archive(name: &str) -> bool {
    let p = Path::new(name);
    p.extension().is_some_and(|e| e.eq_ignore_ascii_case("tgz"))
        || name
            .to_ascii_lowercase()
            .rsplit_once(".tar.")
            .is_some_and(|(_, e)| e == "gz")
}
