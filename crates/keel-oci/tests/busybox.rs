//! The busybox base image: built from Debian's busybox-static, it runs under
//! chroot (as root), has its applet links and accounts, and its layer tar is
//! deterministic and unpacks to the same tree.

mod layers_util;

use std::fs;
use std::io::Cursor;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use keel_oci::busybox::{self, BusyboxError};
use keel_oci::layer::{WhiteoutMode, apply_layer};
use layers_util::listing;

fn chroot_sh(root: &Path, script: &str) -> String {
    let out = Command::new("chroot")
        .arg(root)
        .args(["/bin/sh", "-c", script])
        .env_clear()
        .env("PATH", "/bin:/sbin:/usr/bin:/usr/sbin")
        .output()
        .expect("running chroot");
    assert!(
        out.status.success(),
        "chroot {script:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn rootfs_runs_under_chroot() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("rootfs");
    let stats = busybox::build_rootfs(&root).unwrap();

    let list = Command::new(busybox::BUSYBOX)
        .arg("--list-full")
        .output()
        .unwrap();
    let applets: Vec<String> = String::from_utf8(list.stdout)
        .unwrap()
        .lines()
        // The binary itself is listed too (a file, not a link), and
        // `linuxrc`, an initramfs init left out like in the official image.
        .filter(|l| *l != "bin/busybox" && *l != "linuxrc")
        .map(str::to_owned)
        .collect();
    assert!(applets.len() > 100);
    assert_eq!(stats.applets, applets.len());
    for a in &applets {
        assert_eq!(
            fs::read_link(root.join(a)).unwrap(),
            Path::new("/bin/busybox"),
            "{a}"
        );
    }
    for a in ["bin/sh", "bin/ls", "bin/cat"] {
        assert!(applets.iter().any(|x| x == a), "{a} not an applet");
    }

    assert_eq!(chroot_sh(&root, "echo hi"), "hi\n");
    // /etc/passwd and /etc/group are what `id` resolves names with.
    assert_eq!(chroot_sh(&root, "id -un; id -gn"), "root\nroot\n");
    assert_eq!(
        chroot_sh(&root, "ls /"),
        "bin\ndev\netc\nhome\nproc\nroot\nsbin\nsys\ntmp\nusr\nvar\n"
    );
    assert_eq!(chroot_sh(&root, "echo x > /tmp/f && cat /tmp/f"), "x\n");
    let passwd = fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(passwd.starts_with("root:x:0:0:root:/root:/bin/sh\n"));
    assert!(passwd.contains("nobody:x:65534:65534:"));
    assert!(
        fs::read_to_string(root.join("etc/group"))
            .unwrap()
            .contains("root:x:0:")
    );
    let mode = |p: &str| {
        fs::symlink_metadata(root.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("tmp"), 0o1777);
    assert_eq!(mode("root"), 0o700);
    assert_eq!(mode("bin/busybox"), 0o755);
    assert!(!root.join("etc/hostname").exists());
}

#[test]
fn rootfs_tar_is_deterministic_and_unpacks_to_the_same_tree() {
    let mut a = Vec::new();
    let mut b = Vec::new();
    let stats = busybox::build_rootfs_tar(&mut a).unwrap();
    busybox::build_rootfs_tar(&mut b).unwrap();
    assert!(a == b, "two busybox layers differ");
    assert!(stats.bytes >= fs::metadata(busybox::BUSYBOX).unwrap().len());

    let t = tempfile::tempdir().unwrap();
    let built = t.path().join("built");
    busybox::build_rootfs(&built).unwrap();
    let unpacked = t.path().join("unpacked");
    fs::create_dir(&unpacked).unwrap();
    apply_layer(Cursor::new(&a), &unpacked, WhiteoutMode::Flat).unwrap();
    assert_eq!(listing(&unpacked), listing(&built));
    assert_eq!(chroot_sh(&unpacked, "echo hi"), "hi\n");
}

#[test]
fn missing_or_dynamic_busybox_is_a_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let err = busybox::build_rootfs_from(Path::new("/nonexistent/busybox"), t.path()).unwrap_err();
    assert!(matches!(err, BusyboxError::Missing { .. }), "{err:?}");
    assert!(
        err.to_string().contains("busybox-static is not installed"),
        "{err}"
    );
    assert_eq!(err.hint(), Some("apt-get install busybox-static"));

    let err = busybox::build_rootfs_from(Path::new("/bin/ls"), t.path()).unwrap_err();
    assert!(matches!(err, BusyboxError::NotStatic { .. }), "{err:?}");
    assert_eq!(err.hint(), Some("apt-get install busybox-static"));
    // Nothing was built.
    assert_eq!(fs::read_dir(t.path()).unwrap().count(), 0);
}
