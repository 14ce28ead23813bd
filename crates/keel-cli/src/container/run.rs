//! `create`, `run`, `start`, `stop`, `kill`, `restart`, `rm`, and the
//! monitor that supervises one container.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use keel_runtime::engine::{self};
use keel_runtime::monitor::Frame;
use keel_runtime::tty::{RawMode, WinSize};
use keel_runtime::{ContainerConfig, Containers};

use super::flags::{CreateFlags, KillArgs, RmArgs, RunArgs, StartArgs, StopArgs};
use super::network_attacher;
use super::parse::create_options;
use super::{each, each_forced, exit_code, hinted, open, resolve};

fn do_create(root: &Path, f: &CreateFlags) -> anyhow::Result<ContainerConfig> {
    let o = create_options(f)?;
    // docker refuses to overwrite a --cidfile: another container may own it.
    if let Some(p) = f.cidfile.as_ref().filter(|p| p.exists()) {
        anyhow::bail!(
            "Container ID file found, make sure the other container isn't running or delete {}",
            p.display()
        );
    }
    // docker's default: pull an image the store lacks.
    let policy = f.pull.as_deref().unwrap_or("missing");
    if let Err(e) = crate::image::pull_for_run(root, &f.image, policy, true) {
        if f.pull.is_some() {
            return Err(e);
        }
        // Not asked for: the missing image is the news, the pull's failure the detail.
        return Err(anyhow::Error::new(crate::Hint::new(format!(
            "check the name, or keel pull {} / keel load it first",
            f.image
        )))
        .context(format!(
            "no such image {} (pulling it failed: {})",
            f.image,
            keel_runtime::error_chain(e.as_ref())
        )));
    }
    let cfg = engine::create(root, &o)
        .map_err(hinted)
        .context("creating the container")?;
    if let Some(p) = &f.cidfile {
        std::fs::write(p, &cfg.id).with_context(|| format!("writing --cidfile {}", p.display()))?;
    }
    Ok(cfg)
}

/// `keel create`: like `run`, docker's 125 when keel itself fails (a name
/// in use, a missing image, a bad flag).
pub fn create(root: &Path, a: CreateFlags) -> anyhow::Result<ExitCode> {
    match do_create(root, &a) {
        Ok(cfg) => {
            println!("{}", cfg.id);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{}", crate::render_error(&e));
            Ok(ExitCode::from(EXIT_KEEL_FAILED))
        }
    }
}

fn exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("locating the keel binary")
}

/// docker's sig-proxy: INT, TERM, HUP, QUIT, USR1 and USR2 are blocked in
/// this thread and read from the returned signalfd, to be sent on to the
/// container instead of ending keel (`run`, `start -a`, `attach`).
pub(super) fn proxied_signals() -> anyhow::Result<nix::sys::signalfd::SignalFd> {
    use nix::sys::signal::{SigSet, Signal};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        mask.add(s);
    }
    mask.thread_block().context("blocking signals")?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).context("signalfd")
}

/// Forwards the monitor's frames to our stdout/stderr until the exit frame.
/// Like Docker's sig-proxy, INT, TERM, HUP, QUIT, USR1 and USR2 sent to us go
/// to the container (`pid`) instead of ending keel.
fn follow_frames(
    child: &mut engine::Monitor,
    pid: i32,
    streams: Streams,
) -> anyhow::Result<Option<i32>> {
    use nix::sys::signal::Signal;
    use rustix::event::{PollFd, PollFlags, poll};
    let mut out = child.stdout.take().context("monitor pipe")?;
    // Blocked only now: the monitor and the container were spawned with the
    // default mask, which they would otherwise inherit.
    let sfd = proxied_signals()?;
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr();
    loop {
        let (pipe_ready, sig_ready) = {
            let mut fds = [
                PollFd::new(&out, PollFlags::IN),
                PollFd::new(&sfd, PollFlags::IN),
            ];
            match poll(&mut fds, None) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e).context("poll"),
            }
            (!fds[0].revents().is_empty(), !fds[1].revents().is_empty())
        };
        if sig_ready {
            while let Ok(Some(info)) = sfd.read_signal() {
                if let Ok(sig) = Signal::try_from(info.ssi_signo as i32) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
                }
            }
        }
        if !pipe_ready {
            continue;
        }
        match Frame::read(&mut out).context("reading from the container monitor")? {
            Some(Frame::Stdout(d)) if streams.stdout => {
                let _ = stdout.write_all(&d);
                let _ = stdout.flush();
            }
            Some(Frame::Stderr(d)) if streams.stderr => {
                let _ = stderr.write_all(&d);
            }
            Some(Frame::Exit(c)) => return Ok(Some(c)),
            Some(Frame::Error(m)) => bail!("{m}"),
            Some(Frame::Started(_) | Frame::Stdout(_) | Frame::Stderr(_)) => {}
            None => return Ok(None),
        }
    }
}

/// Which output streams a foreground container shows (`run -a`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Streams {
    stdout: bool,
    stderr: bool,
}

impl Streams {
    const ALL: Streams = Streams {
        stdout: true,
        stderr: true,
    };

    /// docker's `-a`: none given attaches all.
    fn of(attach: &[String]) -> Streams {
        let has = |s: &str| attach.is_empty() || attach.iter().any(|a| a.eq_ignore_ascii_case(s));
        Streams {
            stdout: has("stdout"),
            stderr: has("stderr"),
        }
    }
}

/// Docker's exit status for `run` when keel itself fails.
const EXIT_KEEL_FAILED: u8 = 125;
/// The command exists but cannot be invoked.
const EXIT_CANNOT_INVOKE: u8 = 126;
/// The command was not found.
const EXIT_NOT_FOUND: u8 = 127;

/// A usage error of `keel run` exits 125 as with docker (clap's 2 otherwise).
pub fn usage_exit_code(e: &clap::Error) -> Option<u8> {
    if !e.use_stderr() {
        return None;
    }
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--root" {
            args.next();
        } else if a == "container" {
            // `keel container run …`
        } else if !a.starts_with('-') {
            return (a == "run" || a == "create").then_some(EXIT_KEEL_FAILED);
        }
    }
    None
}

/// Marks a start failure with the exit status Docker gives it.
#[derive(Debug)]
struct RunExit(u8);

impl std::fmt::Display for RunExit {
    fn fmt(&self, _f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Ok(())
    }
}

impl std::error::Error for RunExit {}

/// 127 for a command that is not there, 126 for one that cannot be run,
/// matched on the runtime's message the way dockerd does.
pub(super) fn start_failure_exit(msg: &str) -> u8 {
    let m = msg.to_ascii_lowercase();
    if m.contains("not found in $path")
        || m.contains("executable file not found")
        || m.contains("no such file or directory")
    {
        EXIT_NOT_FOUND
    } else if m.contains("permission denied") || m.contains("does not have correct permissions") {
        EXIT_CANNOT_INVOKE
    } else {
        EXIT_KEEL_FAILED
    }
}

/// `keel run`: the container's exit status, or Docker's 125/126/127 when it
/// could not run.
pub fn run(root: &Path, a: RunArgs) -> anyhow::Result<ExitCode> {
    match run_container(root, a) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("{}", crate::render_error(&e));
            Ok(ExitCode::from(
                e.downcast_ref::<RunExit>()
                    .map_or(EXIT_KEEL_FAILED, |r| r.0),
            ))
        }
    }
}

fn run_container(root: &Path, a: RunArgs) -> anyhow::Result<ExitCode> {
    if a.detach && !a.attach.is_empty() {
        bail!("Conflicting options: -a and -d");
    }
    let streams = Streams::of(&a.attach);
    // `-a` without stdin leaves stdin detached, as docker does.
    let stdin = a.flags.interactive
        && (a.attach.is_empty() || a.attach.iter().any(|s| s.eq_ignore_ascii_case("stdin")));
    let cfg = do_create(root, &a.flags)?;
    let containers = open(root)?;
    let net = network_attacher(root);
    let attach_tty = a.flags.tty && !a.detach;
    let size = if attach_tty { client_size() } else { None };
    let mut child = engine::spawn_monitor_sized(
        &exe()?,
        root,
        &cfg.id,
        stdin && !a.detach,
        size,
        Some(&|win| monitor_in_process(root, &cfg.id, win)),
    )
    .map_err(hinted)?;
    let pid = match engine::await_start(&mut child) {
        Ok(pid) => pid,
        Err(e) => {
            // Nothing half-created: a container that never started goes away again.
            let _ = child.wait();
            let _ = engine::remove(&containers, &cfg.id, true, true, net.as_ref());
            let code = RunExit(start_failure_exit(&keel_runtime::error_chain(&e)));
            return Err(hinted(e).context(code).context("starting the container"));
        }
    };
    if a.detach {
        println!("{}", cfg.id);
        return Ok(ExitCode::SUCCESS);
    }
    follow_until_exit(
        &mut child,
        pid,
        &containers,
        &cfg.id,
        attach_tty && stdin,
        streams,
    )
}

/// The client's terminal size: stdout's, or stdin's when output is redirected.
pub(super) fn client_size() -> Option<WinSize> {
    WinSize::of(std::io::stdout()).or_else(|| WinSize::of(std::io::stdin()))
}

/// Follows a started container's frames until it exits; returns its exit
/// code. With `raw_keys` (-it on a terminal) keys, Ctrl-C included, go to
/// the container as typed.
fn follow_until_exit(
    child: &mut engine::Monitor,
    pid: i32,
    c: &Containers,
    id: &str,
    raw_keys: bool,
    streams: Streams,
) -> anyhow::Result<ExitCode> {
    let raw = raw_keys
        .then(|| RawMode::enable(std::io::stdin()))
        .flatten();
    let code = follow_frames(child, pid, streams);
    drop(raw);
    // With an exit frame the container is done (and with --rm, gone); the
    // monitor may still be deleting its files and is reaped by whoever
    // inherits it. Without one, the monitor died: its record tells.
    let code = if let Some(code) = code? {
        code
    } else {
        let _ = child.wait();
        c.state(id).map_or(-1, |s| s.exit_code)
    };
    Ok(exit_code(code))
}

/// Starts a created container with its output (and with `interactive` its
/// input) attached, and waits for its exit code; a container created with a
/// TTY gets this terminal's size and raw keys.
pub(crate) fn start_attached(
    root: &Path,
    c: &Containers,
    id: &str,
    interactive: bool,
) -> anyhow::Result<ExitCode> {
    let tty = c.config(id).map_err(hinted)?.tty;
    let size = if tty { client_size() } else { None };
    let mut child = engine::spawn_monitor_sized(
        &exe()?,
        root,
        id,
        interactive,
        size,
        Some(&|win| monitor_in_process(root, id, win)),
    )
    .map_err(hinted)?;
    let pid = engine::await_start(&mut child).map_err(hinted)?;
    follow_until_exit(&mut child, pid, c, id, tty && interactive, Streams::ALL)
}

pub(crate) fn start_one(root: &Path, c: &Containers, id: &str) -> anyhow::Result<()> {
    if engine::is_active(c, id) {
        return Ok(());
    }
    let mut child = engine::spawn_monitor_sized(
        &exe()?,
        root,
        id,
        false,
        None,
        Some(&|win| monitor_in_process(root, id, win)),
    )
    .map_err(hinted)?;
    let r = engine::await_start(&mut child);
    drop(child);
    r.map_err(|e| hinted(e).context("starting the container"))?;
    Ok(())
}

pub fn start(root: &Path, a: StartArgs) -> anyhow::Result<ExitCode> {
    let c = open(root)?;
    if a.attach {
        let [name] = a.containers.as_slice() else {
            bail!("you cannot start and attach multiple containers at once");
        };
        let id = resolve(&c, name)?;
        return start_attached(root, &c, &id, a.interactive);
    }
    each(&a.containers, |n| {
        let id = resolve(&c, n)?;
        start_one(root, &c, &id)
    })
}

pub fn stop(root: &Path, a: StopArgs) -> anyhow::Result<ExitCode> {
    let c = open(root)?;
    each(&a.containers, |n| {
        let id = resolve(&c, n)?;
        if let Some(s) = &a.signal {
            engine::parse_signal(s).map_err(hinted)?;
        }
        super::thaw(&id);
        engine::stop(&c, &id, a.time, a.signal.as_deref()).map_err(hinted)
    })
}

pub fn kill(root: &Path, a: KillArgs) -> anyhow::Result<ExitCode> {
    let c = open(root)?;
    let sig = engine::parse_signal(&a.signal).map_err(hinted)?;
    each(&a.containers, |n| {
        let id = resolve(&c, n)?;
        super::thaw(&id);
        engine::kill(&c, &id, sig, true).map_err(hinted)
    })
}

pub fn restart(root: &Path, a: StopArgs) -> anyhow::Result<ExitCode> {
    let c = open(root)?;
    each(&a.containers, |n| {
        let id = resolve(&c, n)?;
        super::thaw(&id);
        engine::stop(&c, &id, a.time, a.signal.as_deref()).map_err(hinted)?;
        start_one(root, &c, &id)
    })
}

pub fn rm(root: &Path, a: RmArgs) -> anyhow::Result<ExitCode> {
    let c = open(root)?;
    let net = network_attacher(root);
    each_forced(&a.containers, a.force, |n| {
        let id = resolve(&c, n)?;
        if super::is_paused(&id) {
            if !a.force {
                bail!("cannot remove container {n}: it is paused; unpause it first or use -f");
            }
            super::thaw(&id);
        }
        engine::remove(&c, &id, a.force, a.volumes, net.as_ref()).map_err(hinted)
    })
}

/// Removes every container that is not running (created, exited), as
/// docker's `container prune` does; returns their IDs and the bytes their
/// directories (writable layer, logs) held.
pub fn prune_stopped(root: &Path) -> anyhow::Result<(Vec<String>, u64)> {
    let c = open(root)?;
    let net = network_attacher(root);
    let mut removed = Vec::new();
    let mut bytes = 0;
    for id in c.ids().map_err(hinted)? {
        if engine::is_active(&c, &id) {
            continue;
        }
        let size = dir_size(&c.dir(&id));
        engine::remove(&c, &id, false, false, net.as_ref()).map_err(hinted)?;
        bytes += size;
        removed.push(id);
    }
    Ok((removed, bytes))
}

/// Bytes of the files below `dir`, links not followed, mount points not crossed.
fn dir_size(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(top) = std::fs::symlink_metadata(dir) else {
        return 0;
    };
    let mut total = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                if m.dev() == top.dev() {
                    todo.push(e.path());
                }
            } else {
                total += m.len();
            }
        }
    }
    total
}

/// The hidden `__monitor` command (see `keel_runtime::monitor`).
pub fn monitor(root: &Path, id: &str) -> anyhow::Result<ExitCode> {
    let net = network_attacher(root);
    let code = keel_runtime::monitor::run(root, id, net.as_ref()).map_err(hinted)?;
    Ok(exit_code(code.max(0)))
}

/// The monitor in a forked client (`keel_runtime::launch`): what
/// `__monitor` does, with the window size handed over directly.
fn monitor_in_process(root: &Path, id: &str, win: Option<WinSize>) -> i32 {
    crate::logging::become_monitor();
    let net = network_attacher(root);
    match keel_runtime::monitor::run_sized(root, id, net.as_ref(), win) {
        Ok(code) => code.max(0),
        Err(e) => {
            tracing::error!(container = %keel_runtime::ids::short(id), "{}", crate::render_error(&hinted(e)));
            1
        }
    }
}
