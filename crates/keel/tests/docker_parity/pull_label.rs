//! Issue 15: `build --label`, `build --pull` and `run/create --pull`
//! (docker's default `missing`: an image the store lacks is pulled).

use super::{Pair, both_ok, out, outcome, stderr};

/// `build --label` and `--pull` did not exist; `run` never pulled.
#[test]
fn build_labels_and_pull_policies() {
    let p = Pair::new();
    let ctx = p.dir().join("lbl");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nLABEL from.file=1 tier=base\n",
    )
    .unwrap();
    let c = ctx.to_str().unwrap();
    for (who, o) in [
        (
            "keel",
            p.keel(&[
                "build",
                "-q",
                "--label",
                "tier=web",
                "--label",
                "team=blue",
                "-t",
                "lbl",
                c,
            ]),
        ),
        (
            "podman",
            p.podman(&[
                "build",
                "-q",
                "--pull=never",
                "--network=none",
                "--label",
                "tier=web",
                "--label",
                "team=blue",
                "-t",
                "lbl",
                c,
            ]),
        ),
    ] {
        assert!(o.status.success(), "{who}: {}", stderr(&o));
    }
    let k = p.same(&[
        "inspect",
        "-f",
        "{{index .Config.Labels \"tier\"}} {{index .Config.Labels \"team\"}} {{index .Config.Labels \"from.file\"}}",
        "lbl",
    ]);
    assert_eq!(outcome(&k), out(0, "web blue 1\n"));
    // --pull=never with a base the store lacks fails; the default tries
    // to pull it (and fails here, offline), naming the image.
    std::fs::write(ctx.join("Dockerfile"), "FROM nosuch.invalid/base:1\n").unwrap();
    for args in [
        &["build", "-q", "--pull=never", c][..],
        &["build", "-q", "--pull", c],
        &["build", "-q", c],
    ] {
        let k = p.keel(args);
        assert_eq!(k.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&k).contains("nosuch.invalid/base:1"),
            "{args:?}: {}",
            stderr(&k)
        );
    }
    let k = p.keel(&["build", "-q", "--pull=sometimes", c]);
    assert_ne!(k.status.code(), Some(0));
    // run: missing (default) tries a pull, as docker's "Unable to find image".
    let k = p.keel(&["run", "--rm", "nosuch.invalid/img:1", "true"]);
    assert_eq!(k.status.code(), Some(125));
    assert!(
        stderr(&k).contains("Unable to find image 'nosuch.invalid/img:1' locally"),
        "{}",
        stderr(&k)
    );
    assert!(stderr(&k).contains("no such image"), "{}", stderr(&k));
    let k = p.keel(&[
        "run",
        "--rm",
        "--pull",
        "never",
        "nosuch.invalid/img:1",
        "true",
    ]);
    assert_eq!(k.status.code(), Some(125));
    assert!(
        !stderr(&k).contains("Unable to find image"),
        "{}",
        stderr(&k)
    );
    both_ok(&p, &["run", "--rm", "--pull", "missing", "busybox", "true"]);
}
