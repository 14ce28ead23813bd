//! Release records as Helm 3 and 4 store them, so that `keel chart` and the
//! real `helm` read and write each other's history: a Secret
//! `sh.helm.release.v1.NAME.vREV` of type `helm.sh/release.v1`, labelled
//! `name`, `owner=helm`, `status`, `version` (and `createdAt`/`modifiedAt`),
//! whose `release` key holds base64(gzip(release JSON)) with Helm's field
//! names (`pkg/release/v1`). Unknown chart fields survive a round trip because
//! the chart is kept as JSON.

use std::io::{Read as _, Write as _};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as J};

use crate::chart::{Chart, ChartFile};
use crate::render::{Manifest, Rendered};

/// The Secret type Helm gives release records.
pub const SECRET_TYPE: &str = "helm.sh/release.v1";

/// Release states, spelled as Helm spells them.
pub mod status {
    pub const UNKNOWN: &str = "unknown";
    pub const DEPLOYED: &str = "deployed";
    pub const UNINSTALLED: &str = "uninstalled";
    pub const SUPERSEDED: &str = "superseded";
    pub const FAILED: &str = "failed";
    pub const UNINSTALLING: &str = "uninstalling";
    pub const PENDING_INSTALL: &str = "pending-install";
    pub const PENDING_UPGRADE: &str = "pending-upgrade";
    pub const PENDING_ROLLBACK: &str = "pending-rollback";
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// `release.Info`. Times are RFC 3339 with nanoseconds, as Go marshals `time.Time`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Info {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "time_field"
    )]
    pub first_deployed: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "time_field"
    )]
    pub last_deployed: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "time_field"
    )]
    pub deleted: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub notes: String,
    /// The live objects by `version/Kind`: only `status` fills it, never storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Map<String, J>>,
}

/// Helm reads `""` as the zero time; so does keel.
fn time_field<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v: Option<String> = Option::deserialize(d)?;
    Ok(v.filter(|s| !s.is_empty()))
}

/// `release.HookExecution`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HookExecution {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "time_field"
    )]
    pub started_at: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "time_field"
    )]
    pub completed_at: Option<String>,
    #[serde(default)]
    pub phase: String,
}

/// `release.Hook`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Hook {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub manifest: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    #[serde(default)]
    pub last_run: HookExecution,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub weight: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delete_policies: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_log_policies: Vec<String>,
}

/// `release.Release` (v1), field for field.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Release {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default)]
    pub info: Info,
    #[serde(default, skip_serializing_if = "J::is_null")]
    pub chart: J,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub config: Map<String, J>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub manifest: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<Hook>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub version: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// `ssa` or `csa`; empty (Helm 3) means client-side apply.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub apply_method: String,
}

/// Why a stored record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("release data is not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("release data does not gunzip: {0}")]
    Gzip(#[from] std::io::Error),
    #[error("release JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl Release {
    /// The record's Secret name: `sh.helm.release.v1.NAME.vREV`.
    #[must_use]
    pub fn key(&self) -> String {
        key(&self.name, self.version)
    }

    /// `base64(gzip(json))`, gzip at best compression as Helm writes it.
    #[must_use]
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        // writes into a Vec cannot fail
        let _ = gz.write_all(&json);
        let bytes = gz.finish().unwrap_or_default();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// Reads what [`Release::encode`] or Helm wrote (plain JSON too, as
    /// Helm accepts records from before compression).
    pub fn decode(data: &str) -> Result<Release, DecodeError> {
        let raw = base64::engine::general_purpose::STANDARD.decode(data.trim())?;
        let json = if raw.starts_with(&[0x1f, 0x8b, 0x08]) {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(raw.as_slice()).read_to_end(&mut out)?;
            out
        } else {
            raw
        };
        Ok(serde_json::from_slice(&json)?)
    }

    /// The Secret that stores this record in the release namespace. `stamp`
    /// is the label Helm adds: `("createdAt", unix)` on create,
    /// `("modifiedAt", unix)` on update.
    #[must_use]
    pub fn secret(&self, stamp: (&str, i64)) -> J {
        let mut labels = Map::new();
        labels.insert(stamp.0.to_string(), J::String(stamp.1.to_string()));
        labels.insert("name".into(), J::String(self.name.clone()));
        labels.insert("owner".into(), J::String("helm".into()));
        labels.insert("status".into(), J::String(self.info.status.clone()));
        labels.insert("version".into(), J::String(self.version.to_string()));
        // The API server stores `data` base64-encoded once more: Helm's
        // driver puts the already base64 text into a []byte field.
        let data = base64::engine::general_purpose::STANDARD.encode(self.encode());
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": self.key(), "namespace": self.namespace, "labels": labels},
            "type": SECRET_TYPE,
            "data": {"release": data},
        })
    }

    /// Reads a record from a Secret as the API server returns it.
    pub fn from_secret(secret: &J) -> Result<Release, DecodeError> {
        let outer = secret["data"]["release"].as_str().unwrap_or_default();
        let inner = base64::engine::general_purpose::STANDARD.decode(outer)?;
        Release::decode(&String::from_utf8_lossy(&inner))
    }

    /// `CHART-VERSION` as `helm list` prints it.
    #[must_use]
    pub fn chart_name_version(&self) -> String {
        let m = &self.chart["metadata"];
        match (m["name"].as_str(), m["version"].as_str()) {
            (Some(n), Some(v)) => format!("{n}-{v}"),
            _ => "MISSING".to_string(),
        }
    }

    /// The chart's appVersion (empty if none).
    #[must_use]
    pub fn app_version(&self) -> String {
        self.chart["metadata"]["appVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// `sh.helm.release.v1.NAME.vREV`.
#[must_use]
pub fn key(name: &str, version: i64) -> String {
    format!("sh.helm.release.v1.{name}.v{version}")
}

fn file_json(f: &ChartFile) -> J {
    serde_json::json!({
        "name": f.name,
        "data": base64::engine::general_purpose::STANDARD.encode(&f.data),
    })
}

/// The chart as Helm's `chart.Chart` marshals it: metadata, lock, templates
/// and files (base64 bytes), values and schema.
#[must_use]
pub fn chart_json(c: &Chart) -> J {
    let schema = c.schema.as_ref().map_or(J::Null, |s| {
        J::String(base64::engine::general_purpose::STANDARD.encode(s.to_string()))
    });
    serde_json::json!({
        "metadata": serde_json::to_value(&c.metadata).unwrap_or(J::Null),
        "lock": J::Null,
        "templates": c.templates.iter().map(file_json).collect::<Vec<_>>(),
        "values": c.values.to_json(),
        "schema": schema,
        "files": c.files.iter().map(file_json).collect::<Vec<_>>(),
    })
}

/// `rel.Manifest`: every non-hook document as `---\n# Source: …\n…\n`.
#[must_use]
pub fn manifest_text(r: &Rendered) -> String {
    let mut out = String::new();
    for m in &r.manifests {
        out.push_str("---\n# Source: ");
        out.push_str(&m.source);
        out.push('\n');
        out.push_str(&m.content);
        out.push('\n');
    }
    out
}

/// The `metadata.annotations` of one manifest document.
fn annotations(content: &str) -> Map<String, J> {
    serde_yaml_ng::from_str::<J>(content)
        .ok()
        .and_then(|d| d["metadata"]["annotations"].as_object().cloned())
        .unwrap_or_default()
}

fn split_list(s: Option<&J>) -> Vec<String> {
    s.and_then(J::as_str)
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// One rendered hook as Helm records it: events from `helm.sh/hook`, weight
/// from `helm.sh/hook-weight` (non-numbers are 0), delete policies from
/// `helm.sh/hook-delete-policy`, phase `Unknown` until it runs.
#[must_use]
pub fn hook_of(m: &Manifest) -> Hook {
    let a = annotations(&m.content);
    Hook {
        name: m.name.clone(),
        kind: m.kind.clone(),
        path: m.source.clone(),
        manifest: m.content.clone(),
        events: split_list(a.get("helm.sh/hook")),
        last_run: HookExecution {
            phase: String::new(),
            ..HookExecution::default()
        },
        weight: a
            .get("helm.sh/hook-weight")
            .and_then(J::as_str)
            .and_then(|w| w.trim().parse().ok())
            .unwrap_or(0),
        delete_policies: split_list(a.get("helm.sh/hook-delete-policy")),
        output_log_policies: split_list(a.get("helm.sh/hook-output-log-policy")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_keeps_helms_field_names() {
        let r = Release {
            name: "web".into(),
            info: Info {
                first_deployed: Some("2026-01-02T03:04:05.123456789Z".into()),
                last_deployed: Some("2026-01-02T03:04:05.123456789Z".into()),
                status: status::DEPLOYED.into(),
                description: "Install complete".into(),
                ..Info::default()
            },
            chart: serde_json::json!({"metadata": {"name": "web", "version": "1.0.0"}}),
            manifest: "---\n# Source: web/templates/cm.yaml\nkind: ConfigMap\n".into(),
            version: 3,
            namespace: "apps".into(),
            apply_method: "ssa".into(),
            ..Release::default()
        };
        let back = Release::decode(&r.encode()).unwrap();
        assert_eq!(back, r);
        let json: J = serde_json::to_value(&r).unwrap();
        assert_eq!(
            json["info"]["first_deployed"],
            "2026-01-02T03:04:05.123456789Z"
        );
        assert_eq!(json["apply_method"], "ssa");
        assert!(json.get("config").is_none() && json.get("hooks").is_none());
        let s = r.secret(("createdAt", 7));
        assert_eq!(s["metadata"]["name"], "sh.helm.release.v1.web.v3");
        assert_eq!(s["type"], SECRET_TYPE);
        assert_eq!(s["metadata"]["labels"]["status"], "deployed");
        assert_eq!(s["metadata"]["labels"]["version"], "3");
        assert_eq!(s["metadata"]["labels"]["owner"], "helm");
        assert_eq!(Release::from_secret(&s).unwrap(), r);
        assert_eq!(r.chart_name_version(), "web-1.0.0");
    }

    #[test]
    fn empty_times_read_as_zero_and_plain_json_is_accepted() {
        let plain = base64::engine::general_purpose::STANDARD
            .encode(r#"{"name":"a","info":{"first_deployed":"","status":"failed"},"version":1}"#);
        let r = Release::decode(&plain).unwrap();
        assert_eq!(r.info.first_deployed, None);
        assert_eq!(r.info.status, "failed");
        assert!(Release::decode("not base64!").is_err());
    }

    proptest::proptest! {
        /// Records come from the cluster: any text decodes or fails, never panics.
        #[test]
        fn decode_never_panics(text in ".{0,200}", bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = Release::decode(&text);
            let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
            let _ = Release::decode(&b64);
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            let _ = gz.write_all(&bytes);
            let _ = Release::decode(&base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap()));
            let _ = Release::from_secret(&serde_json::json!({"data": {"release": text}}));
        }
    }

    #[test]
    fn hooks_read_their_annotations() {
        let m = Manifest {
            source: "c/templates/job.yaml".into(),
            kind: "Job".into(),
            name: "migrate".into(),
            content: "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\n  annotations:\n    helm.sh/hook: pre-install, pre-upgrade\n    helm.sh/hook-weight: \"-5\"\n    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded\n".into(),
            hooks: vec!["pre-install".into(), "pre-upgrade".into()],
        };
        let h = hook_of(&m);
        assert_eq!(h.events, ["pre-install", "pre-upgrade"]);
        assert_eq!(h.weight, -5);
        assert_eq!(
            h.delete_policies,
            ["before-hook-creation", "hook-succeeded"]
        );
    }
}
