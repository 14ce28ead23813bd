//! Compressed and broken layers, and the snapshot cache: gzip, zstd and plain
//! layers apply alike; truncated or corrupted streams fail cleanly; a diff id
//! mismatch leaves no snapshot behind; concurrent `ensure` calls of one chain
//! yield one complete snapshot.

mod layers_util;

use std::fs;
use std::io::{self, Cursor, Read};
use std::sync::{Arc, Barrier};

use keel_oci::layer::{
    Compression, LayerError, Snapshots, WhiteoutMode, apply_layer, decompressed,
};
use layers_util::{TarBuilder, gzip, listing, sha256_digest, zstd};

fn sample_layer() -> Vec<u8> {
    let mut t = TarBuilder::new();
    t.dir("etc/", 10)
        .file("etc/hosts", b"127.0.0.1 localhost\n", 11);
    // Enough content that a cut in the middle lands inside file data.
    let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 256) as u8).collect();
    t.file("big", &big, 12).symlink("hosts", "etc/hosts", 13);
    t.dir("many/", 14);
    for i in 0..50 {
        t.file(&format!("many/f{i}"), format!("{i}").as_bytes(), 14);
    }
    t.finish()
}

fn apply_blob(blob: Vec<u8>) -> Result<Vec<String>, LayerError> {
    let t = tempfile::tempdir().unwrap();
    let r = decompressed(Cursor::new(blob)).map_err(LayerError::Read)?;
    apply_layer(r, t.path(), WhiteoutMode::Flat)?;
    Ok(listing(t.path()))
}

fn opener(blob: Vec<u8>) -> impl FnOnce() -> io::Result<Box<dyn Read>> {
    move || Ok(Box::new(Cursor::new(blob)) as Box<dyn Read>)
}

#[test]
fn plain_gzip_and_zstd_layers_apply_alike() {
    let tar = sample_layer();
    let (gz, zs) = (gzip(&tar), zstd(&tar));
    assert_eq!(Compression::detect(&gz), Compression::Gzip);
    assert_eq!(Compression::detect(&zs), Compression::Zstd);
    assert_eq!(Compression::detect(&tar), Compression::None);
    let want = apply_blob(tar).unwrap();
    assert!(want.iter().any(|l| l.starts_with("etc/hosts file")));
    assert_eq!(apply_blob(gz).unwrap(), want);
    assert_eq!(apply_blob(zs).unwrap(), want);
}

#[test]
fn truncated_and_corrupted_streams_fail_cleanly() {
    let tar = sample_layer();
    let gz = gzip(&tar);
    let zs = zstd(&tar);
    // Truncated compressed streams, cut in the middle and near the end
    // (where only the trailer or tar padding is missing).
    for blob in [&gz, &zs] {
        for cut in [blob.len() / 2, blob.len() - 4] {
            let err = apply_blob(blob[..cut].to_vec()).unwrap_err();
            assert!(matches!(err, LayerError::Read(_)), "{err:?}");
        }
    }
    // A truncated plain tar (inside file data).
    let err = apply_blob(tar[..100_000].to_vec()).unwrap_err();
    assert!(matches!(err, LayerError::Read(_)), "{err:?}");
    // A corrupted header (checksum no longer matches).
    let mut bad = tar.clone();
    bad[512 + 10] ^= 0x55;
    let err = apply_blob(bad).unwrap_err();
    assert!(err.to_string().contains("reading layer tar"), "{err}");
    // Corrupted gzip payload: the CRC or the inflater notices.
    let mut bad = gz.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    bad[mid + 1] ^= 0xff;
    assert!(apply_blob(bad).is_err());
    // Garbage that merely starts like gzip.
    assert!(apply_blob(vec![0x1f, 0x8b, 0, 0, 0, 0]).is_err());
}

#[test]
fn ensure_rejects_a_diff_id_mismatch_and_leaves_nothing() {
    let t = tempfile::tempdir().unwrap();
    let snaps = Snapshots::new(t.path().join("snapshots")).unwrap();
    let tar = sample_layer();
    let wrong = sha256_digest(b"something else");
    let err = snaps
        .ensure(&wrong, &wrong, opener(gzip(&tar)))
        .unwrap_err();
    assert!(
        matches!(&err, LayerError::DiffIdMismatch { expected, actual }
            if *expected == wrong && *actual == sha256_digest(&tar)),
        "{err:?}"
    );
    assert_eq!(fs::read_dir(snaps.dir()).unwrap().count(), 0);

    // A layer that fails half-way (truncated) leaves nothing either.
    let id = sha256_digest(&tar);
    let gz = gzip(&tar);
    let err = snaps
        .ensure(&id, &id, opener(gz[..gz.len() / 2].to_vec()))
        .unwrap_err();
    assert!(matches!(err, LayerError::Read(_)), "{err:?}");
    assert_eq!(fs::read_dir(snaps.dir()).unwrap().count(), 0);

    // So does one that cannot be opened.
    let err = snaps
        .ensure(&id, &id, || Err(io::Error::other("blob gone")))
        .unwrap_err();
    assert!(matches!(err, LayerError::OpenLayer { .. }), "{err:?}");
    assert_eq!(fs::read_dir(snaps.dir()).unwrap().count(), 0);
    assert!(snaps.get(&id).unwrap().is_none());

    // Malformed ids are refused before anything is touched.
    assert!(matches!(
        snaps.ensure("sha256:../../x", &id, opener(tar.clone())),
        Err(LayerError::InvalidDigest(_))
    ));
    assert!(matches!(
        snaps.ensure(&id, "nope", opener(tar)),
        Err(LayerError::InvalidDigest(_))
    ));
}

#[test]
fn concurrent_ensure_of_one_chain_yields_one_complete_snapshot() {
    let t = tempfile::tempdir().unwrap();
    let snaps = Snapshots::new(t.path().join("snapshots")).unwrap();
    let tar = sample_layer();
    let id = sha256_digest(&tar);
    let want = {
        let d = tempfile::tempdir().unwrap();
        apply_layer(Cursor::new(&tar), d.path(), WhiteoutMode::Overlay).unwrap();
        listing(d.path())
    };
    let threads = 6;
    let barrier = Arc::new(Barrier::new(threads));
    let paths: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (snaps, tar, id, barrier) = (&snaps, &tar, &id, barrier.clone());
                s.spawn(move || {
                    barrier.wait();
                    snaps.ensure(id, id, opener(zstd(tar))).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(paths.iter().all(|p| *p == paths[0]));
    assert_eq!(listing(&paths[0]), want);
    // Exactly one snapshot (with its unsynced marker and the lock file); no
    // temporary dirs left over.
    let mut names: Vec<_> = fs::read_dir(snaps.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let hex = id.strip_prefix("sha256:").unwrap();
    assert_eq!(
        names,
        [
            ".lock".to_string(),
            format!(".unsynced-{hex}"),
            hex.to_string()
        ]
    );
}

#[test]
fn list_remove_and_stale_cleanup() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("snapshots");
    let snaps = Snapshots::new(dir.clone()).unwrap();
    let tar = sample_layer();
    let id = sha256_digest(&tar);
    let p = snaps.ensure(&id, &id, opener(tar.clone())).unwrap();

    let list = snaps.list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].chain_id, id);
    assert_eq!(list[0].path, p);
    assert!(list[0].size >= 200_000, "{}", list[0].size);

    // Leftovers of a dead process (pid beyond pid_max) are swept on open;
    // those of a live one (us) are left alone.
    let dead = dir.join(".tmp-99999999-0-abc");
    let live = dir.join(format!(".tmp-{}-0-abc", std::process::id()));
    fs::create_dir_all(dead.join("x")).unwrap();
    fs::create_dir_all(&live).unwrap();
    let snaps = Snapshots::new(dir.clone()).unwrap();
    assert!(!dead.exists());
    assert!(live.exists());
    fs::remove_dir(&live).unwrap();
    assert_eq!(snaps.list().unwrap().len(), 1);

    let freed = snaps.remove(&id).unwrap();
    assert_eq!(freed, list[0].size);
    assert!(!p.exists());
    assert!(snaps.list().unwrap().is_empty());
    // The marker went with it; only the lock file stays.
    let left: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, [".lock"]);
    assert!(matches!(
        snaps.remove(&id),
        Err(LayerError::NoSuchSnapshot(_))
    ));
}
