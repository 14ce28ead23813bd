//! Charts as OCI artifacts, laid out byte for byte as Helm 4 lays them out
//! (`pkg/registry`): the config blob is Chart.yaml's metadata as Go's
//! `json.Marshal` writes it, one layer holds the archive (a second the
//! `.prov` file), and the manifest carries the `org.opencontainers.image.*`
//! annotations. The same archive pushed by `helm push` and by keel gives
//! the same manifest digest. No network I/O here: keel-oci moves the bytes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use sha2::Digest as _;

use crate::ChartError;
use crate::chart::Metadata;

pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.cncf.helm.config.v1+json";
pub const CHART_LAYER_MEDIA_TYPE: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";
pub const LEGACY_CHART_LAYER_MEDIA_TYPE: &str = "application/tar+gzip";
pub const PROV_LAYER_MEDIA_TYPE: &str = "application/vnd.cncf.helm.chart.provenance.v1.prov";
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";

/// What to send for one chart: blobs, then the manifest tagged `tag`.
#[derive(Debug, Clone)]
pub struct Packed {
    pub metadata: Metadata,
    pub config: Vec<u8>,
    /// Chart archive first, then the provenance file if any (Helm sorts layers by digest).
    pub blobs: Vec<Vec<u8>>,
    pub manifest: Vec<u8>,
    /// The version with `+` as `_` (OCI tags have no `+`).
    pub tag: String,
}

#[derive(Serialize)]
struct Descriptor<'a> {
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    digest: String,
    size: usize,
}

#[derive(Serialize)]
struct Manifest<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    config: Descriptor<'a>,
    layers: Vec<Descriptor<'a>>,
    annotations: BTreeMap<String, String>,
}

/// `sha256:HEX` of bytes.
#[must_use]
pub fn digest(b: &[u8]) -> String {
    let d = sha2::Sha256::digest(b);
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for x in d {
        let _ = write!(s, "{x:02x}");
    }
    s
}

/// Go's `json.Marshal`: serde's compact JSON with `<`, `>`, `&`, U+2028 and
/// U+2029 escaped as Go escapes them (they only occur inside strings).
pub fn go_json<T: Serialize>(v: &T) -> Vec<u8> {
    let s = serde_json::to_string(v).unwrap_or_default();
    s.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
        .into_bytes()
}

/// Helm's `generateOCIAnnotations`: the chart's own annotations, then
/// description, title, version, url, created, source and authors (empty
/// ones left out), title and version never taken from the chart's.
fn annotations(m: &Metadata, created: &str) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    let mut add = |k: &str, v: &str| {
        if !v.trim().is_empty() {
            a.insert(format!("org.opencontainers.image.{k}"), v.to_string());
        }
    };
    add("description", &m.description);
    add("title", &m.name);
    add("version", &m.version);
    add("url", &m.home);
    add("created", created);
    if let Some(s) = m.sources.first() {
        add("source", s);
    }
    if !m.maintainers.is_empty() {
        let authors: Vec<String> = m
            .maintainers
            .iter()
            .map(|x| {
                let mut s = x.name.clone();
                if !x.email.is_empty() {
                    let _ = write!(s, " ({})", x.email);
                }
                s
            })
            .collect();
        add("authors", &authors.join(", "));
    }
    for (k, v) in &m.annotations {
        if k != "org.opencontainers.image.version" && k != "org.opencontainers.image.title" {
            a.insert(k.clone(), v.clone());
        }
    }
    a
}

/// Lays out `archive` (a chart `.tgz`) and its provenance for a push.
/// `created` is the archive's modification time in RFC 3339, as Helm takes it.
pub fn pack(archive: &[u8], prov: Option<&[u8]>, created: &str) -> Result<Packed, ChartError> {
    let chart = crate::chart::load_archive("chart archive", archive)?;
    let metadata = chart.metadata;
    let config = go_json(&metadata);
    let mut layers = vec![(CHART_LAYER_MEDIA_TYPE, archive.to_vec())];
    if let Some(p) = prov {
        layers.push((PROV_LAYER_MEDIA_TYPE, p.to_vec()));
    }
    // Helm sorts the layers by digest for determinism
    layers.sort_by_key(|(_, b)| digest(b));
    let manifest = Manifest {
        schema_version: 2,
        config: Descriptor {
            media_type: CONFIG_MEDIA_TYPE,
            digest: digest(&config),
            size: config.len(),
        },
        layers: layers
            .iter()
            .map(|(mt, b)| Descriptor {
                media_type: mt,
                digest: digest(b),
                size: b.len(),
            })
            .collect(),
        annotations: annotations(&metadata, created),
    };
    let manifest = go_json(&manifest);
    let mut blobs = vec![config.clone()];
    blobs.extend(layers.into_iter().map(|(_, b)| b));
    Ok(Packed {
        tag: metadata.version.replace('+', "_"),
        metadata,
        config,
        blobs,
        manifest,
    })
}

/// The chart archive among a pulled artifact's layers (`(media type, bytes)`),
/// with Helm's errors when the layout is not a chart's.
pub fn chart_layer(
    config_media_type: &str,
    layers: &[(String, Vec<u8>)],
) -> Result<Vec<u8>, ChartError> {
    if config_media_type != CONFIG_MEDIA_TYPE {
        return Err(ChartError::Archive {
            path: "oci manifest".into(),
            msg: format!("could not load config with mediatype {CONFIG_MEDIA_TYPE}"),
        });
    }
    layers
        .iter()
        .find(|(mt, _)| mt == CHART_LAYER_MEDIA_TYPE || mt == LEGACY_CHART_LAYER_MEDIA_TYPE)
        .map(|(_, b)| b.clone())
        .ok_or_else(|| ChartError::Archive {
            path: "oci manifest".into(),
            msg: format!(
                "manifest does not contain a layer with mediatype {CHART_LAYER_MEDIA_TYPE}"
            ),
        })
}
