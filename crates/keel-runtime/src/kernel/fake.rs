//! A recording [`Kernel`] (with its OCI runtime and network attacher) for
//! unit tests of the lifecycle: every effect is appended to one log in the
//! order it happened, with paths relative to the keel root, so a test can
//! assert what was done and in which order. Processes are a table of fake
//! pids; a container's init "runs" the next scripted [`Run`] (its output is
//! written into the stdout the runtime is given, and it has exited by the
//! time the monitor looks); time is virtual (sleeps and waits return at
//! once and advance the clock), so backoff and stop timeouts cost nothing.
//!
//! Mount state is kept as marker files beside what is "mounted" (inside a
//! directory, next to a file), so it moves with a renamed record directory
//! the way the kernel's mount table does.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::backend::{ExecHandle, ExecSpec, OciRuntime, Stdio};
use crate::error::{Result, RuntimeError};
use crate::kernel::Kernel;
use crate::network::{AttachRequest, Attachment, NetError, NetworkAttacher};
use crate::tty::{ConsoleSocket, WinSize};

/// One scripted run of a container's init.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// Written to the container's stdout.
    pub stdout: Vec<u8>,
    pub exit_code: i32,
    /// The runtime fails to start it with this message instead.
    pub start_error: Option<String>,
    /// The OOM killer fired during this run.
    pub oom_kill: bool,
}

impl Run {
    pub fn exits(code: i32) -> Run {
        Run {
            exit_code: code,
            ..Run::default()
        }
    }
}

/// A fake process.
#[derive(Debug, Clone)]
struct Proc {
    name: String,
    start: u64,
    /// Signals that end it; any other is ignored (SIGKILL always ends it).
    dies_on: Vec<Signal>,
    /// Processes that end with it (a monitor ends with its container's init).
    takes_along: Vec<i32>,
    exit_code: i32,
}

#[derive(Debug)]
struct World {
    log: Vec<String>,
    procs: BTreeMap<i32, Proc>,
    next_pid: i32,
    clock: Duration,
    runs: VecDeque<Run>,
    oom_kills: u64,
    /// Operations that fail: `mount`, `netns`, `detach`, `attach`.
    failing: BTreeSet<&'static str>,
}

/// Runs `f` when the `nth` (1-based) effect starting with `prefix` is recorded.
struct Hook {
    prefix: String,
    nth: usize,
    seen: usize,
    f: Option<Box<dyn FnOnce() + Send>>,
}

#[derive(Default)]
struct Hooks(Mutex<Vec<Hook>>);

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hooks")
    }
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    base: Instant,
    world: Mutex<World>,
    hooks: Hooks,
}

/// The fake kernel; clones share one world.
#[derive(Debug, Clone)]
pub struct FakeKernel(Arc<Inner>);

const MARK: &str = ".fake-mounted";

/// The marker that says `p` is mounted.
fn marker(p: &Path) -> PathBuf {
    if p.is_dir() {
        p.join(MARK)
    } else {
        let mut s = p.as_os_str().to_owned();
        s.push(MARK);
        PathBuf::from(s)
    }
}

impl FakeKernel {
    /// A world for keel root `root`. The calling process (a test playing the
    /// monitor) is alive in it.
    pub fn new(root: &Path) -> FakeKernel {
        let k = FakeKernel(Arc::new(Inner {
            root: root.to_path_buf(),
            base: Instant::now(),
            world: Mutex::new(World {
                log: Vec::new(),
                procs: BTreeMap::new(),
                next_pid: 1000,
                clock: Duration::ZERO,
                runs: VecDeque::new(),
                oom_kills: 0,
                failing: BTreeSet::new(),
            }),
            hooks: Hooks::default(),
        }));
        let me = rustix::process::getpid().as_raw_nonzero().get();
        k.world().procs.insert(
            me,
            Proc {
                name: "self".into(),
                start: 1,
                dies_on: Vec::new(),
                takes_along: Vec::new(),
                exit_code: 0,
            },
        );
        k
    }

    fn world(&self) -> MutexGuard<'_, World> {
        self.0
            .world
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn rel(&self, p: &Path) -> String {
        p.strip_prefix(&self.0.root)
            .unwrap_or(p)
            .display()
            .to_string()
    }

    /// Appends an effect (consecutive sleeps show as one wait), then runs
    /// the hooks it triggers. Never called with the world locked.
    fn record(&self, what: String) {
        {
            let mut w = self.world();
            let ms = |l: &str| {
                l.strip_prefix("sleep ")
                    .and_then(|ms| ms.strip_suffix("ms"))
                    .and_then(|ms| ms.parse::<u128>().ok())
            };
            match (w.log.last().and_then(|l| ms(l)), ms(&what)) {
                (Some(a), Some(b)) => {
                    *w.log.last_mut().expect("last") = format!("sleep {}ms", a + b);
                }
                _ => w.log.push(what.clone()),
            }
        }
        let due: Vec<Box<dyn FnOnce() + Send>> = {
            let mut hooks = self
                .0
                .hooks
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            hooks
                .iter_mut()
                .filter(|h| what.starts_with(&h.prefix))
                .filter_map(|h| {
                    h.seen += 1;
                    if h.seen == h.nth { h.f.take() } else { None }
                })
                .collect()
        };
        for f in due {
            f();
        }
    }

    /// Runs `f` when the `nth` effect starting with `prefix` is recorded
    /// (say, a user's `keel stop` arriving during the second start).
    pub fn on(&self, prefix: &str, nth: usize, f: impl FnOnce() + Send + 'static) {
        self.0
            .hooks
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Hook {
                prefix: prefix.to_string(),
                nth,
                seen: 0,
                f: Some(Box::new(f)),
            });
    }

    /// Every effect so far, in order.
    pub fn effects(&self) -> Vec<String> {
        self.world().log.clone()
    }

    /// Forgets the effects so far.
    pub fn clear(&self) {
        self.world().log.clear();
    }

    /// Queues the next runs of containers' inits.
    pub fn script(&self, runs: impl IntoIterator<Item = Run>) {
        self.world().runs.extend(runs);
    }

    /// Makes operation `what` (`mount`, `netns`, `attach`, `detach`) fail.
    pub fn fail(&self, what: &'static str) {
        self.world().failing.insert(what);
    }

    /// Makes operation `what` work again.
    pub fn heal(&self, what: &'static str) {
        self.world().failing.remove(what);
    }

    fn failing(&self, what: &str) -> bool {
        self.world().failing.contains(what)
    }

    /// Adds a live process called `name` that ends on any of `dies_on` (and
    /// SIGKILL), taking `takes_along` with it; returns its pid and start time.
    pub fn spawn(&self, name: &str, dies_on: &[Signal], takes_along: &[i32]) -> (i32, u64) {
        let mut w = self.world();
        w.next_pid += 1;
        let pid = w.next_pid;
        let start = u64::try_from(pid).unwrap_or(0) * 10;
        w.procs.insert(
            pid,
            Proc {
                name: name.to_string(),
                start,
                dies_on: dies_on.to_vec(),
                takes_along: takes_along.to_vec(),
                exit_code: 0,
            },
        );
        (pid, start)
    }

    /// Ends a process as `kill -9` would.
    pub fn kill9(&self, pid: i32) {
        let mut w = self.world();
        end(&mut w, pid);
    }

    pub fn alive(&self, pid: i32) -> bool {
        self.world().procs.contains_key(&pid)
    }

    /// The virtual time passed.
    pub fn elapsed(&self) -> Duration {
        self.world().clock
    }

    /// Marks `path` mounted, as a test's set-up (no effect recorded).
    pub fn mark_mounted(&self, path: &Path) {
        std::fs::write(marker(path), "").expect("mount marker");
    }

    /// A network attacher sharing this world's log.
    pub fn networks(&self) -> FakeNet {
        FakeNet(self.clone())
    }
}

/// Ends `pid` and whatever goes with it.
fn end(w: &mut World, pid: i32) {
    if let Some(p) = w.procs.remove(&pid) {
        for q in p.takes_along {
            end(w, q);
        }
    }
}

fn walk_marks(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name == MARK {
            out.push(dir.to_path_buf());
        } else if let Some(f) = name.strip_suffix(MARK) {
            out.push(dir.join(f));
        } else if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk_marks(&p, out);
        }
    }
}

impl Kernel for FakeKernel {
    fn mount_overlay(&self, dir: &Path, _lower: &[PathBuf], volatile: bool) -> Result<PathBuf> {
        let merged = dir.join("merged");
        if self.failing("mount") {
            return Err(RuntimeError::Mount {
                what: "the overlay root",
                path: merged,
                source: std::io::Error::other("injected"),
            });
        }
        std::fs::create_dir_all(&merged).expect("merged dir");
        if !self.is_mounted(&merged) {
            self.mark_mounted(&merged);
            self.record(format!(
                "mount {}{}",
                self.rel(&merged),
                if volatile { " volatile" } else { "" }
            ));
        }
        Ok(merged)
    }

    fn is_mounted(&self, path: &Path) -> bool {
        marker(path).exists()
    }

    fn unmount(&self, path: &Path) -> Result<()> {
        if std::fs::remove_file(marker(path)).is_ok() {
            self.record(format!("unmount {}", self.rel(path)));
        }
        Ok(())
    }

    fn mounts_under(&self, dir: &Path) -> Vec<PathBuf> {
        let mut v = Vec::new();
        if self.is_mounted(dir) {
            v.push(dir.to_path_buf());
        }
        walk_marks(dir, &mut v);
        v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        v.dedup();
        v
    }

    fn create_netns(&self, path: &Path) -> Result<()> {
        if self.failing("netns") {
            return Err(RuntimeError::Netns(std::io::Error::other("injected")));
        }
        std::fs::create_dir_all(path.parent().expect("netns dir")).expect("netns dir");
        std::fs::write(path, "").expect("netns file");
        self.mark_mounted(path);
        self.record(format!("netns create {}", self.rel(path)));
        Ok(())
    }

    fn remove_netns(&self, path: &Path) -> Result<()> {
        let was = std::fs::remove_file(marker(path)).is_ok();
        let existed = std::fs::remove_file(path).is_ok();
        if was || existed {
            self.record(format!("netns remove {}", self.rel(path)));
        }
        Ok(())
    }

    fn process_start(&self, pid: i32) -> Option<u64> {
        self.world().procs.get(&pid).map(|p| p.start)
    }

    fn cmdline(&self, _pid: i32) -> Option<String> {
        None
    }

    fn signal(&self, pid: i32, signal: Signal) -> Result<()> {
        let name = {
            let mut w = self.world();
            let Some(p) = w.procs.get(&pid).cloned() else {
                return Err(RuntimeError::Signal(std::io::Error::from_raw_os_error(
                    nix::libc::ESRCH,
                )));
            };
            if signal == Signal::SIGKILL || p.dies_on.contains(&signal) {
                end(&mut w, pid);
            }
            p.name
        };
        self.record(format!("signal {name} {}", signal.as_str()));
        Ok(())
    }

    fn wait_exit(&self, pid: i32, max: Duration) {
        let mut w = self.world();
        if w.procs.contains_key(&pid) {
            w.clock += max;
        }
    }

    fn watch_init(&self, pid: i32) -> Result<OwnedFd> {
        // The init has exited already: a pipe with no writer polls readable.
        let (r, w) = rustix::pipe::pipe().map_err(|e| RuntimeError::Monitor(e.to_string()))?;
        drop(w);
        if !self.world().procs.contains_key(&pid) {
            return Err(RuntimeError::Monitor(format!("no process {pid}")));
        }
        Ok(r)
    }

    fn reap_init(&self, pid: i32) -> Option<i32> {
        let p = self.world().procs.remove(&pid)?;
        self.record(format!("exit {}", p.exit_code));
        Some(p.exit_code)
    }

    fn reap_others(&self, _init: i32) {}

    fn reap_orphans(&self) {}

    fn oom_kills(&self, _id: &str) -> u64 {
        self.world().oom_kills
    }

    fn runtime(&self, _name: &str, _state_root: &Path) -> Result<Box<dyn OciRuntime>> {
        Ok(Box::new(FakeRuntime(self.clone())))
    }

    fn now(&self) -> Instant {
        self.0.base + self.world().clock
    }

    fn sleep(&self, d: Duration) {
        self.world().clock += d;
        self.record(format!("sleep {}ms", d.as_millis()));
    }
}

/// The OCI runtime of a [`FakeKernel`]: starting runs the next scripted [`Run`].
#[derive(Debug)]
pub struct FakeRuntime(FakeKernel);

impl OciRuntime for FakeRuntime {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn migrates_by_pid(&self) -> bool {
        false
    }

    fn launch(
        &self,
        _id: &str,
        _bundle: &Path,
        stdio: Stdio,
        _console: Option<(&ConsoleSocket, Option<WinSize>)>,
    ) -> Result<(i32, Option<OwnedFd>)> {
        let k = &self.0;
        let run = k.world().runs.pop_front().unwrap_or_default();
        if let Some(e) = run.start_error {
            k.record(format!("start failed: {e}"));
            return Err(RuntimeError::Start(e));
        }
        let mut out = std::fs::File::from(stdio.stdout);
        let _ = out.write_all(&run.stdout);
        drop((out, stdio.stderr, stdio.stdin));
        let (pid, _) = k.spawn("init", &[], &[]);
        {
            let mut w = k.world();
            if let Some(p) = w.procs.get_mut(&pid) {
                p.exit_code = run.exit_code;
            }
            // Each start has a new cgroup, with its own count.
            w.oom_kills = u64::from(run.oom_kill);
        }
        k.record("start".into());
        Ok((pid, None))
    }

    fn delete(&self, _id: &str) -> Result<()> {
        self.0.record("runtime delete".into());
        Ok(())
    }

    fn write_bundle(&self, spec: oci_spec::runtime::Spec, bundle: &Path) -> Result<()> {
        self.0.record("bundle".into());
        crate::spec::write(&spec, bundle)
    }

    fn exec(&self, _id: &str, _spec: &ExecSpec, _stdio: Stdio) -> Result<ExecHandle> {
        Err(RuntimeError::Exec("the fake runtime has no exec".into()))
    }
}

/// A network attacher recording into a [`FakeKernel`]'s log.
#[derive(Debug, Clone)]
pub struct FakeNet(FakeKernel);

impl NetworkAttacher for FakeNet {
    fn attach(&self, req: &AttachRequest) -> std::result::Result<Attachment, NetError> {
        let k = &self.0;
        if k.failing("attach") {
            k.record(format!("attach {} failed", req.network));
            return Err(NetError::CreateVeth {
                name: "veth0".into(),
                reason: "injected".into(),
            });
        }
        k.record(format!("attach {}", req.network));
        let dir = k.0.root.join("net").join(&req.container_id);
        std::fs::create_dir_all(&dir).expect("net dir");
        Ok(Attachment {
            ip: std::net::Ipv4Addr::new(172, 17, 0, 2),
            prefix_len: 16,
            gateway: std::net::Ipv4Addr::new(172, 17, 0, 1),
            mac: "02:42:ac:11:00:02".into(),
            ports: req.ports.clone(),
            hosts_file: dir.join("hosts"),
            resolv_conf: dir.join("resolv.conf"),
            network: req.network.clone(),
            network_id: format!("{}-id", req.network),
            endpoint_id: "ep".into(),
            ifname: "eth0".into(),
            aliases: req.aliases.clone(),
        })
    }

    fn detach(&self, _container_id: &str) -> std::result::Result<(), NetError> {
        let k = &self.0;
        if k.failing("detach") {
            k.record("detach failed".into());
            return Err(NetError::DeleteLink {
                name: "veth0".into(),
                reason: "injected".into(),
            });
        }
        k.record("detach".into());
        Ok(())
    }

    fn detach_network(&self, _id: &str, network: &str) -> std::result::Result<(), NetError> {
        self.0.record(format!("detach {network}"));
        Ok(())
    }
}
