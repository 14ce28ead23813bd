//! Paying the cgroup migration toll early.
//!
//! Moving a process into a cgroup (writing `cgroup.procs`) takes the kernel's
//! global `cgroup_threadgroup_rwsem` for writing. Unless cgroupfs is mounted
//! with `favordynmods`, the first writer after an idle spell waits a full RCU
//! grace period (about 10-15 ms measured on a cgroup v1 host) to switch that
//! lock to its writer mode; the mode is kept for about one more grace period
//! after the last writer. Every container start moves its init into fresh
//! cgroups, so that wait sits right in the middle of `keel run`.
//!
//! [`MigrationWarmer`] moves the calling process into the cgroup it already
//! is in (a no-op migration) from a side thread, first as soon as a start
//! begins and then every few milliseconds until it is dropped: the grace
//! period passes while keel does other work, and the runtime's own
//! migrations find the lock already in writer mode. Readers of that lock
//! (fork, exit) are not held up by the wait, only for the instant of each
//! no-op move. Best effort: where the write is refused, the thread just ends.
//!
//! Only runtimes that move their init by pid need it (runc; see
//! `OciRuntime::migrates_by_pid`): keel's patched libcgroups moves
//! libcontainer's single-threaded intermediate process through `tasks`,
//! which the kernel does without that lock (vendor/README.md).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the no-op move repeats: well inside one grace period.
const INTERVAL: Duration = Duration::from_millis(3);
/// A start that takes longer than this has other problems; stop warming.
const MAX_LIFETIME: Duration = Duration::from_secs(3);

/// Keeps the cgroup migration lock warm while alive; see the module docs.
#[derive(Debug)]
pub struct MigrationWarmer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl MigrationWarmer {
    /// Starts warming; a no-op where this process's cgroup cannot be found.
    pub fn start() -> Self {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let thread = own_procs_file().and_then(|procs| {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("cgroup-warm".into())
                .spawn(move || warm(&procs, &stop))
                .ok()
        });
        MigrationWarmer { stop, thread }
    }
}

impl Drop for MigrationWarmer {
    fn drop(&mut self) {
        let (lock, cv) = &*self.stop;
        if let Ok(mut s) = lock.lock() {
            *s = true;
        }
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn warm(procs: &Path, stop: &(Mutex<bool>, Condvar)) {
    let me = std::process::id().to_string();
    let until = Instant::now() + MAX_LIFETIME;
    let (lock, cv) = stop;
    loop {
        if std::fs::write(procs, &me).is_err() {
            return;
        }
        let Ok(guard) = lock.lock() else { return };
        let Ok((guard, _)) = cv.wait_timeout_while(guard, INTERVAL, |s| !*s) else {
            return;
        };
        if *guard || Instant::now() >= until {
            return;
        }
    }
}

/// `cgroup.procs` of this process's own cgroup in one mounted hierarchy
/// (any will do: the lock is shared by all of them).
fn own_procs_file() -> Option<PathBuf> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    procs_file(&cgroup, &mountinfo)
}

/// Matches the lines of /proc/self/cgroup (`id:controllers:path`) with the
/// cgroup mounts of /proc/self/mountinfo.
fn procs_file(cgroup: &str, mountinfo: &str) -> Option<PathBuf> {
    for m in mountinfo.lines() {
        // id parent maj:min root mountpoint opts [optional...] - fstype source superopts
        let Some((left, right)) = m.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        let (Some(root), Some(point), Some(fstype), Some(superopts)) =
            (fields.get(3), fields.get(4), right.first(), right.get(2))
        else {
            continue;
        };
        let opts: Vec<&str> = superopts.split(',').collect();
        let entry = cgroup.lines().find_map(|l| {
            let mut it = l.splitn(3, ':');
            let (_, ctrls, path) = (it.next()?, it.next()?, it.next()?);
            let matches = match *fstype {
                "cgroup2" => ctrls.is_empty(),
                "cgroup" => !ctrls.is_empty() && ctrls.split(',').all(|c| opts.contains(&c)),
                _ => false,
            };
            matches.then_some(path)
        });
        let Some(path) = entry else { continue };
        // Mounted from a sub-cgroup (a cgroup namespace or a bind mount): the
        // path is relative to that root.
        let Some(rel) = path
            .strip_prefix(root.trim_end_matches('/'))
            .filter(|r| r.is_empty() || r.starts_with('/'))
        else {
            continue;
        };
        let dir =
            Path::new(&crate::rootfs::unescape_mountinfo(point)).join(rel.trim_start_matches('/'));
        return Some(dir.join("cgroup.procs"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 254:0 / / rw,relatime - ext4 /dev/vda rw
30 22 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
32 30 0:28 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
33 30 0:29 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn finds_the_own_cgroup_in_a_v1_hierarchy() {
        let cg = "4:memory:/a/b\n1:cpu:/\n0::/\n";
        assert_eq!(
            procs_file(cg, MOUNTINFO).unwrap(),
            Path::new("/sys/fs/cgroup/cpu/cgroup.procs")
        );
    }

    #[test]
    fn finds_a_pure_v2_cgroup_and_relative_roots() {
        let info = "40 22 0:30 /user.slice /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            procs_file("0::/user.slice/session-1.scope\n", info).unwrap(),
            Path::new("/sys/fs/cgroup/session-1.scope/cgroup.procs")
        );
        assert!(procs_file("0::/elsewhere\n", info).is_none());
        assert!(procs_file("0::/user.slicer\n", info).is_none());
        assert!(procs_file("", MOUNTINFO).is_none());
        assert!(procs_file("garbage", "garbage").is_none());
    }

    #[test]
    fn warmer_starts_and_stops_promptly() {
        let t = Instant::now();
        drop(MigrationWarmer::start());
        assert!(t.elapsed() < MAX_LIFETIME);
    }
}
