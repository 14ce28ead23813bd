//! OCI artifacts that are not container images (Helm charts): blobs and a
//! manifest the caller built byte for byte, pushed and pulled over the same
//! client, auth and plain-HTTP rules as images ([`crate::registry`]). Nothing
//! here touches the image store: charts live in files, not in keel's root.

use oci_client::RegistryOperation;

use crate::digest::Digest;
use crate::error::{OciError, RegistryError, Result};
use crate::reference::Reference;
use crate::registry::{RegistryOptions, auth_for, client_for, oci_ref, registry_err};

/// A pulled artifact: its manifest as served, the config blob and the layers.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub manifest: Vec<u8>,
    pub digest: Digest,
    pub config_media_type: String,
    pub config: Vec<u8>,
    /// `(media type, bytes)` in manifest order.
    pub layers: Vec<(String, Vec<u8>)>,
}

/// A client authenticated for `op` on `target`'s repository.
async fn connect(
    target: &Reference,
    opts: &RegistryOptions,
    op: RegistryOperation,
) -> Result<(
    oci_client::Client,
    oci_client::secrets::RegistryAuth,
    oci_client::Reference,
)> {
    let client = client_for(target, opts);
    let auth = auth_for(target, opts);
    let oref = oci_ref(target);
    client
        .auth(&oref, &auth, op)
        .await
        .map_err(|e| registry_err(target, e))?;
    Ok((client, auth, oref))
}

/// Uploads `blobs` (those the registry lacks), then `manifest` under
/// `target`'s tag with `media_type`. Returns the manifest's digest.
pub async fn push(
    target: &Reference,
    blobs: &[&[u8]],
    manifest: &[u8],
    media_type: &str,
    opts: &RegistryOptions,
) -> Result<Digest> {
    let (client, _, oref) = connect(target, opts, RegistryOperation::Push).await?;
    for b in blobs {
        let d = Digest::of(b);
        if client
            .blob_exists(&oref, d.as_str())
            .await
            .map_err(|e| registry_err(target, e))?
        {
            continue;
        }
        client
            .push_blob(&oref, b.to_vec(), d.as_str())
            .await
            .map_err(|e| registry_err(target, e))?;
    }
    let ct = media_type
        .parse()
        .map_err(|_| registry_err(target, RegistryError::BadMediaType(media_type.to_string())))?;
    client
        .push_manifest_raw(&oref, manifest.to_vec(), ct)
        .await
        .map_err(|e| registry_err(target, e))?;
    Ok(Digest::of(manifest))
}

/// Fetches the manifest `target` names (accepting `manifest_types`), then
/// its config and every layer whose media type is in `layer_types`; a layer
/// of another type is an error naming it. Blobs are checked against their digests.
pub async fn pull(
    target: &Reference,
    manifest_types: &[&str],
    layer_types: &[&str],
    opts: &RegistryOptions,
) -> Result<Artifact> {
    let (client, auth, oref) = connect(target, opts, RegistryOperation::Pull).await?;
    let (bytes, digest) = client
        .pull_manifest_raw(&oref, &auth, manifest_types)
        .await
        .map_err(|e| registry_err(target, e))?;
    let digest = Digest::parse(&digest)?;
    let malformed = |reason: &str| OciError::Malformed {
        what: format!("manifest of {target}"),
        reason: reason.to_string(),
    };
    let m: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| malformed(&e.to_string()))?;
    let desc = |v: &serde_json::Value| -> Result<(String, Digest)> {
        let mt = v["mediaType"].as_str().unwrap_or_default().to_string();
        let d = Digest::parse(v["digest"].as_str().ok_or_else(|| malformed("no digest"))?)?;
        Ok((mt, d))
    };
    let (config_media_type, config_digest) = desc(&m["config"])?;
    let config = fetch(&client, &oref, target, &config_digest).await?;
    let mut layers = Vec::new();
    for l in m["layers"].as_array().into_iter().flatten() {
        let (mt, d) = desc(l)?;
        if !layer_types.contains(&mt.as_str()) {
            return Err(OciError::UnsupportedMediaType {
                media_type: mt,
                what: format!("a layer of {target}"),
            });
        }
        let data = fetch(&client, &oref, target, &d).await?;
        layers.push((mt, data));
    }
    Ok(Artifact {
        manifest: bytes.to_vec(),
        digest,
        config_media_type,
        config,
        layers,
    })
}

/// One blob, checked against its digest.
async fn fetch(
    client: &oci_client::Client,
    oref: &oci_client::Reference,
    target: &Reference,
    d: &Digest,
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    client
        .pull_blob(oref, d.as_str(), &mut out)
        .await
        .map_err(|e| registry_err(target, e))?;
    let actual = Digest::of(&out);
    if actual != *d {
        return Err(OciError::DigestMismatch {
            what: format!("blob of {target}"),
            expected: d.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(out)
}

/// The tags of `target`'s repository (all pages).
pub async fn tags(target: &Reference, opts: &RegistryOptions) -> Result<Vec<String>> {
    let (client, auth, oref) = connect(target, opts, RegistryOperation::Pull).await?;
    let mut all: Vec<String> = Vec::new();
    loop {
        let page = client
            .list_tags(&oref, &auth, Some(1000), all.last().map(String::as_str))
            .await
            .map_err(|e| registry_err(target, e))?;
        let n = page.tags.len();
        all.extend(page.tags);
        if n < 1000 {
            return Ok(all);
        }
    }
}
