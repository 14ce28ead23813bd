//! `diff_to_layer` round trips: tree → tar → tree is the identity, the tar is
//! byte-identical on every run, real GNU tar reads ours and we read GNU
//! tar's, and an overlayfs upper dir turns into the right whiteouts.
//! Needs root (owners, devices, trusted xattrs, mount).

mod layers_util;

use std::ffi::OsStr;
use std::fs;
use std::io::{Cursor, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;

use keel_oci::layer::{WhiteoutMode, apply_layer, diff_to_layer};
use layers_util::{OverlayMount, listing};
use rustix::fs::{AtFlags, CWD, FileType, Gid, Mode, Timespec, Timestamps, Uid, XattrFlags};

fn chown(p: &Path, uid: u32, gid: u32) {
    rustix::fs::chownat(
        CWD,
        p,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

fn set_mtime(p: &Path, secs: i64) {
    let ts = Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        CWD,
        p,
        &Timestamps {
            last_access: ts,
            last_modification: ts,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

fn mknod(p: &Path, ft: FileType, mode: u32, major: u32, minor: u32) {
    rustix::fs::mknodat(
        CWD,
        p,
        ft,
        Mode::from_raw_mode(mode),
        rustix::fs::makedev(major, minor),
    )
    .unwrap();
    chmod(p, mode);
}

/// Files, dirs, symlinks, hardlinks, a fifo, devices, an xattr, setuid and
/// sticky modes, uid/gid 1000, long names and targets, a non-UTF-8 name,
/// specific mtimes (directories last, since filling them changes theirs).
fn build_tree(root: &Path) {
    let d = root.join("d");
    fs::create_dir(&d).unwrap();
    fs::write(d.join("f"), "hello").unwrap();
    rustix::fs::lsetxattr(d.join("f"), "user.x", b"val", XattrFlags::empty()).unwrap();
    fs::hard_link(d.join("f"), d.join("hard")).unwrap();
    symlink("f", d.join("link")).unwrap();
    chown(&d.join("link"), 1000, 1000);
    chown(&d, 1000, 1000);
    chmod(&d, 0o750);
    fs::write(root.join("suid"), "suid").unwrap();
    chmod(&root.join("suid"), 0o4755);
    fs::create_dir(root.join("tmp")).unwrap();
    chmod(&root.join("tmp"), 0o1777);
    fs::create_dir(root.join("shared")).unwrap();
    chmod(&root.join("shared"), 0o2775);
    chown(&root.join("shared"), 0, 1000);
    mknod(&root.join("p"), FileType::Fifo, 0o600, 0, 0);
    mknod(&root.join("cdev"), FileType::CharacterDevice, 0o666, 1, 5);
    mknod(&root.join("bdev"), FileType::BlockDevice, 0o660, 7, 0);
    fs::write(root.join("owned"), "mine").unwrap();
    chown(&root.join("owned"), 1000, 1000);
    fs::create_dir(root.join("empty")).unwrap();
    let long_dir = root.join("long").join("x".repeat(120));
    fs::create_dir_all(&long_dir).unwrap();
    fs::write(long_dir.join("y".repeat(150)), "long").unwrap();
    symlink("t".repeat(200), root.join("longlink")).unwrap();
    fs::write(root.join(OsStr::from_bytes(b"caf\xe9")), "latin1").unwrap();
    // Big enough to span many blocks and not a multiple of 512.
    let big: Vec<u8> = (0..300_001u32).map(|i| (i % 251) as u8).collect();
    fs::write(root.join("big"), big).unwrap();

    let mut n = 0;
    let mut stamp = |p: &Path| {
        n += 1;
        set_mtime(p, 1_500_000_000 + n * 1000);
    };
    for f in ["suid", "p", "cdev", "bdev", "owned", "longlink", "big"] {
        stamp(&root.join(f));
    }
    stamp(&root.join(OsStr::from_bytes(b"caf\xe9")));
    stamp(&d.join("f"));
    stamp(&d.join("link"));
    stamp(&long_dir.join("y".repeat(150)));
    for dir in [&long_dir, &root.join("long"), &d, &root.join("tmp")] {
        stamp(dir);
    }
    for dir in ["shared", "empty"] {
        stamp(&root.join(dir));
    }
}

fn diff(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    diff_to_layer(dir, &mut out).unwrap();
    out
}

#[test]
fn tree_to_layer_to_tree_is_identity_and_deterministic() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    build_tree(&src);
    let want = listing(&src);
    assert!(want.len() > 15, "{want:#?}");

    let tar1 = diff(&src);
    let tar2 = diff(&src);
    assert!(tar1 == tar2, "two diffs of the same tree differ");

    for mode in [WhiteoutMode::Flat, WhiteoutMode::Overlay] {
        let dst = t.path().join(format!("dst-{mode:?}"));
        fs::create_dir(&dst).unwrap();
        let stats = apply_layer(Cursor::new(&tar1), &dst, mode).unwrap();
        assert_eq!(stats.entries as usize, want.len());
        assert_eq!(stats.bytes, 5 + 4 + 4 + 4 + 6 + 300_001);
        assert_eq!(listing(&dst), want, "{mode:?}");
        // And the applied tree diffs back to the very same bytes.
        assert!(diff(&dst) == tar1, "{mode:?}: re-diff differs");
    }

    // Entries are sorted, numeric-owner, without user/group names.
    let mut ar = tar::Archive::new(Cursor::new(&tar1));
    let mut names = Vec::new();
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        assert_eq!(e.header().username_bytes(), Some(&b""[..]));
        assert_eq!(e.header().groupname_bytes(), Some(&b""[..]));
        names.push(e.path_bytes().into_owned());
    }
    assert_eq!(names[0], b"bdev");
    assert!(names.contains(&b"d/hard".to_vec()));
}

#[test]
fn gnu_tar_reads_our_layers_and_we_read_gnu_tars() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    build_tree(&src);
    let want = listing(&src);

    // Ours → GNU tar.
    let ours = t.path().join("ours.tar");
    fs::write(&ours, diff(&src)).unwrap();
    let by_gnu = t.path().join("by-gnu");
    fs::create_dir(&by_gnu).unwrap();
    let st = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf"])
        .arg(&ours)
        .arg("-C")
        .arg(&by_gnu)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(listing(&by_gnu), want);

    // GNU tar (pax format, `./` names, atime/ctime records) → ours.
    let out = Command::new("tar")
        .args([
            "--xattrs",
            "--xattrs-include=user.*",
            "--numeric-owner",
            "--format=pax",
            "-cf",
            "-",
            "-C",
        ])
        .arg(&src)
        .arg(".")
        .output()
        .unwrap();
    assert!(out.status.success());
    let dst = t.path().join("from-gnu");
    fs::create_dir(&dst).unwrap();
    apply_layer(Cursor::new(out.stdout), &dst, WhiteoutMode::Flat).unwrap();
    assert_eq!(listing(&dst), want);
}

#[test]
fn gnu_format_long_names_and_links_apply() {
    // GNU tar's default format: long names and link targets as `././@LongLink`
    // entries, sizes and ids in base-256 when large. It carries no xattrs.
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    build_tree(&src);
    let strip_xattrs = |lines: Vec<String>| -> Vec<String> {
        lines
            .into_iter()
            .map(|l| match l.find(" xattr:") {
                Some(i) => {
                    let rest = &l[i + 1..];
                    let tail = rest.find(" inode-of=").map_or("", |j| &rest[j..]);
                    format!("{}{tail}", &l[..i])
                }
                None => l,
            })
            .collect()
    };
    let out = Command::new("tar")
        .args(["--format=gnu", "--numeric-owner", "-cf", "-", "-C"])
        .arg(&src)
        .arg(".")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        out.stdout.windows(13).any(|w| w == b"././@LongLink"),
        "no GNU long name entries in the archive"
    );
    let dst = t.path().join("dst");
    fs::create_dir(&dst).unwrap();
    apply_layer(Cursor::new(out.stdout), &dst, WhiteoutMode::Flat).unwrap();
    assert_eq!(listing(&dst), strip_xattrs(listing(&src)));
}

#[test]
fn overlay_upper_dir_whiteouts_become_wh_entries() {
    let t = tempfile::tempdir().unwrap();
    let upper = t.path().join("upper");
    fs::create_dir(&upper).unwrap();
    mknod(&upper.join("gone"), FileType::CharacterDevice, 0, 0, 0);
    fs::create_dir(upper.join("op")).unwrap();
    fs::write(upper.join("op/keep"), "k").unwrap();
    rustix::fs::lsetxattr(
        upper.join("op"),
        "trusted.overlay.opaque",
        b"y",
        XattrFlags::empty(),
    )
    .unwrap();
    fs::create_dir(upper.join("uop")).unwrap();
    rustix::fs::lsetxattr(
        upper.join("uop"),
        "user.overlay.opaque",
        b"y",
        XattrFlags::empty(),
    )
    .unwrap();
    // Not opaque: overlay's "has xwhiteouts" marker.
    fs::create_dir(upper.join("x")).unwrap();
    rustix::fs::lsetxattr(
        upper.join("x"),
        "trusted.overlay.opaque",
        b"x",
        XattrFlags::empty(),
    )
    .unwrap();

    let tar = diff(&upper);
    let mut ar = tar::Archive::new(Cursor::new(&tar));
    let mut got = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        let kind = e.header().entry_type();
        if let Some(pax) = e.pax_extensions().unwrap() {
            for rec in pax {
                let key = rec.unwrap().key().unwrap().to_owned();
                assert!(!key.contains("overlay"), "{name}: leaked {key}");
            }
        }
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        got.push(format!("{name} {kind:?} {}", data.len()));
    }
    assert_eq!(
        got,
        [
            ".wh.gone Regular 0",
            "op/ Directory 0",
            "op/.wh..wh..opq Regular 0",
            "op/keep Regular 1",
            "uop/ Directory 0",
            "uop/.wh..wh..opq Regular 0",
            "x/ Directory 0",
        ]
    );

    // Applied as an overlay snapshot, it turns back into overlay markers.
    let snap = t.path().join("snap");
    fs::create_dir(&snap).unwrap();
    apply_layer(Cursor::new(&tar), &snap, WhiteoutMode::Overlay).unwrap();
    let md = fs::symlink_metadata(snap.join("gone")).unwrap();
    assert!(md.file_type().is_char_device() && md.rdev() == 0);
    for d in ["op", "uop"] {
        let mut v = [0u8; 4];
        let n = rustix::fs::lgetxattr(snap.join(d), "trusted.overlay.opaque", &mut v[..]).unwrap();
        assert_eq!(&v[..n], b"y", "{d}");
    }
    let mut v = [0u8; 4];
    assert!(rustix::fs::lgetxattr(snap.join("x"), "trusted.overlay.opaque", &mut v[..]).is_err());
}

#[test]
fn diff_of_a_real_overlay_upper_reproduces_the_merged_view() {
    let t = tempfile::tempdir().unwrap();
    let lower = t.path().join("lower");
    fs::create_dir(&lower).unwrap();
    build_tree(&lower);
    let (upper, work) = (t.path().join("upper"), t.path().join("work"));
    let m = OverlayMount::rw(&lower, &upper, &work, &t.path().join("merged"));
    let mp = &m.target;
    // A "container" changes things: the kernel records them in upper.
    fs::remove_file(mp.join("suid")).unwrap();
    fs::remove_dir_all(mp.join("d")).unwrap();
    fs::create_dir(mp.join("d")).unwrap();
    fs::write(mp.join("d/new"), "fresh").unwrap();
    fs::write(mp.join("added"), "new").unwrap();
    fs::write(mp.join("owned"), "changed").unwrap();
    chmod(&mp.join("p"), 0o640);
    fs::remove_dir_all(mp.join("long")).unwrap();
    let merged = listing(mp);
    drop(m);

    let upper_tar = diff(&upper);
    let names: Vec<String> = tar::Archive::new(Cursor::new(&upper_tar))
        .entries()
        .unwrap()
        .map(|e| String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap())
        .collect();
    for want in [
        ".wh.suid",
        ".wh.long",
        "d/",
        "d/.wh..wh..opq",
        "d/new",
        "added",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing in {names:?}"
        );
    }

    // lower layer + upper diff, applied flat, equals what the container saw.
    let rebuilt = t.path().join("rebuilt");
    fs::create_dir(&rebuilt).unwrap();
    apply_layer(Cursor::new(diff(&lower)), &rebuilt, WhiteoutMode::Flat).unwrap();
    apply_layer(Cursor::new(&upper_tar), &rebuilt, WhiteoutMode::Flat).unwrap();
    assert_eq!(listing(&rebuilt), merged);
}

#[test]
fn upper_dirs_with_redirects_or_metacopy_are_refused() {
    for (entry, xattr, is_dir) in [
        ("renamed", "trusted.overlay.redirect", true),
        ("meta-only", "trusted.overlay.metacopy", false),
    ] {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join(entry);
        if is_dir {
            fs::create_dir(&p).unwrap();
        } else {
            fs::write(&p, "").unwrap();
        }
        rustix::fs::lsetxattr(&p, xattr, b"/old", XattrFlags::empty()).unwrap();
        let err = diff_to_layer(t.path(), Vec::new()).unwrap_err();
        assert!(
            matches!(&err, keel_oci::layer::LayerError::OverlayFeature { path, .. } if *path == p),
            "{err:?}"
        );
        assert!(err.to_string().contains("metacopy=off"), "{err}");
    }
}

/// Regression: the tar crate splits PAX records at newlines, which lost
/// binary xattr values (found by `random_trees_round_trip`).
#[test]
fn binary_xattr_values_with_newlines_round_trip() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    let value = b"\x00\n\xff\n12 path=../../evil\n";
    // A long name too, so the PAX header also carries `path`.
    let name = "n".repeat(150);
    fs::write(src.join(&name), "x").unwrap();
    rustix::fs::lsetxattr(src.join(&name), "user.bin", value, XattrFlags::empty()).unwrap();
    let dst = t.path().join("dst");
    fs::create_dir(&dst).unwrap();
    apply_layer(Cursor::new(diff(&src)), &dst, WhiteoutMode::Flat).unwrap();
    let mut v = [0u8; 64];
    let n = rustix::fs::lgetxattr(dst.join(&name), "user.bin", &mut v[..]).unwrap();
    assert_eq!(&v[..n], value);
    assert_eq!(listing(&dst), listing(&src));
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Kind {
        Dir(u32),
        File(Vec<u8>, u32, u32),
        Symlink(String),
        Hardlink(usize),
        Fifo,
        Xattr(usize, Vec<u8>),
    }

    fn kind() -> impl Strategy<Value = Kind> {
        let mode = |m: &'static [u32]| proptest::sample::select(m);
        prop_oneof![
            mode(&[0o755, 0o700, 0o1777, 0o2755]).prop_map(Kind::Dir),
            (
                proptest::collection::vec(any::<u8>(), 0..1500),
                mode(&[0o644, 0o600, 0o4755, 0o444]),
                proptest::sample::select(&[0u32, 1000, 65534][..]),
            )
                .prop_map(|(c, m, u)| Kind::File(c, m, u)),
            proptest::sample::select(&["a", "../x", "/abs/target", "d/e/f"][..])
                .prop_map(|t| Kind::Symlink(t.to_owned())),
            any::<usize>().prop_map(Kind::Hardlink),
            Just(Kind::Fifo),
            (
                any::<usize>(),
                proptest::collection::vec(any::<u8>(), 0..40)
            )
                .prop_map(|(i, v)| Kind::Xattr(i, v)),
        ]
    }

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_owned()),
            Just("b".to_owned()),
            Just("c d".to_owned()),
            Just("n".repeat(120)),
            Just(".hidden".to_owned()),
        ]
    }

    // Distinct mtimes, children before their directories.
    fn stamp(p: &Path, n: &mut i64) {
        let md = fs::symlink_metadata(p).unwrap();
        if md.is_dir() {
            let mut kids: Vec<_> = fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            kids.sort();
            for k in kids {
                stamp(&k, n);
            }
        }
        *n += 7;
        set_mtime(p, 1_400_000_000 + *n);
    }

    /// Builds a random tree; returns nothing, the tree is the value.
    fn build(root: &Path, ops: &[(usize, String, Kind)]) {
        let mut dirs = vec![root.to_path_buf()];
        let mut files = Vec::new();
        for (parent, name, kind) in ops {
            let parent = dirs[parent % dirs.len()].clone();
            let p = parent.join(name);
            if fs::symlink_metadata(&p).is_ok() {
                continue;
            }
            match kind {
                Kind::Dir(mode) => {
                    fs::create_dir(&p).unwrap();
                    chmod(&p, *mode);
                    dirs.push(p);
                }
                Kind::File(content, mode, uid) => {
                    fs::write(&p, content).unwrap();
                    chown(&p, *uid, *uid);
                    chmod(&p, *mode);
                    files.push(p);
                }
                Kind::Symlink(t) => symlink(t, &p).unwrap(),
                Kind::Hardlink(i) => {
                    if !files.is_empty() {
                        fs::hard_link(&files[i % files.len()], &p).unwrap();
                    }
                }
                Kind::Fifo => mknod(&p, FileType::Fifo, 0o640, 0, 0),
                Kind::Xattr(i, v) => {
                    if !files.is_empty() {
                        let f = &files[i % files.len()];
                        rustix::fs::lsetxattr(f, "user.k", v, XattrFlags::empty()).unwrap();
                    }
                }
            }
        }
        let mut n = 0;
        stamp(root, &mut n);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn random_trees_round_trip(
            ops in proptest::collection::vec((any::<usize>(), name(), kind()), 1..40),
        ) {
            let t = tempfile::tempdir().unwrap();
            let src = t.path().join("src");
            fs::create_dir(&src).unwrap();
            build(&src, &ops);
            let tar = diff(&src);
            let dst = t.path().join("dst");
            fs::create_dir(&dst).unwrap();
            apply_layer(Cursor::new(&tar), &dst, WhiteoutMode::Flat).unwrap();
            prop_assert_eq!(listing(&dst), listing(&src));
            prop_assert!(diff(&dst) == tar, "re-diff differs");
        }
    }
}

#[test]
fn sockets_are_skipped() {
    let t = tempfile::tempdir().unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(t.path().join("sock")).unwrap();
    fs::write(t.path().join("file"), "f").unwrap();
    let tar = diff(t.path());
    let names: Vec<String> = tar::Archive::new(Cursor::new(&tar))
        .entries()
        .unwrap()
        .map(|e| String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap())
        .collect();
    assert_eq!(names, ["file"]);
}
