//! Layers written by a real peer: podman commits a container's changes
//! (deletions, an opaque directory, new files) on top of our busybox image;
//! applying its layers (flat, and as overlay snapshots whose diff ids podman
//! computed) gives the same tree as `podman export` of the container.
//! Needs root and podman (in `KEEL_PACKAGES`).

mod layers_util;

use std::fs;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::process::Command;

use keel_oci::busybox;
use keel_oci::layer::{Snapshots, WhiteoutMode, apply_layer, decompressed};
use layers_util::{OverlayMount, listing};

/// Podman with a throw-away store of its own, never the host's (the same
/// set-up as `keel_podman_setup` in scripts/lib.sh: runc, cgroupfs, file
/// events, ulimits within this host's limits, its own tmpdir). Dropping it
/// removes everything the test made.
struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    fn new() -> Podman {
        let dir = tempfile::Builder::new()
            .prefix("keel-podman-")
            .tempdir()
            .unwrap();
        fs::write(
            dir.path().join("containers.conf"),
            "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
        )
        .unwrap();
        Podman { dir }
    }

    fn cmd(&self) -> Command {
        let d = self.dir.path();
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", d.join("containers.conf"))
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("run"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .args(["--storage-driver", "overlay"]);
        c
    }

    fn run(&self, args: &[&str]) -> Vec<u8> {
        let out = self.cmd().args(args).output().expect("running podman");
        assert!(
            out.status.success(),
            "podman {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Overlay mounts of the store must go before the directory can.
        let _ = self.cmd().args(["system", "reset", "-f"]).output();
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.dir.path().join("root"))
            .output();
    }
}

fn blob(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

#[test]
fn podman_committed_layers_apply_like_podman_export() {
    let store = Podman::new();
    let podman = |args: &[&str]| store.run(args);
    let base = "localhost/keel-layers-test:base".to_string();
    let changed = "localhost/keel-layers-test:changed".to_string();
    let cname = "keel-layers-test".to_string();
    let t = tempfile::tempdir().unwrap();

    let base_tar = t.path().join("busybox.tar");
    busybox::build_rootfs_tar(fs::File::create(&base_tar).unwrap()).unwrap();
    podman(&["import", "-q", base_tar.to_str().unwrap(), &base]);
    // Deletions (file and dir), an opaque dir (removed and re-created),
    // new and changed files, a new symlink and hardlink.
    podman(&[
        "run",
        "--name",
        &cname,
        "--network",
        "none",
        // podman's default nofile/nproc limits may exceed what this host
        // allows; small explicit ones always fit.
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        &base,
        "/bin/sh",
        "-c",
        "set -e; rm /etc/shadow; rm -rf /var/spool; \
         rm -rf /usr/sbin && mkdir /usr/sbin && echo only > /usr/sbin/only; \
         mkdir -p /data/deep && echo hi > /data/deep/f && ln /data/deep/f /data/hard; \
         ln -s deep/f /data/link; echo changed >> /etc/passwd; chmod 4755 /data/deep/f",
    ]);
    podman(&["commit", "-q", &cname, &changed]);
    let oci = t.path().join("oci");
    podman(&[
        "save",
        "--format",
        "oci-dir",
        "-o",
        oci.to_str().unwrap(),
        &changed,
    ]);

    let index = json(&oci.join("index.json"));
    let manifest = json(&blob(
        &oci,
        index["manifests"][0]["digest"].as_str().unwrap(),
    ));
    let config = json(&blob(&oci, manifest["config"]["digest"].as_str().unwrap()));
    let layers: Vec<PathBuf> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| blob(&oci, l["digest"].as_str().unwrap()))
        .collect();
    let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(layers.len(), 2);
    assert_eq!(diff_ids.len(), 2);
    // The committed layer really carries whiteouts and an opaque marker.
    let mut names = Vec::new();
    let mut ar = tar::Archive::new(decompressed(fs::File::open(&layers[1]).unwrap()).unwrap());
    for e in ar.entries().unwrap() {
        names.push(String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned());
    }
    for want in ["etc/.wh.shadow", "var/.wh.spool", "usr/sbin/.wh..wh..opq"] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }

    // The reference: podman's own flattening of the container.
    let export = podman(&["export", &cname]);
    let want_dir = t.path().join("export");
    fs::create_dir(&want_dir).unwrap();
    apply_layer(Cursor::new(export), &want_dir, WhiteoutMode::Flat).unwrap();
    // Everything, runtime-made files included: they are in the layer too.
    let want = listing(&want_dir);
    assert!(want.iter().any(|l| l.starts_with("usr/sbin/only ")));
    assert!(!want.iter().any(|l| l.starts_with("etc/shadow ")));

    // Flat: both layers into one dir.
    let flat = t.path().join("flat");
    fs::create_dir(&flat).unwrap();
    for l in &layers {
        let r = decompressed(fs::File::open(l).unwrap()).unwrap();
        apply_layer(r, &flat, WhiteoutMode::Flat).unwrap();
    }
    assert_eq!(listing(&flat), want);

    // Snapshots, checked against podman's diff ids, merged by overlayfs.
    let snaps = Snapshots::new(t.path().join("snapshots")).unwrap();
    let dirs = snaps
        .ensure_chain(&diff_ids, |i| {
            Ok(Box::new(fs::File::open(&layers[i])?) as Box<dyn Read>)
        })
        .unwrap();
    let lowers: Vec<&Path> = dirs.iter().rev().map(PathBuf::as_path).collect();
    let m = OverlayMount::new(&lowers, &t.path().join("merged"));
    assert_eq!(listing(&m.target), want);
}
