//! OCI runtime backends behind one trait: youki's `libcontainer` in process
//! (the default; the caller must be single-threaded, see [`crate::monitor`]) and
//! the external `runc` binary, both over the same bundle.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio as StdStdio};
use std::time::{Duration, Instant};

use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

use crate::error::{Result, RuntimeError};
use crate::tty::{ConsoleSocket, WinSize};

/// The three standard streams handed to a container process.
#[derive(Debug)]
pub struct Stdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

impl Stdio {
    /// stdin from /dev/null, output to the given fds.
    pub fn null_in(stdout: OwnedFd, stderr: OwnedFd) -> std::io::Result<Self> {
        Ok(Stdio {
            stdin: std::fs::File::open("/dev/null")?.into(),
            stdout,
            stderr,
        })
    }
}

/// A process to run inside a running container.
#[derive(Debug, Clone, Default)]
pub struct ExecSpec {
    pub args: Vec<String>,
    /// Added to (and overriding) the container's environment.
    pub env: Vec<String>,
    pub cwd: Option<String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub additional_gids: Vec<u32>,
    /// Run on a new pty whose master is sent to this console socket
    /// (see [`crate::tty`]); the stdio passed along is then unused. The
    /// caller becomes a child subreaper so it can wait for the process.
    pub console_socket: Option<PathBuf>,
    /// Every capability (docker's `exec --privileged`); the container's
    /// seccomp filter still applies.
    pub privileged: bool,
}

/// A started exec process.
#[derive(Debug)]
pub enum ExecHandle {
    /// A direct child of the caller (libcontainer).
    Pid(i32),
    /// The `runc exec` process, whose exit status is the process's.
    Child(Child),
}

fn status_code(ws: WaitStatus) -> Option<i32> {
    match ws {
        WaitStatus::Exited(_, c) => Some(c),
        WaitStatus::Signaled(_, s, _) => Some(128 + s as i32),
        _ => None,
    }
}

impl ExecHandle {
    pub fn pid(&self) -> i32 {
        match self {
            ExecHandle::Pid(p) => *p,
            ExecHandle::Child(c) => c.id() as i32,
        }
    }

    /// A descriptor that polls readable once the process has exited.
    pub fn pidfd(&self) -> Result<OwnedFd> {
        let pid = rustix::process::Pid::from_raw(self.pid())
            .ok_or_else(|| RuntimeError::Exec("no exec pid".to_string()))?;
        rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
            .map_err(|e| RuntimeError::Exec(format!("pidfd_open: {e}")))
    }

    /// Waits for the exit code; `None` after `timeout` (the process is then killed).
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<Option<i32>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let done = match self {
                ExecHandle::Pid(p) => {
                    let flags = if deadline.is_some() {
                        Some(WaitPidFlag::WNOHANG)
                    } else {
                        None
                    };
                    match waitpid(Pid::from_raw(*p), flags) {
                        Ok(ws) => status_code(ws),
                        Err(nix::errno::Errno::EINTR) => None,
                        Err(e) => return Err(RuntimeError::Exec(format!("waiting: {e}"))),
                    }
                }
                ExecHandle::Child(c) => if deadline.is_some() {
                    c.try_wait()
                } else {
                    c.wait().map(Some)
                }
                .map_err(|e| RuntimeError::Exec(format!("waiting: {e}")))?
                .map(|s| {
                    use std::os::unix::process::ExitStatusExt;
                    s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))
                }),
            };
            if let Some(c) = done {
                return Ok(Some(c));
            }
            if let Some(d) = deadline {
                if Instant::now() >= d {
                    self.kill();
                    let _ = self.wait(None);
                    return Ok(None);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    fn kill(&mut self) {
        match self {
            ExecHandle::Pid(p) => {
                let _ = nix::sys::signal::kill(Pid::from_raw(*p), nix::sys::signal::SIGKILL);
            }
            ExecHandle::Child(c) => {
                let _ = c.kill();
            }
        }
    }
}

/// An OCI runtime.
pub trait OciRuntime {
    fn name(&self) -> &'static str;
    /// Whether starting a container moves a process by writing its pid to
    /// `cgroup.procs`, i.e. waits out an RCU grace period after an idle spell
    /// (see [`crate::cgroups`]). keel's libcontainer moves its single-threaded
    /// intermediate process through `tasks` and does not.
    fn migrates_by_pid(&self) -> bool {
        true
    }
    /// Creates and starts container `id` from `bundle`. The returned init pid is
    /// a child of the caller (for runc: once runc exits, through the caller
    /// being a child subreaper).
    fn start(&self, id: &str, bundle: &Path, stdio: Stdio) -> Result<i32> {
        self.launch(id, bundle, stdio, None).map(|(pid, _)| pid)
    }
    /// [`OciRuntime::start`] for a bundle with `process.terminal`: returns the
    /// init pid and the pty master, sized before the process runs.
    fn start_console(
        &self,
        id: &str,
        bundle: &Path,
        console: &ConsoleSocket,
        size: Option<WinSize>,
    ) -> Result<(i32, OwnedFd)> {
        let null = null_stdio().map_err(|e| RuntimeError::Start(e.to_string()))?;
        let (pid, master) = self.launch(id, bundle, null, Some((console, size)))?;
        Ok((
            pid,
            master.ok_or_else(|| RuntimeError::Tty("no terminal".into()))?,
        ))
    }
    /// Both starts: with a console, the master is returned too.
    fn launch(
        &self,
        id: &str,
        bundle: &Path,
        stdio: Stdio,
        console: Option<(&ConsoleSocket, Option<WinSize>)>,
    ) -> Result<(i32, Option<OwnedFd>)>;
    /// Removes the runtime's state and cgroups of a stopped container; idempotent.
    fn delete(&self, id: &str) -> Result<()>;
    /// Writes `spec` into `bundle` in the form this runtime starts from
    /// (by default `config.json` as it is).
    fn write_bundle(&self, spec: Spec, bundle: &Path) -> Result<()> {
        crate::spec::write(&spec, bundle)
    }
    /// Starts a process in the running container.
    fn exec(&self, id: &str, spec: &ExecSpec, stdio: Stdio) -> Result<ExecHandle>;
}

/// Picks the backend by name (`libcontainer`, the default, or `runc`).
pub fn by_name(name: &str, state_root: &Path) -> Result<Box<dyn OciRuntime>> {
    match name {
        "" | "libcontainer" | "youki" => Ok(Box::new(Libcontainer {
            root: state_root.join("libcontainer"),
            seccomp_cache: state_root.join("seccomp"),
        })),
        "runc" => Ok(Box::new(Runc {
            root: state_root.join("runc"),
            binary: PathBuf::from("runc"),
        })),
        other => Err(RuntimeError::InvalidOption {
            what: "runtime",
            value: other.to_string(),
            why: "expected libcontainer or runc".to_string(),
        }),
    }
}

/// Every runtime name `by_name` accepts.
pub const RUNTIMES: &[&str] = &["libcontainer", "runc"];

/// [`crate::error_chain`], less libcontainer's two wrappers of an init's
/// failure, which say nothing.
fn chain(e: &dyn std::error::Error) -> String {
    crate::error_chain(e).replace(
        "exec process failed with error error in executing process : ",
        "",
    )
}

/// [`chain`] for an exec: without libcontainer's "failed to create
/// container" (nothing is created), and a missing command said as docker
/// says it.
fn exec_chain(e: &dyn std::error::Error) -> String {
    let c = chain(e);
    let c = c.strip_prefix("failed to create container: ").unwrap_or(&c);
    match c
        .strip_prefix("executable '")
        .and_then(|r| r.strip_suffix("' not found in $PATH"))
    {
        Some(cmd) => format!("exec: \"{cmd}\": executable file not found in $PATH"),
        None => c.to_string(),
    }
}

/// youki's libcontainer, in process.
#[derive(Debug)]
pub struct Libcontainer {
    pub root: PathBuf,
    /// Compiled seccomp filters, one file per profile.
    pub seccomp_cache: PathBuf,
}

/// The compiled seccomp filter a libcontainer bundle carries in place of the
/// spec's profile; see [`Libcontainer`]'s `write_bundle`.
pub const SECCOMP_PROGRAM: &str = "seccomp.bpf";

/// Names the filter in `config.json`, for whoever reads the bundle.
const SECCOMP_ANNOTATION: &str = "org.keel.seccomp.program";

/// The bundle's compiled seccomp filter, if it has one.
fn bundle_program(bundle: &Path) -> Result<Option<crate::seccomp::Program>> {
    crate::seccomp::read_program(&bundle.join(SECCOMP_PROGRAM))
}

impl OciRuntime for Libcontainer {
    fn name(&self) -> &'static str {
        "libcontainer"
    }

    fn migrates_by_pid(&self) -> bool {
        false
    }

    fn launch(
        &self,
        id: &str,
        bundle: &Path,
        stdio: Stdio,
        console: Option<(&ConsoleSocket, Option<WinSize>)>,
    ) -> Result<(i32, Option<OwnedFd>)> {
        self.start_with(id, bundle, stdio, console)
    }

    fn delete(&self, id: &str) -> Result<()> {
        self.delete_state(id)
    }

    /// libcontainer would compile the seccomp profile with libseccomp in every
    /// container's init (milliseconds of CPU on the start path). Instead the
    /// compiled program (cached per profile) goes into the bundle and keel's
    /// executor loads it just before exec, for init and exec processes alike.
    /// Only with no-new-privileges, where libcontainer too loads it that late.
    fn write_bundle(&self, mut spec: Spec, bundle: &Path) -> Result<()> {
        let program = bundle.join(SECCOMP_PROGRAM);
        let nnp = spec
            .process()
            .as_ref()
            .and_then(oci_spec::runtime::Process::no_new_privileges)
            == Some(true);
        let profile = spec.linux().as_ref().and_then(|l| l.seccomp().clone());
        match profile {
            Some(p) if nnp && crate::seccomp::precompilable(&p) => {
                let (cached, bytes) = crate::seccomp::compiled_file(&p, &self.seccomp_cache)?;
                // A link to the cache file costs no new inode (on a restart
                // the bundle has one already).
                let _ = std::fs::remove_file(&program);
                if std::fs::hard_link(&cached, &program).is_err() {
                    crate::record::write_replace(&program, &bytes, false)?;
                }
                if let Some(l) = spec.linux_mut() {
                    l.set_seccomp(None);
                }
                let mut notes = spec.annotations().clone().unwrap_or_default();
                notes.insert(SECCOMP_ANNOTATION.to_string(), SECCOMP_PROGRAM.to_string());
                spec.set_annotations(Some(notes));
            }
            _ => match std::fs::remove_file(&program) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(crate::error::write_err(&program)(e));
                }
                _ => {}
            },
        }
        crate::spec::write(&spec, bundle)
    }

    fn exec(&self, id: &str, spec: &ExecSpec, stdio: Stdio) -> Result<ExecHandle> {
        self.exec_with(id, spec, stdio)
    }
}

/// The master the runtime sent, with the client's window size applied.
fn sized_master(cs: &ConsoleSocket, size: Option<WinSize>) -> Result<OwnedFd> {
    let m = cs.receive()?;
    if let Some(w) = size {
        w.apply(&m)?;
    }
    Ok(m)
}

/// /dev/null for all three streams.
fn null_stdio() -> std::io::Result<Stdio> {
    let null = || -> std::io::Result<OwnedFd> {
        Ok(std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")?
            .into())
    };
    Ok(Stdio {
        stdin: null()?,
        stdout: null()?,
        stderr: null()?,
    })
}

impl Libcontainer {
    fn start_with(
        &self,
        id: &str,
        bundle: &Path,
        stdio: Stdio,
        console: Option<(&ConsoleSocket, Option<WinSize>)>,
    ) -> Result<(i32, Option<OwnedFd>)> {
        use libcontainer::container::builder::ContainerBuilder;
        use libcontainer::syscall::syscall::SyscallType;
        std::fs::create_dir_all(&self.root).map_err(|e| RuntimeError::Start(e.to_string()))?;
        // A leftover state dir from a crashed run would make create fail.
        let _ = self.delete(id);
        let seccomp = bundle_program(bundle)?;
        let mut c = ContainerBuilder::new(id.to_string(), SyscallType::default())
            .with_root_path(&self.root)
            .map_err(|e| RuntimeError::Start(chain(&e)))?
            .with_console_socket(console.map(|(cs, _)| cs.path()))
            .with_stdin(stdio.stdin)
            .with_stdout(stdio.stdout)
            .with_stderr(stdio.stderr)
            .with_executor(crate::sigreset::SignalResetExecutor::new(seccomp))
            .as_init(bundle)
            .with_systemd(false)
            .with_detach(true)
            .build()
            .map_err(|e| RuntimeError::Start(chain(&e)))?;
        // Created, not started: the terminal is sized before the process runs.
        let master = match console.map(|(cs, size)| sized_master(cs, size)).transpose() {
            Ok(m) => m,
            Err(e) => {
                let _ = c.delete(true);
                return Err(e);
            }
        };
        if let Err(e) = c.start() {
            let _ = c.delete(true);
            return Err(RuntimeError::Start(chain(&e)));
        }
        let pid = c
            .pid()
            .map(Pid::as_raw)
            .ok_or_else(|| RuntimeError::Start("no init pid".to_string()))?;
        Ok((pid, master))
    }

    fn delete_state(&self, id: &str) -> Result<()> {
        use libcontainer::container::Container;
        let dir = self.root.join(id);
        if !dir.exists() {
            return Ok(());
        }
        match Container::load(dir.clone()) {
            Ok(mut c) => c.delete(true).map_err(|e| RuntimeError::Delete(chain(&e))),
            // Unreadable state: nothing running can be found through it; drop it.
            Err(_) => {
                std::fs::remove_dir_all(&dir).map_err(|e| RuntimeError::Delete(e.to_string()))
            }
        }
    }

    /// The compiled seccomp filter of running container `id`, if its bundle has one.
    fn container_program(&self, id: &str) -> Result<Option<crate::seccomp::Program>> {
        let c = libcontainer::container::Container::load(self.root.join(id))
            .map_err(|e| RuntimeError::Exec(chain(&e)))?;
        bundle_program(c.bundle())
    }

    fn exec_with(&self, id: &str, spec: &ExecSpec, stdio: Stdio) -> Result<ExecHandle> {
        use libcontainer::container::builder::ContainerBuilder;
        use libcontainer::syscall::syscall::SyscallType;
        if spec.console_socket.is_some() || spec.privileged {
            return self.exec_full(id, spec, stdio);
        }
        let seccomp = self.container_program(id)?;
        let env: HashMap<String, String> = spec
            .env
            .iter()
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (e.clone(), String::new()),
            })
            .collect();
        let pid = ContainerBuilder::new(id.to_string(), SyscallType::default())
            .with_root_path(&self.root)
            .map_err(|e| RuntimeError::Exec(chain(&e)))?
            .with_stdin(stdio.stdin)
            .with_stdout(stdio.stdout)
            .with_stderr(stdio.stderr)
            .with_executor(crate::sigreset::SignalResetExecutor::new(seccomp))
            .as_tenant()
            .with_container_args(spec.args.clone())
            .with_env(env)
            .with_cwd(spec.cwd.as_ref().map(PathBuf::from))
            .with_user(spec.uid)
            .with_group(spec.gid)
            .with_additional_gids(spec.additional_gids.clone())
            .with_detach(true)
            .build()
            .map_err(|e| RuntimeError::Exec(exec_chain(&e)))?;
        Ok(ExecHandle::Pid(pid.as_raw()))
    }

    /// An exec on a pty or with every capability: libcontainer takes
    /// `terminal` and capabilities only from a full process description, so
    /// one is derived from the container's own.
    fn exec_full(&self, id: &str, spec: &ExecSpec, stdio: Stdio) -> Result<ExecHandle> {
        use libcontainer::container::Container;
        use libcontainer::container::builder::ContainerBuilder;
        use libcontainer::syscall::syscall::SyscallType;
        let e = |m: String| RuntimeError::Exec(m);
        let c = Container::load(self.root.join(id)).map_err(|x| e(chain(&x)))?;
        let seccomp = bundle_program(c.bundle())?;
        let config = c.bundle().join("config.json");
        let text = std::fs::read(&config).map_err(|x| e(format!("{}: {x}", config.display())))?;
        let full: serde_json::Value =
            serde_json::from_slice(&text).map_err(|x| e(format!("{}: {x}", config.display())))?;
        let process = exec_process(&full["process"], spec);
        let file = tempfile_in(&self.root.join(id), &process).map_err(|x| e(x.to_string()))?;
        let console = spec.console_socket.as_deref();
        let stdio = if console.is_some() {
            let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
            null_stdio().map_err(|x| e(x.to_string()))?
        } else {
            stdio
        };
        let pid = ContainerBuilder::new(id.to_string(), SyscallType::default())
            .with_root_path(&self.root)
            .map_err(|x| e(chain(&x)))?
            .with_console_socket(console)
            .with_stdin(stdio.stdin)
            .with_stdout(stdio.stdout)
            .with_stderr(stdio.stderr)
            .with_executor(crate::sigreset::SignalResetExecutor::new(seccomp))
            .as_tenant()
            .with_process(Some(file.path()))
            .with_detach(true)
            .build()
            .map_err(|x| e(exec_chain(&x)))?;
        Ok(ExecHandle::Pid(pid.as_raw()))
    }
}

/// The container's process description turned into an exec's: its
/// capabilities, rlimits and no-new-privileges, the exec's command, merged
/// environment, directory and user, on a terminal.
fn exec_process(base: &serde_json::Value, spec: &ExecSpec) -> serde_json::Value {
    let mut p = base.clone();
    p["terminal"] = spec.console_socket.is_some().into();
    if spec.privileged {
        let all = serde_json::json!(crate::spec::grantable_caps());
        for set in ["bounding", "effective", "permitted"] {
            p["capabilities"][set] = all.clone();
        }
    }
    p["args"] = serde_json::json!(spec.args);
    let mut env = crate::spec::json_strings(&p["env"]);
    for kv in &spec.env {
        let k = kv.split('=').next().unwrap_or("");
        env.retain(|x| x.split('=').next() != Some(k));
        env.push(kv.clone());
    }
    p["env"] = serde_json::json!(env);
    if let Some(cwd) = &spec.cwd {
        p["cwd"] = cwd.clone().into();
    }
    if let Some(uid) = spec.uid {
        p["user"] = serde_json::json!({"uid": uid, "gid": spec.gid.unwrap_or(0)});
        if !spec.additional_gids.is_empty() {
            p["user"]["additionalGids"] = serde_json::json!(spec.additional_gids);
        }
    }
    p
}

/// A JSON file removed when the handle drops.
struct TempJson(PathBuf);

impl TempJson {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempJson {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn tempfile_in(dir: &Path, v: &serde_json::Value) -> std::io::Result<TempJson> {
    let p = dir.join(format!(
        "exec-{}-{}.json",
        std::process::id(),
        crate::ids::new_id().get(..12).unwrap_or("0")
    ));
    std::fs::write(&p, serde_json::to_vec(v).map_err(std::io::Error::other)?)?;
    Ok(TempJson(p))
}

/// The external runc binary.
#[derive(Debug)]
pub struct Runc {
    pub root: PathBuf,
    pub binary: PathBuf,
}

impl Runc {
    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.binary);
        c.arg("--root").arg(&self.root);
        c
    }
}

fn run_quiet(mut c: Command, what: &str) -> std::result::Result<(), String> {
    let out = c
        .stdin(StdStdio::null())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

impl OciRuntime for Runc {
    fn name(&self) -> &'static str {
        "runc"
    }

    fn launch(
        &self,
        id: &str,
        bundle: &Path,
        stdio: Stdio,
        console: Option<(&ConsoleSocket, Option<WinSize>)>,
    ) -> Result<(i32, Option<OwnedFd>)> {
        self.start_with(id, bundle, stdio, console)
    }

    fn delete(&self, id: &str) -> Result<()> {
        if !self.root.join(id).exists() {
            return Ok(());
        }
        let mut c = self.cmd();
        c.args(["delete", "--force", id]);
        run_quiet(c, "runc delete").map_err(RuntimeError::Delete)
    }

    fn exec(&self, id: &str, spec: &ExecSpec, stdio: Stdio) -> Result<ExecHandle> {
        self.exec_with(id, spec, stdio)
    }
}

impl Runc {
    fn start_with(
        &self,
        id: &str,
        bundle: &Path,
        stdio: Stdio,
        console: Option<(&ConsoleSocket, Option<WinSize>)>,
    ) -> Result<(i32, Option<OwnedFd>)> {
        let _ = self.delete(id);
        let pid_file = bundle.join("runc.pid");
        let log = bundle.join("runc.log");
        let _ = std::fs::remove_file(&pid_file);
        let _ = std::fs::remove_file(&log);
        let mut c = self.cmd();
        // runc's own errors go to --log; its stdio is the container's.
        c.arg("--log").arg(&log).args(["--log-format", "json"]);
        // With a terminal: create, size the terminal, then start.
        if let Some((cs, _)) = console {
            c.args(["create", "--console-socket"]).arg(cs.path());
        } else {
            c.args(["run", "--detach"]);
        }
        c.arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(id)
            .stdin(StdStdio::from(stdio.stdin))
            .stdout(StdStdio::from(stdio.stdout))
            .stderr(StdStdio::from(stdio.stderr));
        let st = c.status().map_err(|source| RuntimeError::Spawn {
            what: "runc".to_string(),
            source,
        })?;
        if !st.success() {
            let msg = std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|v| v["level"] == "error")
                .filter_map(|v| v["msg"].as_str().map(str::to_string))
                .next_back()
                .unwrap_or_else(|| format!("runc exited with {st}"));
            let _ = self.delete(id);
            return Err(RuntimeError::Start(msg));
        }
        let pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| RuntimeError::Start("runc wrote no pid file".to_string()))?;
        let Some((cs, size)) = console else {
            return Ok((pid, None));
        };
        let started = sized_master(cs, size).and_then(|m| {
            let mut c = self.cmd();
            c.args(["start", id]);
            run_quiet(c, "runc start").map_err(RuntimeError::Start)?;
            Ok(m)
        });
        match started {
            Ok(m) => Ok((pid, Some(m))),
            Err(e) => {
                let _ = self.delete(id);
                Err(e)
            }
        }
    }

    fn exec_with(&self, id: &str, spec: &ExecSpec, stdio: Stdio) -> Result<ExecHandle> {
        let mut c = self.cmd();
        c.arg("exec");
        // runc takes a console socket only when it detaches; the process is
        // then reparented to us (a subreaper) and found through its pid file.
        let pid_file = spec.console_socket.as_ref().map(|sock| {
            let pf = sock.with_extension("pid");
            let _ = std::fs::remove_file(&pf);
            c.args(["--detach", "--tty", "--console-socket"])
                .arg(sock)
                .arg("--pid-file")
                .arg(&pf);
            pf
        });
        for e in &spec.env {
            c.arg("--env").arg(e);
        }
        if let Some(cwd) = &spec.cwd {
            c.arg("--cwd").arg(cwd);
        }
        if let Some(uid) = spec.uid {
            c.arg("--user")
                .arg(format!("{uid}:{}", spec.gid.unwrap_or(0)));
        }
        for g in &spec.additional_gids {
            c.arg("--additional-gids").arg(g.to_string());
        }
        if spec.privileged {
            for cap in crate::spec::grantable_caps() {
                c.arg("--cap").arg(cap);
            }
        }
        c.arg(id).args(&spec.args);
        c.stdin(StdStdio::from(stdio.stdin))
            .stdout(StdStdio::from(stdio.stdout))
            .stderr(StdStdio::from(stdio.stderr));
        if let Some(pf) = pid_file {
            let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
            let out = c
                .stdin(StdStdio::null())
                .output()
                .map_err(|source| RuntimeError::Spawn {
                    what: "runc exec".to_string(),
                    source,
                })?;
            let pid = std::fs::read_to_string(&pf)
                .ok()
                .and_then(|s| s.trim().parse().ok());
            let _ = std::fs::remove_file(&pf);
            return match (out.status.success(), pid) {
                (true, Some(p)) => Ok(ExecHandle::Pid(p)),
                _ => Err(RuntimeError::Exec(
                    String::from_utf8_lossy(&out.stderr).trim().to_string(),
                )),
            };
        }
        let child = c.spawn().map_err(|source| RuntimeError::Spawn {
            what: "runc exec".to_string(),
            source,
        })?;
        Ok(ExecHandle::Child(child))
    }
}

#[cfg(test)]
mod tests {
    use super::exec_chain;

    #[derive(Debug)]
    struct E(&'static str);
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for E {}

    #[test]
    fn exec_errors_read_as_docker_s() {
        let e = E("failed to create container: executable 'nope' not found in $PATH");
        assert_eq!(
            exec_chain(&e),
            "exec: \"nope\": executable file not found in $PATH"
        );
        let e = E("failed to create container: permission denied");
        assert_eq!(exec_chain(&e), "permission denied");
    }
}
