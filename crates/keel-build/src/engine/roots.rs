//! Root filesystems of steps: the snapshot directories of a stage's layers
//! and overlay mounts of them, through the [`Runner`].

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use keel_oci::Digest;
use keel_oci::layer::Snapshots;

use super::Engine;
use crate::cache::LayerRef;
use crate::error::{Result, io_err};
use crate::runner::Runner;

impl Engine<'_> {
    /// Snapshot directories of the stage's layers (base first).
    pub(super) fn lowerdirs(&self, layers: &[LayerRef]) -> Result<Vec<PathBuf>> {
        if layers.is_empty() {
            let empty = self.build_dir.join("empty");
            fs::create_dir_all(&empty).map_err(io_err("create", &empty))?;
            return Ok(vec![empty]);
        }
        let snaps: Snapshots = self.store.snapshots()?;
        let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
        let blobs = self.store.blobs().clone();
        let digests: Vec<String> = layers.iter().map(|l| l.digest.clone()).collect();
        Ok(snaps.ensure_chain(&diff_ids, |i| {
            let d = Digest::parse(&digests[i]).map_err(std::io::Error::other)?;
            let r = blobs.open(&d).map_err(std::io::Error::other)?;
            Ok(Box::new(r) as Box<dyn Read>)
        })?)
    }

    pub(super) fn tmp_dir(&self) -> Result<tempfile::TempDir> {
        let d = self.build_dir.join("tmp");
        fs::create_dir_all(&d).map_err(io_err("create", &d))?;
        tempfile::Builder::new()
            .prefix("step-")
            .tempdir_in(&d)
            .map_err(io_err("create temp dir in", d))
    }

    /// Mounts the stage's root (overlay with a fresh upper in `dir`) for the
    /// duration of `f`; returns what `f` returned. The upper dir stays.
    pub(super) fn with_root<T>(
        &self,
        dir: &Path,
        layers: &[LayerRef],
        f: impl FnOnce(&Path) -> Result<T>,
    ) -> Result<T> {
        let lowers = self.lowerdirs(layers)?;
        let mounted = self.mount(dir, &lowers)?;
        let r = f(&mounted.path);
        let unmounted = mounted.finish();
        let value = r?;
        unmounted?;
        Ok(value)
    }

    /// Mounts `lowers` at `dir/merged` (writes to `dir/upper`) until the
    /// returned guard is dropped or finished.
    pub(super) fn mount(&self, dir: &Path, lowers: &[PathBuf]) -> Result<Unmount<'_>> {
        let path = self.runner.mount(dir, lowers)?;
        Ok(Unmount {
            runner: self.runner,
            path,
            armed: true,
        })
    }
}

/// A mounted root, unmounted on drop (also on error and unwinding).
pub(super) struct Unmount<'r> {
    runner: &'r dyn Runner,
    /// The merged directory.
    pub(super) path: PathBuf,
    armed: bool,
}

impl Unmount<'_> {
    /// Unmounts now, reporting a failure.
    pub(super) fn finish(mut self) -> Result<()> {
        self.armed = false;
        Ok(self.runner.unmount(&self.path)?)
    }
}

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.runner.unmount(&self.path);
        }
    }
}
