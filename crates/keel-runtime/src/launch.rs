//! Starting a container's monitor process, and the client's handle on it.
//!
//! The monitor is normally a re-exec of the keel binary (`keel __monitor ID`).
//! A client that is still single-threaded may instead fork and run the
//! monitor in the child ([`InProcess`]): the same process tree and the same
//! frame pipe, minus an exec of a large binary (loading, relocating and
//! parsing the command line again cost about 2 ms of a 20 ms `keel run`).
//! The forked monitor keeps its client's command line, so
//! [`crate::record::monitor_alive`] knows a monitor by its pid and start time.
//! Where setting the child up fails, it execs the binary after all.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Command, Stdio as StdStdio};

use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::error::{Result, RuntimeError};
use crate::record::Containers;
use crate::tty::WinSize;

/// Runs the monitor in a forked child: gets the client's window size and
/// returns the monitor's exit code. `keel-cli` supplies it (it owns the
/// network attacher the monitor needs).
pub type InProcess<'a> = &'a dyn Fn(Option<WinSize>) -> i32;

/// A started monitor: its pid and the pipe carrying its [`crate::monitor::Frame`]s.
#[derive(Debug)]
pub struct Monitor {
    pid: Pid,
    /// The frame pipe (the monitor's stdout); `None` once taken.
    pub stdout: Option<File>,
    reaped: bool,
}

impl Monitor {
    pub fn id(&self) -> u32 {
        self.pid.as_raw().unsigned_abs()
    }

    /// Waits for the monitor to exit.
    pub fn wait(&mut self) -> std::io::Result<()> {
        while !self.reaped {
            match waitpid(self.pid, None) {
                // ECHILD: someone else reaped it; it is gone all the same.
                Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..))
                | Err(nix::errno::Errno::ECHILD) => self.reaped = true,
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Whether the monitor has exited (reaping it if so).
    pub fn try_wait(&mut self) -> std::io::Result<bool> {
        if !self.reaped {
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..))
                | Err(nix::errno::Errno::ECHILD) => self.reaped = true,
                Ok(_) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(self.reaped)
    }

    /// SIGKILLs the monitor unless it was already reaped.
    pub fn kill(&mut self) -> std::io::Result<()> {
        if self.reaped {
            return Ok(());
        }
        nix::sys::signal::kill(self.pid, nix::sys::signal::Signal::SIGKILL).map_err(Into::into)
    }
}

/// Spawns the monitor for `id`. `exe` is the keel binary; `stdin_inherit` hands
/// the caller's stdin to the container (`-i`).
pub fn spawn_monitor(exe: &Path, root: &Path, id: &str, stdin_inherit: bool) -> Result<Monitor> {
    spawn_monitor_sized(exe, root, id, stdin_inherit, None, None)
}

fn spawn_err(what: &str, source: impl Into<std::io::Error>) -> RuntimeError {
    RuntimeError::Spawn {
        what: what.to_string(),
        source: source.into(),
    }
}

/// [`spawn_monitor`] for a `-t` container (with the client's window size),
/// forking instead of exec'ing when `in_process` is given and this process
/// has a single thread.
pub fn spawn_monitor_sized(
    exe: &Path,
    root: &Path,
    id: &str,
    stdin_inherit: bool,
    size: Option<WinSize>,
    in_process: Option<InProcess<'_>>,
) -> Result<Monitor> {
    use std::os::unix::process::CommandExt;
    let containers = Containers::open(root)?;
    let log = File::create(containers.dir(id).join("monitor.log"))
        .map_err(|e| spawn_err("the monitor log", e))?;
    // The monitor is its own process group (so Ctrl-C at the terminal does
    // not reach it), which makes it a background job of the client's
    // terminal: reading that terminal would stop it with SIGTTIN. So the
    // client reads its stdin and relays it through a pipe, as docker's
    // client relays it to the daemon.
    let (stdin, relay): (OwnedFd, Option<OwnedFd>) = if stdin_inherit {
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| spawn_err("the stdin pipe", e))?;
        (r, Some(w))
    } else {
        (
            File::open("/dev/null")
                .map_err(|e| spawn_err("/dev/null", e))?
                .into(),
            None,
        )
    };
    let (frames_r, frames_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| spawn_err("the monitor pipe", e))?;
    let forked = match in_process {
        Some(main) if single_threaded() => {
            let fds = ChildFds {
                stdin: &stdin,
                stdout: &frames_w,
                stderr: &log,
            };
            fork_monitor(&fds, monitor_command(exe, root, id, size), &|| main(size))
        }
        _ => None,
    };
    let pid = if let Some(pid) = forked {
        pid
    } else {
        let child = monitor_command(exe, root, id, size)
            .stdin(StdStdio::from(stdin))
            .stdout(StdStdio::from(frames_w))
            .stderr(StdStdio::from(log))
            // Ctrl-C at the terminal must not reach the monitor.
            .process_group(0)
            .spawn()
            .map_err(|e| spawn_err("the container monitor", e))?;
        // Reaped through the Monitor handle (std's Child never reaps on drop).
        Pid::from_raw(child.id().cast_signed())
    };
    if let Some(w) = relay {
        // Ends at the client's EOF (the container's stdin closes, as with
        // `docker run -i`) or when the monitor is gone (EPIPE); the thread
        // does not keep the client alive.
        std::thread::spawn(move || {
            let mut w = File::from(w);
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut w);
        });
    }
    Ok(Monitor {
        pid,
        stdout: Some(File::from(frames_r)),
        reaped: false,
    })
}

/// `keel --root ROOT __monitor ID`, with a `-t` container's window size.
fn monitor_command(exe: &Path, root: &Path, id: &str, size: Option<WinSize>) -> Command {
    let mut c = Command::new(exe);
    c.arg("--root").arg(root).arg("__monitor").arg(id);
    // A more verbose level the client runs with (`--log-level`) holds for
    // its monitor too; `KEEL_LOG` is inherited anyway.
    let level = tracing::level_filters::LevelFilter::current();
    if std::env::var_os("KEEL_LOG").is_none() && level > tracing::level_filters::LevelFilter::WARN {
        c.env("KEEL_LOG", level.to_string().to_ascii_lowercase());
    }
    if let Some(w) = size {
        c.env(crate::monitor::TTY_SIZE_ENV, w.to_string());
    }
    c
}

/// Whether this process has exactly one thread: only then is a fork that
/// goes on running Rust code (allocating, taking std's locks) sound.
fn single_threaded() -> bool {
    std::fs::read_dir("/proc/self/task").is_ok_and(|d| d.count() == 1)
}

/// What the monitor's stdin, stdout and stderr are.
struct ChildFds<'a> {
    stdin: &'a OwnedFd,
    stdout: &'a OwnedFd,
    stderr: &'a File,
}

/// Forks; the child becomes the monitor and never returns (running `main`,
/// or exec'ing `fallback` where it cannot be set up). `None` when fork
/// itself failed, so the caller execs instead.
#[allow(unsafe_code)]
fn fork_monitor(fds: &ChildFds<'_>, mut fallback: Command, main: &dyn Fn() -> i32) -> Option<Pid> {
    // SAFETY: the caller checked that this process has a single thread, so
    // no lock (malloc's, std's) can be held by a thread missing in the child.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { child }) => Some(child),
        Err(_) => None,
        Ok(nix::unistd::ForkResult::Child) => {
            let code = match become_monitor(fds) {
                Ok(()) => main(),
                Err(e) => {
                    // Could not set the child up: be the monitor by exec.
                    let err = std::os::unix::process::CommandExt::exec(&mut fallback);
                    tracing::error!(
                        setup_error = %e,
                        exec_error = %err,
                        command = ?fallback,
                        "cannot become the monitor"
                    );
                    -1
                }
            };
            // Exit without unwinding into the client's stack frames.
            std::process::exit(if code < 0 { 1 } else { code.min(255) })
        }
    }
}

/// In the forked child: the stdio a spawned monitor would get, its own
/// process group, no other inherited descriptor (the client's pipe ends
/// and locks), a clear signal mask, and its own name.
fn become_monitor(fds: &ChildFds<'_>) -> std::io::Result<()> {
    // Above 2 first, so that no target overwrites a source.
    let stdin = rustix::io::fcntl_dupfd_cloexec(fds.stdin, 3)?;
    let stdout = rustix::io::fcntl_dupfd_cloexec(fds.stdout, 3)?;
    let stderr = rustix::io::fcntl_dupfd_cloexec(fds.stderr, 3)?;
    rustix::stdio::dup2_stdin(&stdin)?;
    rustix::stdio::dup2_stdout(&stdout)?;
    rustix::stdio::dup2_stderr(&stderr)?;
    drop((stdin, stdout, stderr));
    // Whatever else is open here belongs to objects of the client that the
    // child never drops (it leaves by exit, not by unwinding).
    close_from(3);
    rustix::process::setpgid(None, None)?;
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
    // `ps -o comm` and top tell it from its client; its command line stays
    // the client's (rewriting that needs CAP_SYS_RESOURCE).
    rustix::thread::set_name(c"keel-monitor")?;
    Ok(())
}

/// Closes every descriptor from `first` on.
fn close_from(first: i32) {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd >= first)
        .collect();
    for fd in fds {
        // The directory's own descriptor is among them, already closed.
        let _ = nix::unistd::close(fd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::zombie_processes)] // the Monitor handle reaps it
    fn reaping_twice_is_fine() {
        let child = Command::new("true").spawn().unwrap();
        let mut m = Monitor {
            pid: Pid::from_raw(child.id().cast_signed()),
            stdout: None,
            reaped: false,
        };
        m.wait().unwrap();
        m.wait().unwrap();
        assert!(m.try_wait().unwrap());
        m.kill().unwrap();
    }
}
