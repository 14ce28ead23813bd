//! An image as stored: manifest and config (through `oci-spec`), with the raw
//! bytes kept so digests never change by re-serialization.

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType};

use crate::blobs::BlobStore;
use crate::digest::Digest;
use crate::error::{OciError, Result};
use crate::layer::Compression;

pub const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MT_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MT_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MT_OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MT_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const MT_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const MT_DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub const MT_DOCKER_FOREIGN: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// Manifest media types keel can store and run.
pub const MANIFEST_TYPES: &[&str] = &[MT_OCI_MANIFEST, MT_DOCKER_MANIFEST];
/// Index media types (multi-platform) keel can resolve.
pub const INDEX_TYPES: &[&str] = &[MT_OCI_INDEX, MT_DOCKER_LIST];

/// The compression a layer media type declares, or None for a type keel cannot unpack.
pub fn layer_compression(media_type: &str) -> Option<Compression> {
    match media_type {
        MT_OCI_LAYER
        | MT_DOCKER_LAYER
        | "application/vnd.oci.image.layer.nondistributable.v1.tar" => Some(Compression::None),
        MT_OCI_LAYER_GZIP
        | MT_DOCKER_LAYER_GZIP
        | MT_DOCKER_FOREIGN
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip" => Some(Compression::Gzip),
        MT_OCI_LAYER_ZSTD | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => {
            Some(Compression::Zstd)
        }
        _ => None,
    }
}

/// The OCI layer media type for a compression.
pub fn layer_media_type(c: Compression) -> &'static str {
    match c {
        Compression::None => MT_OCI_LAYER,
        Compression::Gzip => MT_OCI_LAYER_GZIP,
        Compression::Zstd => MT_OCI_LAYER_ZSTD,
    }
}

/// Converts an oci-spec digest into ours (both validate; ours is sha256 only).
pub fn digest_of(d: &Descriptor) -> Result<Digest> {
    Digest::parse(d.digest().as_ref())
}

/// `mediaType` of a descriptor as a string.
pub fn media_type_str(m: &MediaType) -> String {
    m.to_string()
}

/// Which kind of JSON document a manifest blob is, judged by its `mediaType`
/// field or, when absent, by its shape (`manifests` vs `layers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    Image,
    Index,
}

pub fn manifest_kind(bytes: &[u8], declared: Option<&str>, what: &str) -> Result<ManifestKind> {
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| OciError::Malformed {
        what: what.to_string(),
        reason: e.to_string(),
    })?;
    let mt = v
        .get("mediaType")
        .and_then(|m| m.as_str())
        .map(str::to_string)
        .or_else(|| declared.map(str::to_string));
    match mt.as_deref() {
        Some(m) if MANIFEST_TYPES.contains(&m) => Ok(ManifestKind::Image),
        Some(m) if INDEX_TYPES.contains(&m) => Ok(ManifestKind::Index),
        Some(m) => Err(OciError::UnsupportedMediaType {
            what: what.to_string(),
            media_type: m.to_string(),
        }),
        None if v.get("manifests").is_some() => Ok(ManifestKind::Index),
        None if v.get("layers").is_some() => Ok(ManifestKind::Image),
        None => Err(OciError::Malformed {
            what: what.to_string(),
            reason: "neither an image manifest nor an index".into(),
        }),
    }
}

pub fn parse_manifest(bytes: &[u8], what: &str) -> Result<ImageManifest> {
    let m: ImageManifest = serde_json::from_slice(bytes).map_err(|e| OciError::Malformed {
        what: what.to_string(),
        reason: e.to_string(),
    })?;
    if m.schema_version() != 2 {
        return Err(OciError::Malformed {
            what: what.to_string(),
            reason: format!("schemaVersion {} (only 2 is supported)", m.schema_version()),
        });
    }
    for l in m.layers() {
        let mt = l.media_type().to_string();
        if layer_compression(&mt).is_none() {
            return Err(OciError::UnsupportedMediaType {
                what: format!("layer {}", l.digest()),
                media_type: mt,
            });
        }
        digest_of(l)?;
    }
    digest_of(m.config())?;
    Ok(m)
}

pub fn parse_index(bytes: &[u8], what: &str) -> Result<ImageIndex> {
    serde_json::from_slice(bytes).map_err(|e| OciError::Malformed {
        what: what.to_string(),
        reason: e.to_string(),
    })
}

pub fn parse_config(bytes: &[u8], what: &str) -> Result<ImageConfiguration> {
    serde_json::from_slice(bytes).map_err(|e| OciError::Malformed {
        what: what.to_string(),
        reason: e.to_string(),
    })
}

/// A config's `rootfs.diff_ids` as digests.
pub fn config_diff_ids(config: &ImageConfiguration) -> Result<Vec<Digest>> {
    config
        .rootfs()
        .diff_ids()
        .iter()
        .map(|s| Digest::parse(s))
        .collect()
}

/// A stored image.
#[derive(Debug, Clone)]
pub struct Image {
    pub manifest_digest: Digest,
    pub manifest_bytes: Vec<u8>,
    pub manifest: ImageManifest,
    pub config_digest: Digest,
    pub config_bytes: Vec<u8>,
    pub config: ImageConfiguration,
}

impl Image {
    /// Reads and checks an image from the blob store.
    pub fn load(blobs: &BlobStore, manifest_digest: &Digest) -> Result<Image> {
        let manifest_bytes = blobs.read(manifest_digest)?;
        let what = format!("manifest {manifest_digest}");
        let manifest = parse_manifest(&manifest_bytes, &what)?;
        let config_digest = digest_of(manifest.config())?;
        let config_bytes = blobs.read(&config_digest)?;
        let config = parse_config(&config_bytes, &format!("config {config_digest}"))?;
        let img = Image {
            manifest_digest: manifest_digest.clone(),
            manifest_bytes,
            manifest,
            config_digest,
            config_bytes,
            config,
        };
        img.check()?;
        Ok(img)
    }

    /// The manifest and config must agree on the number of layers.
    pub fn check(&self) -> Result<()> {
        let n = self.manifest.layers().len();
        let d = self.config.rootfs().diff_ids().len();
        if n != d {
            return Err(OciError::Malformed {
                what: format!("image {}", self.config_digest),
                reason: format!("manifest has {n} layers but config has {d} diff_ids"),
            });
        }
        Ok(())
    }

    /// The image ID, as Docker defines it: the config digest.
    pub fn id(&self) -> &Digest {
        &self.config_digest
    }

    /// Layer blob digests in order (base first).
    pub fn layer_digests(&self) -> Result<Vec<Digest>> {
        self.manifest.layers().iter().map(digest_of).collect()
    }

    /// Uncompressed layer digests (config `rootfs.diff_ids`).
    pub fn diff_ids(&self) -> Result<Vec<Digest>> {
        config_diff_ids(&self.config)
    }

    /// Every blob the image needs: manifest, config and layers.
    pub fn blobs(&self) -> Result<Vec<Digest>> {
        let mut v = vec![self.manifest_digest.clone(), self.config_digest.clone()];
        v.extend(self.layer_digests()?);
        Ok(v)
    }

    /// Bytes of the layers and config as stored.
    pub fn size(&self) -> u64 {
        self.manifest
            .layers()
            .iter()
            .map(Descriptor::size)
            .sum::<u64>()
            + self.config_bytes.len() as u64
    }

    /// The config's `created` timestamp, if it has a valid one.
    pub fn created(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.config
            .created()
            .as_deref()
            .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
            .map(|c| c.with_timezone(&chrono::Utc))
    }

    /// The config as JSON, with every field the producer wrote (oci-spec drops
    /// Docker-only fields such as Healthcheck; inspect must not).
    pub fn config_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.config_bytes).unwrap_or(serde_json::Value::Null)
    }
}
