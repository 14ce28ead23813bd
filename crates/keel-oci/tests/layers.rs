//! Three layers with whiteouts of files and dirs, an opaque dir, type changes
//! and a path re-created after its whiteout: applied flat into one dir, and
//! as overlay snapshots mounted with overlayfs, both give exactly the
//! expected tree. Needs root (owners, devices, trusted xattrs, mount).

mod layers_util;

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Cursor};
use std::path::Path;

use keel_oci::layer::{Snapshots, WhiteoutMode, apply_layer};
use layers_util::{E, OverlayMount, TarBuilder, gzip, listing, sha256_digest, zstd};
use tar::EntryType;

const T1: u64 = 1_600_000_000;
const T2: u64 = 1_650_000_000;
const T3: u64 = 1_700_000_000;

fn layer1() -> Vec<u8> {
    let mut t = TarBuilder::new();
    t.add(&E {
        kind: EntryType::Directory,
        name: "bin/",
        mode: 0o755,
        mtime: T1,
        // The overlay xattr must not be applied from a tar; the user one must.
        xattrs: &[("trusted.overlay.opaque", b"y"), ("user.origin", b"l1")],
        ..E::default()
    })
    .add(&E {
        name: "bin/tool",
        data: b"v1",
        mode: 0o4755,
        mtime: T1,
        ..E::default()
    })
    .hardlink("bin/link-to-tool", "bin/tool", T1)
    .dir("data/", T1)
    .dir("data/keep/", T1)
    .file("data/keep/x", b"x", T1)
    .file("data/old", b"old", T1)
    .dir("etc/", T1)
    .file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", T1)
    .add(&E {
        name: "etc/shadow",
        data: b"secret",
        mode: 0o640,
        gid: 42,
        mtime: T1,
        ..E::default()
    })
    .add(&E {
        kind: EntryType::Fifo,
        name: "fifo",
        mtime: T1,
        ..E::default()
    })
    .dir("gone/", T1)
    .dir("gone/deep/", T1)
    .file("gone/deep/file", b"deep", T1)
    .dir("lib/", T1)
    .file("lib/a.so", b"a1", T1)
    .file("lib/b.so", b"b1", T1)
    .dir("opq/", T1)
    .file("opq/old1", b"o1", T1)
    .dir("opq/sub/", T1)
    .file("opq/sub/old2", b"o2", T1)
    .file("recreate", b"first", T1)
    .symlink("sym", "etc/passwd", T1);
    t.finish()
}

fn layer2() -> Vec<u8> {
    let mut t = TarBuilder::new();
    t.whiteout(".wh.gone", T2)
        .whiteout(".wh.recreate", T2)
        .dir("data/", T2)
        .dir("data/keep/", T2)
        .file("data/keep/y", b"y", T2)
        .dir("dev/", T2)
        .add(&E {
            kind: EntryType::Char,
            name: "dev/null",
            mode: 0o666,
            dev: (1, 3),
            mtime: T2,
            ..E::default()
        })
        .dir("etc/", T2)
        .whiteout("etc/.wh.shadow", T2)
        .dir("home/", T2)
        .add(&E {
            kind: EntryType::Directory,
            name: "home/user/",
            mode: 0o700,
            uid: 1000,
            gid: 1000,
            mtime: T2,
            ..E::default()
        })
        .add(&E {
            name: "home/user/.profile",
            data: b"export A=1\n",
            uid: 1000,
            gid: 1000,
            mtime: T2,
            ..E::default()
        })
        .dir("lib/", T2)
        .file("lib/a.so", b"a2", T2)
        .dir("opq/", T2)
        .whiteout("opq/.wh..wh..opq", T2)
        .file("opq/new", b"new", T2);
    t.finish()
}

fn layer3() -> Vec<u8> {
    let mut t = TarBuilder::new();
    t.file("/abs-name", b"abs", T3)
        .dir("data/", T3)
        .file("data/keep", b"now a file", T3)
        .dir("data/old/", T3)
        .file("data/old/f", b"f", T3)
        .dir("etc/", T3)
        .add(&E {
            name: "etc/passwd",
            data: b"root:x:0:0:root:/root:/bin/ash\n",
            mode: 0o600,
            mtime: T3,
            xattrs: &[("user.note", b"hello")],
            ..E::default()
        })
        .dir("gone/", T3)
        .file("gone/fresh", b"fresh", T3)
        .dir("lib/", T3)
        .whiteout("lib/.wh.b.so", T3)
        .dir("recreate/", T3)
        .file("recreate/inner", b"inner", T3)
        .symlink("sym", "bin/tool", T3);
    t.finish()
}

fn expected() -> Vec<String> {
    [
        r#"abs-name file "abs" mode=0644 owner=0:0 mtime=1700000000"#,
        r#"bin/ dir mode=0755 owner=0:0 mtime=1600000000 xattr:user.origin="l1""#,
        r#"bin/link-to-tool file "v1" mode=4755 owner=0:0 mtime=1600000000 inode-of=bin/link-to-tool"#,
        r#"bin/tool file "v1" mode=4755 owner=0:0 mtime=1600000000 inode-of=bin/link-to-tool"#,
        r"data/ dir mode=0755 owner=0:0 mtime=1700000000",
        r#"data/keep file "now a file" mode=0644 owner=0:0 mtime=1700000000"#,
        r"data/old/ dir mode=0755 owner=0:0 mtime=1700000000",
        r#"data/old/f file "f" mode=0644 owner=0:0 mtime=1700000000"#,
        r"dev/ dir mode=0755 owner=0:0 mtime=1650000000",
        r"dev/null char 1:3 mode=0666 owner=0:0 mtime=1650000000",
        r"etc/ dir mode=0755 owner=0:0 mtime=1700000000",
        r#"etc/passwd file "root:x:0:0:root:/root:/bin/ash\n" mode=0600 owner=0:0 mtime=1700000000 xattr:user.note="hello""#,
        r"fifo fifo mode=0644 owner=0:0 mtime=1600000000",
        r"gone/ dir mode=0755 owner=0:0 mtime=1700000000",
        r#"gone/fresh file "fresh" mode=0644 owner=0:0 mtime=1700000000"#,
        r"home/ dir mode=0755 owner=0:0 mtime=1650000000",
        r"home/user/ dir mode=0700 owner=1000:1000 mtime=1650000000",
        r#"home/user/.profile file "export A=1\n" mode=0644 owner=1000:1000 mtime=1650000000"#,
        r"lib/ dir mode=0755 owner=0:0 mtime=1700000000",
        r#"lib/a.so file "a2" mode=0644 owner=0:0 mtime=1650000000"#,
        r"opq/ dir mode=0755 owner=0:0 mtime=1650000000",
        r#"opq/new file "new" mode=0644 owner=0:0 mtime=1650000000"#,
        r"recreate/ dir mode=0755 owner=0:0 mtime=1700000000",
        r#"recreate/inner file "inner" mode=0644 owner=0:0 mtime=1700000000"#,
        r"sym symlink -> bin/tool owner=0:0 mtime=1700000000",
    ]
    .iter()
    .map(|s| (*s).to_string())
    .collect()
}

#[test]
fn three_layers_flat_give_the_expected_tree() {
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("rootfs");
    fs::create_dir(&dest).unwrap();
    let s1 = apply_layer(Cursor::new(layer1()), &dest, WhiteoutMode::Flat).unwrap();
    assert_eq!(s1.entries, 23);
    assert_eq!(s1.bytes, 2 + 1 + 3 + 30 + 6 + 4 + 2 + 2 + 2 + 2 + 5);
    apply_layer(Cursor::new(layer2()), &dest, WhiteoutMode::Flat).unwrap();
    apply_layer(Cursor::new(layer3()), &dest, WhiteoutMode::Flat).unwrap();
    pretty_eq(&listing(&dest), &expected());
}

#[test]
fn three_layers_as_overlay_snapshots_give_the_expected_tree() {
    let t = tempfile::tempdir().unwrap();
    let snaps = Snapshots::new(t.path().join("snapshots")).unwrap();
    let tars = [layer1(), layer2(), layer3()];
    let diff_ids: Vec<String> = tars.iter().map(|b| sha256_digest(b)).collect();
    // One plain, one gzip and one zstd blob: ensure() sniffs each.
    let blobs = [tars[0].clone(), gzip(&tars[1]), zstd(&tars[2])];
    let dirs = snaps
        .ensure_chain(&diff_ids, |i| {
            Ok(Box::new(Cursor::new(blobs[i].clone())) as Box<dyn io::Read>)
        })
        .unwrap();
    assert_eq!(dirs.len(), 3);
    let chain = Snapshots::chain_ids(&diff_ids);
    for (d, c) in dirs.iter().zip(&chain) {
        assert_eq!(d, &snaps.path(c).unwrap());
    }

    // The raw snapshots hold overlay whiteouts, not deletions.
    let (l1, l2, l3) = (&dirs[0], &dirs[1], &dirs[2]);
    let wh = |p: &Path| {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let md = fs::symlink_metadata(p).unwrap();
        md.file_type().is_char_device() && md.rdev() == 0
    };
    assert!(wh(&l2.join("gone")));
    assert!(wh(&l2.join("recreate")));
    assert!(wh(&l2.join("etc/shadow")));
    assert!(wh(&l3.join("lib/b.so")));
    let mut v = [0u8; 8];
    let n = rustix::fs::lgetxattr(l2.join("opq"), "trusted.overlay.opaque", &mut v[..]).unwrap();
    assert_eq!(&v[..n], b"y");
    assert!(
        rustix::fs::lgetxattr(l1.join("bin"), "trusted.overlay.opaque", &mut v[..]).is_err(),
        "trusted.overlay.* from a tar must not be applied"
    );

    let m = OverlayMount::new(&[l3, l2, l1], &t.path().join("merged"));
    pretty_eq(&listing(&m.target), &expected());
    drop(m);

    // Cached now: a second ensure does not even open the layer.
    let again = snaps
        .ensure(&chain[2], &diff_ids[2], || panic!("must not reopen"))
        .unwrap();
    assert_eq!(&again, l3);
    let list = snaps.list().unwrap();
    assert_eq!(list.len(), 3);
    assert!(list.iter().all(|s| s.size > 0));
}

fn pretty_eq(got: &[String], want: &[String]) {
    if got != want {
        let mut msg = String::from("tree differs\n--- got\n");
        for l in got {
            let _ = writeln!(msg, "{}{l}", if want.contains(l) { "  " } else { "! " });
        }
        msg += "--- want\n";
        for l in want {
            let _ = writeln!(msg, "{}{l}", if got.contains(l) { "  " } else { "! " });
        }
        panic!("{msg}");
    }
}
