//! Issue 15: `keel attach` (stdin into a detached `-i` container, output
//! from now on, detach keys, `--no-stdin`, `--sig-proxy`) and `run -a`.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Outcome, Pair, both_ok, out, outcome, stderr};

fn spawn(mut c: Command, args: &[&str]) -> Child {
    c.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits (at most 60 s) for `c` and returns its outcome and stderr.
fn finish(mut c: Child) -> (Outcome, String) {
    let deadline = Instant::now() + Duration::from_mins(1);
    while c.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = c.kill();
            panic!("attach still running after 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = c.wait_with_output().unwrap();
    (outcome(&o), stderr(&o))
}

/// Attaches on keel and podman with `args`, writes `input`, closes stdin
/// and returns both children.
fn attach_both(p: &Pair, args: &[&str], input: &[u8]) -> (Child, Child) {
    let mut kids = Vec::new();
    for cmd in [p.keel.cmd(), p.podman.cmd()] {
        let mut all = vec!["attach"];
        all.extend(args);
        let mut c = spawn(cmd, &all);
        // The attach must be listening before the input arrives.
        std::thread::sleep(Duration::from_millis(700));
        c.stdin.take().unwrap().write_all(input).unwrap();
        kids.push(c);
    }
    let pd = kids.pop().unwrap();
    (kids.pop().unwrap(), pd)
}

/// `keel attach` did not exist. docker's attach exits with the
/// container's exit code; podman 4.3 exits 0 and adds an empty line, and
/// its detach keys on a non-TTY stdin end the container (its stdin closes):
/// those steps check docker's documented behaviour, asserting podman's
/// difference where it is one line.
#[test]
fn attach_stdin_output_detach_keys_and_signals() {
    let p = Pair::new();
    let script = "while read l; do echo got $l; [ \"$l\" = quit ] && exit 7; done";
    both_ok(
        &p,
        &[
            "run", "-d", "-i", "--name", "a1", "busybox", "sh", "-c", script,
        ],
    );
    let (k, pd) = attach_both(&p, &["a1"], b"hello\nquit\n");
    let (k, pd) = (finish(k), finish(pd));
    assert_eq!(k.0, out(7, "got hello\ngot quit\n"), "keel: {}", k.1);
    assert_eq!(pd.0, out(0, "got hello\ngot quit\n\n"), "podman: {}", pd.1);

    // ctrl-p ctrl-q detaches: exit 0, the container runs on and keeps
    // reading its stdin at the next attach.
    let k = p.keel(&[
        "run", "-d", "-i", "--name", "a2", "busybox", "sh", "-c", script,
    ]);
    assert!(k.status.success(), "{}", stderr(&k));
    // Each chunk of input after a pause: output of the first is shown
    // before the detach keys of the next arrive.
    let attach = |args: &[&str], input: &[&[u8]]| {
        let mut all = vec!["attach"];
        all.extend(args);
        let mut c = spawn(p.keel.cmd(), &all);
        for chunk in input {
            std::thread::sleep(Duration::from_millis(700));
            c.stdin.as_mut().unwrap().write_all(chunk).unwrap();
        }
        c
    };
    let running = || outcome(&p.keel(&["inspect", "-f", "{{.State.Running}}", "a2"]));
    let c = attach(&["a2"], &[&b"one\n"[..], &b"\x10\x11"[..]]);
    let k = finish(c);
    assert_eq!(k.0, out(0, "got one\n"), "{}", k.1);
    assert_eq!(running(), out(0, "true\n"));
    // Custom keys; a partial sequence is passed on.
    let c = attach(
        &["--detach-keys", "ctrl-x,x", "a2"],
        &[&b"t\x18wo\n"[..], &b"\x18x"[..]],
    );
    let k = finish(c);
    assert_eq!(k.0, out(0, "got t\x18wo\n"), "{}", k.1);
    assert_eq!(running(), out(0, "true\n"));
    // --no-stdin: the input goes nowhere; attach ends with the container.
    let c = attach(&["--no-stdin", "a2"], &[&b"quit\n"[..]]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(running(), out(0, "true\n"));
    let k = p.keel(&["kill", "a2"]);
    assert!(k.status.success(), "{}", stderr(&k));
    let k = finish(c);
    assert_eq!(k.0, out(137, ""), "{}", k.1);
    let k = p.keel(&["attach", "--detach-keys", "alt-q", "a1"]);
    assert_eq!(k.status.code(), Some(1), "{}", stderr(&k));

    // --sig-proxy (the default): a TERM to attach reaches the container.
    both_ok(
        &p,
        &[
            "run",
            "-d",
            "--name",
            "a3",
            "busybox",
            "sh",
            "-c",
            "trap 'echo term; exit 5' TERM; while true; do sleep 0.1; done",
        ],
    );
    let (k, pd) = attach_both(&p, &["a3"], b"");
    for c in [&k, &pd] {
        let st = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }
    let (k, pd) = (finish(k), finish(pd));
    assert_eq!(k.0, out(5, "term\n"), "keel: {}", k.1);
    assert_eq!(pd.0, out(0, "term\n\n"), "podman: {}", pd.1);

    // An exited container cannot be attached: docker exits 1, podman 125.
    p.docker(
        &["attach", "a3"],
        &out(1, ""),
        "podman 4.3 exits 125 for a stopped container",
    );
    // One at a time: podman removes several in parallel and prints them as they finish.
    p.same(&["rm", "-f", "a1"]);
    p.same(&["rm", "-f", "a3"]);
    let _ = p.keel(&["rm", "-f", "a2"]);
}

/// `run -a` did not exist: only the named streams are shown.
#[test]
fn run_attaches_only_the_named_streams() {
    let p = Pair::new();
    let cmd = ["busybox", "sh", "-c", "echo out; echo err >&2; exit 3"];
    for (flag, want_out, want_err) in [
        ("stdout", "out\n", false),
        ("stderr", "", true),
        ("STDOUT", "out\n", false),
    ] {
        let mut args = vec!["run", "--rm", "-a", flag];
        args.extend(cmd);
        let k = p.same(&args);
        assert_eq!(outcome(&k), out(3, want_out));
        assert_eq!(
            stderr(&k).contains("err"),
            want_err,
            "{flag}: {}",
            stderr(&k)
        );
    }
    let mut args = vec!["run", "--rm", "-a", "stdout", "-a", "stderr"];
    args.extend(cmd);
    let k = p.same(&args);
    assert!(stderr(&k).contains("err"));
    // docker refuses -a with -d: "Conflicting options: -a and -d".
    let mut args = vec!["run", "-d", "-a", "stdout"];
    args.extend(cmd);
    p.docker(
        &args,
        &out(125, ""),
        "podman 4.3 runs it detached and prints the ID",
    );
    let k = p.keel(&["run", "--rm", "-a", "stdbad", "busybox", "true"]);
    assert_eq!(k.status.code(), Some(125), "{}", stderr(&k));
}
