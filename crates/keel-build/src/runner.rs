//! The build's seam to the kernel: overlay mounts of a stage's layers and
//! the one-shot containers of `RUN`. [`HostRunner`] does both for real
//! (through keel-runtime: `rootfs::mount_overlay` and [`oneshot`]); the
//! engine only ever talks to a [`Runner`], so its instruction semantics are
//! tested with a fake one that records what it is asked and writes files
//! where a real `RUN` would.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use keel_runtime::oneshot::{self, OneShot};
use keel_runtime::{MountSpec, RuntimeError};

pub use keel_runtime::oneshot::Stream;

/// One `RUN`, as the engine asks for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunRequest {
    /// Snapshot directories of the stage's layers, base first (at least one).
    pub lowerdirs: Vec<PathBuf>,
    /// The full argv (the shell and the script, or the exec form).
    pub argv: Vec<String>,
    /// The environment: the stage's Env, then the ARGs in scope.
    pub env: Vec<String>,
    /// Absolute working directory.
    pub workdir: String,
    /// `USER` in effect (empty: root).
    pub user: String,
    /// `host` or `none`.
    pub network: String,
    /// `RUN --mount`s and the heredoc script, as bind and tmpfs mounts.
    pub mounts: Vec<MountSpec>,
}

/// A `RUN` that has exited: its changes are in [`RunDone::upper_dir`] until
/// [`RunDone::remove`] (or drop) deletes them.
pub trait RunDone {
    /// The exit code.
    fn code(&self) -> i32;
    /// The directory holding exactly the changes the command made.
    fn upper_dir(&self) -> PathBuf;
    /// Deletes the container and its upper dir.
    fn remove(&mut self) -> Result<(), RuntimeError>;
}

/// What a build needs from the kernel.
pub trait Runner: Sync {
    /// Mounts `lowers` (base first) read-write at `dir/merged`, with the
    /// writes going to `dir/upper`; returns `dir/merged`.
    fn mount(&self, dir: &Path, lowers: &[PathBuf]) -> Result<PathBuf, RuntimeError>;

    /// Undoes [`Runner::mount`]; afterwards `dir/upper` holds the changes.
    fn unmount(&self, merged: &Path) -> Result<(), RuntimeError>;

    /// Whether what steps write gets the image's owners (root, `--chown`'s,
    /// USER's working directory): `lchown`, which needs root. A runner for
    /// unit tests without root says no; the trees then keep the test user's.
    fn sets_owners(&self) -> bool {
        true
    }

    /// Runs `req` to its end: `seed` first writes into the (empty) upper
    /// dir, output goes to `output` as it comes, and `cancel` kills it.
    fn run(
        &self,
        req: &RunRequest,
        seed: &mut dyn FnMut(&Path) -> io::Result<()>,
        cancel: &AtomicBool,
        output: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<Box<dyn RunDone>, RuntimeError>;
}

/// The real thing: overlayfs and one-shot containers run by the keel binary
/// `exe` as their monitor, recorded under `run_root` (out of `keel ps`).
#[derive(Debug, Clone)]
pub struct HostRunner {
    pub exe: PathBuf,
    pub run_root: PathBuf,
}

struct HostRun {
    running: oneshot::Running,
    code: i32,
}

impl RunDone for HostRun {
    fn code(&self) -> i32 {
        self.code
    }

    fn upper_dir(&self) -> PathBuf {
        self.running.upper_dir()
    }

    fn remove(&mut self) -> Result<(), RuntimeError> {
        self.running.remove()
    }
}

impl Runner for HostRunner {
    fn mount(&self, dir: &Path, lowers: &[PathBuf]) -> Result<PathBuf, RuntimeError> {
        keel_runtime::rootfs::mount_overlay(dir, lowers, true)
    }

    fn unmount(&self, merged: &Path) -> Result<(), RuntimeError> {
        keel_runtime::rootfs::unmount_if_mounted(merged)
    }

    fn run(
        &self,
        req: &RunRequest,
        seed: &mut dyn FnMut(&Path) -> io::Result<()>,
        cancel: &AtomicBool,
        output: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<Box<dyn RunDone>, RuntimeError> {
        let shot = OneShot {
            lowerdirs: req.lowerdirs.clone(),
            args: req.argv.clone(),
            env: req.env.clone(),
            working_dir: req.workdir.clone(),
            user: req.user.clone(),
            network: req.network.clone(),
            mounts: req.mounts.clone(),
            hostname: String::new(),
        };
        let mut running = oneshot::start(&self.exe, &self.run_root, &shot, seed)?;
        let code = running.wait(cancel, output)?;
        Ok(Box::new(HostRun { running, code }))
    }
}
