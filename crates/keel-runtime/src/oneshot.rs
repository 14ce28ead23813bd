//! One command on prepared layers, waited for: what a build's `RUN` needs.
//!
//! [`start`] records a container whose root is an overlay of the given
//! snapshot directories (no image needed), lets the caller seed the upper dir,
//! and starts it through the usual single-threaded monitor process (so the
//! caller may be multi-threaded). [`Running::wait`] streams its output and
//! returns the exit code; afterwards [`Running::upper_dir`] holds exactly the
//! changes the command made, and [`Running::remove`] deletes everything.
//! Records live under whatever root the caller passes, so build containers
//! stay out of `keel ps` when that is not the user's root.

use crate::launch::Monitor;
use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use rustix::event::{PollFd, PollFlags, poll};

use crate::error::{Result, RuntimeError};
use crate::monitor::Frame;
use crate::network::NoNetworks;
use crate::record::{ContainerConfig, Containers, MountSpec, RestartPolicy};
use crate::{engine, ids, spec, user};

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct OneShot {
    /// Snapshot directories, base first (at least one).
    pub lowerdirs: Vec<PathBuf>,
    /// The full argv.
    pub args: Vec<String>,
    /// The process environment (PATH, HOSTNAME and HOME are added when missing).
    pub env: Vec<String>,
    /// Absolute; `/` when empty.
    pub working_dir: String,
    /// `user[:group]` resolved against the layers' /etc/passwd and /etc/group.
    pub user: String,
    /// `host` or `none`.
    pub network: String,
    pub mounts: Vec<MountSpec>,
    pub hostname: String,
}

/// A started one-shot container.
#[derive(Debug)]
pub struct Running {
    containers: Containers,
    id: String,
    child: Option<Monitor>,
}

/// Which stream output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Creates and starts the container. `seed_upper` may write into the (empty)
/// upper directory before the overlay is mounted, e.g. directories the
/// command's layer must contain.
pub fn start(
    exe: &Path,
    root: &Path,
    o: &OneShot,
    seed_upper: impl FnOnce(&Path) -> std::io::Result<()>,
) -> Result<Running> {
    let containers = Containers::open(root)?;
    // No USER means root, also in an image without /etc/passwd (FROM scratch).
    let ident = if o.user.is_empty() {
        user::Identity {
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
            home: "/root".to_string(),
        }
    } else {
        user::resolve_in_image(&o.user, &o.lowerdirs)?
    };
    let id = ids::new_id();
    let hostname = if o.hostname.is_empty() {
        ids::short(&id).to_string()
    } else {
        o.hostname.clone()
    };
    let mut args = o.args.clone();
    if args.is_empty() {
        return Err(RuntimeError::NoCommand);
    }
    let path = args.remove(0);
    let mut cfg = ContainerConfig {
        id: id.clone(),
        name: format!("build-{}", ids::short(&id)),
        created: Utc::now(),
        image: String::new(),
        image_id: String::new(),
        image_manifest: String::new(),
        lowerdirs: o.lowerdirs.clone(),
        path,
        args,
        entrypoint: Vec::new(),
        cmd: o.args.clone(),
        env: spec::merge_env(&o.env, &[], &hostname, &ident.home),
        working_dir: if o.working_dir.is_empty() {
            "/".to_string()
        } else {
            o.working_dir.clone()
        },
        user: o.user.clone(),
        uid: ident.uid,
        gid: ident.gid,
        additional_gids: ident.additional_gids,
        hostname,
        labels: BTreeMap::new(),
        network: if o.network.is_empty() {
            "host".to_string()
        } else {
            o.network.clone()
        },
        network_aliases: Vec::new(),
        ports: Vec::new(),
        publish_all: false,
        exposed_ports: Vec::new(),
        mounts: o.mounts.clone(),
        memory: None,
        nano_cpus: None,
        pids_limit: None,
        read_only: false,
        cap_add: Vec::new(),
        cap_drop: Vec::new(),
        restart: RestartPolicy::No,
        healthcheck: None,
        stop_signal: "SIGKILL".to_string(),
        stop_timeout: 0,
        runtime: "libcontainer".to_string(),
        auto_remove: false,
        interactive: false,
        tty: false,
        extra: crate::record::ExtraConfig::default(),
        networking: crate::record::NetworkConfig::default(),
    };
    containers.create(&mut cfg)?;
    let mut running = Running {
        containers,
        id,
        child: None,
    };
    let upper = running.upper_dir();
    std::fs::create_dir_all(&upper)
        .and_then(|()| seed_upper(&upper))
        .map_err(|source| RuntimeError::Write {
            path: upper.clone(),
            source,
        })?;
    let mut child = engine::spawn_monitor(exe, root, &running.id, false)?;
    let started = engine::await_start(&mut child);
    running.child = Some(child);
    started?;
    Ok(running)
}

impl Running {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The overlay's upper directory: the command's changes once it exited.
    pub fn upper_dir(&self) -> PathBuf {
        self.containers.dir(&self.id).join("upper")
    }

    /// Streams output to `on_output` until the command exits; returns its exit
    /// code. When `cancel` becomes true the container is killed and waited for.
    pub fn wait(
        &mut self,
        cancel: &AtomicBool,
        mut on_output: impl FnMut(Stream, &[u8]),
    ) -> Result<i32> {
        let Some(child) = self.child.as_mut() else {
            return Err(RuntimeError::Monitor("the command was not started".into()));
        };
        let Some(out) = child.stdout.take() else {
            return Err(RuntimeError::Monitor("no pipe".into()));
        };
        let mut out = out;
        let mut killed = false;
        let code = loop {
            if cancel.load(Ordering::Relaxed) && !killed {
                killed = true;
                if let Ok(st) = self.containers.state(&self.id)
                    && st.pid > 0
                {
                    let _ = self
                        .containers
                        .kernel()
                        .signal(st.pid, nix::sys::signal::Signal::SIGKILL);
                }
            }
            let mut fds = [PollFd::from_borrowed_fd(out.as_fd(), PollFlags::IN)];
            let ts = rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: 100_000_000,
            };
            match poll(&mut fds, Some(&ts)) {
                Ok(0) | Err(rustix::io::Errno::INTR) => continue,
                Ok(_) => {}
                Err(e) => return Err(RuntimeError::Monitor(format!("poll: {e}"))),
            }
            match Frame::read(&mut out).map_err(|e| RuntimeError::Monitor(e.to_string()))? {
                Some(Frame::Stdout(d)) => on_output(Stream::Stdout, &d),
                Some(Frame::Stderr(d)) => on_output(Stream::Stderr, &d),
                Some(Frame::Exit(c)) => break c,
                Some(Frame::Error(m)) => return Err(RuntimeError::Start(m)),
                Some(Frame::Started(_)) => {}
                None => {
                    break self.containers.state(&self.id).map_or(-1, |s| s.exit_code);
                }
            }
        };
        let _ = child.wait();
        Ok(code)
    }

    /// Kills the command if it still runs and removes its record, mounts and
    /// upper directory. Idempotent; also done on drop.
    pub fn remove(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            if let Ok(st) = self.containers.state(&self.id)
                && st.pid > 0
            {
                let _ = self
                    .containers
                    .kernel()
                    .signal(st.pid, nix::sys::signal::Signal::SIGKILL);
            }
            // The monitor exits right after the command; bounded anyway.
            for _ in 0..100 {
                if child.try_wait().unwrap_or(true) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if !self.containers.dir(&self.id).exists() {
            return Ok(());
        }
        if let Ok(cfg) = self.containers.config(&self.id)
            && let Ok(rt) = self.containers.runtime(&cfg.runtime)
        {
            let _ = rt.delete(&self.id);
        }
        crate::monitor::teardown(&self.containers, &self.id, &NoNetworks::default(), "host")?;
        let k = self.containers.kernel();
        k.remove_netns(&self.containers.netns_path(&self.id))?;
        for m in k.mounts_under(&self.containers.dir(&self.id)) {
            k.unmount(&m)?;
        }
        self.containers.remove_record(&self.id)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}
