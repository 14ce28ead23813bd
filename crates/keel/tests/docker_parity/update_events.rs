//! Issue 15: `keel update` (limits written into the running container's
//! cgroup, restart policy for the next exit) and `keel events` (history
//! with --since/--until, filters, --format, the live stream).

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Pair, both_ok, out, outcome, stderr};

fn unix_now() -> String {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

const CGROUP_FILES: &str = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.shares";

/// `keel update` did not exist. Limits change inside the running
/// container (its cgroup files, read from inside) as with podman; output
/// and refusals follow docker.
#[test]
fn update_changes_limits_of_a_running_container() {
    let p = Pair::new();
    both_ok(
        &p,
        &[
            "run",
            "-d",
            "--name",
            "u1",
            "--pids-limit",
            "100",
            "busybox",
            "sleep",
            "1000",
        ],
    );
    p.docker(
        &["update", "--memory", "64m", "u1"],
        &out(1, ""),
        "docker refuses a memory limit above the memory+swap limit in force (none: 0) unless --memory-swap comes with it; podman 4.3 sets it",
    );
    p.docker(
        &[
            "update",
            "--memory",
            "64m",
            "--memory-swap",
            "128m",
            "--cpus",
            "0.5",
            "--cpu-shares",
            "512",
            "u1",
        ],
        &out(0, "u1\n"),
        "docker prints each container as named; podman 4.3 its full ID",
    );
    let k = p.same(&["exec", "u1", "sh", "-c", CGROUP_FILES]);
    assert_eq!(
        String::from_utf8_lossy(&k.stdout),
        "67108864\n134217728\n50000\n512\n"
    );
    // Below the swap limit now in force: no --memory-swap needed.
    p.docker(
        &["update", "-m", "32m", "u1"],
        &out(0, "u1\n"),
        "docker prints the name; podman the ID",
    );
    p.same(&[
        "exec",
        "u1",
        "cat",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]);
    // --pids-limit and --restart: docker has them, podman 4.3's update not.
    p.docker(
        &["update", "--pids-limit", "50", "u1"],
        &out(0, "u1\n"),
        "podman 4.3's update has no --pids-limit",
    );
    let k = p.keel(&["exec", "u1", "cat", "/sys/fs/cgroup/pids/pids.max"]);
    assert_eq!(outcome(&k), out(0, "50\n"), "{}", stderr(&k));
    let k = p.keel(&[
        "inspect",
        "-f",
        "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}}",
        "u1",
    ]);
    assert_eq!(
        outcome(&k),
        out(0, "33554432 134217728 500000000 50\n"),
        "{}",
        stderr(&k)
    );
    let k = p.keel(&["update", "u1"]);
    assert_eq!(k.status.code(), Some(1), "no flags: {}", stderr(&k));
    assert!(stderr(&k).contains("one or more flags"), "{}", stderr(&k));
    let k = p.keel(&["update", "--cpus", "1", "nosuch"]);
    assert_ne!(k.status.code(), Some(0));
    p.same(&["rm", "-f", "u1"]);

    // A new restart policy applies to the next exit of a running container.
    both_ok(
        &p,
        &[
            "run",
            "-d",
            "--name",
            "r1",
            "busybox",
            "sh",
            "-c",
            "sleep 2; exit 3",
        ],
    );
    p.docker(
        &["update", "--restart", "on-failure:2", "r1"],
        &out(0, "r1\n"),
        "podman 4.3's update has no --restart",
    );
    let deadline = std::time::Instant::now() + Duration::from_mins(1);
    loop {
        let k = p.keel(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.RestartCount}} {{.State.ExitCode}}",
            "r1",
        ]);
        if outcome(&k) == out(0, "exited 2 3\n") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never restarted twice: {:?}",
            outcome(&k)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // docker: a --rm container takes no restart policy.
    let k = p.keel(&[
        "run", "-d", "--rm", "--name", "r2", "busybox", "sleep", "100",
    ]);
    assert!(k.status.success(), "{}", stderr(&k));
    let k = p.keel(&["update", "--restart", "always", "r2"]);
    assert_eq!(k.status.code(), Some(1));
    assert!(stderr(&k).contains("AutoRemove"), "{}", stderr(&k));
    p.same(&["rm", "-f", "r1"]);
    let _ = p.keel(&["rm", "-f", "r2"]);
}

/// Starts `events ARGS` on keel or podman; returns the child.
fn stream(mut c: std::process::Command, args: &[&str]) -> std::process::Child {
    c.arg("events")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn stop_stream(mut c: std::process::Child) -> String {
    let _ = c.kill();
    let mut s = String::new();
    c.stdout.take().unwrap().read_to_string(&mut s).unwrap();
    let _ = c.wait();
    s
}

/// `keel events` did not exist. History between --since and --until,
/// filters, `--format`, and the live stream, against podman where it
/// names events as docker does (`create`, `start`), docker's names
/// where podman's differ (`died`, `remove`, `init`, `cleanup`).
#[test]
fn events_history_filters_format_and_stream() {
    let p = Pair::new();
    let t0 = unix_now();
    both_ok(&p, &["create", "--name", "e1", "busybox", "true"]);
    both_ok(&p, &["start", "e1"]);
    both_ok(&p, &["wait", "e1"]);
    both_ok(&p, &["rm", "e1"]);
    both_ok(
        &p,
        &["run", "-d", "--name", "e2", "busybox", "sleep", "100"],
    );
    both_ok(&p, &["stop", "-t", "1", "e2"]);
    both_ok(&p, &["tag", "busybox", "evtag:1"]);
    both_ok(&p, &["rmi", "evtag:1"]);
    std::thread::sleep(Duration::from_millis(300));
    let t1 = unix_now();
    let window = ["--since", t0.as_str(), "--until", t1.as_str()];
    let args = |rest: &[&'static str]| -> Vec<&str> {
        let mut v: Vec<&str> = vec!["events"];
        v.extend(window);
        v.extend(rest);
        v
    };
    // podman 4.3's --until prints nothing with its file logger; its
    // --stream=false (history up to now, nothing happened since t1) is
    // the same window.
    let podman_history = |rest: &[&'static str]| {
        let mut v: Vec<&str> = vec!["events", "--since", t0.as_str(), "--stream=false"];
        v.extend(rest);
        outcome(&p.podman(&v))
    };
    let both = |rest: &[&'static str]| {
        let k = p.keel(&args(rest));
        assert_eq!(
            outcome(&k),
            podman_history(rest),
            "{rest:?}: {}",
            stderr(&k)
        );
    };
    // docker's names where podman's differ: (filters, docker's output,
    // why podman differs).
    let docker = |rest: &[&'static str], want: &str, why: &str| {
        let k = p.keel(&args(rest));
        assert_eq!(outcome(&k), out(0, want), "{rest:?}: {}", stderr(&k));
        assert_ne!(
            podman_history(rest),
            out(0, want),
            "podman now agrees: {why}"
        );
    };
    both(&[
        "--filter",
        "type=container",
        "--filter",
        "container=e1",
        "--filter",
        "event=create",
        "--filter",
        "event=start",
        "--format",
        "{{.Type}} {{.Status}}",
    ]);
    both(&[
        "--filter",
        "container=e2",
        "--filter",
        "event=create",
        "--format",
        "{{.Type}} {{.Status}}",
    ]);
    docker(
        &["--filter", "container=e1", "--format", "{{.Status}}"],
        "create\nstart\ndie\ndestroy\n",
        "podman 4.3 says init, died, cleanup and remove where docker says die and destroy",
    );
    docker(
        &["--filter", "container=e2", "--format", "{{.Status}}"],
        "create\nstart\nkill\nkill\ndie\nstop\n",
        "docker's stop: kill (SIGTERM), kill (SIGKILL after -t), die, stop; podman 4.3 has no kill or stop events",
    );
    let k = p.keel(&args(&[
        "--filter",
        "container=e2",
        "--filter",
        "event=die",
        "--filter",
        "event=kill",
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}}{{with .Actor.Attributes.signal}} {{.}}{{end}}{{with .Actor.Attributes.exitCode}} {{.}}{{end}}",
    ]));
    assert_eq!(outcome(&k), out(0, "kill e2 15\nkill e2 9\ndie e2 137\n"));
    docker(
        &[
            "--filter",
            "type=image",
            "--format",
            "{{.Type}} {{.Status}}",
        ],
        "image tag\nimage untag\n",
        "podman 4.3 also reports a pull for each local create and a remove for the untag",
    );
    // {{json .}} is docker's message as its API sends it.
    let k = p.keel(&args(&[
        "--filter",
        "container=e1",
        "--filter",
        "event=create",
        "--format",
        "{{json .}}",
    ]));
    let text = String::from_utf8_lossy(&k.stdout).into_owned();
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(v["status"], "create");
    assert_eq!(v["Type"], "container");
    assert_eq!(v["Action"], "create");
    assert_eq!(v["from"], "busybox");
    assert_eq!(v["Actor"]["Attributes"]["name"], "e1");
    assert_eq!(v["Actor"]["ID"], v["id"]);
    assert_eq!(v["scope"], "local");
    assert!(v["timeNano"].as_i64().unwrap() / 1_000_000_000 == v["time"].as_i64().unwrap());
    // The default line: time, type, action, ID, attributes.
    let k = p.keel(&args(&[
        "--filter",
        "container=e1",
        "--filter",
        "event=create",
    ]));
    let line = String::from_utf8_lossy(&k.stdout).into_owned();
    assert!(
        line.contains(" container create ")
            && line.trim_end().ends_with("(image=busybox, name=e1)"),
        "{line}"
    );
    // Nothing after --until; a bad filter is refused.
    let k = p.keel(&["events", "--since", &t1, "--until", &t1]);
    assert_eq!(outcome(&k), out(0, ""));
    let k = p.keel(&[
        "events",
        "--since",
        &t0,
        "--until",
        &t1,
        "--filter",
        "colour=red",
    ]);
    assert_eq!(k.status.code(), Some(1), "{}", stderr(&k));

    // Live: the stream shows what happens after it started.
    let live = [
        "--filter",
        "container=e3",
        "--format",
        "{{.Type}} {{.Status}}",
        "--filter",
        "event=create",
        "--filter",
        "event=start",
    ];
    let ks = stream(p.keel.cmd(), &live);
    let ps = stream(p.podman.cmd(), &live);
    std::thread::sleep(Duration::from_secs(1));
    both_ok(&p, &["run", "--name", "e3", "busybox", "true"]);
    std::thread::sleep(Duration::from_secs(1));
    let (k, pd) = (stop_stream(ks), stop_stream(ps));
    assert_eq!(k, "container create\ncontainer start\n");
    assert_eq!(k, pd);
    p.same(&["rm", "e3"]);
}
