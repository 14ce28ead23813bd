//! Hostile layer tars: every attempt to leave the destination is refused with
//! an error naming the entry, in both whiteout modes, and nothing outside the
//! destination changes (a sentinel tree beside it is compared before/after).

mod layers_util;

use std::fs;
use std::io::Cursor;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};

use keel_oci::layer::{LayerError, WhiteoutMode, apply_layer};
use layers_util::{TarBuilder, outside_state};

/// `<tmp>/sandbox/inner/dest` with sentinels beside it, so `..` and `../..`
/// from dest land in directories the test watches.
struct Sandbox {
    _t: tempfile::TempDir,
    outer: PathBuf,
    dest: PathBuf,
}

impl Sandbox {
    fn new() -> Self {
        let t = tempfile::tempdir().unwrap();
        let sandbox = t.path().join("sandbox");
        let dest = sandbox.join("inner/dest");
        fs::create_dir_all(&dest).unwrap();
        fs::create_dir_all(sandbox.join("etc")).unwrap();
        fs::write(sandbox.join("outside"), "sentinel").unwrap();
        fs::write(sandbox.join("etc/keep"), "sentinel").unwrap();
        fs::write(sandbox.join("inner/sibling"), "sentinel").unwrap();
        Sandbox {
            _t: t,
            outer: sandbox,
            dest,
        }
    }

    fn state(&self) -> Vec<String> {
        outside_state(&self.outer, &self.dest)
    }
}

/// Applies `tar` in both modes into fresh sandboxes (optionally prepared),
/// expects a refusal naming `entry`, and checks nothing changed outside.
fn refused(
    tar: &[u8],
    entry: &str,
    prepare: impl Fn(&Sandbox),
    check: impl Fn(&LayerError) -> bool,
) {
    for mode in [WhiteoutMode::Flat, WhiteoutMode::Overlay] {
        let sb = Sandbox::new();
        prepare(&sb);
        let before = sb.state();
        let err = apply_layer(Cursor::new(tar), &sb.dest, mode)
            .expect_err(&format!("{mode:?}: hostile entry {entry} was accepted"));
        let msg = err.to_string();
        assert!(
            msg.contains(entry),
            "{mode:?}: error {msg:?} does not name entry {entry:?}"
        );
        assert!(check(&err), "{mode:?}: unexpected error kind: {err:?}");
        assert_eq!(
            sb.state(),
            before,
            "{mode:?}: something changed outside dest"
        );
    }
}

#[test]
fn dotdot_names_are_refused() {
    for name in ["../../etc/x", "a/../../x", "../sibling", "./../x", "/../x"] {
        let mut t = TarBuilder::new();
        t.file("ok", b"fine", 1).file(name, b"pwned", 1);
        refused(
            &t.finish(),
            name,
            |_| {},
            |e| matches!(e, LayerError::EscapesRoot { .. }),
        );
    }
}

#[test]
fn dotdot_whiteouts_and_dirs_are_refused() {
    for name in ["../.wh.outside", "../../etc/"] {
        let mut t = TarBuilder::new();
        if name.ends_with('/') {
            t.dir(name, 1);
        } else {
            t.whiteout(name, 1);
        }
        refused(
            &t.finish(),
            name,
            |_| {},
            |e| matches!(e, LayerError::EscapesRoot { .. }),
        );
    }
}

#[test]
fn writes_through_a_symlink_to_root_are_refused() {
    // The canonical attack: `evil -> /`, then `evil/etc/...`. Were it
    // followed, it would write to the host's /etc; the name is unique so a
    // failure cannot clobber anything real, and is checked below.
    let host_victim = "etc/keel-hostile-layer-test-x";
    let mut t = TarBuilder::new();
    t.symlink("evil", "/", 1)
        .file(&format!("evil/{host_victim}"), b"pwned", 1);
    let entry = format!("evil/{host_victim}");
    refused(
        &t.finish(),
        &entry,
        |_| {},
        |e| matches!(e, LayerError::SymlinkEscape { link, .. } if link == "evil"),
    );
    assert!(!Path::new("/").join(host_victim).exists());
}

#[test]
fn writes_through_relative_symlinks_climbing_out_are_refused() {
    for (link, target, entry) in [
        ("up", "../..", "up/x"),
        ("up", "..", "up/sibling"),
        ("a/b", "../../..", "a/b/etc/keep"),
        ("deep", "x/../../../..", "deep/outside"),
    ] {
        let mut t = TarBuilder::new();
        if link.contains('/') {
            t.dir("a/", 1);
        }
        t.symlink(link, target, 1).file(entry, b"pwned", 1);
        refused(
            &t.finish(),
            entry,
            |_| {},
            |e| matches!(e, LayerError::SymlinkEscape { link: l, .. } if l == link),
        );
    }
}

#[test]
fn chained_symlinks_escaping_are_refused() {
    // a -> b (inside), b -> /tmp-ish absolute: the second hop escapes.
    let mut t = TarBuilder::new();
    t.symlink("b", "../../..", 1)
        .symlink("a", "b", 1)
        .file("a/outside", b"pwned", 1);
    refused(
        &t.finish(),
        "a/outside",
        |_| {},
        |e| matches!(e, LayerError::SymlinkEscape { .. }),
    );
}

#[test]
fn whiteout_through_a_symlink_pointing_outside_is_refused() {
    // Flat mode would delete the sentinel if the symlink were followed.
    let mut t = TarBuilder::new();
    t.symlink("up", "../..", 1).whiteout("up/.wh.outside", 1);
    refused(
        &t.finish(),
        "up/.wh.outside",
        |_| {},
        |e| matches!(e, LayerError::SymlinkEscape { .. }),
    );
}

#[test]
fn writes_through_symlinks_already_in_dest_are_refused() {
    let mut t = TarBuilder::new();
    t.file("pre/x", b"pwned", 1);
    let tar = t.finish();
    // Absolute symlink to the sandbox, and a relative one climbing out.
    refused(
        &tar,
        "pre/x",
        |sb| symlink(&sb.outer, sb.dest.join("pre")).unwrap(),
        |e| matches!(e, LayerError::SymlinkEscape { link, .. } if link == "pre"),
    );
    refused(
        &tar,
        "pre/x",
        |sb| symlink("../..", sb.dest.join("pre")).unwrap(),
        |e| matches!(e, LayerError::SymlinkEscape { link, .. } if link == "pre"),
    );
}

#[test]
fn hardlinks_leaving_the_root_are_refused() {
    for (target, via_symlink) in [
        ("../../outside", false),
        ("/../outside", false),
        ("up/outside", true),
    ] {
        let mut t = TarBuilder::new();
        if via_symlink {
            t.symlink("up", "../..", 1);
        }
        t.hardlink("hl", target, 1);
        refused(
            &t.finish(),
            "hl",
            |_| {},
            |e| matches!(e, LayerError::HardlinkEscape { .. }),
        );
    }
    // Through an absolute symlink to the host root.
    let mut t = TarBuilder::new();
    t.symlink("root", "/", 1)
        .hardlink("hl", "root/etc/passwd", 1);
    refused(
        &t.finish(),
        "hl",
        |_| {},
        |e| matches!(e, LayerError::HardlinkEscape { .. }),
    );
    // The sentinel keeps its single link (checked by outside_state's nlink too).
    let sb = Sandbox::new();
    assert_eq!(fs::metadata(sb.outer.join("outside")).unwrap().nlink(), 1);
}

#[test]
fn absolute_names_land_inside() {
    for mode in [WhiteoutMode::Flat, WhiteoutMode::Overlay] {
        let sb = Sandbox::new();
        let before = sb.state();
        let mut t = TarBuilder::new();
        t.dir("/abs/", 1)
            .file("/abs/file", b"inside", 1)
            .symlink("/abs/link", "/etc/passwd", 1)
            .hardlink("/abs/hard", "/abs/file", 1);
        apply_layer(Cursor::new(t.finish()), &sb.dest, mode).unwrap();
        assert_eq!(fs::read(sb.dest.join("abs/file")).unwrap(), b"inside");
        assert_eq!(fs::read(sb.dest.join("abs/hard")).unwrap(), b"inside");
        // A symlink's target is stored as-is; it is only never followed.
        assert_eq!(
            fs::read_link(sb.dest.join("abs/link")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert_eq!(sb.state(), before);
    }
}

#[test]
fn final_symlink_component_is_replaced_not_followed() {
    for mode in [WhiteoutMode::Flat, WhiteoutMode::Overlay] {
        let sb = Sandbox::new();
        // dest/victim -> the sentinel outside; the layer writes `victim`.
        symlink(sb.outer.join("outside"), sb.dest.join("victim")).unwrap();
        symlink("../../etc", sb.dest.join("victimdir")).unwrap();
        let before = sb.state();
        let mut t = TarBuilder::new();
        t.file("victim", b"new content", 1)
            .dir("victimdir/", 1)
            .file("victimdir/inside", b"x", 1);
        apply_layer(Cursor::new(t.finish()), &sb.dest, mode).unwrap();
        let md = fs::symlink_metadata(sb.dest.join("victim")).unwrap();
        assert!(md.is_file(), "{mode:?}: symlink was not replaced");
        assert_eq!(fs::read(sb.dest.join("victim")).unwrap(), b"new content");
        assert!(
            fs::symlink_metadata(sb.dest.join("victimdir"))
                .unwrap()
                .is_dir()
        );
        assert_eq!(fs::read(sb.outer.join("outside")).unwrap(), b"sentinel");
        assert_eq!(sb.state(), before, "{mode:?}");
    }
}

#[test]
fn symlinks_that_stay_inside_are_followed() {
    // Merged-/usr layouts (`lib -> usr/lib`) must keep working.
    let sb = Sandbox::new();
    let mut t = TarBuilder::new();
    t.dir("usr/", 1)
        .dir("usr/lib/", 1)
        .symlink("lib", "usr/lib", 1)
        .symlink("usr/up", "../lib", 1)
        .file("lib/a.so", b"a", 1)
        .file("usr/up/b.so", b"b", 1);
    apply_layer(Cursor::new(t.finish()), &sb.dest, WhiteoutMode::Flat).unwrap();
    assert_eq!(fs::read(sb.dest.join("usr/lib/a.so")).unwrap(), b"a");
    assert_eq!(fs::read(sb.dest.join("usr/lib/b.so")).unwrap(), b"b");
}

#[test]
fn replacing_a_directory_by_a_symlink_mid_layer_is_caught() {
    // `a/b/x` makes `a/b` a known parent; then `a/b` is replaced by a
    // symlink out, by an entry reached through another symlink (`l -> a`),
    // and `a/b/y` must be resolved afresh and refused.
    let mut t = TarBuilder::new();
    t.dir("a/", 1)
        .dir("a/b/", 1)
        .symlink("l", "a", 1)
        .file("a/b/x", b"x", 1)
        .symlink("l/b", "../../..", 1)
        .file("a/b/y", b"pwned", 1);
    refused(
        &t.finish(),
        "a/b/y",
        |_| {},
        |e| matches!(e, LayerError::SymlinkEscape { link, .. } if link == "a/b"),
    );
    // Same through a symlinked path: `lib -> usr/lib`, then `usr/lib` is
    // swapped for a symlink climbing out.
    let mut t = TarBuilder::new();
    t.dir("usr/", 1)
        .dir("usr/lib/", 1)
        .symlink("lib", "usr/lib", 1)
        .file("lib/x", b"x", 1)
        .symlink("usr/lib", "../../..", 1)
        .file("lib/y", b"pwned", 1);
    refused(
        &t.finish(),
        "lib/y",
        |_| {},
        |e| matches!(e, LayerError::SymlinkEscape { .. }),
    );
    // And a whiteout in between (Flat removes, Overlay mknods) followed by
    // a symlink of the same name.
    let mut t = TarBuilder::new();
    t.dir("b/", 1)
        .file("b/x", b"x", 1)
        .whiteout(".wh.b", 1)
        .symlink("b", "/", 1)
        .file("b/etc/keel-hostile-layer-test-y", b"pwned", 1);
    refused(
        &t.finish(),
        "b/etc/keel-hostile-layer-test-y",
        |_| {},
        |e| matches!(e, LayerError::SymlinkEscape { .. }),
    );
    assert!(!Path::new("/etc/keel-hostile-layer-test-y").exists());
}

#[test]
fn old_style_directories_by_trailing_slash() {
    let sb = Sandbox::new();
    let mut t = TarBuilder::new();
    // Type '0' with a trailing slash: a directory in pre-POSIX tars.
    t.file("olddir/", b"", 1).file("olddir/f", b"f", 1);
    apply_layer(Cursor::new(t.finish()), &sb.dest, WhiteoutMode::Flat).unwrap();
    assert!(sb.dest.join("olddir").is_dir());
    assert_eq!(fs::read(sb.dest.join("olddir/f")).unwrap(), b"f");
}
