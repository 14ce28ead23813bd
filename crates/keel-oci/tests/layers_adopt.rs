//! Adopted snapshots and unsynced-snapshot markers.
//!
//! `ImageStore::layer_from_dir` turns an overlay upper dir into a layer blob and
//! moves the dir itself into the snapshot cache. The invariant this relies
//! on: the adopted dir is exactly what unpacking that blob gives (paths,
//! types, modes, owners, whole-second mtimes, contents, link targets, device
//! numbers, xattrs, hardlink groups). The upper dir here comes from a real
//! overlayfs mount (needs root) with copy-ups, whiteouts, an opaque dir,
//! hardlinks, a socket and odd metadata.
//!
//! Markers: a snapshot written during this boot carries `.unsynced-<hex>`
//! naming the boot; one naming another boot (a crash may have lost its
//! content) is removed and never used; `seal` syncs and drops the markers.

mod layers_util;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;

use keel_oci::ImageStore;
use keel_oci::layer::Snapshots;
use layers_util::{OverlayMount, listing, sha256_digest};

fn run(cmd: &str, args: &[&str]) {
    let st = Command::new(cmd).args(args).status().expect(cmd);
    assert!(st.success(), "{cmd} {args:?}: {st}");
}

fn set_xattr(p: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(p, name, value, rustix::fs::XattrFlags::empty()).unwrap();
}

fn mount_rw(lower: &Path, upper: &Path, work: &Path, merged: &Path) -> OverlayMount {
    for d in [upper, work, merged] {
        fs::create_dir_all(d).unwrap();
    }
    // As keel mounts build roots: the upper dir must be a faithful diff.
    run(
        "mount",
        &[
            "-t",
            "overlay",
            "overlay",
            "-o",
            &format!(
                "lowerdir={},upperdir={},workdir={},redirect_dir=off,metacopy=off",
                lower.display(),
                upper.display(),
                work.display()
            ),
            &merged.display().to_string(),
        ],
    );
    OverlayMount {
        target: merged.to_path_buf(),
    }
}

/// A lower tree, then changes of every kind made through the overlay.
fn make_upper(t: &Path) -> std::path::PathBuf {
    let (lower, upper, work, merged) = (
        t.join("lower"),
        t.join("upper"),
        t.join("work"),
        t.join("merged"),
    );
    fs::create_dir_all(lower.join("d/sub")).unwrap();
    fs::write(lower.join("d/sub/old"), "old").unwrap();
    fs::write(lower.join("gone"), "bye").unwrap();
    fs::write(lower.join("grow"), "x").unwrap();
    fs::write(lower.join("h1"), "linked").unwrap();
    fs::hard_link(lower.join("h1"), lower.join("h2")).unwrap();
    fs::create_dir_all(lower.join("etc")).unwrap();
    fs::write(lower.join("etc/conf"), "a=1\n").unwrap();
    {
        let _m = mount_rw(&lower, &upper, &work, &merged);
        let m = &merged;
        // Copy-ups (overlayfs records origin/impure xattrs for these).
        fs::OpenOptions::new()
            .append(true)
            .open(m.join("grow"))
            .unwrap()
            .write_all(b"yz")
            .unwrap();
        fs::set_permissions(m.join("etc/conf"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(m.join("h1"), "relinked").unwrap();
        // A deletion and an opaque directory.
        fs::remove_file(m.join("gone")).unwrap();
        fs::remove_dir_all(m.join("d")).unwrap();
        fs::create_dir_all(m.join("d/new")).unwrap();
        fs::write(m.join("d/new/f"), "fresh").unwrap();
        // New entries of every type, with odd metadata.
        fs::create_dir_all(m.join("app/bin")).unwrap();
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        fs::write(m.join("app/big"), &big).unwrap();
        fs::write(m.join("app/bin/tool"), "#!/bin/sh\n").unwrap();
        // chown first: it clears setuid.
        std::os::unix::fs::lchown(m.join("app/bin/tool"), Some(1000), Some(1000)).unwrap();
        fs::set_permissions(m.join("app/bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
        fs::hard_link(m.join("app/big"), m.join("app/big-link")).unwrap();
        symlink("../etc/conf", m.join("app/conf")).unwrap();
        run("mkfifo", &[&m.join("app/fifo").display().to_string()]);
        run(
            "mknod",
            &[&m.join("app/null").display().to_string(), "c", "1", "3"],
        );
        set_xattr(&m.join("app/big"), "user.note", b"kept");
        fs::create_dir(m.join("app/sticky")).unwrap();
        fs::set_permissions(m.join("app/sticky"), fs::Permissions::from_mode(0o1777)).unwrap();
        // A socket: layers cannot hold one, so the snapshot must not either.
        let _sock = std::os::unix::net::UnixListener::bind(m.join("app/sock")).unwrap();
    }
    upper
}

fn marker(snaps: &Snapshots, chain: &str) -> std::path::PathBuf {
    snaps.dir().join(format!(
        ".unsynced-{}",
        chain.strip_prefix("sha256:").unwrap()
    ))
}

fn blob_opener(
    store: &ImageStore,
    digest: &keel_oci::Digest,
) -> impl FnOnce() -> std::io::Result<Box<dyn Read>> {
    let r = store.blobs().open(digest).unwrap();
    move || Ok(Box::new(r) as Box<dyn Read>)
}

#[test]
fn an_adopted_upper_dir_equals_its_unpacked_layer() {
    let t = tempfile::tempdir().unwrap();
    let upper = make_upper(t.path());
    // The upper dir really carries overlay state the layer must not keep.
    let raw = listing(&upper);
    assert!(
        raw.iter()
            .any(|l| l.contains("xattr:trusted.overlay.")
                && !l.contains("xattr:trusted.overlay.opaque")),
        "no overlay bookkeeping xattrs to strip?\n{raw:#?}"
    );
    assert!(raw.iter().any(|l| l.starts_with("app/sock ")), "{raw:#?}");

    let store = ImageStore::open(&t.path().join("root")).unwrap();
    let parent = vec![sha256_digest(b"a parent layer")];
    let made = store.layer_from_dir(&upper, &parent).unwrap().unwrap();
    let adopted = made.snapshot.clone().expect("adopted");
    let put = made.blob.commit_checked().unwrap();
    assert!(!upper.exists(), "the upper dir was moved, not copied");
    let mut ids = parent.clone();
    ids.push(put.digest.to_string());
    let chain = Snapshots::chain_ids(&ids).pop().unwrap();
    let snaps = store.snapshots().unwrap();
    assert_eq!(snaps.get(&chain).unwrap(), Some(adopted.clone()));

    // Unpack the blob the usual way, elsewhere, and compare everything.
    let other = Snapshots::new(t.path().join("other")).unwrap();
    let diff_id = put.digest.to_string();
    let unpacked = other
        .ensure(&chain, &diff_id, blob_opener(&store, &put.digest))
        .unwrap();
    let (got, want) = (listing(&adopted), listing(&unpacked));
    assert_eq!(
        got, want,
        "adopted snapshot differs from the unpacked layer"
    );
    // The comparison covered the interesting cases.
    for needle in [
        "gone char 0:0",
        "d/ dir",
        "xattr:trusted.overlay.opaque=\"y\"",
        "app/bin/tool file \"#!/bin/sh\\n\" mode=4755 owner=1000:1000",
        "app/big-link file len=300000",
        "inode-of=app/big",
        "xattr:user.note=\"kept\"",
        "app/fifo fifo",
        "app/null char 1:3",
        "app/sticky/ dir mode=1777",
        "grow file \"xyz\"",
        "h1 file \"relinked\"",
    ] {
        assert!(
            want.iter().any(|l| l.contains(needle)),
            "{needle:?} not in\n{want:#?}"
        );
    }
    assert!(!want.iter().any(|l| l.contains("sock")), "{want:#?}");
    // Root of both: a plain 0755 directory.
    for root in [&adopted, &unpacked] {
        let md = fs::metadata(root).unwrap();
        assert_eq!(md.permissions().mode() & 0o7777, 0o755);
    }
}

#[test]
fn a_tree_with_whiteout_like_names_is_not_adopted() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("tree");
    fs::create_dir_all(dir.join("a")).unwrap();
    // A real file named like a whiteout: unpacking its layer would delete
    // `x` instead of creating this file, so the tree is not that layer.
    fs::write(dir.join("a/.wh.x"), "not a whiteout").unwrap();
    let store = ImageStore::open(&t.path().join("root")).unwrap();
    let made = store.layer_from_dir(&dir, &[]).unwrap().unwrap();
    assert!(made.snapshot.is_none());
    assert!(dir.join("a/.wh.x").exists(), "left where it was");
    let chain = made.blob.digest().to_string();
    assert!(store.snapshots().unwrap().get(&chain).unwrap().is_none());
}

#[test]
fn an_empty_dir_makes_no_layer() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("empty");
    fs::create_dir_all(&dir).unwrap();
    let store = ImageStore::open(&t.path().join("root")).unwrap();
    assert!(store.layer_from_dir(&dir, &[]).unwrap().is_none());
    assert!(dir.exists());
}

#[test]
fn a_snapshot_unsynced_in_another_boot_is_never_used() {
    let t = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&t.path().join("root")).unwrap();
    let dir = t.path().join("tree");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("f"), "content").unwrap();
    let made = store.layer_from_dir(&dir, &[]).unwrap().unwrap();
    let snap = made.snapshot.unwrap();
    let put = made.blob.commit_checked().unwrap();
    let chain = put.digest.to_string();
    let snaps = store.snapshots().unwrap();
    let boot = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    assert_eq!(
        fs::read_link(marker(&snaps, &chain)).unwrap(),
        Path::new(boot.trim())
    );
    assert_eq!(snaps.get(&chain).unwrap(), Some(snap.clone()));

    // As after a power loss: the marker names an earlier boot, and the
    // content did not make it to the disk.
    fs::remove_file(marker(&snaps, &chain)).unwrap();
    symlink(
        "00000000-0000-0000-0000-000000000000",
        marker(&snaps, &chain),
    )
    .unwrap();
    fs::write(snap.join("f"), "").unwrap();
    assert_eq!(snaps.get(&chain).unwrap(), None);
    assert!(!snap.exists());
    assert!(!marker(&snaps, &chain).exists());

    // The same stale state, met by ensure: unpacked again from the blob.
    let again = snaps
        .ensure(&chain, &chain, blob_opener(&store, &put.digest))
        .unwrap();
    assert_eq!(fs::read_to_string(again.join("f")).unwrap(), "content");
    fs::remove_file(marker(&snaps, &chain)).unwrap();
    symlink("not-this-boot", marker(&snaps, &chain)).unwrap();
    fs::write(again.join("f"), "").unwrap();
    let third = snaps
        .ensure(&chain, &chain, blob_opener(&store, &put.digest))
        .unwrap();
    assert_eq!(fs::read_to_string(third.join("f")).unwrap(), "content");

    // Sealing syncs and drops the marker: the snapshot is then trusted in
    // any boot.
    assert_eq!(snaps.seal().unwrap(), 1);
    assert!(fs::symlink_metadata(marker(&snaps, &chain)).is_err());
    assert_eq!(snaps.get(&chain).unwrap(), Some(third));
    assert_eq!(snaps.seal().unwrap(), 0);
}
