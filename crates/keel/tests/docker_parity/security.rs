//! Issue 15: `run --privileged`, `--device`, `--security-opt`, `--ipc`,
//! `--pid`, `--cpu-shares`, `--cpuset-cpus/-mems`, checked by their
//! effect inside the container (capabilities and seccomp mode from
//! /proc/self/status, device nodes, namespace inodes against the host's)
//! side by side with podman.

use super::{Pair, both_ok, out, outcome, stderr};

fn run_sh(p: &Pair, flags: &[&str], script: &str) -> std::process::Output {
    let mut args = vec!["run", "--rm"];
    args.extend(flags);
    args.extend(["busybox", "sh", "-c", script]);
    p.same(&args)
}

fn text(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// None of these flags existed (clap refused them with 125... as an
/// unknown flag, so every step here failed on the old code).
#[test]
fn privileged_seccomp_and_no_new_privileges() {
    let p = Pair::new();
    let caps = "grep -E '^Cap(Prm|Eff|Bnd)' /proc/self/status";
    let privileged = run_sh(&p, &["--privileged"], caps);
    let default = run_sh(&p, &[], caps);
    assert_ne!(text(&privileged), text(&default));
    let seccomp = "grep ^Seccomp: /proc/self/status";
    let k = run_sh(&p, &[], seccomp);
    assert_eq!(text(&k), "Seccomp:\t2\n");
    let k = run_sh(&p, &["--privileged"], seccomp);
    assert_eq!(text(&k), "Seccomp:\t0\n");
    let k = run_sh(&p, &["--security-opt", "seccomp=unconfined"], seccomp);
    assert_eq!(text(&k), "Seccomp:\t0\n");
    // A docker-format profile of our own: everything but mkdir.
    std::fs::write(
        p.dir().join("no-mkdir.json"),
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#,
    )
    .unwrap();
    let k = run_sh(
        &p,
        &["--security-opt", "seccomp={tmp}/no-mkdir.json"],
        "mkdir /x 2>/dev/null; echo $?; touch /y && echo touched",
    );
    assert_eq!(text(&k), "1\ntouched\n");
    let nnp = "grep ^NoNewPrivs: /proc/self/status";
    let k = run_sh(&p, &["--security-opt", "no-new-privileges"], nnp);
    assert_eq!(text(&k), "NoNewPrivs:\t1\n");
    let k = run_sh(&p, &["--security-opt", "no-new-privileges:false"], nnp);
    assert_eq!(text(&k), "NoNewPrivs:\t0\n");
    // No AppArmor or SELinux policy to lift: accepted, as on such hosts.
    run_sh(
        &p,
        &[
            "--security-opt",
            "apparmor=unconfined",
            "--security-opt",
            "label=disable",
        ],
        "true",
    );
    for bad in [
        &["--security-opt", "bogus"][..],
        &["--security-opt", "seccomp={tmp}/missing.json"],
        &["--ipc", "weird"],
        &["--device", "relative"],
    ] {
        let mut args = vec!["run", "--rm"];
        args.extend(bad);
        args.extend(["busybox", "true"]);
        p.same(&args);
        let k = p.keel(&args);
        assert_eq!(k.status.code(), Some(125), "{bad:?}: {}", stderr(&k));
    }
    // A writable /sys and cgroup tree for --privileged only.
    run_sh(
        &p,
        &["--privileged"],
        "grep -E ' /sys(/fs/cgroup)? ' /proc/mounts | cut -d' ' -f2,4 | cut -d, -f1",
    );
    run_sh(
        &p,
        &[],
        "grep -E ' /sys(/fs/cgroup)? ' /proc/mounts | cut -d' ' -f2,4 | cut -d, -f1",
    );
    // The host's devices for --privileged.
    let k = run_sh(
        &p,
        &["--privileged"],
        "for d in /dev/loop-control /dev/kmsg; do test -c $d && echo $d; done",
    );
    assert_eq!(text(&k), "/dev/loop-control\n/dev/kmsg\n");
    let k = p.keel(&[
        "run",
        "--rm",
        "--privileged",
        "-d",
        "--name",
        "pv",
        "busybox",
        "sleep",
        "60",
    ]);
    assert!(k.status.success(), "{}", stderr(&k));
    let k = p.keel(&["inspect", "-f", "{{.HostConfig.Privileged}}", "pv"]);
    assert_eq!(outcome(&k), out(0, "true\n"));
    let _ = p.keel(&["rm", "-f", "pv"]);
}

#[test]
fn devices_namespaces_and_cpu_placement() {
    let p = Pair::new();
    // A device under another name, read-only by its cgroup rule.
    let k = run_sh(
        &p,
        &["--device", "/dev/zero:/dev/z:r"],
        "head -c 3 /dev/z | wc -c; ls -l /dev/z | cut -c1",
    );
    assert_eq!(text(&k), "3\nc\n");
    let k = run_sh(
        &p,
        &["--device", "/dev/null:/dev/mynull"],
        "ls -l /dev/mynull | cut -c1-10; echo hi > /dev/mynull && echo written",
    );
    assert_eq!(text(&k), "crw-rw-rw-\nwritten\n");
    let k = run_sh(&p, &[], "test -e /dev/mynull; echo $?");
    assert_eq!(text(&k), "1\n");

    // Namespaces: the host's with `host`, another container's with
    // `container:X`, their own otherwise.
    let host = |ns: &str| {
        std::fs::read_link(format!("/proc/self/ns/{ns}"))
            .unwrap()
            .display()
            .to_string()
    };
    for ns in ["ipc", "pid"] {
        let flag = format!("--{ns}");
        let k = run_sh(
            &p,
            &[&flag, "host"],
            &format!("readlink /proc/self/ns/{ns}"),
        );
        assert_eq!(text(&k), format!("{}\n", host(ns)));
        let k = p.keel(&[
            "run",
            "--rm",
            "busybox",
            "readlink",
            &format!("/proc/self/ns/{ns}"),
        ]);
        assert_ne!(text(&k), format!("{}\n", host(ns)));
    }
    let k = run_sh(
        &p,
        &["--pid", "host"],
        "test -d /proc/1 && grep -q . /proc/1/comm && echo seen",
    );
    assert_eq!(text(&k), "seen\n");
    both_ok(
        &p,
        &[
            "run",
            "-d",
            "--ipc",
            "shareable",
            "--name",
            "donor",
            "busybox",
            "sleep",
            "120",
        ],
    );
    for ns in ["ipc", "pid"] {
        let mine = p.keel(&["exec", "donor", "readlink", &format!("/proc/self/ns/{ns}")]);
        let k = p.keel(&[
            "run",
            "--rm",
            &format!("--{ns}"),
            "container:donor",
            "busybox",
            "readlink",
            &format!("/proc/self/ns/{ns}"),
        ]);
        assert_eq!(outcome(&k), outcome(&mine), "{ns}: {}", stderr(&k));
    }
    run_sh(
        &p,
        &["--pid", "container:donor"],
        "ps -o comm | grep -c sleep",
    );
    run_sh(&p, &["--ipc", "container:donor"], "echo joined");
    p.same(&["inspect", "-f", "{{.HostConfig.IpcMode}}", "donor"]);
    // docker: only a shareable donor's IPC can be joined.
    both_ok(
        &p,
        &["run", "-d", "--name", "private", "busybox", "sleep", "120"],
    );
    p.docker(
        &[
            "run",
            "--rm",
            "--ipc",
            "container:private",
            "busybox",
            "true",
        ],
        &out(125, ""),
        "docker refuses a non-shareable IPC donor; podman 4.3 joins it",
    );
    // One at a time: podman removes several in parallel and prints them
    // as they finish (docker, and keel, in the order given).
    p.same(&["rm", "-f", "donor"]);
    p.same(&["rm", "-f", "private"]);

    // CPU weight and placement.
    run_sh(
        &p,
        &[
            "--cpu-shares",
            "512",
            "--cpuset-cpus",
            "0",
            "--cpuset-mems",
            "0",
        ],
        "cat /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/cpuset/cpuset.cpus /sys/fs/cgroup/cpuset/cpuset.mems",
    );
    // A command's own -c after the image is the command's (clap took it
    // for --cpu-shares while that had docker's -c short form).
    let k = p.keel(&[
        "run",
        "--rm",
        "--cpu-shares",
        "256",
        "--entrypoint",
        "sh",
        "busybox",
        "-c",
        "cat /sys/fs/cgroup/cpu/cpu.shares",
    ]);
    assert_eq!(outcome(&k), out(0, "256\n"), "{}", stderr(&k));
}
