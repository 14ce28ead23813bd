//! `keel import`: a root filesystem (a tarball, plain or compressed, or a
//! directory) becomes a one-layer image, like `docker import`, with optional
//! `--change` instructions (CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE).

use std::io::Read;
use std::path::Path;

use serde_json::{Map, Value, json};

use crate::archive::{build_manifest, host_arch};
use crate::blobs::Tee;
use crate::digest::Digest;
use crate::error::{IoContext, OciError, Result};
use crate::layer::{LayerError, check_layer};
use crate::reference::Reference;
use crate::store::{ImageStore, NewImage};

/// What an import made.
#[derive(Debug, Clone)]
pub struct Imported {
    pub id: Digest,
    pub manifest: Digest,
}

/// Applies one Dockerfile-style `--change` to an image config's `config` object.
pub fn apply_change(config: &mut Map<String, Value>, change: &str) -> Result<()> {
    let bad = |reason: &str| OciError::Malformed {
        what: format!("change {change:?}"),
        reason: reason.to_string(),
    };
    let (instr, rest) = change
        .trim()
        .split_once(char::is_whitespace)
        .ok_or_else(|| bad("expected INSTRUCTION ARGS"))?;
    let rest = rest.trim();
    // Exec form is a JSON array; anything else is shell form, run by /bin/sh -c.
    let command = || -> Value {
        match serde_json::from_str::<Vec<String>>(rest) {
            Ok(v) => json!(v),
            Err(_) => json!(["/bin/sh", "-c", rest]),
        }
    };
    match instr.to_ascii_uppercase().as_str() {
        "CMD" => {
            config.insert("Cmd".into(), command());
        }
        "ENTRYPOINT" => {
            config.insert("Entrypoint".into(), command());
        }
        "WORKDIR" => {
            config.insert("WorkingDir".into(), json!(rest));
        }
        "USER" => {
            config.insert("User".into(), json!(rest));
        }
        "ENV" | "LABEL" => {
            let (k, v) = rest
                .split_once('=')
                .or_else(|| rest.split_once(char::is_whitespace))
                .ok_or_else(|| bad("expected KEY=VALUE"))?;
            let v = v.trim().trim_matches('"');
            if instr.eq_ignore_ascii_case("ENV") {
                let env = config.entry("Env").or_insert_with(|| json!([]));
                let list = env.as_array_mut().ok_or_else(|| bad("Env is not a list"))?;
                list.retain(|e| e.as_str().is_none_or(|s| !s.starts_with(&format!("{k}="))));
                list.push(json!(format!("{k}={v}")));
            } else {
                let labels = config.entry("Labels").or_insert_with(|| json!({}));
                labels
                    .as_object_mut()
                    .ok_or_else(|| bad("Labels is not a map"))?
                    .insert(k.to_string(), json!(v));
            }
        }
        "EXPOSE" => {
            let ports = config.entry("ExposedPorts").or_insert_with(|| json!({}));
            let map = ports
                .as_object_mut()
                .ok_or_else(|| bad("ExposedPorts is not a map"))?;
            for p in rest.split_whitespace() {
                let p = if p.contains('/') {
                    p.to_string()
                } else {
                    format!("{p}/tcp")
                };
                map.insert(p, json!({}));
            }
        }
        other => return Err(bad(&format!("unsupported instruction {other}"))),
    }
    Ok(())
}

/// Imports a layer tarball (plain, gzip or zstd) from a reader.
pub fn import_tar(
    store: &ImageStore,
    r: impl Read,
    source: &str,
    name: Option<&Reference>,
    changes: &[String],
) -> Result<Imported> {
    all_or_nothing(store, |created| {
        import_inner(store, r, source, name, changes, created)
    })
}

/// Runs `f` under the store's write guard; if it fails, the blobs it
/// created (it lists them in its argument) are removed again.
fn all_or_nothing<T>(
    store: &ImageStore,
    f: impl FnOnce(&mut Vec<Digest>) -> Result<T>,
) -> Result<T> {
    let guard = store.write_guard()?;
    let mut created = Vec::new();
    let res = f(&mut created);
    if res.is_err() {
        drop(guard);
        store.discard_new_blobs(&created)?;
    }
    res
}

fn import_inner(
    store: &ImageStore,
    reader: impl Read,
    source: &str,
    name: Option<&Reference>,
    changes: &[String],
    created: &mut Vec<Digest>,
) -> Result<Imported> {
    let mut cfg = Map::new();
    for c in changes {
        apply_change(&mut cfg, c)?;
    }
    let (layer, size, compression, diff_id) = store_layer(store, reader, source, created)?;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let config = json!({
        "architecture": host_arch(),
        "os": "linux",
        "created": now,
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": now, "created_by": "keel import", "comment": format!("Imported from {source}")}],
    });
    let config_bytes = serde_json::to_vec(&config).expect("json");
    let cput = store.blobs().put_bytes(&config_bytes)?;
    if cput.created {
        created.push(cput.digest.clone());
    }
    let manifest = build_manifest((&cput.digest, cput.size), &[(layer, size, compression)]);
    let mds = store.commit_many(&[NewImage {
        manifest,
        tags: name.cloned().into_iter().collect(),
        repo_digest: None,
    }])?;
    Ok(Imported {
        id: cput.digest,
        manifest: mds[0].clone(),
    })
}

/// Stores a layer tarball from `reader`, checked as it is stored (one
/// read): a tar that is not readable, or hostile, fails here and is never
/// stored. Returns the blob's digest, size, compression and diff id.
fn store_layer(
    store: &ImageStore,
    reader: impl Read,
    source: &str,
    created: &mut Vec<Digest>,
) -> Result<(Digest, u64, crate::layer::Compression, Digest)> {
    let mut w = store.blobs().writer()?;
    let mut tee = Tee::new(reader, &mut w);
    let checked = check_layer(&mut tee);
    let rest = std::io::copy(&mut tee, &mut std::io::sink());
    if let Some(e) = tee.write_error.take() {
        return Err(e).io("write blob to", store.blobs().tmp_dir());
    }
    let corrupt = |e| OciError::CorruptArchive(format!("{source}: {e}"));
    rest.map_err(corrupt)?;
    let blob = w.finish()?;
    let checked = checked.map_err(|e| match e {
        LayerError::Read(e) => corrupt(e),
        e => OciError::from_check(blob.digest().as_str(), e),
    })?;
    let put = blob.commit(None)?;
    if put.created {
        created.push(put.digest.clone());
    }
    let diff_id = checked.diff_id.unwrap_or_else(|| put.digest.clone());
    Ok((put.digest, put.size, checked.compression, diff_id))
}

/// Files a container runtime mounts over a container's root (their mount
/// points land in the upper directory): docker and podman neither show
/// them in `diff` nor keep them in `commit`.
pub const MOUNTED_OVER: &[&str] = &["etc/hosts", "etc/hostname", "etc/resolv.conf"];

/// What `keel commit` records besides the container's changes.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// The image config's `config` object (the container's Env, Cmd, ...),
    /// before `changes`.
    pub config: Map<String, Value>,
    /// Dockerfile-style `--change` instructions.
    pub changes: Vec<String>,
    pub comment: String,
    pub author: String,
    /// The history entry's `created_by` (the container's command).
    pub created_by: String,
}

/// `keel commit`: a new image of `base`'s layers plus `upper` (a
/// container's overlay upper directory, whiteouts and all) as one more
/// layer, with `opts.config` as its config.
pub fn commit_dir(
    store: &ImageStore,
    base: &crate::Image,
    upper: &Path,
    name: Option<&Reference>,
    opts: &CommitOptions,
) -> Result<Imported> {
    all_or_nothing(store, |created| {
        commit_inner(store, base, upper, name, opts, created)
    })
}

fn commit_inner(
    store: &ImageStore,
    base: &crate::Image,
    upper: &Path,
    name: Option<&Reference>,
    opts: &CommitOptions,
    created: &mut Vec<Digest>,
) -> Result<Imported> {
    let mut cfg = opts.config.clone();
    for c in &opts.changes {
        apply_change(&mut cfg, c)?;
    }
    let f = dir_layer(store, upper, MOUNTED_OVER)?;
    let source = upper.display().to_string();
    let (layer, size, compression, diff_id) = store_layer(store, f, &source, created)?;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let mut config = base.config_json();
    let bad = |reason: &str| OciError::Malformed {
        what: format!("config {}", base.config_digest),
        reason: reason.into(),
    };
    let obj = config.as_object_mut().ok_or_else(|| bad("not an object"))?;
    obj.insert("created".into(), json!(now));
    obj.insert("config".into(), Value::Object(cfg));
    obj.remove("container_config");
    if opts.author.is_empty() {
        obj.remove("author");
    } else {
        obj.insert("author".into(), json!(opts.author));
    }
    obj.entry("rootfs")
        .or_insert_with(|| json!({"type": "layers", "diff_ids": []}))
        .get_mut("diff_ids")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| bad("rootfs.diff_ids is not a list"))?
        .push(json!(diff_id));
    let mut entry = json!({"created": now, "created_by": opts.created_by});
    if !opts.comment.is_empty() {
        entry["comment"] = json!(opts.comment);
    }
    if !opts.author.is_empty() {
        entry["author"] = json!(opts.author);
    }
    if let Some(h) = obj
        .entry("history")
        .or_insert_with(|| json!([]))
        .as_array_mut()
    {
        h.push(entry);
    }
    let config_bytes = serde_json::to_vec(&config).expect("json");
    let cput = store.blobs().put_bytes(&config_bytes)?;
    if cput.created {
        created.push(cput.digest.clone());
    }
    let mut layers = Vec::new();
    for d in base.manifest.layers() {
        let c = crate::image::layer_compression(&crate::image::media_type_str(d.media_type()))
            .ok_or_else(|| bad("a base layer has an unknown media type"))?;
        layers.push((crate::image::digest_of(d)?, d.size(), c));
    }
    layers.push((layer, size, compression));
    let manifest = build_manifest((&cput.digest, cput.size), &layers);
    let mds = store.commit_many(&[NewImage {
        manifest,
        tags: name.cloned().into_iter().collect(),
        repo_digest: None,
    }])?;
    Ok(Imported {
        id: cput.digest,
        manifest: mds[0].clone(),
    })
}

/// Imports a tarball file by path.
pub fn import_file(
    store: &ImageStore,
    path: &Path,
    name: Option<&Reference>,
    changes: &[String],
) -> Result<Imported> {
    let f = std::fs::File::open(path).io("open", path)?;
    import_tar(store, f, &path.display().to_string(), name, changes)
}

/// Imports a directory as a root filesystem (owners, modes, links, xattrs kept).
pub fn import_dir(
    store: &ImageStore,
    dir: &Path,
    name: Option<&Reference>,
    changes: &[String],
) -> Result<Imported> {
    let f = dir_layer(store, dir, &[])?;
    import_tar(store, f, &dir.display().to_string(), name, changes)
}

/// `dir` as a layer tarball in a temp file (deleted when closed), so that
/// what is made from a directory goes through the same checked path as a
/// tarball (diff id, tar validity, atomic commit).
fn dir_layer(store: &ImageStore, dir: &Path, except: &[&str]) -> Result<std::fs::File> {
    let tmp = tempfile::tempfile_in(store.blobs().tmp_dir())
        .io("create temp file in", store.blobs().tmp_dir())?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, &tmp);
    crate::layer::diff_to_layer_except(dir, &mut w, except)?;
    std::io::Write::flush(&mut w).io("write", dir)?;
    drop(w);
    let mut f = tmp;
    std::io::Seek::rewind(&mut f).io("rewind", dir)?;
    Ok(f)
}
