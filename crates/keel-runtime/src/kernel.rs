//! Every kernel effect of the container lifecycle behind [`Kernel`]: mounts,
//! network namespaces, signals, process liveness, reaping the container's
//! init, cgroup counters, the OCI runtime that spawns processes, and time
//! (so that restart backoff and stop timeouts need not be waited out). The
//! model is youki's `Syscall` trait and keel-net's `Kernel`. [`HostKernel`]
//! is the real one; [`fake::FakeKernel`] records effects, so the monitor
//! and the engine (create, start, stop, restart policy, teardown order,
//! cleanup after a killed monitor) are unit-tested without root.
//!
//! [`crate::record::Containers`] carries the kernel its operations use
//! (`Containers::with_kernel`); `Containers::open` takes the host's.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::backend::OciRuntime;
use crate::error::{Result, RuntimeError};

#[cfg(any(test, feature = "testing"))]
pub mod fake;

/// The kernel operations of keel-runtime's lifecycle code.
pub trait Kernel: Send + Sync + std::fmt::Debug {
    /// Mounts the container's overlay root under `dir` (see
    /// [`crate::rootfs::mount_overlay`]) unless it is; returns its path.
    fn mount_overlay(&self, dir: &Path, lowerdirs: &[PathBuf], volatile: bool) -> Result<PathBuf>;
    /// Whether something is mounted exactly at `path`.
    fn is_mounted(&self, path: &Path) -> bool;
    /// Unmounts `path` (lazily) if it is mounted.
    fn unmount(&self, path: &Path) -> Result<()>;
    /// Every mount point at or below `dir`, deepest first.
    fn mounts_under(&self, dir: &Path) -> Vec<PathBuf>;
    /// Creates a network namespace with loopback up, pinned at `path`.
    fn create_netns(&self, path: &Path) -> Result<()>;
    /// Unpins and deletes a namespace file; missing is fine.
    fn remove_netns(&self, path: &Path) -> Result<()>;
    /// Process `pid`'s start time if it is alive (see [`crate::record::process_start`]).
    fn process_start(&self, pid: i32) -> Option<u64>;
    /// Process `pid`'s command line, arguments joined by NUL.
    fn cmdline(&self, pid: i32) -> Option<String>;
    /// Sends `signal` to process `pid`.
    fn signal(&self, pid: i32, signal: Signal) -> Result<()>;
    /// Blocks until process `pid` exits or `max` has passed (whichever first).
    fn wait_exit(&self, pid: i32, max: Duration);
    /// A descriptor that polls readable once the container's init `pid` (a
    /// child of the caller) has exited.
    fn watch_init(&self, pid: i32) -> Result<OwnedFd>;
    /// Reaps the exited init `pid`; its exit code (128+signal when killed),
    /// `None` when it cannot be had.
    fn reap_init(&self, pid: i32) -> Option<i32>;
    /// Reaps exited children other than `init` (see the monitor).
    fn reap_others(&self, init: i32);
    /// Reaps every exited child.
    fn reap_orphans(&self);
    /// How often the OOM killer fired in container `id`'s cgroup.
    fn oom_kills(&self, id: &str) -> u64;
    /// The OCI runtime `name` (which spawns the container's processes),
    /// keeping its state under `state_root`.
    fn runtime(&self, name: &str, state_root: &Path) -> Result<Box<dyn OciRuntime>>;
    fn now(&self) -> Instant;
    fn sleep(&self, d: Duration);
}

/// The real kernel.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostKernel;

fn exit_code_of(ws: nix::sys::wait::WaitStatus) -> Option<i32> {
    match ws {
        nix::sys::wait::WaitStatus::Exited(_, c) => Some(c),
        nix::sys::wait::WaitStatus::Signaled(_, s, _) => Some(128 + s as i32),
        _ => None,
    }
}

impl Kernel for HostKernel {
    fn mount_overlay(&self, dir: &Path, lowerdirs: &[PathBuf], volatile: bool) -> Result<PathBuf> {
        crate::rootfs::mount_overlay(dir, lowerdirs, volatile)
    }

    fn is_mounted(&self, path: &Path) -> bool {
        crate::rootfs::is_mounted(path)
    }

    fn unmount(&self, path: &Path) -> Result<()> {
        crate::rootfs::unmount_if_mounted(path)
    }

    fn mounts_under(&self, dir: &Path) -> Vec<PathBuf> {
        crate::rootfs::mounts_under(dir)
    }

    fn create_netns(&self, path: &Path) -> Result<()> {
        crate::network::create_netns(path)
    }

    fn remove_netns(&self, path: &Path) -> Result<()> {
        crate::network::remove_netns(path)
    }

    fn process_start(&self, pid: i32) -> Option<u64> {
        crate::record::process_start(pid)
    }

    fn cmdline(&self, pid: i32) -> Option<String> {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .ok()
            .map(|c| String::from_utf8_lossy(&c).into_owned())
    }

    fn signal(&self, pid: i32, signal: Signal) -> Result<()> {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
            .map_err(|e| RuntimeError::Signal(e.into()))
    }

    fn wait_exit(&self, pid: i32, max: Duration) {
        // A pidfd wakes us the moment the process exits.
        let fd = rustix::process::Pid::from_raw(pid).and_then(|p| {
            rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()
        });
        let Some(fd) = fd else {
            // Gone already, or no pidfds: a short nap, the caller re-checks.
            std::thread::sleep(max.min(Duration::from_millis(10)));
            return;
        };
        let mut fds = [rustix::event::PollFd::new(
            &fd,
            rustix::event::PollFlags::IN,
        )];
        let ts = rustix::event::Timespec {
            tv_sec: max.as_secs().cast_signed(),
            tv_nsec: i64::from(max.subsec_nanos()),
        };
        let _ = rustix::event::poll(&mut fds, Some(&ts));
    }

    fn watch_init(&self, pid: i32) -> Result<OwnedFd> {
        let p = rustix::process::Pid::from_raw(pid)
            .ok_or_else(|| RuntimeError::Monitor("pid 0".into()))?;
        rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty())
            .map_err(|e| RuntimeError::Monitor(format!("pidfd_open: {e}")))
    }

    fn reap_init(&self, pid: i32) -> Option<i32> {
        nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None)
            .ok()
            .and_then(exit_code_of)
    }

    /// A zombie of the container's pid namespace (a health probe whose exec
    /// failed halfway leaves its processes to the monitor) keeps that
    /// namespace's init from finishing its exit.
    fn reap_others(&self, init: i32) {
        use nix::sys::wait::{Id, WaitPidFlag, waitid, waitpid};
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        while let Ok(ws) = waitid(Id::All, flags) {
            match ws.pid() {
                Some(p) if p.as_raw() != init => {
                    let _ = waitpid(p, Some(WaitPidFlag::WNOHANG));
                }
                // Nothing exited, or init did: the monitor's exit path takes over.
                _ => break,
            }
        }
    }

    fn reap_orphans(&self) {
        use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
        while let Ok(ws) = waitpid(nix::unistd::Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            if ws == WaitStatus::StillAlive {
                break;
            }
        }
    }

    fn oom_kills(&self, id: &str) -> u64 {
        crate::stats::oom_kills(id)
    }

    fn runtime(&self, name: &str, state_root: &Path) -> Result<Box<dyn OciRuntime>> {
        crate::backend::by_name(name, state_root)
    }

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}
