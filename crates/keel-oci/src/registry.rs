//! Registry client: `keel pull` / `keel push` over the OCI distribution API
//! (through the `oci-client` crate), with basic and bearer-token auth and plain
//! HTTP for registries on loopback or listed as insecure.
//!
//! Credentials come from `<root>/auth.json` (written by `keel login`), then
//! Docker's `config.json` (`$DOCKER_CONFIG` or `~/.docker`), then
//! `$REGISTRY_AUTH_FILE` (podman's) — all in Docker's `{"auths": …}` format.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{IoContext, OciError, RegistryError, Result};
use crate::image::{
    INDEX_TYPES, MANIFEST_TYPES, MT_OCI_MANIFEST, ManifestKind, digest_of, manifest_kind,
    parse_index, parse_manifest,
};
use crate::layer::LayerChecker;
use crate::reference::Reference;
use crate::store::{ImageStore, NewImage};

/// What the CLI shows while blobs move.
#[derive(Debug, Clone)]
pub enum ProgressEvent {
    /// A blob is about to be transferred (`size` bytes).
    Start { digest: Digest, size: u64 },
    /// `bytes` more of it moved.
    Advance { digest: Digest, bytes: u64 },
    /// Done: `status` is Docker's word ("Pull complete", "Already exists", "Pushed", "Layer already exists").
    Done {
        digest: Digest,
        status: &'static str,
    },
}

/// Receives progress; the CLI draws bars or prints lines.
pub trait Progress: Send + Sync {
    fn event(&self, e: ProgressEvent);
}

/// Discards progress.
#[derive(Debug)]
pub struct NoProgress;
impl Progress for NoProgress {
    fn event(&self, _e: ProgressEvent) {}
}

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Registries (`host:port`) spoken to over plain HTTP besides loopback ones.
    pub insecure: Vec<String>,
    /// Explicit credentials, overriding stored ones.
    pub credentials: Option<(String, String)>,
    /// The keel root, where `keel login` keeps credentials.
    pub root: Option<PathBuf>,
}

/// What a pull did.
#[derive(Debug, Clone)]
pub struct PullResult {
    pub manifest: Digest,
    pub id: Digest,
    /// The digest the registry served for the reference (an index digest for multi-platform images).
    pub repo_digest: Digest,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct AuthEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<String>,
}

pub(crate) fn registry_err(r: &Reference, e: impl Into<RegistryError>) -> OciError {
    OciError::Registry {
        registry: r.registry().to_string(),
        source: e.into(),
    }
}

fn auth_file_candidates(root: Option<&Path>) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(r) = root {
        v.push(r.join("auth.json"));
    }
    if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
        v.push(PathBuf::from(d).join("config.json"));
    } else if let Some(h) = std::env::var_os("HOME") {
        v.push(PathBuf::from(h).join(".docker/config.json"));
    }
    if let Some(f) = std::env::var_os("REGISTRY_AUTH_FILE") {
        v.push(PathBuf::from(f));
    }
    v
}

/// Docker keys auth entries by host, sometimes with a scheme or path.
fn auth_key_matches(key: &str, registry: &str) -> bool {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let k = k.split('/').next().unwrap_or(k);
    k == registry || (registry == "docker.io" && k == "index.docker.io")
}

/// Stored credentials for a registry, if any.
pub fn stored_credentials(root: Option<&Path>, registry: &str) -> Option<(String, String)> {
    for p in auth_file_candidates(root) {
        let Ok(b) = std::fs::read(&p) else { continue };
        let Ok(f) = serde_json::from_slice::<AuthFile>(&b) else {
            continue;
        };
        for (k, e) in &f.auths {
            if !auth_key_matches(k, registry) {
                continue;
            }
            let Some(a) = &e.auth else { continue };
            let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(a.trim()) else {
                continue;
            };
            let s = String::from_utf8_lossy(&raw);
            if let Some((u, p)) = s.split_once(':') {
                return Some((u.to_string(), p.to_string()));
            }
        }
    }
    None
}

/// `keel login`: stores credentials in `<root>/auth.json` (mode 0600).
pub fn store_credentials(root: &Path, registry: &str, user: &str, password: &str) -> Result<()> {
    edit_auth_file(root, |f| {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        f.auths
            .insert(registry.to_string(), AuthEntry { auth: Some(token) });
        true
    })
    .map(|_| ())
}

/// `keel logout`: forgets stored credentials; false if there were none.
pub fn remove_credentials(root: &Path, registry: &str) -> Result<bool> {
    edit_auth_file(root, |f| f.auths.remove(registry).is_some())
}

fn edit_auth_file(root: &Path, edit: impl FnOnce(&mut AuthFile) -> bool) -> Result<bool> {
    use std::os::unix::fs::OpenOptionsExt;
    let p = root.join("auth.json");
    let mut f: AuthFile = match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| OciError::Malformed {
            what: p.display().to_string(),
            reason: e.to_string(),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => AuthFile::default(),
        Err(e) => return Err(e).io("read", &p),
    };
    let changed = edit(&mut f);
    if changed {
        std::fs::create_dir_all(root).io("create", root)?;
        let tmp = root.join(".auth.json.tmp");
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .io("create", &tmp)?;
        out.write_all(&serde_json::to_vec_pretty(&f).expect("json"))
            .io("write", &tmp)?;
        out.sync_all().io("fsync", &tmp)?;
        std::fs::rename(&tmp, &p).io("rename", &p)?;
    }
    Ok(changed)
}

pub(crate) fn client_for(r: &Reference, opts: &RegistryOptions) -> Client {
    let plain = r.is_local_registry() || opts.insecure.iter().any(|i| i == r.registry());
    let config = ClientConfig {
        protocol: if plain {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        connect_timeout: Some(std::time::Duration::from_secs(10)),
        read_timeout: Some(std::time::Duration::from_mins(2)),
        user_agent: concat!("keel/", env!("CARGO_PKG_VERSION")),
        // We pick the platform ourselves so we can record the index digest.
        platform_resolver: None,
        ..ClientConfig::default()
    };
    Client::new(config)
}

pub(crate) fn auth_for(r: &Reference, opts: &RegistryOptions) -> RegistryAuth {
    match opts
        .credentials
        .clone()
        .or_else(|| stored_credentials(opts.root.as_deref(), r.registry()))
    {
        Some((u, p)) => RegistryAuth::Basic(u, p),
        None => RegistryAuth::Anonymous,
    }
}

pub(crate) fn oci_ref(r: &Reference) -> oci_client::Reference {
    match (r.tag(), r.digest()) {
        (_, Some(d)) => oci_client::Reference::with_digest(
            r.registry().to_string(),
            r.repository().to_string(),
            d.to_string(),
        ),
        (Some(t), None) => oci_client::Reference::with_tag(
            r.registry().to_string(),
            r.repository().to_string(),
            t.to_string(),
        ),
        (None, None) => oci_client::Reference::with_tag(
            r.registry().to_string(),
            r.repository().to_string(),
            "latest".to_string(),
        ),
    }
}

/// Checks credentials against a registry (`keel login`).
pub async fn check_login(
    registry: &str,
    user: &str,
    password: &str,
    opts: &RegistryOptions,
) -> Result<()> {
    let r = Reference::parse(&format!("{registry}/keel-login-check"))?;
    let client = client_for(&r, opts);
    let auth = RegistryAuth::Basic(user.to_string(), password.to_string());
    // A pull-scoped token (or a catalog request under basic auth) proves the credentials.
    client
        .auth(&oci_ref(&r), &auth, RegistryOperation::Pull)
        .await
        .map_err(|e| registry_err(&r, e))?;
    client
        .list_tags(&oci_ref(&r), &auth, Some(1), None)
        .await
        .map(|_| ())
        .or_else(|e| match e {
            // The repository does not exist: fine, we only test credentials.
            oci_client::errors::OciDistributionError::RegistryError { .. }
            | oci_client::errors::OciDistributionError::ServerError { code: 404, .. } => Ok(()),
            e => Err(registry_err(&r, e)),
        })
}

/// `keel pull`.
pub async fn pull(
    store: &ImageStore,
    r: &Reference,
    opts: &RegistryOptions,
    progress: &dyn Progress,
) -> Result<PullResult> {
    let guard = store.write_guard()?;
    let mut created = Vec::new();
    let res = pull_inner(store, r, opts, progress, &mut created).await;
    if res.is_err() {
        drop(guard);
        store.discard_new_blobs(&created)?;
    }
    res
}

async fn pull_inner(
    store: &ImageStore,
    r: &Reference,
    opts: &RegistryOptions,
    progress: &dyn Progress,
    created: &mut Vec<Digest>,
) -> Result<PullResult> {
    let client = client_for(r, opts);
    let auth = auth_for(r, opts);
    let oref = oci_ref(r);
    let accepted: Vec<&str> = MANIFEST_TYPES.iter().chain(INDEX_TYPES).copied().collect();
    let (bytes, _) = client
        .pull_manifest_raw(&oref, &auth, &accepted)
        .await
        .map_err(|e| registry_err(r, e))?;
    let repo_digest = Digest::of(&bytes);
    if let Some(want) = r.digest()
        && *want != repo_digest
    {
        return Err(OciError::DigestMismatch {
            what: format!("manifest of {r}"),
            expected: want.to_string(),
            actual: repo_digest.to_string(),
        });
    }
    let mut manifest_bytes = bytes.to_vec();
    if manifest_kind(&manifest_bytes, None, "manifest")? == ManifestKind::Index {
        let index = parse_index(&manifest_bytes, "index")?;
        let arch = crate::archive::host_arch();
        let d = index
            .manifests()
            .iter()
            .find(|d| {
                d.platform().as_ref().is_some_and(|p| {
                    p.os().to_string() == "linux" && p.architecture().to_string() == arch
                })
            })
            .ok_or_else(|| registry_err(r, RegistryError::NoPlatform(arch.to_string())))?;
        let md = digest_of(d)?;
        let pref = r.with_digest(md.clone());
        let (b, _) = client
            .pull_manifest_raw(&oci_ref(&pref), &auth, MANIFEST_TYPES)
            .await
            .map_err(|e| registry_err(r, e))?;
        if Digest::of(&b) != md {
            return Err(OciError::DigestMismatch {
                what: format!("platform manifest of {r}"),
                expected: md.to_string(),
                actual: Digest::of(&b).to_string(),
            });
        }
        manifest_bytes = b.to_vec();
    }
    let manifest = parse_manifest(&manifest_bytes, &format!("manifest of {r}"))?;
    let mut descs = vec![manifest.config().clone()];
    descs.extend(manifest.layers().iter().cloned());
    // descs[0] is the config, the others are layers.
    for (i, desc) in descs.iter().enumerate() {
        let d = digest_of(desc)?;
        if store.blobs().has(&d) {
            progress.event(ProgressEvent::Done {
                digest: d,
                status: "Already exists",
            });
            continue;
        }
        progress.event(ProgressEvent::Start {
            digest: d.clone(),
            size: desc.size(),
        });
        let oci_desc = oci_client::manifest::OciDescriptor {
            media_type: desc.media_type().to_string(),
            digest: d.to_string(),
            size: desc.size() as i64,
            ..Default::default()
        };
        let mut stream = client
            .pull_blob_stream(&oref, &oci_desc)
            .await
            .map_err(|e| registry_err(r, e))?;
        let mut w = store.blobs().writer()?;
        // Layers are checked as they arrive; a hostile one is never stored.
        let mut check = (i > 0).then(LayerChecker::new);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| registry_err(r, e))?;
            w.write_all(&chunk)
                .io("write blob to", store.blobs().tmp_dir())?;
            if let Some(c) = &mut check {
                c.feed(&chunk);
            }
            progress.event(ProgressEvent::Advance {
                digest: d.clone(),
                bytes: chunk.len() as u64,
            });
        }
        let blob = w.finish()?;
        if blob.digest() != &d {
            return Err(OciError::DigestMismatch {
                what: "blob".into(),
                expected: d.to_string(),
                actual: blob.digest().to_string(),
            });
        }
        if let Some(c) = check {
            c.finish()
                .map_err(|e| OciError::from_check(d.as_str(), e))?;
        }
        let put = blob.commit(Some(&d))?;
        if put.created {
            created.push(d.clone());
        }
        progress.event(ProgressEvent::Done {
            digest: d,
            status: "Pull complete",
        });
    }
    let tags: Vec<Reference> = r.tag().map(|t| r.with_tag(t)).into_iter().collect();
    // The digest the user can pull again by (the index's, for multi-platform images).
    let mds = store.commit_many(&[NewImage {
        manifest: manifest_bytes,
        tags,
        repo_digest: Some(r.with_digest(repo_digest.clone())),
    }])?;
    let img = crate::image::Image::load(store.blobs(), &mds[0])?;
    Ok(PullResult {
        manifest: mds[0].clone(),
        id: img.config_digest.clone(),
        repo_digest,
    })
}

/// Reads a blob in chunks as a stream for upload, verifying it as it goes.
fn blob_stream(
    store: &ImageStore,
    d: &Digest,
) -> Result<
    impl futures_util::Stream<Item = oci_client::errors::Result<bytes::Bytes>> + Send + 'static,
> {
    let reader = store.blobs().open(d)?;
    Ok(futures_util::stream::unfold(
        Some(reader),
        |state| async move {
            let mut reader = state?;
            let mut buf = vec![0u8; 4 << 20];
            let mut n = 0;
            while n < buf.len() {
                match reader.read(&mut buf[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) => return Some((Err(e.into()), None)),
                }
            }
            if n == 0 {
                return None;
            }
            buf.truncate(n);
            Some((Ok(bytes::Bytes::from(buf)), Some(reader)))
        },
    ))
}

/// `keel push SOURCE [TARGET]`: uploads the image's blobs, then its manifest.
/// Returns the manifest digest.
pub async fn push(
    store: &ImageStore,
    source: &str,
    target: &Reference,
    opts: &RegistryOptions,
    progress: &dyn Progress,
) -> Result<Digest> {
    let img = store.resolve(source)?;
    let client = client_for(target, opts);
    let auth = auth_for(target, opts);
    let oref = oci_ref(target);
    client
        .auth(&oref, &auth, RegistryOperation::Push)
        .await
        .map_err(|e| registry_err(target, e))?;
    let mut descs = img.manifest.layers().clone();
    descs.push(img.manifest.config().clone());
    for desc in &descs {
        let d = digest_of(desc)?;
        let exists = client
            .blob_exists(&oref, d.as_str())
            .await
            .map_err(|e| registry_err(target, e))?;
        if exists {
            progress.event(ProgressEvent::Done {
                digest: d,
                status: "Layer already exists",
            });
            continue;
        }
        let size = store.blobs().size(&d)?;
        progress.event(ProgressEvent::Start {
            digest: d.clone(),
            size,
        });
        client
            .push_blob_stream(&oref, blob_stream(store, &d)?, d.as_str(), Some(size))
            .await
            .map_err(|e| registry_err(target, e))?;
        progress.event(ProgressEvent::Advance {
            digest: d.clone(),
            bytes: size,
        });
        progress.event(ProgressEvent::Done {
            digest: d,
            status: "Pushed",
        });
    }
    let mt = serde_json::from_slice::<serde_json::Value>(&img.manifest_bytes)
        .ok()
        .and_then(|v| {
            v.get("mediaType")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| MT_OCI_MANIFEST.to_string());
    let ct = mt
        .parse()
        .map_err(|_| registry_err(target, RegistryError::BadMediaType(mt.clone())))?;
    client
        .push_manifest_raw(&oref, img.manifest_bytes.clone(), ct)
        .await
        .map_err(|e| registry_err(target, e))?;
    store.add_repo_digest(&img.manifest_digest, target)?;
    Ok(img.manifest_digest)
}

/// The digest of the manifest `target` names in its registry (a HEAD
/// request), `None` when the registry has no such manifest or repository.
pub async fn remote_digest(target: &Reference, opts: &RegistryOptions) -> Result<Option<Digest>> {
    use oci_client::errors::{OciDistributionError as E, OciErrorCode as C};
    let client = client_for(target, opts);
    let auth = auth_for(target, opts);
    let oref = oci_ref(target);
    client
        .auth(&oref, &auth, RegistryOperation::Pull)
        .await
        .map_err(|e| registry_err(target, e))?;
    match client.fetch_manifest_digest(&oref, &auth).await {
        Ok(d) => Ok(Some(Digest::parse(&d)?)),
        Err(E::RegistryError { envelope, .. })
            if envelope
                .errors
                .iter()
                .any(|e| matches!(e.code, C::ManifestUnknown | C::NameUnknown)) =>
        {
            Ok(None)
        }
        Err(E::ServerError { code: 404, .. } | E::ImageManifestNotFoundError(_)) => Ok(None),
        Err(e) => Err(registry_err(target, e)),
    }
}

/// Deletes the manifest `digest` from `target`'s repository (`DELETE
/// /v2/NAME/manifests/DIGEST`; oci-client has no call for it). A manifest
/// already gone is no error. Registries refuse deletes unless configured to
/// allow them (docker-registry: `storage.delete.enabled`).
pub async fn delete_manifest(
    target: &Reference,
    digest: &Digest,
    opts: &RegistryOptions,
) -> Result<()> {
    let auth = auth_for(target, opts);
    let plain = target.is_local_registry() || opts.insecure.iter().any(|i| i == target.registry());
    let url = format!(
        "{}://{}/v2/{}/manifests/{digest}",
        if plain { "http" } else { "https" },
        target.registry(),
        target.repository()
    );
    let fail = |reason: String| {
        registry_err(
            target,
            RegistryError::Delete {
                what: format!("{}@{digest}", target.name()),
                reason,
            },
        )
    };
    let http = reqwest::Client::new();
    let basic = |req: reqwest::RequestBuilder| match &auth {
        RegistryAuth::Basic(u, p) => req.basic_auth(u, Some(p)),
        _ => req,
    };
    let mut res = basic(http.delete(&url))
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?;
    // Docker's token auth: the challenge names the scope a delete needs
    // (`repository:NAME:delete`), which a push token lacks.
    if res.status() == reqwest::StatusCode::UNAUTHORIZED
        && let Some(ch) = res
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(challenge_params)
        && let Some(realm) = ch.get("realm")
    {
        let params: Vec<(&str, &String)> = ["service", "scope"]
            .into_iter()
            .filter_map(|k| ch.get(k).map(|v| (k, v)))
            .collect();
        let token_url =
            reqwest::Url::parse_with_params(realm, &params).map_err(|e| fail(e.to_string()))?;
        let body = basic(http.get(token_url))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| fail(format!("getting a token: {e}")))?
            .bytes()
            .await
            .map_err(|e| fail(e.to_string()))?;
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let token = v["token"]
            .as_str()
            .or_else(|| v["access_token"].as_str())
            .ok_or_else(|| fail("the token server sent no token".into()))?;
        res = http
            .delete(&url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
    }
    let status = res.status();
    if status.is_success() || status == reqwest::StatusCode::NOT_FOUND {
        return Ok(());
    }
    let body = res.text().await.unwrap_or_default();
    let mut reason = format!("the registry answered {status}");
    if let Some(m) = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["errors"][0]["message"].as_str().map(str::to_string))
    {
        reason.push_str(": ");
        reason.push_str(&m);
    }
    if status == reqwest::StatusCode::METHOD_NOT_ALLOWED {
        reason.push_str(" (the registry does not allow deletes)");
    }
    Err(fail(reason))
}

/// `realm="…",service="…",scope="…"` of a `WWW-Authenticate: Bearer` header
/// (values may hold commas: `scope="repository:x:pull,push"`).
fn challenge_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s.trim();
    while let Some((k, r)) = rest.split_once('=') {
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let (v, r) = match r.strip_prefix('"') {
            Some(q) => match q.find('"') {
                Some(end) => (&q[..end], &q[end + 1..]),
                None => (q, ""),
            },
            None => r.split_once(',').unwrap_or((r, "")),
        };
        out.insert(k, v.to_string());
        rest = r.trim_start_matches(',').trim();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::challenge_params;

    #[test]
    fn bearer_challenges_keep_commas_inside_quotes() {
        let p = challenge_params(
            r#"realm="http://127.0.0.1:5/token",service="reg",scope="repository:a/b:pull,push,delete",error="insufficient_scope""#,
        );
        assert_eq!(p["realm"], "http://127.0.0.1:5/token");
        assert_eq!(p["service"], "reg");
        assert_eq!(p["scope"], "repository:a/b:pull,push,delete");
        assert_eq!(p["error"], "insufficient_scope");
        // Unquoted values and junk do not panic.
        let p = challenge_params("realm=x, service=y");
        assert_eq!((p["realm"].as_str(), p["service"].as_str()), ("x", "y"));
        for junk in ["", "=", "\"", "a=\"", ",,=,", "realm"] {
            let _ = challenge_params(junk);
        }
    }
}
