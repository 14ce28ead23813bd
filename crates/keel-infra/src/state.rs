//! Terraform's state format v4: the JSON model, attribute encoding against a
//! schema (dynamic attributes as `{"value", "type"}`), atomic writes with a
//! backup, and the per-resource journal that makes a killed apply keep what
//! it created.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use keel_hcl::render::{from_json_typed, to_json};
use keel_hcl::{Kind, Type, Value};
use serde::{Deserialize, Serialize};

/// The terraform version keel writes: the oldest 1.11 so that every terraform
/// 1.11.x reads keel's state.
pub const TERRAFORM_VERSION: &str = "1.11.0";

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_false(b: &bool) -> bool {
    !*b
}

/// A state file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StateFile {
    pub version: u32,
    pub terraform_version: String,
    pub serial: u64,
    pub lineage: String,
    #[serde(default)]
    pub outputs: BTreeMap<String, OutputState>,
    #[serde(default)]
    pub resources: Vec<ResourceState>,
    #[serde(default)]
    pub check_results: serde_json::Value,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct OutputState {
    pub value: serde_json::Value,
    #[serde(rename = "type")]
    pub ty: serde_json::Value,
    #[serde(default, skip_serializing_if = "is_false")]
    pub sensitive: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ResourceState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    pub mode: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub each: Option<String>,
    pub provider: String,
    pub instances: Vec<InstanceState>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct InstanceState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_key: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deposed: Option<String>,
    pub schema_version: u64,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub attributes: serde_json::Value,
    /// Terraform 0.11's flat attributes, kept as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes_flat: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub sensitive_attributes: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_schema_version: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub create_before_destroy: bool,
}

/// Errors reading or writing state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("reading state {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state {path} is not valid state JSON: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("state {path} has version {version}; keel reads version 4")]
    Version { path: PathBuf, version: u64 },
    #[error("writing state {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl StateFile {
    pub fn new() -> StateFile {
        StateFile {
            version: 4,
            terraform_version: TERRAFORM_VERSION.into(),
            serial: 0,
            lineage: uuid::Uuid::new_v4().to_string(),
            outputs: BTreeMap::new(),
            resources: Vec::new(),
            check_results: serde_json::Value::Null,
        }
    }

    /// Parses state JSON (an empty document means no state, as terraform treats it).
    pub fn parse(path: &Path, text: &str) -> Result<Option<StateFile>, StateError> {
        if text.trim().is_empty() {
            return Ok(None);
        }
        let raw: serde_json::Value =
            serde_json::from_str(text).map_err(|source| StateError::Parse {
                path: path.into(),
                source,
            })?;
        let version = raw
            .get("version")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        if version != 4 {
            return Err(StateError::Version {
                path: path.into(),
                version,
            });
        }
        let mut s: StateFile = serde_json::from_value(raw).map_err(|source| StateError::Parse {
            path: path.into(),
            source,
        })?;
        normalize_providers(&mut s);
        Ok(Some(s))
    }

    pub fn read(path: &Path) -> Result<Option<StateFile>, StateError> {
        match std::fs::read_to_string(path) {
            Ok(t) => StateFile::parse(path, &t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateError::Read {
                path: path.into(),
                source,
            }),
        }
    }

    pub fn to_json(&self) -> String {
        // Terraform's order: by module, mode, type, name.
        let mut sorted = self.clone();
        sorted.resources.sort_by(|a, b| {
            (&a.module, &a.mode, &a.ty, &a.name).cmp(&(&b.module, &b.mode, &b.ty, &b.name))
        });
        let mut s = serde_json::to_string_pretty(&sorted).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Writes atomically: a temporary file in the same directory, fsync, rename.
    pub fn write_atomic(&self, path: &Path) -> Result<(), StateError> {
        write_atomic(path, self.to_json().as_bytes()).map_err(|source| StateError::Write {
            path: path.into(),
            source,
        })
    }

    pub fn resource_count(&self) -> usize {
        self.resources
            .iter()
            .filter(|r| r.mode == "managed")
            .map(|r| r.instances.len())
            .sum()
    }
}

impl Default for StateFile {
    fn default() -> Self {
        Self::new()
    }
}

/// Legacy provider addresses (`provider.null`) as terraform upgrades them.
fn normalize_providers(s: &mut StateFile) {
    for r in &mut s.resources {
        if let Some(rest) = r.provider.strip_prefix("provider.") {
            let (name, alias) = match rest.split_once('.') {
                Some((n, a)) => (n.trim(), Some(a.trim())),
                None => (rest.trim(), None),
            };
            let addr = if name == "terraform" {
                "terraform.io/builtin/terraform".to_string()
            } else {
                format!("registry.terraform.io/-/{name}")
            };
            r.provider = match alias {
                Some(a) => format!("provider[\"{addr}\"].{a}"),
                None => format!("provider[\"{addr}\"]"),
            };
        }
    }
}

/// Writes `bytes` to `path` atomically and durably.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// An attribute value as state stores it: dynamic-typed attributes carry their type.
pub fn encode_attr(v: &Value, ty: &Type) -> serde_json::Value {
    if v.is_null() {
        return serde_json::Value::Null;
    }
    match ty {
        Type::Dynamic => serde_json::json!({ "value": to_json(v), "type": v.ty().to_json() }),
        Type::Object(attrs) => {
            let m = v.as_map().cloned().unwrap_or_default();
            serde_json::Value::Object(
                attrs
                    .iter()
                    .map(|(k, t)| {
                        (
                            k.clone(),
                            m.get(k)
                                .map_or(serde_json::Value::Null, |x| encode_attr(x, t)),
                        )
                    })
                    .collect(),
            )
        }
        Type::List(e) | Type::Set(e) if **e == Type::Dynamic || matches!(**e, Type::Object(_)) => {
            serde_json::Value::Array(
                v.as_seq()
                    .unwrap_or_default()
                    .iter()
                    .map(|x| encode_attr(x, e))
                    .collect(),
            )
        }
        _ => to_json(v),
    }
}

/// Reads an attribute value stored by [`encode_attr`].
pub fn decode_attr(j: &serde_json::Value, ty: &Type) -> Result<Value, String> {
    if j.is_null() {
        return Ok(Value::null(ty.clone()));
    }
    match ty {
        Type::Dynamic => {
            let t = j
                .get("type")
                .and_then(Type::from_json)
                .ok_or("dynamic attribute without a type")?;
            from_json_typed(j.get("value").unwrap_or(&serde_json::Value::Null), &t)
        }
        Type::Object(attrs) => {
            let mut out = BTreeMap::new();
            for (k, t) in attrs {
                out.insert(
                    k.clone(),
                    decode_attr(j.get(k).unwrap_or(&serde_json::Value::Null), t)?,
                );
            }
            Ok(Value::object(out))
        }
        Type::List(e) | Type::Set(e) if **e == Type::Dynamic || matches!(**e, Type::Object(_)) => {
            let items = j
                .as_array()
                .ok_or("array required")?
                .iter()
                .map(|x| decode_attr(x, e))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(if matches!(ty, Type::Set(_)) {
                Value::set((**e).clone(), items)
            } else {
                Value::list((**e).clone(), items)
            })
        }
        t => from_json_typed(j, t),
    }
}

/// `sensitive_attributes` as terraform 1.11 writes them: one path per sensitive attribute.
pub fn sensitive_paths(v: &Value) -> serde_json::Value {
    let mut out = Vec::new();
    if let Kind::Object(m) = &v.kind {
        for (k, x) in m {
            if x.has_sensitive() {
                out.push(serde_json::json!([{ "type": "get_attr", "value": k }]));
            }
        }
    }
    serde_json::Value::Array(out)
}

/// Marks the attributes `sensitive_attributes` names.
pub fn apply_sensitive(v: Value, paths: &serde_json::Value) -> Value {
    let names: Vec<&str> = paths
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            p.get(0)
                .and_then(|s| s.get("value"))
                .and_then(serde_json::Value::as_str)
        })
        .collect();
    if names.is_empty() {
        return v;
    }
    let mut v = v;
    if let Kind::Object(m) = &mut v.kind {
        for n in names {
            if let Some(x) = m.get_mut(n) {
                x.sensitive = true;
            }
        }
    }
    v
}

/// The journal beside a state file: one JSON line per finished resource
/// operation, written before the next begins, replayed if the run died.
pub struct Journal {
    path: PathBuf,
    file: std::fs::File,
}

/// One journal line.
#[derive(Debug, Serialize, Deserialize)]
pub struct JournalEntry {
    /// The resource with only the instance concerned.
    pub resource: ResourceState,
    /// True when the instance was removed.
    #[serde(default)]
    pub removed: bool,
}

impl Journal {
    pub fn path_for(state: &Path) -> PathBuf {
        let name = state
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        state.with_file_name(format!(".{name}.keel-journal"))
    }

    pub fn open(state: &Path) -> std::io::Result<Journal> {
        let path = Journal::path_for(state);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        Ok(Journal { path, file })
    }

    pub fn record(&mut self, e: &JournalEntry) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(e).map_err(std::io::Error::other)?;
        line.push(b'\n');
        // One write per entry: the page cache keeps it through a kill -9.
        self.file.write_all(&line)
    }

    pub fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
    }

    /// Applies a leftover journal to `state`; returns whether there was one.
    pub fn replay(state_path: &Path, state: &mut StateFile) -> bool {
        let path = Journal::path_for(state_path);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return false;
        };
        for line in text.lines() {
            // A torn last line (killed mid-write) is skipped.
            let Ok(e) = serde_json::from_str::<JournalEntry>(line) else {
                continue;
            };
            apply_entry(state, e);
        }
        true
    }
}

/// Applies one journal entry (also used for live updates).
pub fn apply_entry(state: &mut StateFile, e: JournalEntry) {
    let r = e.resource;
    let template = ResourceState {
        instances: Vec::new(),
        ..r.clone()
    };
    let pos = state
        .resources
        .iter()
        .position(|x| x.module == r.module && x.mode == r.mode && x.ty == r.ty && x.name == r.name);
    let Some(inst) = r.instances.first().cloned() else {
        return;
    };
    let idx = if let Some(i) = pos {
        i
    } else {
        if e.removed {
            return;
        }
        state.resources.push(template);
        state.resources.len() - 1
    };
    let res = &mut state.resources[idx];
    res.provider.clone_from(&r.provider);
    if let Some(e) = r.each.clone() {
        res.each = Some(e);
    }
    res.instances
        .retain(|i| i.index_key != inst.index_key || i.deposed != inst.deposed);
    if !e.removed {
        res.instances.push(inst);
        res.instances
            .sort_by(|a, b| key_order(a.index_key.as_ref(), b.index_key.as_ref()));
    }
    if res.instances.is_empty() {
        state.resources.remove(idx);
    }
}

fn key_order(a: Option<&serde_json::Value>, b: Option<&serde_json::Value>) -> std::cmp::Ordering {
    match (a, b) {
        (Some(serde_json::Value::Number(x)), Some(serde_json::Value::Number(y))) => {
            x.as_i64().cmp(&y.as_i64())
        }
        (Some(x), Some(y)) => x.to_string().cmp(&y.to_string()),
        (x, y) => x.is_some().cmp(&y.is_some()),
    }
}
