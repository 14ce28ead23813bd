//! Issue 15 points the rest of the suite did not pin (found by its audit):
//! docker's exit code for commands on a missing container, `ps -s`, `ps
//! --filter network=`, `images 'repo/*'`, and the grouped `container` form
//! of every docker container command.

use super::{Pair, both_ok, out, stderr};

/// `stop/kill/wait/port/cp/stats` of a missing container: docker exits 1
/// with "No such container" and prints nothing on stdout; podman 4.3 exits
/// 125.
#[test]
fn commands_on_a_missing_container_exit_as_docker() {
    let p = Pair::new();
    for args in [
        &["stop", "nosuch"][..],
        &["kill", "nosuch"],
        &["wait", "nosuch"],
        &["port", "nosuch"],
        &["cp", "nosuch:/etc/hostname", "{tmp}/x"],
        &["stats", "--no-stream", "nosuch"],
    ] {
        let k = p.docker(args, &out(1, ""), "podman 4.3 exits 125");
        assert!(
            stderr(&k).to_lowercase().contains("no such container"),
            "{args:?}: {}",
            stderr(&k)
        );
    }
    assert!(!p.dir().join("x").exists());
}

/// `ps -s` (a SIZE column, `.Size` as docker's "RW (virtual TOTAL)") and
/// `ps --filter network=NAME`: neither was tested; `-s` was refused before.
#[test]
fn ps_size_and_network_filter() {
    let p = Pair::new();
    both_ok(&p, &["create", "--name", "none1", "busybox", "true"]);
    both_ok(
        &p,
        &[
            "create",
            "--network",
            "bridge",
            "--name",
            "br1",
            "busybox",
            "true",
        ],
    );
    let k = p.keel(&["ps", "-a", "-f", "network=bridge", "--format", "{{.Names}}"]);
    assert_eq!(super::outcome(&k), out(0, "br1\n"), "{}", stderr(&k));
    let k = p.keel(&["ps", "-a", "-f", "network=none", "--format", "{{.Names}}"]);
    assert_eq!(super::outcome(&k), out(0, "none1\n"), "{}", stderr(&k));
    let k = p.keel(&["ps", "-a", "-f", "network=nosuchnet", "-q"]);
    assert_eq!(super::outcome(&k), out(0, ""), "{}", stderr(&k));
    let k = p.keel(&["ps", "-a", "-s", "-f", "name=none1"]);
    let text = String::from_utf8_lossy(&k.stdout).into_owned();
    assert!(
        k.status.success() && text.lines().next().is_some_and(|h| h.ends_with("SIZE")),
        "{text}{}",
        stderr(&k)
    );
    let k = p.keel(&[
        "ps",
        "-a",
        "-s",
        "-f",
        "name=none1",
        "--format",
        "{{.Size}}",
    ]);
    let size = String::from_utf8_lossy(&k.stdout).into_owned();
    assert!(
        size.starts_with("0B (virtual ") && size.ends_with("B)\n"),
        "{size}{}",
        stderr(&k)
    );
    // podman 4.3 has -s too: the same container is listed.
    p.same(&[
        "ps",
        "-a",
        "-s",
        "-f",
        "name=none1",
        "--format",
        "{{.Names}}",
    ]);
    // One at a time: podman removes several in parallel, printing in any order.
    p.same(&["rm", "none1"]);
    p.same(&["rm", "br1"]);
}

/// `images 'repo/*'`: docker's path.Match, where `*` stops at a `/`.
#[test]
fn images_pattern_with_a_slash() {
    let p = Pair::new();
    let k = p.keel(&["tag", "busybox", "team/app:1"]);
    assert!(k.status.success(), "{}", stderr(&k));
    p.docker(
        &["images", "--format", "{{.Repository}}:{{.Tag}}", "team/*"],
        &out(0, "team/app:1\n"),
        "podman 4.3 takes no pattern as the repository argument",
    );
    let k = p.keel(&["images", "--format", "{{.Repository}}", "*"]);
    let listed = String::from_utf8_lossy(&k.stdout).into_owned();
    assert!(
        k.status.success() && !listed.contains("team/app") && listed.contains("busybox"),
        "{listed}{}",
        stderr(&k)
    );
}

/// `keel container VERB` exists for every verb of `docker container`.
#[test]
fn container_group_has_every_docker_container_command() {
    let k = super::Keel::new();
    for verb in [
        "attach", "commit", "cp", "create", "diff", "exec", "export", "inspect", "kill", "logs",
        "ls", "pause", "port", "prune", "rename", "restart", "rm", "run", "start", "stats", "stop",
        "top", "unpause", "update", "wait",
    ] {
        let o = k
            .cmd()
            .args(["container", verb, "--help"])
            .output()
            .unwrap();
        assert!(o.status.success(), "container {verb}: {}", stderr(&o));
    }
}

/// `--log-driver json-file` (docker's default, podman's alias of k8s-file)
/// is taken with its `--log-opt`s; only `--log-driver syslog` was tested.
#[test]
fn log_driver_json_file_is_taken() {
    let p = Pair::new();
    let k = p.same(&[
        "run",
        "--rm",
        "--log-driver",
        "json-file",
        "--log-opt",
        "max-size=1m",
        "busybox",
        "echo",
        "hi",
    ]);
    assert_eq!(super::outcome(&k), out(0, "hi\n"), "{}", stderr(&k));
}

/// `exec` of a missing command: 127 with the reason (the command's name
/// and that it is not in $PATH).
#[test]
fn exec_of_a_missing_command_gives_the_reason() {
    let p = Pair::new();
    both_ok(&p, &["run", "-d", "--name", "ex", "busybox", "sleep", "60"]);
    let k = p.same(&["exec", "ex", "no-such-command"]);
    assert_eq!(k.status.code(), Some(127));
    let err = stderr(&k);
    // docker: `exec: "no-such-command": executable file not found in
    // $PATH`; keel said libcontainer's "failed to create container".
    assert!(
        err.contains("exec: \"no-such-command\": executable file not found in $PATH")
            && !err.contains("failed to create container"),
        "{err}"
    );
    p.same(&["rm", "-f", "ex"]);
}

/// A binary garbage archive to `load` fails with a readable line: the tar
/// reader's message quoted the archive's bytes (control characters and
/// all) into the terminal.
#[test]
fn load_of_binary_garbage_is_a_readable_line() {
    let p = Pair::new();
    let junk: Vec<u8> = (0..8192u32)
        .map(|i| u8::try_from(i * 7 % 256).unwrap())
        .collect();
    std::fs::write(p.dir().join("junk.tar"), junk).unwrap();
    let k = p.keel(&["load", "-i", "{tmp}/junk.tar"]);
    let err = stderr(&k);
    assert_eq!(k.status.code(), Some(1), "{err}");
    assert!(
        err.contains("archive is truncated or corrupt")
            && err.chars().all(|c| c == '\n' || !c.is_control()),
        "control bytes in the message: {err:?}"
    );
    assert_eq!(String::from_utf8_lossy(&k.stdout), "");
}
