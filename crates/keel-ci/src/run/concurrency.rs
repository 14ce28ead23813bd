//! Concurrency groups across runs and processes: one lock file per group
//! under a shared directory, holding the holder's pid and the file that
//! cancels it. A newcomer waits for the holder, or with
//! `cancel-in-progress` writes that file first. A dead holder's lock is
//! taken over.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// Held for the length of a run or job; released on drop.
#[derive(Debug)]
pub struct GroupLock(Option<PathBuf>);

impl Drop for GroupLock {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn alive(pid: i32) -> bool {
    rustix::process::Pid::from_raw(pid)
        .is_some_and(|p| rustix::process::test_kill_process(p).is_ok())
}

/// Takes `group` in `dir`. `cancel_file` is what another run writes to
/// cancel this holder. Gives up (`None`) when `stop` is set while waiting.
pub fn acquire(
    dir: &Path,
    group: &str,
    cancel_in_progress: bool,
    cancel_file: &Path,
    stop: &AtomicBool,
    mut say: impl FnMut(&str),
) -> std::io::Result<Option<GroupLock>> {
    std::fs::create_dir_all(dir)?;
    let lock = dir.join(super::context::hex(&Sha256::digest(group.as_bytes())[..12]));
    // The content is written before the lock appears (a hard link of a
    // complete file), so a reader never sees a half-written lock.
    let tmp = dir.join(format!(
        ".{}.{}",
        std::process::id(),
        super::context::hex(&Sha256::digest(cancel_file.to_string_lossy().as_bytes())[..6])
    ));
    {
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "{}\n{}", std::process::id(), cancel_file.display())?;
    }
    let mut told = false;
    let result = loop {
        match std::fs::hard_link(&tmp, &lock) {
            Ok(()) => break Ok(Some(GroupLock(Some(lock)))),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let held = std::fs::read_to_string(&lock).unwrap_or_default();
                let mut it = held.lines();
                let pid: i32 = it.next().and_then(|p| p.parse().ok()).unwrap_or(0);
                let other = it.next().map(PathBuf::from);
                if pid == 0 || !alive(pid) {
                    let _ = std::fs::remove_file(&lock);
                    continue;
                }
                if !told {
                    told = true;
                    if cancel_in_progress {
                        say(&format!(
                            "concurrency group {group}: cancelling the run in progress"
                        ));
                        if let Some(o) = &other {
                            let _ = std::fs::write(o, b"concurrency");
                        }
                    } else {
                        say(&format!(
                            "concurrency group {group}: waiting for the run in progress"
                        ));
                    }
                }
                if stop.load(Ordering::Relaxed) {
                    break Ok(None);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => break Err(e),
        }
    };
    let _ = std::fs::remove_file(&tmp);
    result
}
