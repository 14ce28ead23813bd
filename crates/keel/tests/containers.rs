//! Containers end to end: real containers as root from the busybox image,
//! through the keel binary. One conformance suite runs against both OCI
//! runtime backends (libcontainer in process, runc).

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Keel, free_port, http_get, unmount_under, wait_for_port};

/// A keel root with busybox seeded; on drop, every container is force-removed
/// and anything still mounted under the root is unmounted.
struct Env {
    k: Keel,
}

impl Env {
    fn new() -> Self {
        let k = Keel::new();
        k.seed_busybox();
        Env { k }
    }

    fn root(&self) -> &Path {
        self.k.root.path()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.k.ok(args)).unwrap()
    }

    fn inspect(&self, name: &str) -> serde_json::Value {
        self.json(&["inspect", name])[0].clone()
    }

    /// Runs and returns (exit code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let o = self.k.run(args);
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    #[allow(clippy::unused_self)] // reads better at call sites: e.wait_until(...)
    fn wait_until(&self, what: &str, secs: u64, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Container IDs of this root.
    fn all_ids(&self) -> Vec<String> {
        self.k
            .ok(&["ps", "-a", "-q", "--no-trunc"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Asserts that nothing of container `id` is left on the host.
    fn assert_nothing_left(&self, id: &str) {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!info.contains(id), "a mount of {id} is left:\n{info}");
        for ctrl in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let p = ctrl.path().join("keel").join(id);
            assert!(!p.exists(), "cgroup {} is left", p.display());
        }
        for p in std::fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(cmd) = std::fs::read(p.path().join("cmdline")) {
                assert!(
                    !String::from_utf8_lossy(&cmd).contains(id),
                    "process {} of {id} is left",
                    p.file_name().display()
                );
            }
            // A monitor forked from its client keeps the client's command
            // line; it is known by what it holds open (the container's log).
            for fd in std::fs::read_dir(p.path().join("fd"))
                .into_iter()
                .flatten()
                .flatten()
            {
                if let Ok(target) = std::fs::read_link(fd.path()) {
                    assert!(
                        !target.to_string_lossy().contains(id),
                        "process {} holds {} open",
                        p.file_name().display(),
                        target.display()
                    );
                }
            }
        }
        assert!(!self.root().join("containers").join(id).exists());
        assert!(!self.root().join("run/netns").join(id).exists());
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let ids = self.k.run(&["ps", "-a", "-q"]);
        for id in String::from_utf8_lossy(&ids.stdout).lines() {
            let _ = self.k.run(&["rm", "-f", "-v", id]);
        }
        // A test that failed halfway leaves its networks: their bridges and
        // NAT rules live in the host's namespace.
        let _ = self.k.run(&["network", "prune", "-f"]);
        unmount_under(self.k.root.path());
    }
}

const RUN: &[&str] = &["run", "--network", "none"];

fn args<'a>(base: &[&'a str], rest: &[&'a str]) -> Vec<&'a str> {
    base.iter().chain(rest).copied().collect()
}

macro_rules! conformance {
    ($($backend:ident),*) => {$(
        mod $backend {
            use super::*;
            const RT: &str = stringify!($backend);

            fn run(e: &Env, rest: &[&str]) -> (i32, String, String) {
                e.run(&args(&[RUN[0], RUN[1], RUN[2], "--rm", "--runtime", RT], rest))
            }

            #[test]
            fn process_env_user_cwd_and_exit_code() {
                let e = Env::new();
                let (code, out, err) = run(&e, &["-e", "FOO=bar", "-w", "/tmp", "-u", "nobody", "busybox", "sh", "-c", "echo $FOO; pwd; id -u; id -g; echo oops >&2; exit 7"]);
                assert_eq!(code, 7, "{err}");
                assert_eq!(out, "bar\n/tmp\n65534\n65534\n");
                assert_eq!(err, "oops\n");
                let (code, out, _) = run(&e, &["busybox", "true"]);
                assert_eq!((code, out.as_str()), (0, ""));
            }

            #[test]
            fn exit_codes_like_docker() {
                let e = Env::new();
                let (code, _, err) = run(&e, &["busybox", "no-such-command"]);
                assert_eq!(code, 127, "{err}");
                assert!(err.starts_with("error: ") && err.lines().count() <= 2, "{err}");
                let (code, _, err) = run(&e, &["busybox", "/no/such/binary"]);
                assert_eq!(code, 127, "{err}");
                let (code, _, err) = run(&e, &["busybox", "/etc/passwd"]);
                assert_eq!(code, 126, "{err}");
                let (code, _, err) = run(&e, &["busybox", "/etc"]);
                assert_eq!(code, 126, "{err}");
                let (code, _, err) = run(&e, &["no-such-image", "true"]);
                assert_eq!(code, 125, "{err}");
                let (code, _, err) = run(&e, &["--no-such-flag", "busybox", "true"]);
                assert_eq!(code, 125, "{err}");
                let (code, _, _) = run(&e, &["busybox", "sh", "-c", "exit 3"]);
                assert_eq!(code, 3);
                assert!(e.all_ids().is_empty());
            }

            #[test]
            fn signals_start_at_their_defaults() {
                // keel (a Rust program) ignores SIGPIPE; nothing ignored or
                // blocked may leak into the container's process.
                let e = Env::new();
                let (code, out, err) = run(&e, &["busybox", "grep", "-E", "^Sig(Ign|Blk):", "/proc/self/status"]);
                assert_eq!(code, 0, "{err}");
                // The standard signals 1-31 (the low 31 bits). glibc reserves
                // 32 and 33 and will not reset them; a harness that ignores
                // them passes that to runc's containers too.
                let bits = |name: &str| {
                    let line = out.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{out}"));
                    u64::from_str_radix(line[name.len()..].trim(), 16).unwrap()
                };
                assert_eq!(bits("SigIgn:") & 0x7fff_ffff, 0, "{out}");
                assert_eq!(bits("SigBlk:") & 0x7fff_ffff, 0, "{out}");
            }

            #[test]
            fn tty_for_run_and_exec() {
                use std::io::Write;
                let e = Env::new();
                let is_pts = |out: &str| {
                    let t = out.trim_end();
                    t.strip_prefix("/dev/pts/").is_some_and(|n| n.parse::<u32>().is_ok())
                };
                // No terminal here: the container still gets a pty (as with docker).
                let (code, out, err) = run(&e, &["-t", "busybox", "tty"]);
                assert_eq!(code, 0, "{err}");
                assert!(is_pts(&out), "{out:?}");
                assert!(out.ends_with("\r\n"), "a terminal's line ending: {out:?}");
                let (code, out, _) = run(&e, &["busybox", "tty"]);
                assert_eq!((code, out.as_str()), (1, "not a tty\n"));
                // -it relays stdin into the terminal.
                let feed = |a: Vec<&str>| {
                    let mut child = e.k.cmd().args(a).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
                    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
                    let o = child.wait_with_output().unwrap();
                    (o.status.code(), String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
                };
                let (code, out, err) = feed(args(RUN, &["--rm", "--runtime", RT, "-i", "-t", "busybox", "sh", "-c", "read x; echo got $x; tty"]));
                assert_eq!(code, Some(0), "{err}");
                assert!(out.contains("got hello\r\n/dev/pts/"), "{out:?}");
                e.k.ok(&args(RUN, &["-d", "--runtime", RT, "--name", "t", "busybox", "sleep", "60"]));
                let (code, out, err) = e.run(&["exec", "-t", "t", "tty"]);
                assert_eq!(code, 0, "{err}");
                assert!(is_pts(&out), "{out:?}");
                let (code, out, _) = e.run(&["exec", "t", "tty"]);
                assert_eq!((code, out.as_str()), (1, "not a tty\n"));
                let (code, out, err) = e.run(&["exec", "-t", "t", "grep", "Seccomp:", "/proc/self/status"]);
                assert_eq!(code, 0, "{err}");
                assert!(out.contains('2'), "{out:?}");
                let (code, out, err) = e.run(&["exec", "-t", "-u", "nobody", "-w", "/tmp", "t", "sh", "-c", "id -u; pwd; exit 4"]);
                assert_eq!(code, 4, "{err}");
                assert_eq!(out, "65534\r\n/tmp\r\n");
                let (code, out, err) = feed(vec!["exec", "-i", "-t", "t", "sh", "-c", "read x; echo got $x"]);
                assert_eq!(code, Some(0), "{err}");
                assert!(out.contains("got hello"), "{out:?}");
                // On a terminal (script(1) makes one), its size reaches the
                // container: set before `run`'s process starts; for exec, as
                // with docker, just after (hence the pause).
                let keel = env!("CARGO_BIN_EXE_keel");
                // Typed on a real terminal, input reaches an -it shell (the
                // monitor, a background job of that terminal, must not read
                // it itself: SIGTTIN would stop it and hang the client).
                let cmd = format!("{keel} run --rm --network none --runtime {RT} -it busybox sh");
                let mut child = std::process::Command::new("script")
                    .args(["-qefc", &cmd, "/dev/null"])
                    .env("KEEL_ROOT", e.root())
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                let mut typed = child.stdin.take().unwrap();
                typed.write_all(b"echo typed-$((1+2))\nexit 3\n").unwrap();
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
                let status = loop {
                    if let Some(s) = child.try_wait().unwrap() {
                        break Some(s);
                    }
                    if std::time::Instant::now() > deadline {
                        let _ = child.kill();
                        break None;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                };
                drop(typed);
                let o = child.wait_with_output().unwrap();
                let out = String::from_utf8_lossy(&o.stdout);
                assert_eq!(status.and_then(|s| s.code()), Some(3), "{out:?}");
                assert!(out.contains("typed-3"), "{out:?}");
                for cmd in [
                    format!("stty rows 33 cols 77; {keel} run --rm --network none --runtime {RT} -t busybox stty size"),
                    format!("stty rows 33 cols 77; {keel} exec -t t sh -c 'sleep 0.5; stty size'"),
                ] {
                    let o = std::process::Command::new("script")
                        .args(["-qec", &cmd, "/dev/null"])
                        .env("KEEL_ROOT", e.root())
                        .stdin(Stdio::null())
                        .output()
                        .unwrap();
                    let out = String::from_utf8_lossy(&o.stdout);
                    assert!(o.status.success(), "{cmd}: {out} {}", String::from_utf8_lossy(&o.stderr));
                    assert!(out.contains("33 77"), "{cmd}: {out:?}");
                }
            }

            #[test]
            fn safe_defaults_caps_nnp_seccomp_readonly() {
                let e = Env::new();
                let status = |extra: &[&str]| {
                    let mut a = extra.to_vec();
                    a.extend(["busybox", "cat", "/proc/self/status"]);
                    let (code, out, err) = run(&e, &a);
                    assert_eq!(code, 0, "{err}");
                    out
                };
                let field = |s: &str, k: &str| s.lines().find(|l| l.starts_with(k)).unwrap().split_whitespace().nth(1).unwrap().to_string();
                let s = status(&[]);
                // Docker's default set: chown dac_override fowner fsetid kill setgid setuid
                // setpcap net_bind_service net_raw sys_chroot mknod audit_write setfcap.
                assert_eq!(field(&s, "CapEff:"), "00000000a80425fb");
                assert_eq!(field(&s, "NoNewPrivs:"), "1");
                assert_eq!(field(&s, "Seccomp:"), "2");
                assert_eq!(field(&status(&["--cap-drop", "ALL"]), "CapEff:"), "0000000000000000");
                let with_admin = u64::from_str_radix(&field(&status(&["--cap-add", "NET_ADMIN", "--cap-drop", "chown"]), "CapEff:"), 16).unwrap();
                assert_eq!(with_admin & (1 << 12), 1 << 12, "NET_ADMIN present");
                assert_eq!(with_admin & 1, 0, "CHOWN dropped");
                // Without CAP_SYS_ADMIN, seccomp refuses unshare (EPERM).
                let (code, _, _) = run(&e, &["busybox", "unshare", "-n", "true"]);
                assert_ne!(code, 0);
                let (code, _, err) = run(&e, &["--read-only", "busybox", "touch", "/x"]);
                assert_ne!(code, 0);
                assert!(err.contains("Read-only file system"), "{err}");
                let (code, _, err) = run(&e, &["busybox", "cat", "/proc/kcore"]);
                assert_ne!(code, 0, "masked: {err}");
                let (code, _, _) = run(&e, &["busybox", "sh", "-c", "echo 1 > /proc/sys/kernel/ns_last_pid"]);
                assert_ne!(code, 0, "/proc/sys is read-only");
            }

            #[test]
            fn memory_limit_oom_kills_with_137() {
                let e = Env::new();
                let (code, _, _) = e.run(&args(RUN, &["--runtime", RT, "--name", "hog", "--memory", "32m", "busybox", "sh", "-c", "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived"]));
                assert_eq!(code, 137);
                let i = e.inspect("hog");
                assert_eq!(i["State"]["OOMKilled"], true);
                assert_eq!(i["State"]["ExitCode"], 137);
                assert_eq!(i["HostConfig"]["Memory"], 32 * 1024 * 1024);
            }

            #[test]
            fn pids_limit_and_cpus() {
                let e = Env::new();
                let (code, _, err) = run(&e, &["--pids-limit", "4", "busybox", "sh", "-c", "for i in 1 2 3 4 5 6; do sleep 2 & done; wait"]);
                assert_ne!(code, 0);
                assert!(err.contains("can't fork"), "{err}");
                let (code, out, err) = run(&e, &["--cpus", "0.5", "busybox", "cat", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"]);
                assert_eq!(code, 0, "{err}");
                assert_eq!(out.trim(), "50000");
            }

            #[test]
            fn stop_kill_and_exec() {
                let e = Env::new();
                let id = e.k.ok(&args(RUN, &["-d", "--runtime", RT, "--name", "svc", "busybox", "sh", "-c", "trap 'echo got term; exit 0' TERM; echo ready; while true; do sleep 0.1; done"])).trim().to_string();
                assert_eq!(id.len(), 64);
                e.wait_until("ready", 10, || e.k.ok(&["logs", "svc"]).contains("ready"));
                let (code, out, err) = e.run(&["exec", "-e", "X=1", "-w", "/etc", "svc", "sh", "-c", "echo $X $(pwd) $(id -u); exit 3"]);
                assert_eq!((code, out.as_str()), (3, "1 /etc 0\n"), "{err}");
                assert_eq!(e.k.ok(&["exec", "-u", "nobody", "svc", "id", "-un"]), "nobody\n");
                // exec'd processes get the container's seccomp filter too.
                assert!(e.k.ok(&["exec", "svc", "grep", "Seccomp:", "/proc/self/status"]).contains('2'));
                assert_ne!(e.run(&["exec", "svc", "unshare", "-n", "true"]).0, 0);
                e.k.ok(&["exec", "-d", "svc", "touch", "/tmp/from-exec"]);
                e.wait_until("exec -d", 5, || e.run(&["exec", "svc", "test", "-f", "/tmp/from-exec"]).0 == 0);
                // stop: the stop signal, caught by the trap.
                e.k.ok(&["stop", "svc"]);
                assert!(e.k.ok(&["logs", "svc"]).contains("got term"));
                assert_eq!(e.inspect("svc")["State"]["ExitCode"], 0);
                assert_eq!(e.inspect("svc")["State"]["Status"], "exited");
                // start again, then SIGKILL.
                e.k.ok(&["start", "svc"]);
                assert_eq!(e.inspect("svc")["State"]["Running"], true);
                e.k.ok(&["kill", "svc"]);
                e.wait_until("kill", 10, || e.inspect("svc")["State"]["Running"] == false);
                assert_eq!(e.inspect("svc")["State"]["ExitCode"], 137);
                // stop -t 1 on a process ignoring TERM escalates to SIGKILL.
                e.k.ok(&args(RUN, &["-d", "--runtime", RT, "--name", "stubborn", "busybox", "sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"]));
                let t = Instant::now();
                e.k.ok(&["stop", "-t", "1", "stubborn"]);
                assert!(t.elapsed() >= Duration::from_millis(900));
                assert_eq!(e.inspect("stubborn")["State"]["ExitCode"], 137);
                e.k.ok(&["rm", "svc", "stubborn"]);
                e.assert_nothing_left(&id);
            }
        }
    )*};
}

conformance!(libcontainer, runc);

/// A bridge `run --rm` returns once the container is gone for keel; its
/// veth, published-port rules and address follow right after, by the
/// monitor (deleting a veth waits on the kernel), and nothing stays.
#[test]
fn rm_on_a_bridge_releases_veth_rules_and_address_after_returning() {
    let e = Env::new();
    e.k.ok(&["network", "create", "rmnet"]);
    let bridge = bridge_of(&e, "rmnet");
    let subnet = e.json(&["network", "inspect", "rmnet"])[0]["IPAM"]["Config"][0]["Subnet"]
        .as_str()
        .unwrap()
        .to_string();
    let port = free_port().to_string();
    let publish = format!("127.0.0.1:{port}:80");
    // Back to back on one published port: the next run waits for the
    // previous monitor to release it, as docker's would find it free.
    for _ in 0..3 {
        let (code, out, err) = e.run(&[
            "run",
            "--rm",
            "--network",
            "rmnet",
            "-p",
            &publish,
            "busybox",
            "sh",
            "-c",
            // The interface's own address: this test is about the veth,
            // rules and address, not /etc/hosts (`hostname -i` reads it).
            r"ip -4 -o addr show dev eth0 | sed -n 's/.* inet \([0-9.]*\)\/.*/\1/p'",
        ]);
        assert_eq!(code, 0, "{err}");
        // Docker's pools start at 172.17/16, but other networks on the host
        // may have taken them: the address must be in rmnet's subnet.
        assert!(in_subnet(out.trim(), &subnet), "{out} not in {subnet}");
        assert_eq!(e.k.ok(&["ps", "-aq"]).trim(), "");
    }
    e.wait_until("the veth to leave the bridge", 10, || !has_ports(&bridge));
    e.wait_until("the port rules to go", 10, || {
        let rules = std::process::Command::new("iptables-save")
            .output()
            .unwrap();
        !String::from_utf8_lossy(&rules.stdout).contains(&format!("--dport {port}"))
    });
    e.wait_until("the address to be released", 10, || {
        e.json(&["network", "inspect", "rmnet"])[0]["Containers"] == serde_json::json!({})
    });
    // A script that removes the network right away waits for the release.
    e.k.ok(&["run", "--rm", "--network", "rmnet", "busybox", "true"]);
    e.k.ok(&["network", "rm", "rmnet"]);
    // So does a prune, which gives back the idle default bridge.
    let default = bridge_of(&e, "bridge");
    e.k.ok(&["run", "--rm", "busybox", "true"]);
    e.k.ok(&["network", "prune", "-f"]);
    assert!(!Path::new(&format!("/sys/class/net/{default}")).exists());
}

/// Leaves running container `id` as a monitor killed right after retiring
/// it would: monitor and container dead, the record renamed out of sight,
/// nothing released. Returns the retired record.
fn kill_between_retire_and_release(e: &Env, id: &str) -> PathBuf {
    let dir = e.root().join("containers").join(id);
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap();
    let (monitor, init) = (
        state["monitor_pid"].as_i64().unwrap(),
        state["pid"].as_i64().unwrap(),
    );
    // The monitor dies first, then the container: nobody releases anything.
    for pid in [monitor, init] {
        std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
    }
    e.wait_until("both to be gone", 10, || {
        !Path::new(&format!("/proc/{init}")).exists()
    });
    // As retire_record leaves it.
    let trash = e.root().join("containers/.removed-0123456789abcdef");
    std::fs::rename(&dir, &trash).unwrap();
    trash
}

/// What such a monitor left holds a published port, an address and a
/// network: the next `run` of that port or address and `network rm` release
/// it themselves, as `keel rm` does, instead of failing on a container
/// nobody can see.
#[test]
fn a_killed_monitors_port_address_and_network_go_to_whoever_needs_them() {
    let e = Env::new();
    let subnet = scratch_subnet();
    let prefix = subnet.trim_end_matches("0/24");
    let ip = format!("{prefix}9");
    e.k.ok(&["network", "create", "--subnet", &subnet, "portnet"]);
    let publish = format!("127.0.0.1:{}:80", free_port());
    for wanted in [["-p", publish.as_str()], ["--ip", ip.as_str()]] {
        let id = e.k.ok(&args(
            &[
                "run",
                "-d",
                "--network",
                "portnet",
                "-p",
                &publish,
                "--ip",
                &ip,
            ],
            &["busybox", "sleep", "60"],
        ));
        let trash = kill_between_retire_and_release(&e, id.trim());
        let out = e.k.ok(&args(
            &["run", "--rm", "--network", "portnet", wanted[0], wanted[1]],
            &["busybox", "hostname", "-i"],
        ));
        assert!(out.trim().starts_with(prefix), "{out}");
        assert!(!trash.exists());
        e.assert_nothing_left(id.trim());
    }
    let id = e.k.ok(&[
        "run",
        "-d",
        "--network",
        "portnet",
        "busybox",
        "sleep",
        "60",
    ]);
    let trash = kill_between_retire_and_release(&e, id.trim());
    e.k.ok(&["network", "rm", "portnet"]);
    assert!(!trash.exists());
    e.assert_nothing_left(id.trim());
}

/// A monitor killed between retiring an --rm container and releasing it
/// leaves a hidden record with mounts, cgroups and a veth: the next
/// `keel rm` finishes the job.
#[test]
fn keel_rm_sweeps_what_a_killed_monitor_left() {
    let e = Env::new();
    e.k.ok(&["network", "create", "sweepnet"]);
    let bridge = bridge_of(&e, "sweepnet");
    let id = e.k.ok(&[
        "run",
        "-d",
        "--network",
        "sweepnet",
        "busybox",
        "sleep",
        "60",
    ]);
    let id = id.trim().to_string();
    let trash = kill_between_retire_and_release(&e, &id);
    assert!(has_ports(&bridge));
    e.k.ok(&[
        "create",
        "--name",
        "other",
        "--network",
        "none",
        "busybox",
        "true",
    ]);
    e.k.ok(&["rm", "other"]);
    assert!(!trash.exists());
    assert!(!has_ports(&bridge));
    e.assert_nothing_left(&id);
    e.k.ok(&["network", "rm", "sweepnet"]);
}

/// `keel run` forks its monitor (no second exec of keel): the monitor is
/// named keel-monitor, keeps the client's command line, and is still known
/// as the container's monitor by its pid and start time (ps, stop).
#[test]
fn run_forks_the_monitor_and_still_knows_it() {
    let e = Env::new();
    let id =
        e.k.ok(&["run", "-d", "--network", "none", "busybox", "sleep", "60"]);
    let id = id.trim();
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(e.root().join("containers").join(id).join("state.json")).unwrap(),
    )
    .unwrap();
    let pid = state["monitor_pid"].as_i64().unwrap();
    assert!(state["monitor_start"].as_u64().unwrap() > 0);
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "keel-monitor");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains("__monitor"));
    assert!(e.k.ok(&["ps", "-q"]).contains(&id[..12]));
    e.k.ok(&["stop", "-t", "1", id]);
    assert_eq!(e.inspect(id)["State"]["Status"], "exited");
    e.k.ok(&["rm", id]);
    e.assert_nothing_left(id);
    // --rm: gone for ps as soon as run returns; its empty cgroups and its
    // files follow right after. (Its hostname is its short id.)
    let short =
        e.k.ok(&["run", "--rm", "--network", "none", "busybox", "hostname"]);
    let short = short.trim();
    assert_eq!(short.len(), 12);
    assert_eq!(e.k.ok(&["ps", "-aq"]).trim(), "");
    let containers = e.root().join("containers");
    e.wait_until("the retired record to be unmounted and deleted", 10, || {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        !info.contains(&format!("{}/.removed-", containers.display()))
            && std::fs::read_dir(&containers)
                .unwrap()
                .flatten()
                .all(|d| !d.file_name().to_string_lossy().starts_with(".removed-"))
    });
    e.wait_until("its cgroups to be removed", 10, || {
        std::fs::read_dir("/sys/fs/cgroup")
            .unwrap()
            .flatten()
            .all(|c| {
                std::fs::read_dir(c.path().join("keel")).map_or(true, |d| {
                    d.flatten()
                        .all(|g| !g.file_name().to_string_lossy().starts_with(short))
                })
            })
    });
}

#[test]
fn volumes_survive_rm_and_anonymous_ones_go_with_rm_v() {
    let e = Env::new();
    e.k.ok(&args(
        RUN,
        &[
            "--name",
            "w",
            "-v",
            "data:/data",
            "-v",
            "/scratch",
            "busybox",
            "sh",
            "-c",
            "echo kept > /data/f; echo gone > /scratch/f",
        ],
    ));
    let anon = e.inspect("w")["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["Destination"] == "/scratch")
        .unwrap()["Name"]
        .as_str()
        .unwrap()
        .to_string();
    let vols = e.k.ok(&["volume", "ls", "-q"]);
    assert!(vols.contains("data") && vols.contains(&anon), "{vols}");
    // In use: volume rm refuses.
    let err = e.k.fails(&["volume", "rm", "data"]);
    assert!(err.contains("in use"), "{err}");
    e.k.ok(&["rm", "-v", "w"]);
    let vols = e.k.ok(&["volume", "ls", "-q"]);
    assert!(vols.contains("data") && !vols.contains(&anon), "{vols}");
    let (code, out, _) = e.run(&args(
        RUN,
        &[
            "--rm",
            "-v",
            "data:/d:ro",
            "busybox",
            "sh",
            "-c",
            "cat /d/f; touch /d/x",
        ],
    ));
    assert_eq!(out, "kept\n");
    assert_ne!(code, 0, "read-only volume");
    let v = e.json(&["volume", "inspect", "data"]);
    assert_eq!(v[0]["Name"], "data");
    assert!(
        Path::new(v[0]["Mountpoint"].as_str().unwrap())
            .join("f")
            .exists()
    );
    e.k.ok(&["volume", "create", "--label", "a=b", "other"]);
    // Plain prune only takes anonymous volumes; -a takes every unused one.
    assert!(!e.k.ok(&["volume", "prune", "-f"]).contains("other"));
    e.k.ok(&["volume", "rm", "data"]);
    assert!(e.k.ok(&["volume", "prune", "-a", "-f"]).contains("other"));
    assert_eq!(e.k.ok(&["volume", "ls", "-q"]), "");
}

#[test]
fn bind_mounts_tmpfs_and_mount_flag() {
    let e = Env::new();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("in"), "from host\n").unwrap();
    let h = host.path().display().to_string();
    let (code, out, err) = e.run(&args(RUN, &["--rm", "-v", &format!("{h}:/h"), "--tmpfs", "/t:size=1m", "--mount", &format!("type=bind,source={h},target=/r,readonly"), "busybox", "sh", "-c", "cat /h/in; echo out > /h/out; grep ' /t ' /proc/mounts | cut -d' ' -f3; touch /r/x || echo ro"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "from host\ntmpfs\nro\n");
    assert_eq!(
        std::fs::read_to_string(host.path().join("out")).unwrap(),
        "out\n"
    );
}

#[test]
fn restart_on_failure_3_restarts_exactly_three_times() {
    let e = Env::new();
    let (code, out, _) = e.run(&args(
        RUN,
        &[
            "--name",
            "flaky",
            "--restart",
            "on-failure:3",
            "busybox",
            "sh",
            "-c",
            "echo try; exit 2",
        ],
    ));
    assert_eq!(code, 2);
    assert_eq!(out, "try\ntry\ntry\ntry\n");
    let i = e.inspect("flaky");
    assert_eq!(i["RestartCount"], 3);
    assert_eq!(i["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
    // always + a user stop: the stop wins (unless-stopped remembers it too).
    e.k.ok(&args(
        RUN,
        &[
            "-d",
            "--name",
            "always",
            "--restart",
            "unless-stopped",
            "busybox",
            "sh",
            "-c",
            "sleep 0.2; exit 1",
        ],
    ));
    e.wait_until("a restart", 10, || {
        e.inspect("always")["RestartCount"].as_u64().unwrap() >= 1
    });
    e.k.ok(&["stop", "-t", "1", "always"]);
    let n = e.inspect("always")["RestartCount"].as_u64().unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(e.inspect("always")["RestartCount"].as_u64().unwrap(), n);
    assert_eq!(e.inspect("always")["State"]["Running"], false);
}

#[test]
fn health_goes_starting_healthy_unhealthy() {
    let e = Env::new();
    e.k.ok(&args(
        RUN,
        &[
            "-d",
            "--name",
            "h",
            "--health-cmd",
            "test ! -f /tmp/broken",
            "--health-interval",
            "200ms",
            "--health-timeout",
            "2s",
            "--health-retries",
            "2",
            "busybox",
            "sleep",
            "60",
        ],
    ));
    let health = || {
        e.inspect("h")["State"]["Health"]["Status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    e.wait_until("healthy", 10, || health() == "healthy");
    assert!(e.k.ok(&["ps"]).contains("(healthy)"));
    e.k.ok(&["exec", "h", "touch", "/tmp/broken"]);
    e.wait_until("unhealthy", 10, || health() == "unhealthy");
    assert!(
        e.inspect("h")["State"]["Health"]["FailingStreak"]
            .as_u64()
            .unwrap()
            >= 2
    );
}

/// Tags `busybox` again as `hc` with a `config.Healthcheck`, as `docker build`
/// writes it for a HEALTHCHECK instruction.
fn tag_busybox_with_healthcheck(e: &Env, healthcheck: &serde_json::Value) {
    let store = keel_oci::ImageStore::open(e.root()).unwrap();
    let img = store.resolve("busybox").unwrap();
    let mut config = img.config_json();
    config["config"]["Healthcheck"] = healthcheck.clone();
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let put = store.blobs().put_bytes(&config_bytes).unwrap();
    let mut manifest: serde_json::Value = serde_json::from_slice(&img.manifest_bytes).unwrap();
    manifest["config"]["digest"] = put.digest.to_string().into();
    manifest["config"]["size"] = config_bytes.len().into();
    store
        .commit(
            &serde_json::to_vec(&manifest).unwrap(),
            &["hc".parse().unwrap()],
            None,
        )
        .unwrap();
}

#[test]
fn image_healthcheck_is_used_overridden_and_disabled() {
    let e = Env::new();
    tag_busybox_with_healthcheck(
        &e,
        &serde_json::json!({"Test": ["CMD-SHELL", "test ! -f /tmp/broken"],
            "Interval": 200_000_000u64, "Timeout": 2_000_000_000u64, "Retries": 2}),
    );
    let health = |n: &str| e.inspect(n)["State"]["Health"]["Status"].clone();
    e.k.ok(&args(RUN, &["-d", "--name", "img", "hc", "sleep", "60"]));
    let hc = &e.inspect("img")["Config"]["Healthcheck"];
    assert_eq!(hc["Test"][1], "test ! -f /tmp/broken");
    assert_eq!(hc["Interval"], 200_000_000u64);
    assert_eq!(hc["Retries"], 2);
    e.wait_until("healthy", 10, || health("img") == "healthy");
    e.k.ok(&["exec", "img", "touch", "/tmp/broken"]);
    e.wait_until("unhealthy", 10, || health("img") == "unhealthy");
    // A flag overrides one field and keeps the image's others.
    e.k.ok(&args(
        RUN,
        &[
            "-d",
            "--name",
            "ovr",
            "--health-retries",
            "7",
            "hc",
            "sleep",
            "60",
        ],
    ));
    let hc = &e.inspect("ovr")["Config"]["Healthcheck"];
    assert_eq!(
        (hc["Retries"].as_u64(), hc["Interval"].as_u64()),
        (Some(7), Some(200_000_000))
    );
    // --health-cmd replaces the test.
    e.k.ok(&args(
        RUN,
        &[
            "-d",
            "--name",
            "cmd",
            "--health-cmd",
            "exit 1",
            "hc",
            "sleep",
            "60",
        ],
    ));
    e.wait_until("unhealthy", 10, || health("cmd") == "unhealthy");
    // --no-healthcheck: none at all.
    e.k.ok(&args(
        RUN,
        &[
            "-d",
            "--name",
            "off",
            "--no-healthcheck",
            "hc",
            "sleep",
            "60",
        ],
    ));
    let i = e.inspect("off");
    assert!(i["Config"]["Healthcheck"].is_null(), "{i}");
    assert!(i["State"]["Health"].is_null(), "{i}");
    assert!(
        !e.k.ok(&["ps"])
            .lines()
            .any(|l| l.contains("off") && l.contains("health"))
    );
}

#[test]
fn logs_follow_tail_since_timestamps() {
    let e = Env::new();
    e.k.ok(&args(
        RUN,
        &[
            "-d",
            "--name",
            "talker",
            "busybox",
            "sh",
            "-c",
            "for i in 1 2 3 4 5; do echo line $i; sleep 0.2; done; echo err >&2",
        ],
    ));
    // -f started while the container runs follows it to the end.
    let o = e.k.cmd().args(["logs", "-f", "talker"]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "line 1\nline 2\nline 3\nline 4\nline 5\n"
    );
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err\n");
    assert_eq!(e.k.ok(&["logs", "--tail", "2", "talker"]), "line 5\n");
    let ts = e.k.ok(&["logs", "-t", "talker"]);
    assert!(
        ts.lines().all(|l| l.contains('T') && l.contains("Z line")),
        "{ts}"
    );
    assert_eq!(
        e.k.ok(&["logs", "--since", "2099-01-01T00:00:00Z", "talker"]),
        ""
    );
    // The log file is Docker's json-file format.
    let id = e.inspect("talker")["Id"].as_str().unwrap().to_string();
    let raw = std::fs::read_to_string(
        e.root()
            .join("containers")
            .join(&id)
            .join(format!("{id}-json.log")),
    )
    .unwrap();
    let first: serde_json::Value = serde_json::from_str(raw.lines().next().unwrap()).unwrap();
    assert_eq!(first["log"], "line 1\n");
    assert_eq!(first["stream"], "stdout");
}

#[test]
fn eight_runs_at_once() {
    let e = Env::new();
    let children: Vec<_> = (0..8)
        .map(|i| {
            e.k.cmd()
                .args(args(
                    RUN,
                    &["--rm", "busybox", "sh", "-c", &format!("echo run {i}")],
                ))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(String::from_utf8_lossy(&o.stdout), format!("run {i}\n"));
    }
    assert!(e.all_ids().is_empty());
}

#[test]
fn httpd_on_the_host_network_and_cleanup() {
    let e = Env::new();
    let port = free_port();
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), "hello from keel\n").unwrap();
    let id =
        e.k.ok(&[
            "run",
            "-d",
            "--network",
            "host",
            "--name",
            "web",
            "-v",
            &format!("{}:/www:ro", www.path().display()),
            "busybox",
            "httpd",
            "-f",
            "-p",
            &format!("127.0.0.1:{port}"),
            "-h",
            "/www",
        ])
        .trim()
        .to_string();
    wait_for_port(port);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::io::Write::write_all(&mut s, b"GET /index.html HTTP/1.0\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    assert!(
        body.contains("200 OK") && body.contains("hello from keel"),
        "{body}"
    );
    // Stats come from the container's cgroups.
    let st = e.json(&["stats", "--no-stream", "-o", "json", "web"]);
    assert!(st[0]["MemUsageBytes"].as_u64().unwrap() > 0, "{st}");
    assert!(st[0]["PIDs"].as_u64().unwrap() >= 1, "{st}");
    let err = e.k.fails(&["rm", "web"]);
    assert!(err.contains("running"), "{err}");
    e.k.ok(&["rm", "-f", "web"]);
    e.assert_nothing_left(&id);
}

#[test]
fn ps_inspect_create_start_wait_cp_port_labels() {
    let e = Env::new();
    let id =
        e.k.ok(&[
            "create",
            "--network",
            "none",
            "--name",
            "c1",
            "--label",
            "tier=web",
            "--hostname",
            "box",
            "--entrypoint",
            "sh",
            "-p",
            "127.0.0.1:8080:80",
            "busybox",
            "-c",
            "cat /etc/hostname; cat /in.txt; exit 4",
        ])
        .trim()
        .to_string();
    let ps = e.k.ok(&["ps", "-a"]);
    assert!(ps.starts_with("CONTAINER ID   IMAGE"), "{ps}");
    assert!(ps.contains("Created") && ps.contains("c1"), "{ps}");
    assert_eq!(e.k.ok(&["ps", "-q"]), "", "not running");
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("in.txt"), "copied in\n").unwrap();
    e.k.ok(&[
        "cp",
        &host.path().join("in.txt").display().to_string(),
        "c1:/in.txt",
    ]);
    e.k.ok(&["start", "c1"]);
    assert_eq!(e.k.ok(&["wait", "c1"]), "4\n");
    assert_eq!(e.k.ok(&["logs", "c1"]), "box\ncopied in\n");
    let out = host.path().join("hostname-copy");
    e.k.ok(&["cp", "c1:/etc/passwd", &out.display().to_string()]);
    assert!(std::fs::read_to_string(&out).unwrap().contains("root:"));
    assert_eq!(e.k.ok(&["port", "c1"]), "80/tcp -> 127.0.0.1:8080\n");
    let j = e.json(&["ps", "-a", "-o", "json", "--filter", "label=tier=web"]);
    assert_eq!(j.as_array().unwrap().len(), 1);
    assert_eq!(j[0]["Names"], "c1");
    assert_eq!(
        e.json(&["ps", "-a", "-o", "json", "--filter", "name=zzz"])
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        e.k.ok(&["ps", "-a", "-q", "--filter", "status=exited"])
            .trim(),
        &id[..12]
    );
    let i = e.inspect(&id[..8]);
    assert_eq!(i["Name"], "/c1");
    assert_eq!(i["Config"]["Labels"]["tier"], "web");
    assert_eq!(i["Config"]["Entrypoint"][0], "sh");
    assert_eq!(i["State"]["ExitCode"], 4);
    // Names are unique; images in use cannot be removed.
    let err =
        e.k.fails(&["create", "--network", "none", "--name", "c1", "busybox"]);
    assert!(err.contains("already in use"), "{err}");
    let err = e.k.fails(&["rmi", "busybox"]);
    assert!(
        err.contains("conflict: unable to remove repository reference") && err.contains(&id[..12]),
        "{err}"
    );
    // env file and restart.
    let envf = host.path().join("env");
    std::fs::write(&envf, "# comment\nA=1\nB=two words\n").unwrap();
    let (code, out, _) = e.run(&args(
        RUN,
        &[
            "--rm",
            "--env-file",
            &envf.display().to_string(),
            "busybox",
            "sh",
            "-c",
            "echo $A $B",
        ],
    ));
    assert_eq!((code, out.as_str()), (0, "1 two words\n"));
    e.k.ok(&args(
        RUN,
        &[
            "-d",
            "--name",
            "r",
            "--stop-signal",
            "KILL",
            "busybox",
            "sleep",
            "60",
        ],
    ));
    let pid1 = e.inspect("r")["State"]["Pid"].as_i64().unwrap();
    e.k.ok(&["restart", "r"]);
    let i = e.inspect("r");
    assert_eq!(i["State"]["Running"], true);
    assert_ne!(i["State"]["Pid"].as_i64().unwrap(), pid1);
}

#[test]
fn bad_input_is_one_line_and_leaves_nothing() {
    let e = Env::new();
    let before = e.k.snapshot_store();
    let err = e.k.fails(&args(RUN, &["nosuchimage", "true"]));
    assert!(
        err.contains("no such image") && err.contains("hint: ") && err.contains("keel pull"),
        "{err}"
    );
    let err = e.k.fails(&args(RUN, &["-v", "a:b:c:d", "busybox", "true"]));
    assert!(err.contains("invalid volume specification"), "{err}");
    let err = e.k.fails(&args(
        RUN,
        &[
            "--mount",
            "type=bind,source=/does/not/exist,target=/x",
            "busybox",
            "true",
        ],
    ));
    assert!(err.contains("does not exist"), "{err}");
    let err = e.k.fails(&args(RUN, &["--entrypoint", "", "busybox"]));
    assert!(err.contains("no command specified"), "{err}");
    let err = e.k.fails(&args(RUN, &["-u", "ghost", "busybox", "true"]));
    assert!(err.contains("unable to find user ghost"), "{err}");
    let err =
        e.k.fails(&args(RUN, &["--cap-add", "BOGUS", "busybox", "true"]));
    assert!(err.contains("capability"), "{err}");
    let err =
        e.k.fails(&args(RUN, &["--restart", "sometimes", "busybox", "true"]));
    assert!(err.contains("restart policy"), "{err}");
    let err = e.k.fails(&args(RUN, &["busybox", "/no/such/binary"]));
    assert!(err.contains("starting the container"), "{err}");
    let err = e.k.fails(&["logs", "nope"]);
    assert!(err.contains("no such container"), "{err}");
    assert!(e.all_ids().is_empty());
    // Nothing half-created: no container record, no mount, no volume. (The
    // image's unpacked layer cache may appear: it is shared and reusable;
    // so does the event history, which records the create and destroy of
    // the container whose start failed, as docker's does.)
    let state = |v: Vec<(String, u64)>| -> Vec<(String, u64)> {
        v.into_iter()
            .filter(|(p, _)| {
                !p.starts_with("run/") && !p.starts_with("oci/snapshots/") && p != "events.jsonl"
            })
            .collect()
    };
    let after = state(e.k.snapshot_store());
    let before = state(before);
    assert_eq!(before, after);
    assert!(
        !std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(&e.root().display().to_string())
    );
}

#[test]
fn run_forwards_signals_and_stdin() {
    use std::io::{BufRead, BufReader, Write};
    let e = Env::new();
    let mut child =
        e.k.cmd()
            .args(args(
                RUN,
                &[
                    "--rm",
                    "busybox",
                    "sh",
                    "-c",
                    "trap 'echo caught; exit 5' INT; echo ready; while true; do sleep 0.1; done",
                ],
            ))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    let st = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "caught\n");
    assert_eq!(child.wait().unwrap().code(), Some(5));
    // -i hands our stdin to the container.
    let mut child =
        e.k.cmd()
            .args(args(RUN, &["--rm", "-i", "busybox", "tr", "a-z", "A-Z"]))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
    child.stdin.take().unwrap().write_all(b"shout\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "SHOUT\n");
}

#[test]
fn a_container_keeps_its_image_layers_through_rmi_force_and_prune() {
    let e = Env::new();
    e.k.ok(&[
        "create",
        "--network",
        "none",
        "--name",
        "keeper",
        "busybox",
        "echo",
        "still here",
    ]);
    e.k.ok(&["rmi", "-f", "busybox"]);
    e.k.ok(&["image", "prune", "-a", "-f"]);
    // (`system prune` would take the stopped container itself, as docker's does.)
    e.k.ok(&["builder", "prune", "-a"]);
    e.k.ok(&["start", "-a", "keeper"]);
    assert_eq!(e.k.ok(&["logs", "keeper"]), "still here\n");
    // Once the container is gone, so is the pin: the next prune frees the layers.
    e.k.ok(&["rm", "keeper"]);
    e.k.ok(&["system", "prune", "-a", "-f"]);
    assert!(
        !e.root()
            .join("oci/snapshots")
            .read_dir()
            .unwrap()
            .any(|d| !d.unwrap().file_name().to_string_lossy().starts_with('.'))
    );
}

/// Names of the host's links that are, or are attached to, one of `bridges`
/// (other tests and tools add and remove their own links meanwhile).
fn links_of(bridges: &[String]) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let name = l.split(": ").nth(1)?.split('@').next()?.to_string();
            let master = l.split(" master ").nth(1).and_then(|m| m.split(' ').next());
            (bridges.contains(&name) || master.is_some_and(|m| bridges.iter().any(|b| b == m)))
                .then_some(name)
        })
        .collect()
}

/// Whether any interface (a container's veth) is a port of `bridge`.
fn has_ports(bridge: &str) -> bool {
    std::fs::read_dir(format!("/sys/class/net/{bridge}/brif"))
        .unwrap()
        .next()
        .is_some()
}

fn in_subnet(addr: &str, cidr: &str) -> bool {
    let (net, len) = cidr.split_once('/').unwrap();
    let net: u32 = net.parse::<std::net::Ipv4Addr>().unwrap().into();
    let Ok(addr) = addr.parse::<std::net::Ipv4Addr>() else {
        return false;
    };
    let mask = u32::MAX
        .checked_shl(32 - len.parse::<u32>().unwrap())
        .unwrap_or(0);
    u32::from(addr) & mask == net & mask
}

fn bridge_of(e: &Env, network: &str) -> String {
    e.json(&["network", "inspect", network])[0]["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Regression: the monitor used to stay inside the container's new network
/// namespace, so keel-net built the bridge and host-side veth in there and
/// nothing was reachable.
#[test]
fn bridge_networks_resolve_names_and_publish_ports() {
    let e = Env::new();
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), "hello over the bridge\n").unwrap();
    let vol = format!("{}:/www:ro", www.path().display());
    e.k.ok(&["network", "create", "appnet"]);
    let (port, _) = e.k.ok_on_free_port(|port| {
        [
            "run",
            "-d",
            "--name",
            "web",
            "--network",
            "appnet",
            "--network-alias",
            "frontend",
            "-v",
            vol.as_str(),
            "-p",
            format!("127.0.0.1:{port}:8080").as_str(),
            "busybox",
            "httpd",
            "-f",
            "-p",
            "8080",
            "-h",
            "/www",
        ]
        .map(str::to_string)
        .to_vec()
    });
    wait_for_port(port);
    // A published port serves HTTP on 127.0.0.1.
    let body = http_get(port, "/index.html");
    assert!(
        body.contains("200 OK") && body.contains("hello over the bridge"),
        "{body}"
    );
    // stats: network bytes from the container's namespace, block bytes
    // from its blkio cgroup (a direct read bypasses the page cache). Recent
    // kernels count v1 blkio bytes only on a device with a throttle rule (as
    // docker's --device-read-bps makes), so the test sets a limit nobody hits.
    enable_blkio_accounting(e.inspect("web")["Id"].as_str().unwrap(), e.root());
    e.k.ok(&[
        "exec",
        "web",
        "dd",
        "if=/bin/busybox",
        "of=/dev/null",
        "bs=64k",
        "iflag=direct",
    ]);
    let st = e.json(&["stats", "--no-stream", "-o", "json", "web"]);
    assert!(st[0]["NetRxBytes"].as_u64().unwrap() > 0, "{st}");
    assert!(st[0]["NetTxBytes"].as_u64().unwrap() > 0, "{st}");
    assert!(st[0]["BlockReadBytes"].as_u64().unwrap() > 0, "{st}");
    let table = e.k.ok(&["stats", "--no-stream", "web"]);
    let row = table.lines().nth(1).unwrap();
    assert!(!row.contains("--"), "{table}");
    assert!(row.matches(" / ").count() >= 3, "{table}");
    // Containers on the network reach each other by name and by alias.
    for host in ["web", "frontend"] {
        let out = e.k.ok(&[
            "run",
            "--rm",
            "--network",
            "appnet",
            "busybox",
            "wget",
            "-qO-",
            &format!("http://{host}:8080/index.html"),
        ]);
        assert_eq!(out, "hello over the bridge\n", "{host}");
    }
    assert!(
        e.k.ok(&["port", "web"])
            .contains(&format!("127.0.0.1:{port}"))
    );
    // The same host port again: refused, nothing half-created.
    let before = e.k.ok(&["ps", "-a", "-q"]);
    let err = e.k.fails(&[
        "run",
        "-d",
        "--name",
        "web2",
        "--network",
        "appnet",
        "-p",
        &format!("127.0.0.1:{port}:8080"),
        "busybox",
        "sleep",
        "30",
    ]);
    assert!(err.contains(&port.to_string()), "{err}");
    assert_eq!(e.k.ok(&["ps", "-a", "-q"]), before);
    // The default bridge publishes too.
    let (port2, _) = e.k.ok_on_free_port(|port| {
        [
            "run",
            "-d",
            "--name",
            "web3",
            "-v",
            vol.as_str(),
            "-p",
            format!("{port}:8080").as_str(),
            "busybox",
            "httpd",
            "-f",
            "-p",
            "8080",
            "-h",
            "/www",
        ]
        .map(str::to_string)
        .to_vec()
    });
    wait_for_port(port2);
    assert!(http_get(port2, "/index.html").contains("hello over the bridge"));
    // Removing everything leaves no veth, bridge or rule behind.
    let bridges = vec![bridge_of(&e, "appnet"), bridge_of(&e, "bridge")];
    let links = links_of(&bridges);
    assert_eq!(links.len(), 4, "two bridges, two veths: {links:?}");
    let ids = e.all_ids();
    e.k.ok(&["rm", "-f", "web", "web3"]);
    e.k.ok(&["network", "rm", "appnet"]);
    // prune gives back the idle default bridge.
    e.k.ok(&["network", "prune", "-f"]);
    let all = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .unwrap();
    let all = String::from_utf8_lossy(&all.stdout);
    for l in &links {
        assert!(!all.contains(&format!(": {l}")), "{l} is left:\n{all}");
    }
    let rules = std::process::Command::new("iptables-save")
        .output()
        .unwrap();
    let rules = String::from_utf8_lossy(&rules.stdout);
    // Only this test's containers: other keel roots on the host may publish meanwhile.
    for id in &ids {
        assert!(
            !rules.contains(&format!("keel:{id}")),
            "container rules left: {rules}"
        );
    }
}

/// Puts a no-op read limit on the disk holding `on` into the container's
/// blkio cgroup, which makes the kernel count its bytes.
fn enable_blkio_accounting(id: &str, on: &Path) {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(on).unwrap().dev();
    let (major, minor) = (
        ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff),
        (dev & 0xff) | ((dev >> 12) & !0xff),
    );
    // A partition's limit goes on its disk.
    let sys = std::fs::canonicalize(format!("/sys/dev/block/{major}:{minor}")).unwrap();
    let disk = if sys.join("partition").exists() {
        std::fs::read_to_string(sys.parent().unwrap().join("dev")).unwrap()
    } else {
        format!("{major}:{minor}")
    };
    std::fs::write(
        format!("/sys/fs/cgroup/blkio/keel/{id}/blkio.throttle.read_bps_device"),
        format!("{} 1099511627776", disk.trim()),
    )
    .unwrap();
}

/// `keel cp` against a container that plants symlinks to host paths: an
/// absolute link, a `../..` relative one, a link as the last component and
/// links inside a copied tree. Nothing outside the container is read or
/// written, whether the container runs (`/proc/PID/root`) or is stopped
/// (its overlay mounted by cp).
#[test]
fn cp_never_follows_container_symlinks_out_of_the_root() {
    let e = Env::new();
    let host = tempfile::tempdir().unwrap();
    let outside = host.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), "host secret\n").unwrap();
    let o = outside.display().to_string();
    let plant = format!(
        "mkdir -p /tree/sub /etc/deep && echo inside > /etc/secret && \
         ln -s {o} /abs && ln -s ../../../../../../../..{o} /rel && \
         ln -s {o}/secret /final && ln -s {o}/secret /tree/sub/leak && \
         ln -s ../../../../../.. /tree/up && ln -s /etc/secret /inside && \
         echo planted && sleep 600"
    );
    e.k.ok(&args(
        RUN,
        &["-d", "--name", "evil", "busybox", "sh", "-c", &plant],
    ));
    e.wait_until("planted", 10, || {
        e.k.ok(&["logs", "evil"]).contains("planted")
    });
    let payload = host.path().join("payload");
    std::fs::write(&payload, "payload\n").unwrap();
    let p = payload.display().to_string();
    let listing = |d: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|x| x.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let untouched = || {
        assert_eq!(
            std::fs::read_to_string(outside.join("secret")).unwrap(),
            "host secret\n"
        );
        assert_eq!(listing(&outside), ["secret"]);
    };
    for round in ["running", "stopped"] {
        // host -> container through each kind of link: refused (the target
        // does not exist inside) or written inside, never outside.
        for dst in [
            "evil:/abs/secret".to_string(),
            "evil:/rel/secret".to_string(),
            "evil:/final".to_string(),
            format!("evil:/tree/up{o}/secret"),
            "evil:/tree/sub/leak".to_string(),
        ] {
            let _ = e.run(&["cp", &p, &dst]);
            untouched();
        }
        // Links that stay inside resolve inside, as in a chroot.
        e.k.ok(&["cp", &p, "evil:/inside"]);
        e.k.ok(&["cp", &p, "evil:/tree/up/etc/deep/"]);
        // A tree whose names meet the container's links replaces the links.
        let tree = host.path().join(format!("tree-{round}"));
        std::fs::create_dir_all(tree.join("sub")).unwrap();
        std::fs::write(tree.join("sub/leak"), "replaced\n").unwrap();
        e.k.ok(&["cp", &format!("{}/.", tree.display()), "evil:/tree"]);
        untouched();
        // container -> host: the final link comes out as a link, links inside
        // a tree stay links, intermediate links resolve inside.
        let out = host.path().join(format!("out-{round}"));
        std::fs::create_dir(&out).unwrap();
        let od = out.display().to_string();
        e.k.ok(&["cp", "evil:/final", &format!("{od}/final")]);
        assert_eq!(
            std::fs::read_link(out.join("final")).unwrap(),
            outside.join("secret")
        );
        e.k.ok(&["cp", "evil:/tree/up/etc/secret", &format!("{od}/s")]);
        assert_eq!(std::fs::read_to_string(out.join("s")).unwrap(), "payload\n");
        e.k.ok(&["cp", "evil:/etc/deep/payload", &format!("{od}/deep")]);
        assert_eq!(
            std::fs::read_to_string(out.join("deep")).unwrap(),
            "payload\n"
        );
        let err = e.k.fails(&["cp", "evil:/abs/secret", &format!("{od}/x")]);
        assert!(err.contains("No such file"), "{err}");
        let err = e.k.fails(&["cp", "evil:/rel/secret", &format!("{od}/x")]);
        assert!(err.contains("No such file"), "{err}");
        e.k.ok(&["cp", "evil:/tree", &format!("{od}/tree")]);
        assert!(
            std::fs::symlink_metadata(out.join("tree/up"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            std::fs::read_to_string(out.join("tree/sub/leak")).unwrap(),
            "replaced\n"
        );
        assert!(!out.join("x").exists());
        untouched();
        if round == "running" {
            e.k.ok(&[
                "exec",
                "evil",
                "sh",
                "-c",
                "rm /tree/sub/leak; ln -s /x/y /tree/sub/leak; echo inside > /etc/secret",
            ]);
            e.k.ok(&["kill", "evil"]);
            e.wait_until("stopped", 10, || {
                e.inspect("evil")["State"]["Running"] == false
            });
        }
    }
}

/// Mount destinations that are symlinks in the image, absolute or climbing
/// out with `..`, to directories that exist both in the image and on the host:
/// they resolve inside the container's root as in a chroot. The volume, the
/// bind mount and the tmpfs land inside; the host's directories stay empty.
#[test]
fn mount_destinations_resolve_symlinks_inside_the_root() {
    let e = Env::new();
    let host = tempfile::tempdir().unwrap();
    let (abs, up) = (host.path().join("abs"), host.path().join("up"));
    let src = host.path().join("src");
    let ctx = host.path().join("ctx");
    for d in [&abs, &up, &src, &ctx] {
        std::fs::create_dir(d).unwrap();
    }
    std::fs::write(src.join("file"), "bound\n").unwrap();
    let (a, u) = (abs.display().to_string(), up.display().to_string());
    std::fs::write(
        ctx.join("Dockerfile"),
        // The targets exist inside the image too, under the host's names.
        format!(
            "FROM busybox\nRUN mkdir -p {a} {u} && ln -s {a} /vol && ln -s ../../../../../../../..{u} /up\n"
        ),
    )
    .unwrap();
    e.k.ok(&["build", "-q", "-t", "links", &ctx.display().to_string()]);
    let bind = format!("{}:/up/bind:ro", src.display());
    let script = format!(
        "echo vol > /vol/f && cat /up/bind/file && echo tmp > /up/tmp/f && \
         grep -c ' {u}/tmp ' /proc/self/mountinfo"
    );
    let out = e.k.ok(&args(
        RUN,
        &[
            "--rm",
            "-v",
            "data:/vol",
            "-v",
            &bind,
            "--tmpfs",
            "/up/tmp",
            "links",
            "sh",
            "-c",
            &script,
        ],
    ));
    assert_eq!(out, "bound\n1\n");
    // The write to /vol went into the volume, so the volume was mounted there.
    let out = e.k.ok(&args(
        RUN,
        &["--rm", "-v", "data:/d", "busybox", "cat", "/d/f"],
    ));
    assert_eq!(out, "vol\n");
    for d in [&abs, &up] {
        assert_eq!(std::fs::read_dir(d).unwrap().count(), 0, "{}", d.display());
    }
    assert_eq!(std::fs::read_dir(&src).unwrap().count(), 1);
    // A link to nowhere is no place for a mount: one line that says why,
    // and nothing left.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN ln -s /nowhere/at/all /dangling\n",
    )
    .unwrap();
    e.k.ok(&["build", "-q", "-t", "dangling", &ctx.display().to_string()]);
    let err = e.k.fails(&args(
        RUN,
        &["--rm", "--tmpfs", "/dangling/t", "dangling", "true"],
    ));
    assert!(err.contains("failed to prepare rootfs"), "{err}");
    assert!(err.contains("Not a directory"), "{err}");
    assert!(!err.contains("error in executing process"), "{err}");
    assert!(e.all_ids().is_empty());
}

/// A /24 for a `--subnet` network that other tests on this host are unlikely
/// to pick at the same time (keel checks its own networks, not the host's
/// routes, for a user-given subnet): from the process id, and a different one
/// for each call, as tests of one process run side by side.
fn scratch_subnet() -> String {
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let k = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let n = std::process::id();
    format!("10.{}.{}.0/24", 150 + n % 100, ((n / 100) % 31) * 8 + k % 8)
}

/// One container on two networks (eth0 + eth1), connect before start and
/// while running, disconnect, static addresses with Docker's errors,
/// --add-host and --dns* in the etc files, `--network container:`, and no
/// veth, rule or lease left after rm.
#[test]
fn multi_network_containers_connect_disconnect_and_cleanup() {
    let e = Env::new();
    let subnet = scratch_subnet();
    let prefix = subnet.trim_end_matches("0/24");
    let static_ip = format!("{prefix}50");
    let www = tempfile::tempdir().unwrap();
    for name in ["app", "web"] {
        let d = www.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("index.html"), format!("{name}\n")).unwrap();
    }
    e.k.ok(&["network", "create", "front"]);
    e.k.ok(&["network", "create", "--subnet", &subnet, "back"]);
    let httpd = |name: &str, net: &str, extra: &[&str]| {
        let vol = format!("{}:/www:ro", www.path().join(name).display());
        let mut a = vec!["run", "-d", "--name", name, "--network", net, "-v", &vol];
        a.extend_from_slice(extra);
        a.extend_from_slice(&["busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]);
        e.k.ok(&a);
    };
    httpd("app", "back", &["--ip", &static_ip]);
    httpd("web", "front", &[]);
    assert_eq!(
        e.inspect("app")["NetworkSettings"]["Networks"]["back"]["IPAddress"],
        static_ip.as_str()
    );
    // Docker's static address rules.
    let err = e.k.fails(&[
        "run",
        "--rm",
        "--network",
        "back",
        "--ip",
        &static_ip,
        "busybox",
        "true",
    ]);
    assert!(
        err.contains(&format!("address {static_ip} is already in use")),
        "{err}"
    );
    let err = e.k.fails(&[
        "run",
        "--rm",
        "--network",
        "front",
        "--ip",
        "172.31.9.9",
        "busybox",
        "true",
    ]);
    assert!(
        err.contains("user specified IP address is supported only when connecting to networks with user configured subnets"),
        "{err}"
    );
    let err =
        e.k.fails(&["run", "--rm", "--ip", "172.31.9.9", "busybox", "true"]);
    assert!(
        err.contains("supported on user defined networks only"),
        "{err}"
    );
    // Connected before its first start: joins both networks when started.
    e.k.ok(&[
        "create",
        "--name",
        "proxy",
        "--network",
        "front",
        "--add-host",
        "extra.test:10.1.2.3",
        "--add-host",
        "gw.test:host-gateway",
        "--dns",
        "10.0.0.53",
        "--dns-search",
        "svc.test",
        "--dns-option",
        "ndots:2",
        "busybox",
        "sleep",
        "300",
    ]);
    e.k.ok(&["network", "connect", "--alias", "gateway", "back", "proxy"]);
    e.k.ok(&["start", "proxy"]);
    let get = |from: &str, host: &str| {
        e.run(&[
            "exec",
            from,
            "wget",
            "-qO-",
            &format!("http://{host}:8080/"),
        ])
    };
    assert_eq!(get("proxy", "app").1, "app\n");
    assert_eq!(get("proxy", "web").1, "web\n");
    // web is not on back: it can neither resolve nor reach app (no lookup
    // by DNS here: that would leave the host).
    let unreachable = |from: &str, ip: &str| {
        let url = format!("http://{ip}:8080/");
        e.run(&["exec", from, "timeout", "3", "wget", "-qO-", &url])
            .0
            != 0
    };
    assert!(unreachable("web", &static_ip));
    let hosts = e.k.ok(&["exec", "web", "cat", "/etc/hosts"]);
    assert!(!hosts.contains("app"), "{hosts}");
    // app sees the proxy under its back-network alias.
    let hosts = e.k.ok(&["exec", "app", "cat", "/etc/hosts"]);
    assert!(hosts.contains("proxy gateway"), "{hosts}");
    let net = &e.inspect("proxy")["NetworkSettings"]["Networks"];
    let front_gw = net["front"]["Gateway"].as_str().unwrap().to_string();
    assert_eq!(net["front"]["InterfaceName"], "eth0", "{net}");
    assert_eq!(net["back"]["InterfaceName"], "eth1", "{net}");
    assert_eq!(
        net["back"]["Aliases"],
        serde_json::json!(["gateway"]),
        "{net}"
    );
    assert!(
        net["back"]["IPAddress"]
            .as_str()
            .unwrap()
            .starts_with(prefix),
        "{net}"
    );
    // The default route goes through the first network.
    let routes = e.k.ok(&["exec", "proxy", "ip", "route"]);
    assert!(
        routes.contains(&format!("default via {front_gw} dev eth0")),
        "{routes}"
    );
    assert!(
        !routes.contains("default via") || routes.matches("default").count() == 1,
        "{routes}"
    );
    let hosts = e.k.ok(&["exec", "proxy", "cat", "/etc/hosts"]);
    assert!(hosts.contains("10.1.2.3\textra.test\n"), "{hosts}");
    assert!(hosts.contains(&format!("{front_gw}\tgw.test\n")), "{hosts}");
    let resolv = e.k.ok(&["exec", "proxy", "cat", "/etc/resolv.conf"]);
    assert_eq!(
        resolv,
        "nameserver 10.0.0.53\nsearch svc.test\noptions ndots:2\n"
    );
    // Disconnect while running: app is gone from the proxy's view and reach.
    e.k.ok(&["network", "disconnect", "back", "proxy"]);
    assert!(unreachable("proxy", &static_ip));
    let hosts = e.k.ok(&["exec", "proxy", "cat", "/etc/hosts"]);
    assert!(!hosts.contains("app") && hosts.contains("web"), "{hosts}");
    assert!(
        e.inspect("proxy")["NetworkSettings"]["Networks"]
            .get("back")
            .is_none()
    );
    let err = e.k.fails(&["network", "disconnect", "back", "proxy"]);
    assert!(err.contains("is not connected to network back"), "{err}");
    // Connect while running, with a static address.
    let ip2 = format!("{prefix}77");
    e.k.ok(&["network", "connect", "--ip", &ip2, "back", "proxy"]);
    assert_eq!(get("proxy", "app").1, "app\n");
    assert_eq!(
        e.inspect("proxy")["NetworkSettings"]["Networks"]["back"]["IPAddress"],
        ip2.as_str()
    );
    let err = e.k.fails(&["network", "connect", "back", "proxy"]);
    assert!(err.contains("already exists in network back"), "{err}");
    let err = e.k.fails(&["network", "connect", "nosuchnet", "proxy"]);
    assert!(err.contains("nosuchnet"), "{err}");
    // --network container:web shares web's namespace and etc files.
    let err = e.k.fails(&[
        "run",
        "--rm",
        "--network",
        "container:web",
        "-p",
        "8081:80",
        "busybox",
        "true",
    ]);
    assert!(
        err.contains("conflicting options: port publishing and the container type network mode"),
        "{err}"
    );
    let err = e.k.fails(&[
        "run",
        "--rm",
        "--network",
        "container:web",
        "--hostname",
        "x",
        "busybox",
        "true",
    ]);
    assert!(
        err.contains("conflicting options: hostname and the network mode"),
        "{err}"
    );
    let side = e.k.ok(&[
        "run",
        "--rm",
        "--network",
        "container:web",
        "busybox",
        "wget",
        "-qO-",
        "http://127.0.0.1:8080/",
    ]);
    assert_eq!(side, "web\n");
    let h = e.k.ok(&[
        "run",
        "--rm",
        "--network",
        "container:web",
        "busybox",
        "hostname",
    ]);
    assert_eq!(h, e.k.ok(&["exec", "web", "hostname"]));
    e.k.ok(&[
        "create",
        "--name",
        "follower",
        "--network",
        "container:app",
        "busybox",
        "true",
    ]);
    e.k.ok(&["stop", "app"]);
    let err = e.k.fails(&["start", "follower"]);
    assert!(
        err.contains("cannot join network of a non running container"),
        "{err}"
    );
    // Nothing is left: no veth on either bridge, no rule, no lease.
    let bridges = vec![bridge_of(&e, "front"), bridge_of(&e, "back")];
    let ids = e.all_ids();
    e.k.ok(&["rm", "-f", "proxy", "web", "app", "follower"]);
    for id in &ids {
        e.assert_nothing_left(id);
    }
    let links = links_of(&bridges);
    assert_eq!(links.len(), 2, "only the two bridges: {links:?}");
    for n in ["front", "back"] {
        let info = e.json(&["network", "inspect", n]);
        assert_eq!(info[0]["Containers"], serde_json::json!({}), "{info}");
    }
    assert_eq!(
        std::fs::read_dir(e.root().join("net/containers"))
            .unwrap()
            .count(),
        0
    );
    let rules = std::process::Command::new("iptables-save")
        .output()
        .unwrap();
    let rules = String::from_utf8_lossy(&rules.stdout);
    for id in &ids {
        assert!(!rules.contains(&format!("keel:{id}")), "rule of {id} left");
    }
    e.k.ok(&["network", "rm", "front", "back"]);
    assert!(links_of(&bridges).is_empty());
}
