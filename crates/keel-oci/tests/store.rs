//! The image store as a library: commit, resolve, unpack into snapshots,
//! garbage collection of blobs and snapshots.

use std::io::Write;

use keel_oci::{ImageStore, Reference};

fn busybox_layer() -> Vec<u8> {
    let mut v = Vec::new();
    keel_oci::busybox::build_rootfs_tar(&mut v).unwrap();
    v
}

#[test]
fn import_unpack_and_collect() {
    let root = tempfile::tempdir().unwrap();
    let store = ImageStore::open(root.path()).unwrap();
    let name = Reference::parse("busybox").unwrap();
    let imported =
        keel_oci::import::import_tar(&store, &busybox_layer()[..], "test", Some(&name), &[])
            .unwrap();
    let img = store.resolve("busybox").unwrap();
    assert_eq!(img.id(), &imported.id);
    assert_eq!(
        store.resolve(&imported.id.short()[..6]).unwrap().id(),
        &imported.id
    );
    assert_eq!(
        store.resolve(imported.id.as_str()).unwrap().id(),
        &imported.id
    );

    let dirs = store.unpack(&img).unwrap();
    assert_eq!(dirs.len(), 1);
    assert!(dirs[0].join("bin/busybox").is_file());
    assert!(dirs[0].join("bin/sh").is_symlink());
    // Unpacking again reuses the snapshot.
    assert_eq!(store.unpack(&img).unwrap(), dirs);
    assert_eq!(store.snapshots().unwrap().list().unwrap().len(), 1);

    // While the image is tagged, nothing is collected.
    let r = store.collect_garbage().unwrap();
    assert_eq!((r.blobs_deleted, r.snapshots_deleted), (0, 0));

    store.remove("busybox", false).unwrap();
    assert!(store.snapshots().unwrap().list().unwrap().is_empty());
    assert!(store.blobs().list().unwrap().is_empty());
    assert!(!dirs[0].exists());
}

#[test]
fn a_blob_corrupted_on_disk_is_never_unpacked() {
    let root = tempfile::tempdir().unwrap();
    let store = ImageStore::open(root.path()).unwrap();
    let name = Reference::parse("bb:1").unwrap();
    keel_oci::import::import_tar(&store, &busybox_layer()[..], "test", Some(&name), &[]).unwrap();
    let img = store.resolve("bb:1").unwrap();
    let layer = &img.layer_digests().unwrap()[0];
    let path = store.blobs().path(layer);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .write_all(&bytes)
        .unwrap();
    assert!(store.unpack(&img).is_err());
    assert!(store.snapshots().unwrap().list().unwrap().is_empty());
}

#[test]
fn commit_refuses_missing_blobs_and_layer_count_mismatch() {
    let root = tempfile::tempdir().unwrap();
    let store = ImageStore::open(root.path()).unwrap();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let c = store.blobs().put_bytes(config).unwrap();
    let missing = keel_oci::Digest::of(b"not stored");
    let m = keel_oci::archive::build_manifest(
        (&c.digest, c.size),
        &[(missing, 10, keel_oci::layer::Compression::None)],
    );
    let t = Reference::parse("x:1").unwrap();
    assert!(matches!(
        store.commit(&m, std::slice::from_ref(&t), None),
        Err(keel_oci::OciError::BlobMissing(_))
    ));
    let l = store.blobs().put_bytes(b"layer").unwrap();
    let m = keel_oci::archive::build_manifest(
        (&c.digest, c.size),
        &[(l.digest, l.size, keel_oci::layer::Compression::None)],
    );
    assert!(matches!(
        store.commit(&m, &[t], None),
        Err(keel_oci::OciError::Malformed { .. })
    ));
    assert!(store.list().unwrap().is_empty());
}
