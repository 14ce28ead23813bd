//! Where a job's processes run: on the host ([`HostBackend`]) or in a job
//! container on keel's engine ([`ContainerBackend`], driven through the keel
//! binary: libcontainer must only be called from a single-threaded process,
//! and the executor runs jobs on threads). Run directories are mounted into
//! containers at the same paths, so paths in `GITHUB_*` variables hold on
//! both sides.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// One process to run.
#[derive(Debug)]
pub struct Exec<'a> {
    pub argv: Vec<String>,
    pub env: &'a [(String, String)],
    pub cwd: &'a Path,
    pub timeout: Option<Duration>,
    pub cancel: &'a AtomicBool,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Exited(i32),
    TimedOut,
    Cancelled,
}

/// Runs processes for a job.
pub trait Backend: Send + Sync {
    /// Runs `e`, handing each output line (stdout and stderr merged) to `line`.
    fn exec(&self, e: &Exec, line: &mut dyn FnMut(&str)) -> std::io::Result<End>;
    /// Whether `program` can be found (to pick `bash` or `sh`).
    fn has(&self, program: &str) -> bool;
    /// Human description (`host`, `container busybox`).
    fn describe(&self) -> String;
    /// Whether processes run on this machine (not in a container).
    fn is_host(&self) -> bool {
        false
    }
}

/// Container removals started when jobs ended, waited for when the run
/// ends (a job does not wait for its container's removal).
static PENDING: std::sync::Mutex<Vec<std::process::Child>> = std::sync::Mutex::new(Vec::new());

/// Waits for the container removals still running.
pub fn wait_cleanup() {
    let pending = std::mem::take(
        &mut *PENDING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    for mut c in pending {
        let _ = c.wait();
    }
}

/// Spawns `cmd` in its own process group with merged output, streams lines,
/// and kills the group on timeout or cancellation.
pub fn run_streaming(
    mut cmd: Command,
    timeout: Option<Duration>,
    cancel: &AtomicBool,
    line: &mut dyn FnMut(&str),
) -> std::io::Result<End> {
    let (reader, writer) = std::io::pipe()?;
    let writer2 = writer.try_clone()?;
    cmd.stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer2)
        .process_group(0);
    let mut child = cmd.spawn()?;
    // The Command still owns the pipe's write ends; drop it so EOF arrives.
    drop(cmd);
    let pid = child.id();
    // Lines are read on a thread of their own: a process killed on timeout
    // may leave a grandchild (the step inside a container, behind `keel
    // exec`) holding the pipe, and the step must not wait for it.
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut r = BufReader::new(reader);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let s = String::from_utf8_lossy(&buf);
                    if tx
                        .send(s.trim_end_matches(['\n', '\r']).to_string())
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    let start = std::time::Instant::now();
    let mut why = None;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(l) => line(&l),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // The step's process ended but something it started still
                // holds the pipe (`daemon &`): take what is there and go on.
                if child.try_wait()?.is_some() {
                    drain(&rx, line);
                    break;
                }
            }
        }
        if why.is_none() {
            why = if cancel.load(Ordering::Relaxed) {
                Some(End::Cancelled)
            } else if timeout.is_some_and(|t| start.elapsed() >= t) {
                Some(End::TimedOut)
            } else {
                None
            };
            if why.is_some() {
                if let Some(pg) = rustix::process::Pid::from_raw(pid as i32) {
                    let _ = rustix::process::kill_process_group(pg, rustix::process::Signal::KILL);
                }
                // What is already in the pipe still shows; then stop reading.
                drain(&rx, line);
                break;
            }
        }
    }
    let status = child.wait()?;
    if let Some(w) = why {
        return Ok(w);
    }
    Ok(End::Exited(status.code().unwrap_or_else(|| {
        use std::os::unix::process::ExitStatusExt;
        128 + status.signal().unwrap_or(0)
    })))
}

/// Hands on the lines already sent (up to half a second's worth).
fn drain(rx: &mpsc::Receiver<String>, line: &mut dyn FnMut(&str)) {
    let t = std::time::Instant::now();
    while let Ok(l) = rx.recv_timeout(Duration::from_millis(50)) {
        line(&l);
        if t.elapsed() > Duration::from_millis(500) {
            break;
        }
    }
}

/// Processes on this machine.
#[derive(Debug, Default)]
pub struct HostBackend;

impl Backend for HostBackend {
    fn exec(&self, e: &Exec, line: &mut dyn FnMut(&str)) -> std::io::Result<End> {
        // The program is looked up on the step's PATH, not keel's. Steps
        // inherit keel's environment under theirs, as on a self-hosted runner.
        let path = e
            .env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_str());
        let program = path
            .and_then(|p| which(&e.argv[0], p))
            .unwrap_or_else(|| PathBuf::from(&e.argv[0]));
        let mut cmd = Command::new(program);
        cmd.args(&e.argv[1..])
            .envs(e.env.iter().map(|(k, v)| (k, v)))
            .current_dir(e.cwd);
        run_streaming(cmd, e.timeout, e.cancel, line)
    }
    fn has(&self, program: &str) -> bool {
        which(program, &std::env::var("PATH").unwrap_or_default()).is_some()
    }
    fn describe(&self) -> String {
        "host".into()
    }
    fn is_host(&self) -> bool {
        true
    }
}

/// `program` resolved on `path` (as execvp would).
pub fn which(program: &str, path: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(program))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Pulls `image` into the root when it is not there (as `docker run` and
/// act do); an image already present is used as it is, offline.
pub fn ensure_image(keel: &Path, root: &Path, image: &str) -> std::io::Result<()> {
    let have = Command::new(keel)
        .arg("--root")
        .arg(root)
        .args(["image", "inspect", image])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?
        .success();
    if have {
        return Ok(());
    }
    let out = Command::new(keel)
        .arg("--root")
        .arg(root)
        .args(["pull", "-q", image])
        .stdin(Stdio::null())
        .output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "pulling {image}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// A job container started with `keel run -d`, steps run with `keel exec`.
#[derive(Debug)]
pub struct ContainerBackend {
    pub keel: PathBuf,
    pub root: PathBuf,
    pub name: String,
    pub image: String,
    /// `--reuse`: the container stays after the job.
    pub keep: bool,
    shells: std::sync::OnceLock<Vec<String>>,
}

impl ContainerBackend {
    #[allow(clippy::too_many_arguments)]
    /// Starts the job container: `mounts` are host directories made visible
    /// at the same path; `network` a keel network (services) or none.
    pub fn start(
        keel: &Path,
        root: &Path,
        name: &str,
        image: &str,
        mounts: &[PathBuf],
        repo: Option<&Path>,
        network: Option<&str>,
        env: &[(String, String)],
        options: &[String],
    ) -> std::io::Result<ContainerBackend> {
        let mut cmd = Command::new(keel);
        cmd.arg("--root")
            .arg(root)
            .args(["run", "-d", "--name", name]);
        for m in mounts {
            cmd.arg("-v").arg(format!("{0}:{0}", m.display()));
        }
        // The repository, read-only: local actions resolved from it (no
        // checkout) find their files at the same path inside.
        if let Some(r) = repo {
            cmd.arg("-v").arg(format!("{0}:{0}:ro", r.display()));
        }
        if let Some(n) = network {
            cmd.args(["--network", n, "--network-alias", name]);
        }
        for (k, v) in env {
            cmd.arg("-e").arg(format!("{k}={v}"));
        }
        cmd.args(options);
        cmd.args(["--entrypoint", "", image, "tail", "-f", "/dev/null"]);
        let mut out = cmd.stdin(Stdio::null()).output()?;
        // Pulled only when missing: a job on a present image pays nothing.
        if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no such image") {
            ensure_image(keel, root, image)?;
            out = cmd.output()?;
        }
        if !out.status.success() {
            return Err(std::io::Error::other(format!(
                "starting job container {image}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(ContainerBackend {
            keel: keel.to_path_buf(),
            root: root.to_path_buf(),
            name: name.to_string(),
            image: image.to_string(),
            keep: false,
            shells: std::sync::OnceLock::new(),
        })
    }

    /// Starts removing the container ([`wait_cleanup`] waits for it).
    pub fn stop(&self) {
        let child = Command::new(&self.keel)
            .arg("--root")
            .arg(&self.root)
            .args(["rm", "-f", &self.name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if let Ok(c) = child {
            PENDING
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(c);
        }
    }
}

impl Drop for ContainerBackend {
    fn drop(&mut self) {
        if !self.keep {
            self.stop();
        }
    }
}

impl Backend for ContainerBackend {
    fn exec(&self, e: &Exec, line: &mut dyn FnMut(&str)) -> std::io::Result<End> {
        let mut cmd = Command::new(&self.keel);
        cmd.arg("--root").arg(&self.root).arg("exec");
        for (k, v) in e.env {
            // The container keeps its own PATH/HOME unless the step set them.
            if k == "HOME" {
                continue;
            }
            cmd.arg("-e").arg(format!("{k}={v}"));
        }
        cmd.arg("-w").arg(e.cwd).arg(&self.name).args(&e.argv);
        run_streaming(cmd, e.timeout, e.cancel, line)
    }
    fn has(&self, program: &str) -> bool {
        // Probed once, when first asked (the default shell needs no probe).
        self.shells
            .get_or_init(|| {
                let probe = Command::new(&self.keel)
                    .arg("--root")
                    .arg(&self.root)
                    .args(["exec", &self.name, "sh", "-c"])
                    .arg("for s in bash sh python3 python node; do command -v $s >/dev/null 2>&1 && echo $s; done")
                    .stdin(Stdio::null())
                    .output();
                probe.map_or_else(
                    |_| Vec::new(),
                    |o| String::from_utf8_lossy(&o.stdout).lines().map(String::from).collect(),
                )
            })
            .iter()
            .any(|s| s == program)
    }
    fn describe(&self) -> String {
        format!("container {}", self.image)
    }
}
