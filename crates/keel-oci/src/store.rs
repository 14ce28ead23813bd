//! The image store: blobs plus an index of images and tags, under `<root>/oci`.
//!
//! The index (`repositories.json`) maps tags to manifest digests and lists every
//! image. It is rewritten atomically (temp, fsync, rename) under an exclusive
//! `flock`, so concurrent keel processes never lose each other's updates.
//! Operations that add blobs hold a shared "gc" lock until their image is in the
//! index; prune takes it exclusively, so it never collects blobs of an image
//! that is being written.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};
use serde::{Deserialize, Serialize};

use crate::blobs::{BlobStore, FinishedBlob, sync_dir};
use crate::digest::Digest;
use crate::error::{IoContext, OciError, Result};
use crate::image::{Image, digest_of, parse_config, parse_manifest};
use crate::layer::{Snapshots, decompressed, diff_to_layer, prepare_snapshot};
use crate::reference::Reference;

#[derive(Debug, Default, Serialize, Deserialize)]
struct IndexFile {
    /// Full reference (`registry/repo:tag`) → manifest digest.
    #[serde(default)]
    tags: BTreeMap<String, Digest>,
    /// Every image in the store, by manifest digest.
    #[serde(default)]
    images: BTreeMap<Digest, ImageEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ImageEntry {
    config: Digest,
    /// When the image entered this store (RFC 3339).
    added: String,
    /// `registry/repo@sha256:…` names it was pulled or pushed as.
    #[serde(default)]
    repo_digests: BTreeSet<String>,
}

/// One image as listed by `keel images`.
#[derive(Debug, Clone, Serialize)]
pub struct ImageSummary {
    pub id: Digest,
    pub manifest: Digest,
    pub tags: Vec<Reference>,
    pub repo_digests: Vec<String>,
    pub created: Option<String>,
    pub size: u64,
}

/// What `rmi` did, in Docker's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoveEvent {
    Untagged(String),
    Deleted(Digest),
}

/// What a prune freed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    pub images_deleted: Vec<Digest>,
    pub blobs_deleted: usize,
    pub snapshots_deleted: usize,
    pub bytes_freed: u64,
}

/// An image to commit: its manifest (config and layers already stored) and names.
#[derive(Debug, Clone)]
pub struct NewImage {
    pub manifest: Vec<u8>,
    pub tags: Vec<Reference>,
    /// The repository it came from: recorded as is when it carries a digest,
    /// else as `repo@manifest-digest`.
    pub repo_digest: Option<Reference>,
}

/// What [`ImageStore::layer_from_dir`] made.
#[derive(Debug)]
pub struct DirLayer {
    /// The layer blob, to be committed (its digest is also its diff id:
    /// the layer is uncompressed).
    pub blob: FinishedBlob,
    /// The snapshot of the chain ending in this layer, if `dir` became it.
    pub snapshot: Option<PathBuf>,
}

/// Holds the shared gc lock while an operation adds blobs.
#[derive(Debug)]
pub struct WriteGuard {
    _file: File,
}

/// The image store.
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
    blobs: BlobStore,
}

fn lock_file(path: &Path, op: FlockOperation) -> Result<File> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .io("open lock", path)?;
    flock(&f, op)
        .map_err(std::io::Error::from)
        .io("lock", path)?;
    Ok(f)
}

impl ImageStore {
    /// Opens the store under `<root>/oci`, creating it if needed.
    pub fn open(root: &Path) -> Result<Self> {
        let dir = root.join("oci");
        fs::create_dir_all(&dir).io("create", &dir)?;
        let blobs = BlobStore::open_dir(&dir)?;
        Ok(ImageStore { dir, blobs })
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The snapshot cache (`<root>/oci/snapshots`).
    pub fn snapshots(&self) -> Result<Snapshots> {
        Ok(Snapshots::new(self.dir.join("snapshots"))?)
    }

    /// Unpacks an image's layers into snapshots (reusing those already there)
    /// and returns their directories, base layer first.
    pub fn unpack(&self, image: &Image) -> Result<Vec<PathBuf>> {
        let layers = image.layer_digests()?;
        let diff_ids: Vec<String> = image.config.rootfs().diff_ids().clone();
        let blobs = self.blobs.clone();
        Ok(self.snapshots()?.ensure_chain(&diff_ids, |i| {
            let r = blobs
                .open(&layers[i])
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            decompressed(r)
        })?)
    }

    /// Writes `dir` (an unmounted overlay upper dir, or a plain tree no one
    /// else writes to) as an uncompressed layer blob on top of the layers
    /// `parent_diff_ids`, and makes `dir` itself the snapshot of the new
    /// chain instead of unpacking the blob again (it is moved, or deleted if
    /// that chain is already cached; when neither is possible it stays, and
    /// `snapshot` is `None`). Returns `None`, leaving `dir` alone, when `dir`
    /// is empty: no layer.
    ///
    /// The blob is complete but not yet in the store: the caller commits it
    /// (`FinishedBlob::commit_checked`, which also replaces a damaged blob of
    /// the same digest), possibly on another thread while it goes on.
    pub fn layer_from_dir(
        &self,
        dir: &Path,
        parent_diff_ids: &[String],
    ) -> Result<Option<DirLayer>> {
        let empty = fs::read_dir(dir).io("read", dir)?.next().is_none();
        if empty {
            return Ok(None);
        }
        // Preparing never changes the layer's bytes; a tree that cannot be
        // prepared is simply not adopted.
        let adoptable = prepare_snapshot(dir).unwrap_or(false);
        let mut w = std::io::BufWriter::with_capacity(1 << 20, self.blobs.writer()?);
        diff_to_layer(dir, &mut w)?;
        let w = w
            .into_inner()
            .map_err(std::io::IntoInnerError::into_error)
            .io("write layer blob to", self.blobs.tmp_dir())?;
        let blob = w.finish()?;
        let snapshot = if adoptable {
            let mut ids = parent_diff_ids.to_vec();
            ids.push(blob.digest().to_string());
            let chain = Snapshots::chain_ids(&ids)
                .pop()
                .expect("one layer at least");
            self.snapshots()?.adopt(&chain, dir)?
        } else {
            None
        };
        Ok(Some(DirLayer { blob, snapshot }))
    }

    /// Taken by any operation that writes blobs before naming them in the index.
    pub fn write_guard(&self) -> Result<WriteGuard> {
        Ok(WriteGuard {
            _file: lock_file(&self.dir.join("gc.lock"), FlockOperation::LockShared)?,
        })
    }

    fn index_path(&self) -> PathBuf {
        self.dir.join("repositories.json")
    }

    fn read_index(&self) -> Result<IndexFile> {
        let p = self.index_path();
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| OciError::Malformed {
                what: p.display().to_string(),
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(IndexFile::default()),
            Err(e) => Err(e).io("read", p),
        }
    }

    /// Read-modify-write of the index under the exclusive index lock.
    fn update_index<T>(&self, f: impl FnOnce(&mut IndexFile) -> Result<T>) -> Result<T> {
        let _lock = lock_file(&self.dir.join("index.lock"), FlockOperation::LockExclusive)?;
        let mut idx = self.read_index()?;
        let out = f(&mut idx)?;
        let p = self.index_path();
        let mut tmp = tempfile::Builder::new()
            .prefix("repositories-")
            .tempfile_in(&self.dir)
            .io("create temp file in", &self.dir)?;
        let bytes = serde_json::to_vec_pretty(&idx).expect("index serializes");
        tmp.write_all(&bytes).io("write", tmp.path())?;
        tmp.as_file().sync_all().io("fsync", tmp.path())?;
        tmp.persist(&p).map_err(|e| e.error).io("rename", &p)?;
        sync_dir(&self.dir)?;
        Ok(out)
    }

    /// Stores a manifest whose config and layers are already blobs, and points
    /// `tags` at it, in one atomic index update. Returns the manifest digest.
    pub fn commit(
        &self,
        manifest_bytes: &[u8],
        tags: &[Reference],
        repo_digest: Option<&Reference>,
    ) -> Result<Digest> {
        let mut v = self.commit_many(&[NewImage {
            manifest: manifest_bytes.to_vec(),
            tags: tags.to_vec(),
            repo_digest: repo_digest.cloned(),
        }])?;
        Ok(v.remove(0))
    }

    /// Commits several images in a single index update: all or none appear.
    pub fn commit_many(&self, images: &[NewImage]) -> Result<Vec<Digest>> {
        let mut prepared = Vec::new();
        for ni in images {
            let manifest = parse_manifest(&ni.manifest, "manifest")?;
            let config_digest = digest_of(manifest.config())?;
            let config_bytes = self.blobs.read(&config_digest)?;
            let config = parse_config(&config_bytes, &format!("config {config_digest}"))?;
            for l in manifest.layers() {
                let d = digest_of(l)?;
                if !self.blobs.has(&d) {
                    return Err(OciError::BlobMissing(d.to_string()));
                }
            }
            let n = manifest.layers().len();
            let k = config.rootfs().diff_ids().len();
            if n != k {
                return Err(OciError::Malformed {
                    what: format!("image {config_digest}"),
                    reason: format!("manifest has {n} layers but config has {k} diff_ids"),
                });
            }
            let md = self.blobs.put_bytes(&ni.manifest)?.digest;
            prepared.push((md, config_digest));
        }
        self.update_index(|idx| {
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            for (ni, (md, config)) in images.iter().zip(&prepared) {
                let entry = idx.images.entry(md.clone()).or_insert_with(|| ImageEntry {
                    config: config.clone(),
                    added: now.clone(),
                    repo_digests: BTreeSet::new(),
                });
                if let Some(r) = &ni.repo_digest {
                    let name = if r.digest().is_some() {
                        r.to_string()
                    } else {
                        r.with_digest(md.clone()).to_string()
                    };
                    entry.repo_digests.insert(name);
                }
                for t in &ni.tags {
                    idx.tags.insert(t.to_string(), md.clone());
                }
            }
            // A manifest left without tags whose config is the one just committed is
            // the same image (same ID) in another encoding, e.g. gzip vs plain
            // layers; fold it in rather than show a dangling twin, as docker would.
            for (md, config) in &prepared {
                let tagged: BTreeSet<&Digest> = idx.tags.values().collect();
                let twins: Vec<Digest> = idx
                    .images
                    .iter()
                    .filter(|(m, e)| *m != md && e.config == *config && !tagged.contains(m))
                    .map(|(m, _)| m.clone())
                    .collect();
                for t in twins {
                    if let Some(e) = idx.images.remove(&t)
                        && let Some(keep) = idx.images.get_mut(md)
                    {
                        keep.repo_digests.extend(e.repo_digests);
                    }
                }
            }
            Ok(())
        })?;
        Ok(prepared.into_iter().map(|(m, _)| m).collect())
    }

    /// Records that the image is also available as `name@digest` (after a push).
    pub fn add_repo_digest(&self, manifest: &Digest, name: &Reference) -> Result<()> {
        self.update_index(|idx| {
            if let Some(e) = idx.images.get_mut(manifest) {
                e.repo_digests
                    .insert(name.with_digest(manifest.clone()).to_string());
            }
            Ok(())
        })
    }

    /// Finds an image by reference (`busybox`, `busybox:1`, `name@sha256:…`),
    /// by ID (`sha256:…`, or a unique hex prefix of at least 4 digits), or by
    /// manifest digest.
    pub fn resolve(&self, s: &str) -> Result<Image> {
        let md = self.resolve_manifest(s)?;
        Image::load(&self.blobs, &md)
    }

    /// Like `resolve` but only returns the manifest digest.
    pub fn resolve_manifest(&self, s: &str) -> Result<Digest> {
        let idx = self.read_index()?;
        Self::resolve_in(&idx, s)
    }

    fn resolve_in(idx: &IndexFile, s: &str) -> Result<Digest> {
        let not_found = || OciError::ImageNotFound(s.to_string());
        // An ID or ID prefix: `sha256:<hex>` or bare hex.
        let hex = s.strip_prefix("sha256:").unwrap_or(s);
        let looks_like_id = hex.len() >= 4
            && hex.len() <= 64
            && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if looks_like_id {
            let mut hits: BTreeSet<&Digest> = BTreeSet::new();
            for (md, e) in &idx.images {
                if e.config.hex().starts_with(hex) || md.hex().starts_with(hex) {
                    hits.insert(md);
                }
            }
            // Several manifests can share one config (same image ID); prefer a tagged one.
            let ids: BTreeSet<&Digest> = hits.iter().map(|m| &idx.images[*m].config).collect();
            if ids.len() > 1 {
                return Err(OciError::AmbiguousImage {
                    reference: s.to_string(),
                    count: ids.len(),
                });
            }
            if let Some(best) = hits
                .iter()
                .find(|m| idx.tags.values().any(|t| t == **m))
                .or_else(|| hits.iter().next())
            {
                return Ok((*best).clone());
            }
            if s.starts_with("sha256:") {
                return Err(not_found());
            }
        }
        let r = Reference::parse(s).map_err(|_| not_found())?;
        if let Some(d) = r.digest() {
            if idx.images.contains_key(d) {
                return Ok(d.clone());
            }
            let want = r.with_digest(d.clone()).to_string();
            return idx
                .images
                .iter()
                .find(|(_, e)| e.repo_digests.contains(&want))
                .map(|(m, _)| m.clone())
                .ok_or_else(not_found);
        }
        idx.tags.get(&r.to_string()).cloned().ok_or_else(not_found)
    }

    /// Every image with its tags; images without tags are listed too (dangling).
    pub fn list(&self) -> Result<Vec<ImageSummary>> {
        let idx = self.read_index()?;
        let mut out = Vec::new();
        for (md, e) in &idx.images {
            let tags: Vec<Reference> = idx
                .tags
                .iter()
                .filter(|(_, d)| *d == md)
                .filter_map(|(t, _)| Reference::parse(t).ok())
                .collect();
            let (created, size) = match Image::load(&self.blobs, md) {
                Ok(img) => (
                    img.config.created().clone().or(Some(e.added.clone())),
                    img.size(),
                ),
                Err(_) => (Some(e.added.clone()), 0),
            };
            out.push(ImageSummary {
                id: e.config.clone(),
                manifest: md.clone(),
                tags,
                repo_digests: e.repo_digests.iter().cloned().collect(),
                created,
                size,
            });
        }
        Ok(out)
    }

    /// Tags of an image (by manifest digest).
    pub fn tags_of(&self, manifest: &Digest) -> Result<Vec<Reference>> {
        let idx = self.read_index()?;
        Ok(idx
            .tags
            .iter()
            .filter(|(_, d)| *d == manifest)
            .filter_map(|(t, _)| Reference::parse(t).ok())
            .collect())
    }

    /// Repo digests of an image.
    pub fn repo_digests_of(&self, manifest: &Digest) -> Result<Vec<String>> {
        let idx = self.read_index()?;
        Ok(idx
            .images
            .get(manifest)
            .map(|e| e.repo_digests.iter().cloned().collect())
            .unwrap_or_default())
    }

    /// `keel tag SOURCE TARGET`.
    pub fn tag(&self, source: &str, target: &Reference) -> Result<Digest> {
        if target.digest().is_some() {
            return Err(OciError::InvalidReference {
                reference: target.to_string(),
                reason: "a tag target cannot contain a digest".into(),
            });
        }
        self.update_index(|idx| {
            let md = Self::resolve_in(idx, source)?;
            idx.tags.insert(target.to_string(), md.clone());
            Ok(md)
        })
    }

    /// `keel rmi`: by tag, untags (and deletes the image when it was the last
    /// tag); by ID, deletes the image, refusing when it has several tags unless
    /// `force`. Blobs are collected right away.
    pub fn remove(&self, s: &str, force: bool) -> Result<Vec<RemoveEvent>> {
        let events = self.update_index(|idx| {
            let md = Self::resolve_in(idx, s)?;
            let tags: Vec<String> = idx
                .tags
                .iter()
                .filter(|(_, d)| **d == md)
                .map(|(t, _)| t.clone())
                .collect();
            let by_tag = Reference::parse(s)
                .ok()
                .filter(|r| r.digest().is_none())
                .map(|r| r.to_string())
                .filter(|t| idx.tags.contains_key(t));
            let mut ev = Vec::new();
            if let Some(t) = by_tag {
                idx.tags.remove(&t);
                ev.push(RemoveEvent::Untagged(familiar(&t)));
                if tags.len() > 1 {
                    return Ok(ev);
                }
            } else {
                if tags.len() > 1 && !force {
                    return Err(OciError::MultipleTags {
                        image: idx.images[&md].config.short().to_string(),
                    });
                }
                for t in &tags {
                    idx.tags.remove(t);
                    ev.push(RemoveEvent::Untagged(familiar(t)));
                }
            }
            let e = idx.images.remove(&md).expect("resolved image is indexed");
            for rd in &e.repo_digests {
                ev.push(RemoveEvent::Untagged(familiar(rd)));
            }
            // Docker reports the image ID once no other manifest shares it.
            if !idx.images.values().any(|o| o.config == e.config) {
                ev.push(RemoveEvent::Deleted(e.config.clone()));
            }
            Ok(ev)
        })?;
        self.collect_garbage()?;
        Ok(events)
    }

    /// Pins a manifest for a user outside the index (a container, named
    /// `name`): `<root>/oci/pins/<name>`. Pinned images survive `prune`, and
    /// their blobs and snapshots survive garbage collection even once untagged.
    pub fn pin(&self, name: &str, manifest: &Digest) -> Result<()> {
        let dir = self.dir.join("pins");
        fs::create_dir_all(&dir).io("create", &dir)?;
        let p = dir.join(name);
        fs::write(&p, manifest.as_str()).io("write", &p)
    }

    /// Drops a pin; a missing one is fine.
    pub fn unpin(&self, name: &str) -> Result<()> {
        let p = self.dir.join("pins").join(name);
        match fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).io("remove", &p),
            _ => Ok(()),
        }
    }

    fn pinned(&self) -> BTreeSet<Digest> {
        let Ok(rd) = fs::read_dir(self.dir.join("pins")) else {
            return BTreeSet::new();
        };
        rd.filter_map(std::result::Result::ok)
            .filter_map(|e| fs::read_to_string(e.path()).ok())
            .filter_map(|s| Digest::parse(s.trim()).ok())
            .collect()
    }

    /// `keel image prune`: dangling images (no tag), or with `all` every image,
    /// except pinned ones. Then unreferenced blobs and temp files.
    pub fn prune(&self, all: bool) -> Result<PruneReport> {
        let pinned = self.pinned();
        let deleted = self.update_index(|idx| {
            let tagged: BTreeSet<Digest> = idx.tags.values().cloned().collect();
            let doomed: Vec<Digest> = idx
                .images
                .keys()
                .filter(|m| !pinned.contains(*m))
                .filter(|m| all || !tagged.contains(*m))
                .cloned()
                .collect();
            let mut ids = Vec::new();
            for m in &doomed {
                idx.tags.retain(|_, d| d != m);
                if let Some(e) = idx.images.remove(m) {
                    ids.push(e.config);
                }
            }
            Ok(ids)
        })?;
        let mut report = self.collect_garbage()?;
        report.images_deleted = deleted;
        Ok(report)
    }

    /// Deletes blobs no indexed image references, and crashed writers' temp files.
    /// Waits for in-flight writers (they hold the shared gc lock).
    pub fn collect_garbage(&self) -> Result<PruneReport> {
        let _gc = lock_file(&self.dir.join("gc.lock"), FlockOperation::LockExclusive)?;
        let idx = self.read_index()?;
        // Indexed and pinned manifests are the roots.
        let roots: BTreeSet<Digest> = idx.images.keys().cloned().chain(self.pinned()).collect();
        let mut keep: BTreeSet<Digest> = BTreeSet::new();
        for md in &roots {
            keep.insert(md.clone());
            // A manifest we cannot read still pins what we can tell of it.
            if let Ok(bytes) = self.blobs.read(md)
                && let Ok(m) = parse_manifest(&bytes, "manifest")
            {
                if let Ok(c) = digest_of(m.config()) {
                    keep.insert(c);
                }
                for l in m.layers() {
                    if let Ok(d) = digest_of(l) {
                        keep.insert(d);
                    }
                }
            }
        }
        let mut report = PruneReport::default();
        // Snapshots live as long as some image's layer chain ends in them.
        let mut chains: BTreeSet<String> = BTreeSet::new();
        for md in &roots {
            if let Ok(img) = Image::load(&self.blobs, md) {
                chains.extend(Snapshots::chain_ids(img.config.rootfs().diff_ids()));
            }
        }
        let snapshots = self.snapshots()?;
        for snap in snapshots.list()? {
            if !chains.contains(&snap.chain_id) {
                report.bytes_freed += snapshots.remove(&snap.chain_id)?;
                report.snapshots_deleted += 1;
            }
        }
        // The snapshots kept become durable (one sync), so a crash does not
        // send them back to be unpacked again.
        snapshots.seal()?;
        for d in self.blobs.list()? {
            if !keep.contains(&d) {
                report.bytes_freed += self.blobs.remove(&d)?;
                report.blobs_deleted += 1;
            }
        }
        report.bytes_freed += self.blobs.clean_tmp()?;
        Ok(report)
    }

    /// Removes blobs that a failed operation created and no image references,
    /// so a failed load/pull/import leaves the store as it was.
    pub fn discard_new_blobs(&self, created: &[Digest]) -> Result<()> {
        if created.is_empty() {
            return Ok(());
        }
        self.update_index(|idx| {
            let mut referenced: BTreeSet<Digest> = BTreeSet::new();
            for md in idx.images.keys() {
                referenced.insert(md.clone());
                if let Ok(img) = Image::load(&self.blobs, md) {
                    referenced.extend(img.blobs().unwrap_or_default());
                }
            }
            for d in created {
                if !referenced.contains(d) {
                    self.blobs.remove(d)?;
                }
            }
            Ok(())
        })
    }
}

fn familiar(full: &str) -> String {
    Reference::parse(full).map_or_else(|_| full.to_string(), |r| r.familiar())
}
