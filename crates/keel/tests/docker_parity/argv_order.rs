//! Issue 15: a short flag right after the image belongs to the container's
//! command, as docker's parser stops at the first positional: clap took
//! `keel run IMAGE -l` as `--label`, `-e X` as `--env`, `-a` as `--attach`.

use super::{Pair, both_ok, out};

#[test]
fn a_flag_after_the_image_is_the_containers() {
    let p = Pair::new();
    for (args, want) in [
        (
            &["run", "--rm", "--entrypoint", "echo", "busybox", "-l"][..],
            "-l\n",
        ),
        (
            &["run", "--rm", "--entrypoint", "echo", "busybox", "-a", "x"],
            "-a x\n",
        ),
        (
            &["run", "--rm", "--entrypoint", "echo", "busybox", "-e", "X"],
            "X\n",
        ),
        (
            &["run", "--rm", "--entrypoint", "echo", "busybox", "--", "-l"],
            "-- -l\n",
        ),
        (
            &["run", "--rm", "busybox", "echo", "-l", "--name", "x"],
            "-l --name x\n",
        ),
    ] {
        let k = p.same(args);
        assert_eq!(super::outcome(&k), out(0, want), "{args:?}");
    }
    // `-l` as the command: not found, exit 127, as with docker.
    let k = p.same(&["run", "--rm", "busybox", "-l"]);
    assert_eq!(k.status.code(), Some(127));
    both_ok(
        &p,
        &[
            "create",
            "--name",
            "c4",
            "--entrypoint",
            "echo",
            "busybox",
            "-l",
        ],
    );
    p.same(&["start", "-a", "c4"]);
    p.same(&["rm", "c4"]);
    p.same(&["ps", "-aq"]);
}
