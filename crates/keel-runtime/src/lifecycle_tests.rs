//! The container lifecycle on the recording fake kernel: what the monitor
//! and the engine do to the kernel, in which order, and what they record.
//! No root needed; time is virtual.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::RuntimeError;
use crate::engine;
use crate::kernel::Kernel;
use crate::kernel::fake::{FakeKernel, FakeNet, Run};
use crate::monitor::{Frame, run_with};
use crate::record::{ContainerConfig, Containers, MountKind, MountSpec, RestartPolicy, Status};

struct World {
    tmp: tempfile::TempDir,
    k: FakeKernel,
    containers: Containers,
    net: FakeNet,
}

fn world() -> World {
    let tmp = tempfile::tempdir().unwrap();
    let k = FakeKernel::new(tmp.path());
    let containers = Containers::with_kernel(tmp.path(), Arc::new(k.clone())).unwrap();
    let net = k.networks();
    World {
        tmp,
        k,
        containers,
        net,
    }
}

impl World {
    fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// Records a container (as `create` leaves it) running `/bin/true` on
    /// the default bridge, changed by `f`.
    fn container(&self, f: impl FnOnce(&mut ContainerConfig)) -> String {
        let lower = self.root().join("lower");
        std::fs::create_dir_all(&lower).unwrap();
        let id = crate::ids::new_id();
        let mut cfg = ContainerConfig {
            id: id.clone(),
            lowerdirs: vec![lower],
            path: "/bin/true".into(),
            working_dir: "/".into(),
            hostname: "box".into(),
            network: "bridge".into(),
            stop_signal: "SIGTERM".into(),
            stop_timeout: 10,
            runtime: "libcontainer".into(),
            ..ContainerConfig::default()
        };
        f(&mut cfg);
        self.containers.create(&mut cfg).unwrap();
        id
    }

    /// Runs the monitor of `id` to its end: its exit code and frames.
    fn monitor(&self, id: &str) -> (i32, Vec<Frame>) {
        let (r, w) = rustix::pipe::pipe().unwrap();
        let code = run_with(&self.containers, id, &self.net, None, Some(w.into())).unwrap();
        (code, frames(r))
    }

    /// The effects with the container's id shortened to `ID` and retired
    /// record names to `.removed-X`.
    fn effects(&self, id: &str) -> Vec<String> {
        self.k
            .effects()
            .into_iter()
            .map(|e| {
                let e = e.replace(id, "ID");
                match e.find(".removed-") {
                    Some(i) => format!("{}.removed-X{}", &e[..i], &e[i + 25..]),
                    None => e,
                }
            })
            .collect()
    }

    fn retired(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.root().join("containers"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().contains(".removed-"))
            .collect()
    }
}

/// Every frame left in the pipe (its writers are gone).
fn frames(r: OwnedFd) -> Vec<Frame> {
    let mut f = std::fs::File::from(r);
    let mut out = Vec::new();
    while let Some(fr) = Frame::read(&mut f).unwrap() {
        out.push(fr);
    }
    out
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_string()).collect()
}

/// What a start on the default bridge does before the runtime starts the init.
const SET_UP: &[&str] = &[
    "mount containers/ID/merged",
    "netns create run/netns/ID",
    "attach bridge",
    "bundle",
];

/// Its reverse, once the container is done.
const TEAR_DOWN: &[&str] = &[
    "detach",
    "netns remove run/netns/ID",
    "unmount containers/ID/merged",
];

/// The effects `parts` list, one after the other.
fn seq(parts: &[&[&str]]) -> Vec<String> {
    parts.iter().flat_map(|p| strs(p)).collect()
}

#[test]
fn a_run_sets_up_in_order_and_tears_down_in_reverse() {
    let w = world();
    let id = w.container(|_| {});
    w.k.script([Run {
        stdout: b"hello\n".to_vec(),
        exit_code: 3,
        ..Run::default()
    }]);
    let (code, frames) = w.monitor(&id);
    assert_eq!(code, 3);
    assert_eq!(
        w.effects(&id),
        seq(&[SET_UP, &["start", "exit 3", "runtime delete"], TEAR_DOWN])
    );
    assert!(
        matches!(frames[0], Frame::Started(p) if p > 0),
        "{frames:?}"
    );
    assert_eq!(
        frames[1..],
        [Frame::Stdout(b"hello\n".to_vec()), Frame::Exit(3)]
    );
    let st = w.containers.state(&id).unwrap();
    assert_eq!(
        (
            st.status,
            st.exit_code,
            st.pid,
            st.monitor_pid,
            st.restart_count
        ),
        (Status::Exited, 3, 0, 0, 0)
    );
    assert!(!st.oom_killed);
    assert_eq!(st.endpoints.len(), 0, "detached endpoints are forgotten");
    let log = std::fs::read_to_string(w.containers.log_path(&id)).unwrap();
    assert!(
        log.contains(r#""log":"hello\n","stream":"stdout""#),
        "{log}"
    );
}

#[test]
fn none_and_host_networks_never_reach_the_network_driver() {
    let w = world();
    let none = w.container(|c| c.network = "none".into());
    let host = w.container(|c| c.network = "host".into());
    w.monitor(&none);
    let e = w.effects(&none);
    assert!(
        e.contains(&"netns create run/netns/ID".to_string()),
        "{e:?}"
    );
    assert!(
        !e.iter().any(|x| x.starts_with("attach") || x == "detach"),
        "{e:?}"
    );
    w.k.clear();
    w.monitor(&host);
    let e = w.effects(&host);
    assert!(
        !e.iter()
            .any(|x| x.contains("netns") || x.contains("attach")),
        "{e:?}"
    );
}

#[test]
fn on_failure_restarts_with_backoff_up_to_its_maximum() {
    let w = world();
    let id = w.container(|c| c.restart = RestartPolicy::OnFailure { max: 2 });
    w.k.script([Run::exits(1), Run::exits(1), Run::exits(1), Run::exits(0)]);
    let (code, _) = w.monitor(&id);
    assert_eq!(code, 1);
    let cycle: &[&str] = &["start", "exit 1", "runtime delete"];
    // The root, namespace and network stay across restarts; 100 ms·2ⁿ between.
    assert_eq!(
        w.effects(&id),
        seq(&[
            SET_UP,
            cycle,
            &["sleep 100ms"],
            cycle,
            &["sleep 200ms"],
            cycle,
            TEAR_DOWN
        ])
    );
    let st = w.containers.state(&id).unwrap();
    assert_eq!(
        (st.status, st.exit_code, st.restart_count),
        (Status::Exited, 1, 2)
    );
}

#[test]
fn on_failure_does_not_restart_a_clean_exit() {
    let w = world();
    let id = w.container(|c| c.restart = RestartPolicy::OnFailure { max: 0 });
    w.k.script([Run::exits(0)]);
    assert_eq!(w.monitor(&id).0, 0);
    let starts = w.effects(&id).iter().filter(|e| *e == "start").count();
    assert_eq!(starts, 1);
}

#[test]
fn always_restarts_until_the_user_stops_it() {
    let w = world();
    let id = w.container(|c| c.restart = RestartPolicy::Always);
    w.k.script([Run::exits(0), Run::exits(0), Run::exits(137)]);
    // `keel stop` lands while the third run is up.
    let (c, i) = (w.containers.clone(), id.clone());
    w.k.on("start", 3, move || {
        c.update(&i, |s| s.user_stopped = true).unwrap();
    });
    let (code, frames) = w.monitor(&id);
    assert_eq!(code, 137);
    assert_eq!(frames.last(), Some(&Frame::Exit(137)));
    let e = w.effects(&id);
    assert_eq!(e.iter().filter(|x| *x == "start").count(), 3, "{e:?}");
    let st = w.containers.state(&id).unwrap();
    assert_eq!((st.status, st.restart_count), (Status::Exited, 2));
}

#[test]
fn a_stop_during_the_backoff_ends_the_wait() {
    let w = world();
    let id = w.container(|c| c.restart = RestartPolicy::Always);
    w.k.script([Run::exits(1)]);
    let (c, i) = (w.containers.clone(), id.clone());
    // The second 20 ms step of the 100 ms wait sees the stop.
    w.k.on("sleep", 2, move || {
        c.update(&i, |s| s.user_stopped = true).unwrap();
    });
    let (code, _) = w.monitor(&id);
    assert_eq!(code, 1);
    let e = w.effects(&id);
    assert_eq!(e.iter().filter(|x| *x == "start").count(), 1, "{e:?}");
    assert!(e.contains(&"sleep 40ms".to_string()), "{e:?}");
    assert_eq!(w.containers.state(&id).unwrap().status, Status::Exited);
}

#[test]
fn an_oom_kill_is_recorded_per_run() {
    let w = world();
    let id = w.container(|c| c.restart = RestartPolicy::OnFailure { max: 1 });
    w.k.script([
        Run {
            exit_code: 137,
            oom_kill: true,
            ..Run::default()
        },
        Run::exits(2),
    ]);
    let (c, i) = (w.containers.clone(), id.clone());
    let seen = Arc::new(Mutex::new(None));
    let s2 = seen.clone();
    // Between the runs the record says the first one was OOM-killed.
    w.k.on("sleep", 1, move || {
        *s2.lock().unwrap() = Some(c.state(&i).unwrap().oom_killed);
    });
    w.monitor(&id);
    assert_eq!(*seen.lock().unwrap(), Some(true));
    let st = w.containers.state(&id).unwrap();
    assert_eq!((st.exit_code, st.oom_killed), (2, false));
}

#[test]
fn a_failed_start_tears_down_what_was_set_up() {
    let w = world();
    let id = w.container(|_| {});
    w.k.script([Run {
        start_error: Some("exec: \"/bin/nope\": no such file".into()),
        ..Run::default()
    }]);
    let (code, frames) = w.monitor(&id);
    assert_eq!(code, -1);
    assert_eq!(
        w.effects(&id),
        seq(&[
            SET_UP,
            &[
                "start failed: exec: \"/bin/nope\": no such file",
                "runtime delete"
            ],
            TEAR_DOWN
        ])
    );
    assert!(
        matches!(&frames[..], [Frame::Error(m)] if m.contains("/bin/nope")),
        "{frames:?}"
    );
    let st = w.containers.state(&id).unwrap();
    assert_eq!((st.status, st.monitor_pid), (Status::Created, 0));
    assert!(st.error.contains("/bin/nope"), "{}", st.error);
}

#[test]
fn a_failed_attach_starts_nothing_and_undoes_the_rest() {
    let w = world();
    let id = w.container(|_| {});
    w.k.fail("attach");
    let (code, frames) = w.monitor(&id);
    assert_eq!(code, -1);
    assert_eq!(
        w.effects(&id),
        seq(&[&SET_UP[..2], &["attach bridge failed"], TEAR_DOWN])
    );
    assert!(matches!(&frames[..], [Frame::Error(m)] if m.contains("injected")));
}

#[test]
fn an_rm_container_is_out_of_sight_before_its_exit_is_reported_then_released() {
    let w = world();
    let id = w.container(|c| c.auto_remove = true);
    let pins = w.root().join("oci/pins");
    std::fs::create_dir_all(&pins).unwrap();
    std::fs::write(pins.join(&id), "sha256:0").unwrap();
    w.k.script([Run::exits(0)]);
    let (frames_r, frames_w) = rustix::pipe::pipe().unwrap();
    rustix::fs::fcntl_setfl(&frames_r, rustix::fs::OFlags::NONBLOCK).unwrap();
    // At the first release step: the record is gone, the image unpinned,
    // and the client already has its exit frame.
    let at_release = Arc::new(Mutex::new(None));
    let seen = at_release.clone();
    let (containers, cid, pin) = (w.containers.clone(), id.clone(), pins.join(&id));
    let reader = Mutex::new(std::fs::File::from(frames_r));
    w.k.on("unmount", 1, move || {
        let mut got = Vec::new();
        let _ = reader.lock().unwrap().read_to_end(&mut got);
        let mut bytes = &got[..];
        let mut sent = Vec::new();
        while let Ok(Some(f)) = Frame::read(&mut bytes) {
            sent.push(f);
        }
        let listed = containers.ids().unwrap().contains(&cid);
        *seen.lock().unwrap() = Some((listed, pin.exists(), sent));
    });
    let code = run_with(&w.containers, &id, &w.net, None, Some(frames_w.into())).unwrap();
    assert_eq!(code, 0);
    let (listed, pinned, fr) = at_release.lock().unwrap().take().unwrap();
    assert!(!listed && !pinned);
    assert_eq!(fr.last(), Some(&Frame::Exit(0)), "{fr:?}");
    assert_eq!(
        w.effects(&id),
        strs(&[
            "mount containers/ID/merged volatile",
            "netns create run/netns/ID",
            "attach bridge",
            "bundle",
            "start",
            "exit 0",
            "unmount containers/.removed-X/merged",
            "netns remove run/netns/ID",
            "runtime delete",
            "detach",
        ])
    );
    assert!(w.retired().is_empty() && !w.containers.dir(&id).exists());
}

#[test]
fn an_rm_container_whose_network_release_fails_is_kept_for_the_sweep() {
    let w = world();
    let id = w.container(|c| c.auto_remove = true);
    w.k.script([Run::exits(0)]);
    w.k.fail("detach");
    w.monitor(&id);
    let kept = w.retired();
    assert_eq!(kept.len(), 1, "the record stays for a retry");
    // A sweep leaves it alone while its monitor runs (here: this process).
    w.k.heal("detach");
    w.k.clear();
    engine::sweep_leftovers(&w.containers, &w.net);
    assert_eq!(w.effects(&id), Vec::<String>::new());
    assert_eq!(w.retired(), kept);
    // Once the monitor is gone, the next sweep finishes the release.
    w.k.kill9(rustix::process::getpid().as_raw_nonzero().get());
    engine::sweep_leftovers(&w.containers, &w.net);
    assert_eq!(w.effects(&id), strs(&["runtime delete", "detach"]));
    assert!(w.retired().is_empty());
}

/// A running container as the monitor leaves it: root and namespace
/// mounted, state Running with its monitor and init (which takes the
/// monitor along when it ends). Returns (monitor pid, init pid).
fn running(w: &World, id: &str, init_dies_on: &[Signal]) -> (i32, i32) {
    let (monitor, monitor_start) = w.k.spawn("monitor", &[], &[]);
    let (init, _) = w.k.spawn("init", init_dies_on, &[monitor]);
    let merged = w.containers.rootfs(id);
    std::fs::create_dir_all(&merged).unwrap();
    w.k.mark_mounted(&merged);
    let ns = w.containers.netns_path(id);
    std::fs::create_dir_all(ns.parent().unwrap()).unwrap();
    std::fs::write(&ns, "").unwrap();
    w.k.mark_mounted(&ns);
    w.containers
        .update(id, |s| {
            s.status = Status::Running;
            s.pid = init;
            s.monitor_pid = monitor;
            s.monitor_start = monitor_start;
        })
        .unwrap();
    (monitor, init)
}

#[test]
fn stop_sends_the_stop_signal_and_kills_after_the_timeout() {
    let w = world();
    // Ignores SIGTERM: SIGKILL after the 5 s timeout.
    let stubborn = w.container(|_| {});
    let (monitor, _) = running(&w, &stubborn, &[]);
    engine::stop(&w.containers, &stubborn, Some(5), None).unwrap();
    assert_eq!(
        w.effects(&stubborn),
        strs(&["signal init SIGTERM", "signal init SIGKILL"])
    );
    assert_eq!(w.k.elapsed(), Duration::from_secs(5));
    assert!(!w.k.alive(monitor));
    assert!(w.containers.state(&stubborn).unwrap().user_stopped);
    // Obeys its own stop signal: no SIGKILL, no wait.
    let polite = w.container(|c| c.stop_signal = "SIGQUIT".into());
    running(&w, &polite, &[Signal::SIGQUIT]);
    w.k.clear();
    engine::stop(&w.containers, &polite, None, None).unwrap();
    assert_eq!(w.effects(&polite), strs(&["signal init SIGQUIT"]));
    assert_eq!(w.k.elapsed(), Duration::from_secs(5));
    // A container whose monitor is gone is not signalled at all.
    let dead = w.container(|_| {});
    let (monitor, _) = running(&w, &dead, &[]);
    w.k.kill9(monitor);
    w.k.clear();
    engine::stop(&w.containers, &dead, None, None).unwrap();
    assert_eq!(w.effects(&dead), Vec::<String>::new());
}

#[test]
fn kill_refuses_a_container_without_a_live_monitor() {
    let w = world();
    let id = w.container(|_| {});
    let (monitor, _) = running(&w, &id, &[Signal::SIGTERM]);
    engine::kill(&w.containers, &id, Signal::SIGUSR1, false).unwrap();
    assert_eq!(w.effects(&id), strs(&["signal init SIGUSR1"]));
    assert!(!w.containers.state(&id).unwrap().user_stopped);
    w.k.kill9(monitor);
    let err = engine::kill(&w.containers, &id, Signal::SIGTERM, true).unwrap_err();
    assert!(err.to_string().contains("is not running"), "{err}");
}

#[test]
fn rm_after_a_killed_monitor_releases_everything_in_order() {
    let w = world();
    let id = w.container(|_| {});
    let (monitor, init) = running(&w, &id, &[]);
    // kill -9 of the monitor and then the container: nobody tore down.
    w.k.kill9(monitor);
    w.k.kill9(init);
    engine::remove(&w.containers, &id, false, true, &w.net).unwrap();
    assert_eq!(w.effects(&id), seq(&[&["runtime delete"], TEAR_DOWN]));
    assert!(!w.containers.dir(&id).exists() && w.retired().is_empty());
}

#[test]
fn rm_refuses_a_running_container_unless_forced() {
    let w = world();
    let id = w.container(|_| {});
    running(&w, &id, &[]);
    let err = engine::remove(&w.containers, &id, false, false, &w.net).unwrap_err();
    assert!(err.to_string().contains("is running"), "{err}");
    assert_eq!(w.effects(&id), Vec::<String>::new());
    engine::remove(&w.containers, &id, true, false, &w.net).unwrap();
    let e = w.effects(&id);
    assert_eq!(e[0], "signal init SIGKILL", "{e:?}");
    assert_eq!(e.last().unwrap(), "unmount containers/ID/merged");
    assert!(!w.containers.dir(&id).exists());
}

#[test]
fn a_sweep_releases_what_a_monitor_killed_after_retiring_left() {
    let w = world();
    let id = w.container(|c| c.auto_remove = true);
    let (monitor, init) = running(&w, &id, &[]);
    // Killed between retire and release (see monitor::run_with).
    w.containers.retire_record(&id).unwrap();
    let busy = w.container(|_| {});
    running(&w, &busy, &[]);
    // A retired record whose monitor lives is that monitor's business.
    engine::sweep_leftovers(&w.containers, &w.net);
    assert_eq!(w.effects(&id), Vec::<String>::new());
    w.k.kill9(init);
    assert!(!w.k.alive(monitor));
    engine::sweep_leftovers(&w.containers, &w.net);
    assert_eq!(
        w.effects(&id),
        strs(&[
            "unmount containers/.removed-X/merged",
            "netns remove run/netns/ID",
            "runtime delete",
            "detach",
        ])
    );
    assert!(w.retired().is_empty());
    // The other container was not touched.
    assert!(w.k.is_mounted(&w.containers.rootfs(&busy)));
}

#[test]
fn create_records_a_container_and_refuses_bad_input_leaving_nothing() {
    let w = world();
    let rootfs = w.root().join("rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    let store = keel_oci::ImageStore::open(w.root()).unwrap();
    let name = keel_oci::Reference::parse("localhost/tiny:1").unwrap();
    keel_oci::import::import_dir(
        &store,
        &rootfs,
        Some(&name),
        &["CMD [\"/bin/true\"]".into()],
    )
    .unwrap();
    let opts = |f: &dyn Fn(&mut engine::CreateOptions)| {
        let mut o = engine::CreateOptions {
            image: "localhost/tiny:1".into(),
            name: Some("web".into()),
            labels: BTreeMap::from([("a".into(), "b".into())]),
            ..engine::CreateOptions::default()
        };
        f(&mut o);
        o
    };
    let cfg = engine::create(w.root(), &opts(&|_| {})).unwrap();
    assert_eq!((cfg.path.as_str(), cfg.name.as_str()), ("/bin/true", "web"));
    assert_eq!(w.containers.resolve("web").unwrap(), cfg.id);
    assert!(w.root().join("oci/pins").join(&cfg.id).exists());
    assert_eq!(w.containers.state(&cfg.id).unwrap().status, Status::Created);
    let before = std::fs::read_dir(w.root().join("containers"))
        .unwrap()
        .count();
    for bad in [
        opts(&|o| o.name = Some("web".into())),
        opts(&|o| {
            o.name = None;
            o.stop_signal = Some("SIGNOPE".into());
        }),
        opts(&|o| {
            o.name = None;
            o.working_dir = Some("relative".into());
        }),
        opts(&|o| {
            o.name = None;
            o.runtime = "crun".into();
        }),
    ] {
        assert!(engine::create(w.root(), &bad).is_err());
    }
    assert_eq!(
        std::fs::read_dir(w.root().join("containers"))
            .unwrap()
            .count(),
        before
    );
    assert_eq!(
        std::fs::read_dir(w.root().join("oci/pins"))
            .unwrap()
            .count(),
        1
    );
    // Nothing of this touched the kernel.
    assert_eq!(w.k.effects(), Vec::<String>::new());

    // --volumes-from: the source's volumes and binds at the same paths (not
    // its tmpfs), in the mode asked for; the consumer's own mount wins.
    let mount = |kind, source: &str, target: &str, read_only| MountSpec {
        kind,
        source: source.into(),
        target: target.into(),
        read_only,
        anonymous: false,
        options: Vec::new(),
    };
    let src = engine::create(
        w.root(),
        &opts(&|o| {
            o.name = Some("src".into());
            o.mounts = vec![
                MountSpec {
                    anonymous: true,
                    ..mount(MountKind::Volume, "anon1", "/data", false)
                },
                mount(MountKind::Bind, "/etc", "/cfg", true),
                mount(MountKind::Tmpfs, "", "/scratch", false),
            ];
        }),
    )
    .unwrap();
    let got = |from: &[&str], own: Vec<MountSpec>| {
        let o = opts(&|o| {
            o.name = None;
            o.volumes_from = from.iter().map(|s| (*s).to_string()).collect();
            o.mounts = own.clone();
        });
        engine::create(w.root(), &o).map(|c| c.mounts)
    };
    assert_eq!(
        got(&["src"], vec![]).unwrap(),
        [
            mount(MountKind::Volume, "anon1", "/data", false),
            mount(MountKind::Bind, "/etc", "/cfg", true),
        ]
    );
    assert_eq!(
        got(
            &[&src.id[..12]],
            vec![mount(MountKind::Bind, "/tmp", "/cfg", false)]
        )
        .unwrap(),
        [
            mount(MountKind::Volume, "anon1", "/data", false),
            mount(MountKind::Bind, "/tmp", "/cfg", false),
        ]
    );
    let ro = got(&["src:ro"], vec![]).unwrap();
    assert!(ro.iter().all(|m| m.read_only), "{ro:?}");
    let rw = got(&["src:rw"], vec![]).unwrap();
    assert!(rw.iter().all(|m| !m.read_only), "{rw:?}");
    assert!(matches!(
        got(&["nosuch"], vec![]),
        Err(RuntimeError::NotFound(_))
    ));
    let e = got(&["src:rx"], vec![]).unwrap_err().to_string();
    assert!(e.contains("expected ro or rw"), "{e}");
}
