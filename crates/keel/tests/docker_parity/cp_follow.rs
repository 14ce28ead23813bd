//! Issue 15.9: `keel cp -L` with the link inside the container: docker
//! copies what the link points at, under the link's name; without -L the
//! link itself. Links resolve inside the container's root.

use super::{Pair, both_ok, out, outcome, stderr};

/// `-L` only followed host-side links: `cp -L CTR:/link` copied the link.
#[test]
fn cp_follow_link_from_the_container() {
    let p = Pair::new();
    both_ok(
        &p,
        &[
            "run",
            "--name",
            "cl",
            "pimg",
            "sh",
            "-c",
            "ln -s /data/sub /dl && ln -s ../data/l /rel && ln -s ../../../../etc/passwd /esc",
        ],
    );
    // podman 4.3's cp has no -L (exit 125); docker's copies the target.
    p.docker(
        &["cp", "-L", "cl:/data/l", "{tmp}/l-followed"],
        &out(0, ""),
        "podman 4.3 has no cp -L",
    );
    let followed = p.dir().join("l-followed");
    let meta = std::fs::symlink_metadata(&followed).unwrap();
    assert!(meta.file_type().is_file(), "{meta:?}");
    assert_eq!(std::fs::read_to_string(&followed).unwrap(), "hello\n");
    // Without -L docker copies the link as a link; podman 4.3 follows it.
    let k = p.keel(&["cp", "cl:/data/l", "{tmp}/k-link"]);
    assert_eq!(outcome(&k), out(0, ""), "{}", stderr(&k));
    assert_eq!(
        std::fs::read_link(p.dir().join("k-link")).unwrap().to_str(),
        Some("f")
    );
    let o = p.podman(&["cp", "cl:/data/l", "{tmp}/p-link"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        std::fs::symlink_metadata(p.dir().join("p-link"))
            .unwrap()
            .is_file(),
        "podman 4.3 now copies the link itself: compare with it"
    );
    // A chain of relative links into an existing directory: named as the link.
    std::fs::create_dir(p.dir().join("into")).unwrap();
    let k = p.keel(&["cp", "-L", "cl:/rel", "{tmp}/into/"]);
    assert_eq!(outcome(&k), out(0, ""), "{}", stderr(&k));
    let rel = p.dir().join("into/rel");
    assert!(std::fs::symlink_metadata(&rel).unwrap().is_file());
    assert_eq!(std::fs::read_to_string(&rel).unwrap(), "hello\n");
    // A link to a directory copies the directory.
    let k = p.keel(&["cp", "-L", "cl:/dl", "{tmp}/dl"]);
    assert_eq!(outcome(&k), out(0, ""), "{}", stderr(&k));
    assert!(
        std::fs::symlink_metadata(p.dir().join("dl"))
            .unwrap()
            .is_dir()
    );
    // A link climbing out of the root stays in it: the container's passwd.
    let k = p.keel(&["cp", "-L", "cl:/esc", "{tmp}/esc"]);
    assert_eq!(outcome(&k), out(0, ""), "{}", stderr(&k));
    let copied = std::fs::read_to_string(p.dir().join("esc")).unwrap();
    let inside = p.keel(&["run", "--rm", "busybox", "cat", "/etc/passwd"]);
    assert_eq!(copied, String::from_utf8_lossy(&inside.stdout));
    // To a tar stream: one regular entry named l.
    let k = p.keel(&["cp", "-L", "cl:/data/l", "-"]);
    assert!(k.status.success(), "{}", stderr(&k));
    let mut ar = tar::Archive::new(&k.stdout[..]);
    let names: Vec<(String, bool)> = ar
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.path().unwrap().to_string_lossy().into_owned(),
                e.header().entry_type().is_file(),
            )
        })
        .collect();
    assert_eq!(names, [("l".to_string(), true)]);
    both_ok(&p, &["rm", "cl"]);
}
