//! `/exec/{ns}/{pod}/{container}` and `/attach/...`: the request is
//! upgraded to a stream protocol ([`super::ws`] or [`super::spdy`]) that
//! carries stdin, stdout, stderr, terminal resizes and, at the end, a
//! `Status` on the error stream (exit codes as `NonZeroExitCode` with an
//! `ExitCode` cause, which kubectl turns into its own exit code).
//!
//! Exec runs `keel exec [-i] [-t] <id> <command>` as a child (no
//! libcontainer in this process); with a terminal its stdio is a pty made
//! here, whose size follows the client's resize messages. Attach follows
//! the container's output from its log and, for a container with `stdin:
//! true`, writes the client's stdin into the monitor's stdin FIFO (as
//! `keel attach` does). The monitor holds that FIFO open, so the container
//! never reads EOF: `stdinOnce` is not honoured, and a terminal's size
//! stays the one it started with (the monitor holds the pty).

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::{Body, Ctx, Query, find_container, status};

/// From the client.
#[derive(Debug)]
pub(crate) enum In {
    Stdin(Bytes),
    /// The client closed stdin (v5's close signal, SPDY's FIN).
    StdinEof,
    Resize {
        width: u16,
        height: u16,
    },
}

/// To the client.
#[derive(Debug)]
pub(crate) enum Out {
    Stdout(Bytes),
    Stderr(Bytes),
}

/// Which streams the client asked for.
#[derive(Debug, Clone, Default)]
pub(crate) struct Opts {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
    pub command: Vec<String>,
}

/// What runs once the protocol is up: reads [`In`], writes [`Out`], and
/// returns the final `Status`.
pub(crate) type Job = Box<
    dyn FnOnce(mpsc::Receiver<In>, mpsc::Sender<Out>) -> Pin<Box<dyn Future<Output = Value> + Send>>
        + Send,
>;

pub(crate) fn success() -> Value {
    json!({"metadata": {}, "status": "Success"})
}

/// The kubelet's status for a command that exited with `code`.
pub(crate) fn exit_status(command: &[String], code: i32) -> Value {
    if code == 0 {
        return success();
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
            command.join(" ")
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

pub(crate) fn failure(message: &str) -> Value {
    json!({"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError", "code": 500})
}

pub(crate) async fn serve(
    ctx: Arc<Ctx>,
    attach: bool,
    ns: String,
    pod: String,
    container: String,
    q: Query,
    req: Request<Incoming>,
) -> Response<Body> {
    let o = Opts {
        stdin: q.flag("stdin") || q.flag("input"),
        stdout: q.flag("stdout") || q.flag("output"),
        stderr: q.flag("stderr") || q.flag("error"),
        tty: q.flag("tty"),
        command: q.all("command"),
    };
    if !attach && o.command.is_empty() {
        return status(
            400,
            "BadRequest",
            "you must specify at least one command for the container",
        );
    }
    if !(o.stdin || o.stdout || o.stderr) {
        return status(
            400,
            "BadRequest",
            "you must specify at least 1 of stdin, stdout, stderr",
        );
    }
    let Some(found) = find_container(&ctx.root, &ns, &pod, &container) else {
        return status(
            400,
            "BadRequest",
            &format!("container {container} is not valid for pod {pod}"),
        );
    };
    let running = {
        let (r, id) = (ctx.root.clone(), found.id.clone());
        tokio::task::spawn_blocking(move || {
            crate::runtime::observe(&r, &id).is_some_and(|s| s.running)
        })
        .await
        .unwrap_or(false)
    };
    if !running {
        return status(
            400,
            "BadRequest",
            &format!("container {container} in pod {pod} is not running"),
        );
    }
    let id = found.id;
    let opts = o.clone();
    let job: Job = Box::new(move |input, output| {
        Box::pin(async move {
            if attach {
                attach_output(&ctx.root, &id, &opts, input, output).await
            } else {
                run(&ctx, &id, &opts, input, output).await
            }
        })
    });
    if super::ws::is_upgrade(&req) {
        super::ws::upgrade(req, &o, job)
    } else if super::spdy::is_upgrade(&req) {
        super::spdy::upgrade(req, &o, job)
    } else {
        status(400, "BadRequest", "Upgrade request required")
    }
}

/// Runs the command; returns its `Status`.
async fn run(
    ctx: &Ctx,
    id: &str,
    o: &Opts,
    input: mpsc::Receiver<In>,
    out: mpsc::Sender<Out>,
) -> Value {
    let mut cmd = tokio::process::Command::new(&ctx.exe);
    cmd.arg("--root").arg(&ctx.root).arg("exec");
    if o.stdin {
        cmd.arg("-i");
    }
    if o.tty {
        cmd.arg("-t");
    }
    cmd.arg(id).args(&o.command).kill_on_drop(true);
    let r = if o.tty {
        run_tty(cmd, o, input, out).await
    } else {
        run_pipes(cmd, o, input, out).await
    };
    match r {
        Ok(code) => exit_status(&o.command, code),
        Err(e) => failure(&format!("exec: {e}")),
    }
}

async fn pump(mut r: impl tokio::io::AsyncRead + Unpin, out: mpsc::Sender<Out>, stderr: bool) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let b = Bytes::copy_from_slice(&buf[..n]);
                let m = if stderr {
                    Out::Stderr(b)
                } else {
                    Out::Stdout(b)
                };
                if out.send(m).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn feed(
    mut w: Option<impl tokio::io::AsyncWrite + Unpin>,
    mut input: mpsc::Receiver<In>,
    resize: impl Fn(u16, u16),
) {
    while let Some(m) = input.recv().await {
        match m {
            In::Stdin(b) => {
                if let Some(s) = &mut w
                    && (s.write_all(&b).await.is_err() || s.flush().await.is_err())
                {
                    w = None;
                }
            }
            In::StdinEof => w = None,
            In::Resize { width, height } => resize(width, height),
        }
    }
}

async fn run_pipes(
    mut cmd: tokio::process::Command,
    o: &Opts,
    input: mpsc::Receiver<In>,
    out: mpsc::Sender<Out>,
) -> std::io::Result<i32> {
    let pipe = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
    cmd.stdin(pipe(o.stdin))
        .stdout(pipe(o.stdout))
        .stderr(pipe(o.stderr));
    let mut child = cmd.spawn()?;
    let stdin = child.stdin.take();
    let feeder = tokio::spawn(feed(stdin, input, |_, _| {}));
    let a = child
        .stdout
        .take()
        .map(|s| tokio::spawn(pump(s, out.clone(), false)));
    let b = child
        .stderr
        .take()
        .map(|s| tokio::spawn(pump(s, out.clone(), true)));
    let st = child.wait().await?;
    // The command's output is all read before its status goes out.
    for t in [a, b].into_iter().flatten() {
        let _ = t.await;
    }
    feeder.abort();
    Ok(exit_code(st))
}

fn exit_code(st: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))
}

fn set_size(fd: &impl std::os::fd::AsFd, width: u16, height: u16) {
    let ws = rustix::termios::Winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let _ = rustix::termios::tcsetwinsize(fd, ws);
}

/// `-t`: `keel exec -t` gets a pty made here as its stdio; it reads the
/// pty's size at start and follows it (`SIGWINCH` is not delivered to a
/// process without a controlling terminal, so it polls the size).
async fn run_tty(
    mut cmd: tokio::process::Command,
    o: &Opts,
    mut input: mpsc::Receiver<In>,
    out: mpsc::Sender<Out>,
) -> std::io::Result<i32> {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname(&master, Vec::new())?;
    let slave: std::os::fd::OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(std::ffi::OsStr::new(
            std::str::from_utf8(name.as_bytes()).unwrap_or_default(),
        ))?
        .into();
    // kubectl sends the terminal's size first; the command starts with it.
    // Input that comes before it (a terminal's first keys) waits.
    let mut early = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
    while let Ok(Some(m)) = tokio::time::timeout_at(deadline, input.recv()).await {
        if let In::Resize { width, height } = m {
            set_size(&master, width, height);
            break;
        }
        early.push(m);
    }
    cmd.stdin(Stdio::from(slave.try_clone()?))
        .stdout(Stdio::from(slave.try_clone()?))
        .stderr(Stdio::from(slave));
    let mut child = cmd.spawn()?;
    drop(cmd);
    let reader = tokio::fs::File::from_std(std::fs::File::from(master.try_clone()?));
    let writer = tokio::fs::File::from_std(std::fs::File::from(master.try_clone()?));
    let pumped = o
        .stdout
        .then(|| tokio::spawn(pump(reader, out.clone(), false)));
    let (tx, rx) = mpsc::channel(16);
    for m in early {
        let _ = tx.send(m).await;
    }
    let forward = tokio::spawn(async move {
        while let Some(m) = input.recv().await {
            if tx.send(m).await.is_err() {
                return;
            }
        }
    });
    let sized = master.try_clone()?;
    let stdin = o.stdin.then_some(writer);
    let feeder = tokio::spawn(feed(stdin, rx, move |w, h| set_size(&sized, w, h)));
    let st = child.wait().await?;
    if let Some(p) = pumped {
        // EIO once the last holder of the slave is gone.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), p).await;
    }
    forward.abort();
    feeder.abort();
    Ok(exit_code(st))
}

/// Attach: the container's output from now on, from its log, until it
/// exits or the client goes.
async fn attach_output(
    root: &Path,
    id: &str,
    opts: &Opts,
    input: mpsc::Receiver<In>,
    out: mpsc::Sender<Out>,
) -> Value {
    let Ok(records) = keel_runtime::Containers::open(root) else {
        return failure("container records unavailable");
    };
    let fifo = records.dir(id).join(keel_runtime::monitor::STDIN_FIFO);
    if opts.stdin && fifo.exists() {
        feed_stdin(fifo, input);
    }
    let path = records.log_path(id);
    let mut offset = std::fs::metadata(&path).map_or(0, |m| m.len());
    loop {
        let (file, dir, cid) = (path.clone(), root.to_path_buf(), id.to_string());
        let Ok((entries, next, running)) = tokio::task::spawn_blocking(move || {
            let running = crate::runtime::observe(&dir, &cid).is_some_and(|s| s.running);
            let (found, next) = super::logs::read_from(&file, offset);
            (found, next, running)
        })
        .await
        else {
            return failure("log reader failed");
        };
        offset = next;
        for e in entries {
            let b = Bytes::from(e.log.into_bytes());
            let m = match e.stream.as_str() {
                "stderr" if opts.stderr && !opts.tty => Out::Stderr(b),
                _ if opts.stdout => Out::Stdout(b),
                _ => continue,
            };
            if out.send(m).await.is_err() {
                return success();
            }
        }
        if !running || out.is_closed() {
            return success();
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Copies the client's stdin into a container's stdin FIFO on a blocking
/// thread until the client closes stdin or goes (its channel closes).
fn feed_stdin(fifo: std::path::PathBuf, mut input: mpsc::Receiver<In>) {
    tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        // The monitor holds the FIFO open for reading: this never blocks.
        let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&fifo) else {
            return;
        };
        while let Some(m) = input.blocking_recv() {
            match m {
                In::Stdin(b) if f.write_all(&b).is_ok() => {}
                In::Resize { .. } => {}
                In::Stdin(_) | In::StdinEof => return,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_reported_as_the_kubelet_does() {
        assert_eq!(exit_status(&["true".into()], 0), success());
        let s = exit_status(&["sh".into(), "-c".into(), "exit 3".into()], 3);
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(
            s["details"]["causes"][0],
            json!({"reason": "ExitCode", "message": "3"})
        );
        assert_eq!(
            s["message"],
            "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3"
        );
    }
}
