//! Pseudo-terminals for `run -t` and `exec -t`. The pty is made inside the
//! container (from its own devpts, so `tty` names `/dev/pts/N` there) by the
//! OCI runtime, which hands the master back over a console socket (the
//! `--console-socket` protocol of runc, which libcontainer speaks too).
//! [`ConsoleSocket`] is that socket's listening end; [`relay`] copies between
//! the master and the caller's streams.

use std::fs::File;
use std::io::{IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, poll};
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};

use crate::{Result, RuntimeError};

/// How long the runtime may take to send the master once the process runs.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// A window size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WinSize {
    pub rows: u16,
    pub cols: u16,
}

impl WinSize {
    /// The size of the terminal on `fd`, if it is one.
    pub fn of(fd: impl AsFd) -> Option<WinSize> {
        let w = rustix::termios::tcgetwinsize(fd).ok()?;
        (w.ws_row > 0 && w.ws_col > 0).then_some(WinSize {
            rows: w.ws_row,
            cols: w.ws_col,
        })
    }

    /// `ROWSxCOLS`, as passed to the monitor.
    pub fn parse(s: &str) -> Option<WinSize> {
        let (r, c) = s.split_once('x')?;
        Some(WinSize {
            rows: r.parse().ok()?,
            cols: c.parse().ok()?,
        })
    }

    /// Applies the size to a pty master.
    pub fn apply(self, master: impl AsFd) -> Result<()> {
        rustix::termios::tcsetwinsize(
            master,
            rustix::termios::Winsize {
                ws_row: self.rows,
                ws_col: self.cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            },
        )
        .map_err(|e| RuntimeError::Tty(format!("setting the window size: {e}")))
    }
}

impl std::fmt::Display for WinSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.rows, self.cols)
    }
}

/// The listening end of a console socket; the file goes away on drop.
pub struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ConsoleSocket {
    /// Listens at `dir/tty-<pid>-<n>.sock` (kept short: socket paths are
    /// limited to 107 bytes).
    pub fn bind(dir: &Path) -> Result<ConsoleSocket> {
        std::fs::create_dir_all(dir).map_err(|e| RuntimeError::Tty(format!("{e}")))?;
        let pid = std::process::id();
        for n in 0..100u32 {
            let path = dir.join(format!("tty-{pid}-{n}.sock"));
            match UnixListener::bind(&path) {
                Ok(listener) => return Ok(ConsoleSocket { listener, path }),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    // A socket of a dead process with our pid: stale.
                    let _ = std::fs::remove_file(&path);
                }
                Err(e) => {
                    return Err(RuntimeError::Tty(format!(
                        "listening on {}: {e}",
                        path.display()
                    )));
                }
            }
        }
        Err(RuntimeError::Tty("no free console socket name".into()))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts the runtime's connection and takes the pty master it sends.
    pub fn receive(&self) -> Result<OwnedFd> {
        let err = |what: &str, e: &dyn std::fmt::Display| RuntimeError::Tty(format!("{what}: {e}"));
        let mut fds = [PollFd::new(&self.listener, PollFlags::IN)];
        let ts = rustix::event::Timespec {
            tv_sec: RECEIVE_TIMEOUT.as_secs().try_into().unwrap_or(10),
            tv_nsec: 0,
        };
        loop {
            match poll(&mut fds, Some(&ts)) {
                Ok(0) => return Err(RuntimeError::Tty("the runtime sent no terminal".into())),
                Ok(_) => break,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(err("waiting for the terminal", &e)),
            }
        }
        let (stream, _) = self
            .listener
            .accept()
            .map_err(|e| err("accepting the console connection", &e))?;
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut cmsg = RecvAncillaryBuffer::new(&mut space);
        let mut name = [0u8; 256];
        recvmsg(
            &stream,
            &mut [IoSliceMut::new(&mut name)],
            &mut cmsg,
            RecvFlags::CMSG_CLOEXEC,
        )
        .map_err(|e| err("receiving the terminal", &e))?;
        for m in cmsg.drain() {
            if let RecvAncillaryMessage::ScmRights(mut fds) = m
                && let Some(fd) = fds.next()
            {
                return Ok(fd);
            }
        }
        Err(RuntimeError::Tty(
            "the runtime's message carried no terminal".into(),
        ))
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Copies `input` (if any) into the pty `master` and the master's output to
/// `output`, until the master reports the terminal closed (every process
/// holding it has exited) or `done` is readable and the master is drained.
pub fn relay(
    master: &OwnedFd,
    input: Option<&OwnedFd>,
    output: &mut dyn Write,
    done: Option<&OwnedFd>,
) -> Result<()> {
    let mut m = File::from(
        master
            .try_clone()
            .map_err(|e| RuntimeError::Tty(e.to_string()))?,
    );
    let mut input_open = input.is_some();
    let mut finished = false;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let (m_ready, in_ready, done_ready) = {
            let mut fds = vec![PollFd::new(master, PollFlags::IN)];
            if let (true, Some(i)) = (input_open, input) {
                fds.push(PollFd::new(i, PollFlags::IN));
            }
            let done_idx = fds.len();
            if let (false, Some(d)) = (finished, done) {
                fds.push(PollFd::new(d, PollFlags::IN));
            }
            // Once the process is gone, only what is already buffered remains.
            let short = rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: 50_000_000,
            };
            match poll(&mut fds, finished.then_some(&short)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(RuntimeError::Tty(format!("poll: {e}"))),
            }
            let r = |i: usize| fds.get(i).is_some_and(|f| !f.revents().is_empty());
            (
                r(0),
                input_open && r(1),
                done_idx < fds.len() && r(done_idx),
            )
        };
        if done_ready {
            finished = true;
        }
        if m_ready {
            match m.read(&mut buf) {
                // EIO: the last slave descriptor closed.
                Ok(0) | Err(_) => return Ok(()),
                Ok(n) => {
                    let _ = output.write_all(&buf[..n]);
                    let _ = output.flush();
                }
            }
        } else if finished {
            return Ok(());
        }
        if in_ready && let Some(i) = input {
            let mut f = File::from(
                i.try_clone()
                    .map_err(|e| RuntimeError::Tty(e.to_string()))?,
            );
            match f.read(&mut buf) {
                Ok(0) | Err(_) => input_open = false,
                Ok(n) => {
                    if m.write_all(&buf[..n]).is_err() {
                        input_open = false;
                    }
                }
            }
        }
    }
}

/// The calling process's terminal in raw mode until dropped, like docker
/// `-it` does, so that keys (Ctrl-C too) go to the container.
pub struct RawMode {
    fd: OwnedFd,
    saved: rustix::termios::Termios,
}

impl RawMode {
    /// `None` when `fd` is not a terminal.
    pub fn enable(fd: impl AsFd) -> Option<RawMode> {
        let fd = fd.as_fd().try_clone_to_owned().ok()?;
        let saved = rustix::termios::tcgetattr(&fd).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(&fd, rustix::termios::OptionalActions::Now, &raw).ok()?;
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(
            &self.fd,
            rustix::termios::OptionalActions::Now,
            &self.saved,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_sizes_round_trip() {
        let w = WinSize {
            rows: 40,
            cols: 120,
        };
        assert_eq!(WinSize::parse(&w.to_string()), Some(w));
        assert_eq!(WinSize::parse("x"), None);
        assert_eq!(WinSize::parse("1x"), None);
    }
}
