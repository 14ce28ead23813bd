//! The snapshot cache: one unpacked directory per layer chain, usable as an
//! overlayfs lowerdir and shared by every image with the same chain.
//!
//! Invariant: a directory named by a chain id is complete and identical to
//! its layer chain. It is built under a temporary name in the same directory
//! (unpacked from the layer, or adopted from the tree the layer was diffed
//! from, see [`Snapshots::adopt`]) and renamed into place with
//! `RENAME_NOREPLACE`, so neither a crash nor a concurrent keel process can
//! expose a half-written snapshot.
//!
//! Durability without a sync per snapshot: before the rename, a marker
//! `.unsynced-<hex>` (a symlink whose target is the kernel's boot id) is made
//! durable. A process that dies leaves its written data in the page cache,
//! where every later reader sees it; only a kernel crash or power loss can
//! lose it, and that changes the boot id. So a snapshot whose marker names
//! another boot is deleted, never used, and unpacked again from its blob;
//! [`Snapshots::seal`] syncs the filesystem once and drops the markers.
//! Publishing and removing hold `.lock`, so a stale snapshot is never
//! mistaken for a fresh one of the same chain.
use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{FlockOperation, flock};

use sha2::{Digest, Sha256};

use crate::digest::HashingReader;

use super::{LayerError, WhiteoutMode, apply_layer, decompressed, hex, sha256_hex};

/// Prefix of in-progress (being unpacked) and in-removal snapshot dirs.
const TMP_PREFIX: &str = ".tmp-";
const RM_PREFIX: &str = ".rm-";
/// Prefix of the not-yet-synced markers (see the module docs).
const MARKER_PREFIX: &str = ".unsynced-";
/// Serializes publishing, stale removal and sealing between processes.
const LOCK_NAME: &str = ".lock";

static SEQ: AtomicU64 = AtomicU64::new(0);

/// One cached snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// `sha256:<hex>` chain id.
    pub chain_id: String,
    pub path: PathBuf,
    /// Bytes on disk (allocated blocks, hardlinks counted once).
    pub size: u64,
}

/// Snapshot cache rooted at one directory (`<keel root>/oci/snapshots`).
#[derive(Debug, Clone)]
pub struct Snapshots {
    dir: PathBuf,
}

/// Removes a temporary directory unless disarmed, so every error path (and
/// a panic) cleans up after itself.
struct TmpGuard(Option<PathBuf>);

impl Drop for TmpGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_dir_all(p);
        }
    }
}

fn pid_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Bytes allocated below `path`, counting each inode once.
fn disk_usage(path: &Path) -> io::Result<u64> {
    fn walk(p: &Path, seen: &mut HashSet<(u64, u64)>) -> io::Result<u64> {
        let md = fs::symlink_metadata(p)?;
        if md.nlink() > 1 && !md.is_dir() && !seen.insert((md.dev(), md.ino())) {
            return Ok(0);
        }
        let mut total = md.blocks() * 512;
        if md.is_dir() {
            for e in fs::read_dir(p)? {
                total += walk(&e?.path(), seen)?;
            }
        }
        Ok(total)
    }
    walk(path, &mut HashSet::new())
}

fn sync_dir(path: &Path) -> io::Result<()> {
    fs::File::open(path)?.sync_all()
}

/// The kernel's id of the running boot; `None` where it cannot be read
/// (snapshots are then synced before they are published).
fn boot_id() -> Option<&'static str> {
    static ID: OnceLock<Option<String>> = OnceLock::new();
    ID.get_or_init(|| {
        fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty() && !s.contains('/'))
    })
    .as_deref()
}

/// Whether a snapshot may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// Synced (no marker), or written during this boot.
    Trusted,
    /// Written during an earlier boot and never synced: may be incomplete.
    Stale,
}

/// The exclusive `.lock` of a snapshot dir, released on drop.
struct DirLock(#[allow(dead_code)] fs::File);

impl Snapshots {
    /// Opens (creating if needed) the cache directory, and removes leftovers
    /// of keel processes that died while unpacking or removing.
    pub fn new(dir: PathBuf) -> Result<Self, LayerError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|source| LayerError::CreateSnapshot {
                path: dir.clone(),
                source,
            })?;
        let s = Snapshots { dir };
        s.clean_stale()?;
        Ok(s)
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn clean_stale(&self) -> Result<(), LayerError> {
        let list_err = |source| LayerError::ListSnapshots {
            path: self.dir.clone(),
            source,
        };
        for e in fs::read_dir(&self.dir).map_err(list_err)? {
            let e = e.map_err(list_err)?;
            let name = e.file_name().to_string_lossy().into_owned();
            // Names are `.tmp-<pid>-<seq>-<hex>` / `.rm-<pid>-<seq>-<hex>`.
            let Some(rest) = name
                .strip_prefix(TMP_PREFIX)
                .or_else(|| name.strip_prefix(RM_PREFIX))
            else {
                continue;
            };
            let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|p| !pid_alive(p)) {
                let path = e.path();
                fs::remove_dir_all(&path)
                    .map_err(|source| LayerError::RemoveSnapshot { path, source })?;
            }
        }
        Ok(())
    }

    /// Chain IDs per the OCI image spec: `chainid(L0) = diffid(L0)`,
    /// `chainid(Ln) = sha256(chainid(Ln-1) + " " + diffid(Ln))`.
    pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
        for d in diff_ids {
            let next = match out.last() {
                None => d.clone(),
                Some(prev) => {
                    let mut h = Sha256::new();
                    h.update(prev.as_bytes());
                    h.update(b" ");
                    h.update(d.as_bytes());
                    format!("sha256:{}", hex(&h.finalize()))
                }
            };
            out.push(next);
        }
        out
    }

    /// Where the snapshot for `chain_id` lives (whether or not it exists).
    pub fn path(&self, chain_id: &str) -> Result<PathBuf, LayerError> {
        let h = sha256_hex(chain_id).ok_or_else(|| LayerError::InvalidDigest(chain_id.into()))?;
        Ok(self.dir.join(h))
    }

    fn marker(&self, hex: &str) -> PathBuf {
        self.dir.join(format!("{MARKER_PREFIX}{hex}"))
    }

    fn lock(&self) -> Result<DirLock, LayerError> {
        let path = self.dir.join(LOCK_NAME);
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .and_then(|f| {
                flock(&f, FlockOperation::LockExclusive)
                    .map(|()| f)
                    .map_err(Into::into)
            })
            .map_err(|source| LayerError::CommitSnapshot { path, source })?;
        Ok(DirLock(f))
    }

    fn durability(&self, hex: &str) -> Durability {
        match fs::read_link(self.marker(hex)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Durability::Trusted,
            Ok(target) if boot_id().is_some_and(|b| target.as_os_str() == b) => Durability::Trusted,
            // Another boot's marker, or one we cannot read.
            _ => Durability::Stale,
        }
    }

    /// `Some(path)` if the snapshot exists and may be used. A stale one
    /// (unsynced, from an earlier boot) is removed first.
    fn existing(&self, chain_id: &str) -> Result<Option<PathBuf>, LayerError> {
        let path = self.path(chain_id)?;
        let hex = sha256_hex(chain_id).unwrap_or_default();
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(LayerError::CommitSnapshot {
                    path,
                    source: io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "exists and is not a directory",
                    ),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(LayerError::CreateSnapshot { path, source }),
        }
        if self.durability(hex) == Durability::Trusted {
            return Ok(Some(path));
        }
        let _lock = self.lock()?;
        self.drop_if_stale(hex, &path)?;
        Ok(path.is_dir().then_some(path))
    }

    /// Under the lock: removes the snapshot `hex` and its marker when the
    /// marker says the content may not have reached the disk.
    fn drop_if_stale(&self, hex: &str, path: &Path) -> Result<(), LayerError> {
        if self.durability(hex) == Durability::Trusted {
            return Ok(());
        }
        let doomed = self.dir.join(format!(
            "{RM_PREFIX}{}-{}-{hex}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let rm_err = |source| LayerError::RemoveSnapshot {
            path: path.to_path_buf(),
            source,
        };
        match fs::rename(path, &doomed) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(rm_err(e)),
        }
        match fs::remove_file(self.marker(hex)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(rm_err(e)),
        }
        if doomed.exists() {
            fs::remove_dir_all(&doomed).map_err(rm_err)?;
        }
        Ok(())
    }

    /// The snapshot dir for `chain_id` if it is cached (and may be used).
    pub fn get(&self, chain_id: &str) -> Result<Option<PathBuf>, LayerError> {
        self.existing(chain_id)
    }

    /// Renames the complete tree `src` to the snapshot of `chain_id` (see the
    /// module docs for why no sync is needed). Returns the snapshot, which is
    /// someone else's when they published the same chain first (then `src`
    /// is left where it was), or `None` when `src` cannot be renamed there
    /// (another filesystem).
    fn publish(&self, chain_id: &str, src: &Path) -> Result<Option<PathBuf>, LayerError> {
        let final_path = self.path(chain_id)?;
        let hex = sha256_hex(chain_id).unwrap_or_default();
        let commit_err = |source| LayerError::CommitSnapshot {
            path: final_path.clone(),
            source,
        };
        let _lock = self.lock()?;
        if final_path.is_dir() {
            self.drop_if_stale(hex, &final_path)?;
            if final_path.is_dir() {
                return Ok(Some(final_path));
            }
        }
        if let Some(boot) = boot_id() {
            // The marker must be durable before the name can be.
            let marker = self.marker(hex);
            match fs::remove_file(&marker) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(commit_err(e)),
            }
            std::os::unix::fs::symlink(boot, &marker).map_err(commit_err)?;
            sync_dir(&self.dir).map_err(commit_err)?;
        } else {
            // No way to tell boots apart: content durable before the name.
            let dirfd = fs::File::open(src).map_err(commit_err)?;
            rustix::fs::syncfs(&dirfd).map_err(|e| commit_err(e.into()))?;
        }
        match rustix::fs::renameat_with(
            rustix::fs::CWD,
            src,
            rustix::fs::CWD,
            &final_path,
            rustix::fs::RenameFlags::NOREPLACE,
        ) {
            // Or a writer that does not take the lock (an older keel) won.
            Ok(()) | Err(rustix::io::Errno::EXIST | rustix::io::Errno::NOTEMPTY) => {}
            Err(rustix::io::Errno::XDEV) => {
                let _ = fs::remove_file(self.marker(hex));
                return Ok(None);
            }
            Err(e) => return Err(commit_err(e.into())),
        }
        if boot_id().is_none() {
            sync_dir(&self.dir).map_err(commit_err)?;
        }
        Ok(Some(final_path))
    }

    /// Returns the snapshot dir for `chain_id`, unpacking it with
    /// `open_layer()` (uncompressed or gzip/zstd tar) if absent. The
    /// uncompressed stream must hash to `diff_id`. Unpacking happens in a
    /// temporary dir renamed into place, so a crash or a concurrent process
    /// never leaves or sees a half snapshot; if another process wins the
    /// race, its (identical) snapshot is used and ours dropped.
    pub fn ensure(
        &self,
        chain_id: &str,
        diff_id: &str,
        open_layer: impl FnOnce() -> io::Result<Box<dyn Read>>,
    ) -> Result<PathBuf, LayerError> {
        let chain_hex = sha256_hex(chain_id)
            .ok_or_else(|| LayerError::InvalidDigest(chain_id.into()))?
            .to_owned();
        if sha256_hex(diff_id).is_none() {
            return Err(LayerError::InvalidDigest(diff_id.into()));
        }
        if let Some(p) = self.existing(chain_id)? {
            return Ok(p);
        }
        let tmp = self.tmp_path(&chain_hex);
        let create_err = |source| LayerError::CreateSnapshot {
            path: tmp.clone(),
            source,
        };
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&tmp)
            .map_err(create_err)?;
        let _guard = TmpGuard(Some(tmp.clone()));
        // The umask must not decide the lowerdir root's mode.
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).map_err(create_err)?;

        let open_err = |source| LayerError::OpenLayer {
            chain_id: chain_id.to_owned(),
            source,
        };
        let layer = decompressed(open_layer().map_err(open_err)?).map_err(LayerError::Read)?;
        let mut reader = HashingReader::new(layer);
        apply_layer(&mut reader, &tmp, WhiteoutMode::Overlay)?;
        // The diff id covers the whole stream, including padding after the
        // tar's end marker that apply_layer need not read.
        io::copy(&mut reader, &mut io::sink()).map_err(LayerError::Read)?;
        let actual = reader.finish().0.to_string();
        if actual != diff_id {
            return Err(LayerError::DiffIdMismatch {
                expected: diff_id.to_owned(),
                actual,
            });
        }
        // Same filesystem by construction: publish never returns None here.
        self.publish(chain_id, &tmp)?
            .ok_or_else(|| LayerError::CommitSnapshot {
                path: tmp.clone(),
                source: io::Error::from(io::ErrorKind::CrossesDevices),
            })
    }

    fn tmp_path(&self, hex: &str) -> PathBuf {
        self.dir.join(format!(
            "{TMP_PREFIX}{}-{}-{hex}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// Makes `dir`, a tree that [`super::diff_to_layer`] just turned into the
    /// layer `diff_id`, the snapshot of `chain_id` (which ends in that layer)
    /// without unpacking the layer again. `dir` must have been prepared with
    /// [`super::prepare_snapshot`] before the diff and left untouched since:
    /// then it is exactly what unpacking the layer would make. On success
    /// `dir` is gone (moved, or deleted when the chain was already cached);
    /// `None` means it stays (another filesystem) and nothing was published.
    pub fn adopt(&self, chain_id: &str, dir: &Path) -> Result<Option<PathBuf>, LayerError> {
        if let Some(p) = self.existing(chain_id)? {
            fs::remove_dir_all(dir).map_err(|source| LayerError::RemoveSnapshot {
                path: dir.to_path_buf(),
                source,
            })?;
            return Ok(Some(p));
        }
        // The root of an unpacked snapshot: 0755, owned by us.
        let meta_err = |source: io::Error| LayerError::CreateSnapshot {
            path: dir.to_path_buf(),
            source,
        };
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).map_err(meta_err)?;
        let published = self.publish(chain_id, dir)?;
        if published.is_some() && dir.exists() {
            // Lost a race to an identical snapshot.
            let _ = fs::remove_dir_all(dir);
        }
        Ok(published)
    }

    /// Makes every snapshot of this boot durable (one `syncfs`) and drops
    /// their markers; returns how many were sealed.
    pub fn seal(&self) -> Result<usize, LayerError> {
        let Some(boot) = boot_id() else {
            return Ok(0);
        };
        let list_err = |source| LayerError::ListSnapshots {
            path: self.dir.clone(),
            source,
        };
        // Markers (and their inodes) that exist before the sync: their
        // snapshots were complete before the marker was made.
        let mut markers = Vec::new();
        for e in fs::read_dir(&self.dir).map_err(list_err)? {
            let e = e.map_err(list_err)?;
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with(MARKER_PREFIX) {
                continue;
            }
            let path = e.path();
            if fs::read_link(&path).is_ok_and(|t| t.as_os_str() == boot)
                && let Ok(md) = fs::symlink_metadata(&path)
            {
                markers.push((path, md.ino()));
            }
        }
        if markers.is_empty() {
            return Ok(0);
        }
        let dirfd = fs::File::open(&self.dir).map_err(list_err)?;
        rustix::fs::syncfs(&dirfd).map_err(|e| list_err(e.into()))?;
        let _lock = self.lock()?;
        let mut sealed = 0;
        for (path, ino) in markers {
            // A marker replaced since (a re-published chain) is not ours to drop.
            if fs::symlink_metadata(&path).is_ok_and(|m| m.ino() == ino) {
                fs::remove_file(&path).map_err(|source| LayerError::RemoveSnapshot {
                    path: path.clone(),
                    source,
                })?;
                sealed += 1;
            }
        }
        sync_dir(&self.dir).map_err(list_err)?;
        Ok(sealed)
    }

    /// Unpacks a whole chain (bottom layer first) and returns its snapshot
    /// dirs in the same order; overlayfs wants them reversed as `lowerdir`.
    pub fn ensure_chain(
        &self,
        diff_ids: &[String],
        mut open_layer: impl FnMut(usize) -> io::Result<Box<dyn Read>>,
    ) -> Result<Vec<PathBuf>, LayerError> {
        Self::chain_ids(diff_ids)
            .iter()
            .zip(diff_ids)
            .enumerate()
            .map(|(i, (chain, diff))| self.ensure(chain, diff, || open_layer(i)))
            .collect()
    }

    /// All complete snapshots, sorted by chain id.
    pub fn list(&self) -> Result<Vec<SnapshotInfo>, LayerError> {
        let list_err = |source| LayerError::ListSnapshots {
            path: self.dir.clone(),
            source,
        };
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir).map_err(list_err)? {
            let e = e.map_err(list_err)?;
            let name = e.file_name().to_string_lossy().into_owned();
            let chain_id = format!("sha256:{name}");
            if sha256_hex(&chain_id).is_none() {
                continue;
            }
            let path = e.path();
            let size = match disk_usage(&path) {
                Ok(s) => s,
                // Removed concurrently.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(list_err(e)),
            };
            out.push(SnapshotInfo {
                chain_id,
                path,
                size,
            });
        }
        out.sort_by(|a, b| a.chain_id.cmp(&b.chain_id));
        Ok(out)
    }

    /// Removes one snapshot, returning the bytes freed. The dir is first
    /// renamed away so the chain id never names a half-deleted tree.
    pub fn remove(&self, chain_id: &str) -> Result<u64, LayerError> {
        let path = self.path(chain_id)?;
        let chain_hex = sha256_hex(chain_id).unwrap_or_default();
        let doomed = self.dir.join(format!(
            "{RM_PREFIX}{}-{}-{chain_hex}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        {
            let _lock = self.lock()?;
            match fs::rename(&path, &doomed) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(LayerError::NoSuchSnapshot(chain_id.to_owned()));
                }
                Err(source) => return Err(LayerError::RemoveSnapshot { path, source }),
            }
            match fs::remove_file(self.marker(chain_hex)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(LayerError::RemoveSnapshot { path, source }),
            }
        }
        let rm_err = |source| LayerError::RemoveSnapshot {
            path: path.clone(),
            source,
        };
        let size = disk_usage(&doomed).map_err(rm_err)?;
        fs::remove_dir_all(&doomed).map_err(rm_err)?;
        Ok(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let ids = Snapshots::chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        let mut h = Sha256::new();
        h.update(format!("{a} {b}").as_bytes());
        assert_eq!(ids[1], format!("sha256:{}", hex(&h.finalize())));
        assert!(Snapshots::chain_ids(&[]).is_empty());
    }

    #[test]
    fn rejects_bad_chain_ids() {
        let t = tempfile::tempdir().unwrap();
        let s = Snapshots::new(t.path().join("snap")).unwrap();
        for bad in ["../x", "sha256:../../etc", "sha256:ABC", "md5:00"] {
            assert!(matches!(s.path(bad), Err(LayerError::InvalidDigest(_))));
        }
    }
}
