//! The container root: overlayfs with the image's layer snapshots as lower
//! directories and one upper/work pair per container (kept until `rm`).

use std::fs;
use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, UnmountFlags, mount, unmount};

use crate::error::{Result, RuntimeError, write_err};

/// Whether something is mounted exactly at `path`.
pub fn is_mounted(path: &Path) -> bool {
    use rustix::fs::{AtFlags, CWD, StatxAttributes, StatxFlags, statx};
    // One statx, not the whole mount table (~45 us, twice per start): the
    // kernel says whether the path is the root of a mount (Linux 5.8+).
    if let Ok(st) = statx(
        CWD,
        path,
        AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::BASIC_STATS,
    ) && st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT)
    {
        return st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT);
    }
    mount_points().iter().any(|m| m == path)
}

/// Every mount point of this mount namespace (/proc/self/mountinfo).
fn mount_points() -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape_mountinfo(m)))
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as octal.
pub(crate) fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Every mount point at or below `dir` (deepest first), for cleanup checks.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = mount_points()
        .into_iter()
        .filter(|m| m.starts_with(dir))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v
}

/// Mounts the overlay at `<dir>/merged` unless it already is; returns the path.
/// `volatile` (for `--rm` containers, whose changes nobody keeps, as podman
/// does) skips overlayfs's syncs, which otherwise make the unmount wait for
/// the upper directory's filesystem.
pub fn mount_overlay(dir: &Path, lowerdirs: &[PathBuf], volatile: bool) -> Result<PathBuf> {
    let merged = dir.join("merged");
    let upper = dir.join("upper");
    let work = dir.join("work");
    for d in [&merged, &upper, &work] {
        fs::create_dir_all(d).map_err(write_err(d))?;
    }
    if is_mounted(&merged) {
        return Ok(merged);
    }
    let lower: Vec<String> = lowerdirs
        .iter()
        .rev()
        .map(|p| p.to_string_lossy().replace(':', "\\:"))
        .collect();
    // redirect_dir and metacopy off: the upper dir must be a faithful diff
    // (keel commit and keel build turn it into a layer), as with Docker's overlay2.
    let mut data = format!(
        "lowerdir={},upperdir={},workdir={},redirect_dir=off,metacopy=off",
        lower.join(":"),
        upper.display(),
        work.display()
    );
    if volatile {
        data.push_str(",volatile");
    }
    let data = std::ffi::CString::new(data).map_err(|e| RuntimeError::Mount {
        what: "the overlay root",
        path: merged.clone(),
        source: std::io::Error::other(e),
    })?;
    mount(
        "overlay",
        &merged,
        "overlay",
        MountFlags::empty(),
        Some(data.as_c_str()),
    )
    .map_err(|e| RuntimeError::Mount {
        what: "the overlay root",
        path: merged.clone(),
        source: e.into(),
    })?;
    Ok(merged)
}

/// Unmounts `path` if mounted (lazily, so a process still holding it cannot block rm).
pub fn unmount_if_mounted(path: &Path) -> Result<()> {
    if !is_mounted(path) {
        return Ok(());
    }
    match unmount(path, UnmountFlags::DETACH) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOENT => Ok(()),
        Err(e) => Err(RuntimeError::Unmount {
            path: path.to_path_buf(),
            source: e.into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_mounted_agrees_with_the_mount_table() {
        let dir = tempfile::tempdir().unwrap();
        let (dir_target, file_target) = (dir.path().join("d"), dir.path().join("f"));
        fs::create_dir(&dir_target).unwrap();
        fs::write(&file_target, "").unwrap();
        assert!(is_mounted(Path::new("/proc")));
        for p in [&dir_target, &file_target, &dir.path().join("missing")] {
            assert!(!is_mounted(p), "{}", p.display());
        }
        // A directory and a file (as a network namespace's bind mount is).
        // Tests run as root: without it this is a failure, not a pass.
        assert!(
            rustix::process::geteuid().is_root(),
            "this test mounts: run it as root"
        );
        let bind = |src: &Path, dst: &Path| {
            rustix::mount::mount_bind(src, dst).unwrap();
        };
        bind(Path::new("/proc"), &dir_target);
        bind(Path::new("/proc/self/ns/net"), &file_target);
        for p in [&dir_target, &file_target] {
            assert!(is_mounted(p), "{}", p.display());
            assert!(mount_points().iter().any(|m| m == p));
        }
        for p in [&dir_target, &file_target] {
            unmount_if_mounted(p).unwrap();
            assert!(!is_mounted(p), "{}", p.display());
        }
    }
}
