//! keel-build: the build engine. [`build`] turns a Dockerfile (parsed by
//! keel-dockerfile) and a context into an image: it builds only the stages the
//! target needs, independent stages in parallel threads; metadata instructions
//! change the image config, COPY/ADD write layers directly (no container),
//! RUN runs in a one-shot container on an overlay of the stage's layers and
//! its layer is the upper-dir diff. Mounts and containers go through a
//! [`runner::Runner`] ([`runner::HostRunner`] for real, through keel-runtime;
//! [`build_with`] takes another, which is how the engine is unit-tested).
//! Every step has a key ([`cache::Inputs`]) and a verified [`cache::Cache`]
//! entry, so a rebuild reuses what did not change. [`Built`] is the result; [`commit`]
//! names it in the image store (tags only then, atomically), [`export_local`]
//! writes its root filesystem to a directory. Progress is reported as
//! [`Event`]s; the build stops when its cancel flag is set.

pub mod cache;
pub mod context;
mod engine;
mod error;
pub mod fsops;
pub mod runner;
#[cfg(test)]
mod testing;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use engine::{build, build_with};
pub use error::{BuildError, FetchError, Result};

use keel_oci::layer::{Compression, WhiteoutMode, apply_layer};
use keel_oci::{Digest, ImageStore, Reference};

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The keel root (image store, build cache, cache mounts).
    pub root: PathBuf,
    /// The keel binary, run as the monitor of RUN containers.
    pub exe: PathBuf,
    /// The context directory; `None` for a Dockerfile alone (`keel build -`).
    pub context: Option<PathBuf>,
    /// The Dockerfile's text and the name errors use for it.
    pub dockerfile: String,
    pub dockerfile_name: String,
    pub target: Option<String>,
    pub build_args: BTreeMap<String, String>,
    pub no_cache: bool,
    /// `--secret id=…,src=…`.
    pub secrets: BTreeMap<String, PathBuf>,
    /// Report why each cache miss missed ([`Event::Explain`]).
    pub explain_cache: bool,
}

/// Progress of a build, for the CLI to print.
#[derive(Debug, Clone)]
pub enum Event {
    /// A step starts (`step` counts from 1; the FROM is step 1).
    Step {
        stage: String,
        step: usize,
        total: usize,
        text: String,
    },
    /// The step was found in the cache.
    Cached { stage: String, step: usize },
    /// Why the step missed the cache (with `explain_cache`).
    Explain {
        stage: String,
        step: usize,
        reason: String,
    },
    /// A line a RUN printed.
    Output { stage: String, line: String },
    /// The step finished.
    Done {
        stage: String,
        step: usize,
        seconds: f64,
    },
    /// Something the user should know that does not fail the build.
    Warning(String),
}

/// A built image: its config and layers are blobs in the store, not yet an
/// image of the store.
#[derive(Debug, Clone)]
pub struct Built {
    pub config: serde_json::Value,
    pub config_digest: Digest,
    pub manifest: Vec<u8>,
    pub layers: Vec<cache::LayerRef>,
}

/// Names the built image in the store: the image and all its tags appear in
/// one atomic index update. Returns the manifest digest.
pub fn commit(store: &ImageStore, built: &Built, tags: &[Reference]) -> Result<Digest> {
    Ok(store.commit(&built.manifest, tags, None)?)
}

/// `keel build --label`: the built image with `labels` added to its
/// config's `Labels` (replacing the base image's of the same key), as a new
/// config blob and manifest; the layers stay.
pub fn relabel(
    store: &ImageStore,
    built: &Built,
    labels: &BTreeMap<String, String>,
) -> Result<Built> {
    if labels.is_empty() {
        return Ok(built.clone());
    }
    let mut config = built.config.clone();
    let cfg = &mut config["config"];
    if !cfg.is_object() {
        *cfg = serde_json::json!({});
    }
    if !cfg["Labels"].is_object() {
        cfg["Labels"] = serde_json::json!({});
    }
    for (k, v) in labels {
        cfg["Labels"][k] = serde_json::json!(v);
    }
    let bytes = serde_json::to_vec(&config).expect("json");
    let put = store.blobs().put_bytes(&bytes)?;
    let layers = built
        .layers
        .iter()
        .map(|l| {
            Ok((
                Digest::parse(&l.digest)?,
                l.size,
                compression_of(&l.media_type),
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let manifest = keel_oci::archive::build_manifest((&put.digest, put.size), &layers);
    store.blobs().put_bytes(&manifest)?;
    Ok(Built {
        config,
        config_digest: put.digest,
        manifest,
        layers: built.layers.clone(),
    })
}

/// Writes the image's root filesystem into `dest` (created if missing).
pub fn export_local(store: &ImageStore, built: &Built, dest: &Path) -> Result<()> {
    std::fs::create_dir_all(dest).map_err(error::io_err("create", dest))?;
    for l in &built.layers {
        let d = Digest::parse(&l.digest)?;
        let r = store.blobs().open(&d)?;
        let r = keel_oci::layer::decompressed(r).map_err(error::io_err("read layer", dest))?;
        apply_layer(r, dest, WhiteoutMode::Flat)?;
    }
    Ok(())
}

/// The layer compression a media type names (uncompressed when unknown).
pub(crate) fn compression_of(media_type: &str) -> Compression {
    keel_oci::image::layer_compression(media_type).unwrap_or(Compression::None)
}

/// What `keel builder prune` removed.
#[derive(Debug, Clone, Default)]
pub struct PruneReport {
    pub cache_entries: usize,
    pub cache_mounts: usize,
    pub bytes_freed: u64,
}

/// Empties the build cache (with `all`, also `RUN --mount=type=cache`
/// directories) and collects the blobs and snapshots no image uses any more.
pub fn prune(root: &Path, all: bool) -> Result<PruneReport> {
    let build_dir = root.join("build");
    let mut report = PruneReport {
        cache_entries: cache::Cache::open(&build_dir)?.clear()?,
        ..PruneReport::default()
    };
    let mut dirs = vec![build_dir.join("tmp"), build_dir.join("hashes")];
    if all {
        dirs.push(build_dir.join("mounts"));
        if let Ok(rd) = std::fs::read_dir(build_dir.join("mounts")) {
            report.cache_mounts = rd.count();
        }
    }
    for d in dirs {
        match std::fs::remove_dir_all(&d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(error::io_err("remove", d)(e)),
        }
    }
    let store = ImageStore::open(root)?;
    report.bytes_freed = store.collect_garbage()?.bytes_freed;
    Ok(report)
}
