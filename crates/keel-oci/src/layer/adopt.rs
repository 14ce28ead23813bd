//! Preparing a tree to become its own layer's snapshot (see
//! [`super::Snapshots::adopt`]): after [`prepare_snapshot`], the tree is
//! exactly what unpacking the tar [`super::diff_to_layer`] makes of it gives
//! (in overlay whiteout mode), so the build need not unpack that layer again.
//!
//! What the diff leaves out is removed here: sockets, overlayfs bookkeeping
//! xattrs (`origin`, `impure`, `uuid`, …; only the opaque marker is a layer
//! fact, and it is stored as `trusted.overlay.opaque` the way unpacking
//! stores it), `SELinux` labels and xattrs whose names are not UTF-8. Times
//! become what the tar keeps: whole-second mtimes (negative ones 0), with
//! atime = mtime. None of this changes the layer's bytes: the diff skips or
//! rounds the same things.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use rustix::fs::{AtFlags, CWD, FileType, Gid, Mode, Timespec, Timestamps, Uid, XattrFlags};

use super::diff::{carries_xattr, xattr_names};
use super::{LayerError, OVERLAY_OPAQUE_USER_XATTR, OVERLAY_OPAQUE_XATTR, WHITEOUT_PREFIX};

/// Prepares `dir` (an unmounted overlay upper dir or a plain tree that no
/// one else writes to) to be adopted as the snapshot of the layer diffed
/// from it next. Returns `Ok(false)` when the tree holds something its layer
/// would unpack differently (a name starting with `.wh.` that the diff would
/// turn into a whiteout): then it must not be adopted. The tree's root
/// loses its xattrs (the layer has no root entry).
pub fn prepare_snapshot(dir: &Path) -> Result<bool, LayerError> {
    for name in xattr_names(dir).map_err(meta_err(dir))? {
        remove_xattr(dir, &name)?;
    }
    walk(dir)
}

fn meta_err(path: &Path) -> impl FnOnce(io::Error) -> LayerError + '_ {
    move |source| LayerError::Metadata {
        entry: path.display().to_string(),
        source,
    }
}

fn walk(dir: &Path) -> Result<bool, LayerError> {
    let entries = fs::read_dir(dir).map_err(meta_err(dir))?;
    for e in entries {
        let e = e.map_err(meta_err(dir))?;
        let path = e.path();
        let md = fs::symlink_metadata(&path).map_err(meta_err(&path))?;
        let ft = md.file_type();
        if e.file_name()
            .as_bytes()
            .starts_with(WHITEOUT_PREFIX.as_bytes())
        {
            return Ok(false);
        }
        if ft.is_socket() {
            fs::remove_file(&path).map_err(meta_err(&path))?;
            continue;
        }
        if ft.is_char_device() && md.rdev() == 0 && md.nlink() > 1 {
            // overlayfs links whiteouts to one shared inode; unpacking makes
            // each its own.
            fresh_whiteout(&path, &md)?;
        }
        fix_xattrs(&path, ft.is_dir())?;
        if ft.is_dir() && !walk(&path)? {
            return Ok(false);
        }
        // After the children: removing a socket changed the dir's mtime.
        let md = fs::symlink_metadata(&path).map_err(meta_err(&path))?;
        let t = Timespec {
            tv_sec: md.mtime().max(0),
            tv_nsec: 0,
        };
        let times = Timestamps {
            last_access: t,
            last_modification: t,
        };
        rustix::fs::utimensat(CWD, &path, &times, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| meta_err(&path)(e.into()))?;
    }
    Ok(true)
}

fn fresh_whiteout(path: &Path, md: &fs::Metadata) -> Result<(), LayerError> {
    let err = |e: rustix::io::Errno| meta_err(path)(e.into());
    fs::remove_file(path).map_err(meta_err(path))?;
    rustix::fs::mknodat(
        CWD,
        path,
        FileType::CharacterDevice,
        Mode::empty(),
        rustix::fs::makedev(0, 0),
    )
    .map_err(err)?;
    rustix::fs::chownat(
        CWD,
        path,
        Some(Uid::from_raw(md.uid())),
        Some(Gid::from_raw(md.gid())),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(err)?;
    let t = Timespec {
        tv_sec: md.mtime(),
        tv_nsec: md.mtime_nsec(),
    };
    let times = Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(err)
}

fn remove_xattr(path: &Path, name: &[u8]) -> Result<(), LayerError> {
    match rustix::fs::lremovexattr(path, OsStr::from_bytes(name)) {
        Ok(()) | Err(rustix::io::Errno::NODATA) => Ok(()),
        Err(e) => Err(meta_err(path)(e.into())),
    }
}

fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut v = [0u8; 8];
    match rustix::fs::lgetxattr(path, name, &mut v[..]) {
        Ok(n) => Some(v[..n].to_vec()),
        Err(_) => None,
    }
}

/// Keeps the xattrs the diff carries, and the opaque marker in the form
/// unpacking writes it.
fn fix_xattrs(path: &Path, is_dir: bool) -> Result<(), LayerError> {
    for name in xattr_names(path).map_err(meta_err(path))? {
        let Ok(text) = std::str::from_utf8(&name) else {
            remove_xattr(path, &name)?;
            continue;
        };
        // The diff's own rule: what it carries stays, the rest goes.
        if carries_xattr(path, text)? {
            continue;
        }
        let opaque = is_dir
            && (text == OVERLAY_OPAQUE_XATTR || text == OVERLAY_OPAQUE_USER_XATTR)
            && get_xattr(path, text).is_some_and(|v| v == b"y");
        if opaque && text == OVERLAY_OPAQUE_XATTR {
            continue;
        }
        if opaque {
            rustix::fs::lsetxattr(path, OVERLAY_OPAQUE_XATTR, b"y", XattrFlags::empty())
                .map_err(|e| meta_err(path)(e.into()))?;
        }
        remove_xattr(path, &name)?;
    }
    Ok(())
}
