//! Applying a layer tar to a directory.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FileType, Gid, Mode, Timespec, Timestamps, Uid, XattrFlags};
use tar::EntryType;

use super::entries::{self, Header};
use super::safepath;
use super::{LayerError, OVERLAY_OPAQUE_XATTR, WHITEOUT_OPAQUE, WHITEOUT_PREFIX};

/// How whiteout entries are materialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// Per-layer snapshot dir for use as an overlayfs lowerdir: `.wh.x` becomes
    /// a 0/0 char device `x`, `.wh..wh..opq` sets xattr
    /// `trusted.overlay.opaque=y` on the dir.
    Overlay,
    /// Applying onto an existing merged tree (docker "naive" apply): `.wh.x`
    /// deletes x, opaque deletes the dir's existing children.
    Flat,
}

/// What one [`apply_layer`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Tar entries processed (whiteouts included).
    pub entries: u64,
    /// Bytes of regular-file content written.
    pub bytes: u64,
}

/// Applies an (uncompressed) layer tar into `dest` (an existing directory).
///
/// The whole stream is consumed, so a decompressor or digest check wrapped
/// around `tar` sees its end. Entries that would leave `dest` are refused
/// with an error naming them; nothing is written outside `dest`.
pub fn apply_layer<R: Read>(
    tar: R,
    dest: &Path,
    mode: WhiteoutMode,
) -> Result<ApplyStats, LayerError> {
    let mut ap = Applier {
        root: dest,
        mode,
        stats: ApplyStats::default(),
        dir_times: Vec::new(),
        unpacked: HashSet::new(),
        buf: vec![0; 256 * 1024],
        parent_cache: None,
    };
    entries::walk(tar, |entry, header| ap.entry(entry, header))?;
    ap.finish()?;
    Ok(ap.stats)
}

struct Applier<'a> {
    root: &'a Path,
    mode: WhiteoutMode,
    stats: ApplyStats,
    /// Directory times are set last: writing children changes them.
    dir_times: Vec<(PathBuf, Timestamps)>,
    /// Paths this layer created, kept by an opaque whiteout in Flat mode.
    unpacked: HashSet<PathBuf>,
    buf: Vec<u8>,
    /// The last parent resolved without following a symlink: consecutive
    /// entries mostly share it. Dropped whenever an entry changes a path at
    /// or above it, or a whiteout removes anything.
    parent_cache: Option<(Vec<OsString>, PathBuf)>,
}

/// Metadata of one entry, collected before its data is read.
pub(super) struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    times: Timestamps,
    xattrs: Vec<(OsString, Vec<u8>)>,
}

/// An entry's owner, mode, times and xattrs (PAX records first), as
/// unpacking sets them; [`super::check_layer`] parses them the same way.
pub(super) fn entry_meta<R: Read>(
    entry: &tar::Entry<'_, R>,
    pax: &[(Vec<u8>, Vec<u8>)],
    name: &str,
) -> Result<Meta, LayerError> {
    let h = entry.header();
    let bad = |source: io::Error| LayerError::Metadata {
        entry: name.to_owned(),
        source,
    };
    let mut uid = h.uid().map_err(bad)?;
    let mut gid = h.gid().map_err(bad)?;
    let mode = h.mode().map_err(bad)? & 0o7777;
    let secs = h.mtime().map_err(bad)?;
    let mut mtime = Timespec {
        tv_sec: i64::try_from(secs).unwrap_or(i64::MAX),
        tv_nsec: 0,
    };
    let mut atime = None;
    let mut xattrs = Vec::new();
    let num = |v: &[u8]| {
        std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
    };
    for (key, value) in pax {
        if let Some(xname) = key.strip_prefix(b"SCHILY.xattr.") {
            // Overlay state of the layer's origin must not leak into ours.
            if xname.starts_with(b"trusted.overlay.") || xname.is_empty() {
                continue;
            }
            xattrs.push((OsStr::from_bytes(xname).to_owned(), value.clone()));
        } else {
            match key.as_slice() {
                b"mtime" => mtime = pax_time(value).unwrap_or(mtime),
                b"atime" => atime = pax_time(value),
                b"uid" => uid = num(value).unwrap_or(uid),
                b"gid" => gid = num(value).unwrap_or(gid),
                _ => {}
            }
        }
    }
    u32::try_from(uid)
        .ok()
        .zip(u32::try_from(gid).ok())
        .map(|(uid, gid)| Meta {
            uid,
            gid,
            mode,
            times: Timestamps {
                last_access: atime.unwrap_or(mtime),
                last_modification: mtime,
            },
            xattrs,
        })
        .ok_or_else(|| {
            bad(io::Error::new(
                io::ErrorKind::InvalidData,
                "uid or gid out of range",
            ))
        })
}

fn pax_time(v: &[u8]) -> Option<Timespec> {
    let s = std::str::from_utf8(v).ok()?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let tv_sec: i64 = secs.parse().ok()?;
    let mut digits: String = frac.chars().take(9).collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    while digits.len() < 9 {
        digits.push('0');
    }
    let mut tv_nsec: i64 = digits.parse().ok()?;
    // "-1.5" means 1.5 s before the epoch: borrow from the seconds.
    if secs.starts_with('-') && tv_nsec > 0 {
        return Some(Timespec {
            tv_sec: tv_sec - 1,
            tv_nsec: 1_000_000_000 - tv_nsec,
        });
    }
    if tv_nsec >= 1_000_000_000 {
        tv_nsec = 0;
    }
    Some(Timespec { tv_sec, tv_nsec })
}

fn create_file(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

fn is_not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

impl Applier<'_> {
    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        header: Header,
    ) -> Result<(), LayerError> {
        self.stats.entries += 1;
        let name = header.display_name();
        let Header {
            name: raw_name,
            link: link_name,
            kind,
            pax,
        } = header;
        if matches!(kind, EntryType::XGlobalHeader) {
            return Ok(());
        }
        let comps = safepath::clean(&raw_name).ok_or_else(|| LayerError::EscapesRoot {
            entry: name.clone(),
        })?;
        let meta = entry_meta(entry, &pax, &name)?;

        let Some((base, parents)) = comps.split_last() else {
            // `./` or `/`: the root itself. Only its metadata can change.
            if kind != EntryType::Directory {
                return Err(LayerError::RootNotDirectory { entry: name });
            }
            let root = self.root.to_path_buf();
            Self::set_meta(&root, &meta, false, &name)?;
            self.dir_times.push((root, meta.times));
            return Ok(());
        };

        let parent = self.resolve_parent(parents, &name)?;
        let base_bytes = base.as_bytes();
        if let Some(victim) = base_bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            self.parent_cache = None;
            return self.whiteout(&parent, base_bytes, victim, &meta, &name);
        }
        let path = parent.join(base);
        if self
            .parent_cache
            .as_ref()
            .is_some_and(|(_, cached)| cached.starts_with(&path))
        {
            self.parent_cache = None;
        }

        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let werr = |source| LayerError::Write {
                    entry: name.clone(),
                    source,
                };
                // Try the common case (nothing there) first; O_EXCL never
                // follows a symlink, so an existing one is caught here too.
                let mut f = match create_file(&path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        Self::clear(&path, false, &name)?;
                        create_file(&path).map_err(werr)?
                    }
                    Err(e) => return Err(werr(e)),
                };
                loop {
                    let n = match entry.read(&mut self.buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(LayerError::Read(e)),
                    };
                    f.write_all(&self.buf[..n]).map_err(werr)?;
                    self.stats.bytes += n as u64;
                }
                // Through the open fd: no more path lookups for this file.
                Self::set_meta_fd(&f, &meta, &name)?;
            }
            EntryType::Directory => {
                let is_dir = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
                if !is_dir {
                    Self::clear(&path, true, &name)?;
                    fs::DirBuilder::new()
                        .create(&path)
                        .map_err(|source| LayerError::Write {
                            entry: name.clone(),
                            source,
                        })?;
                }
                Self::set_meta(&path, &meta, false, &name)?;
                self.dir_times.push((path.clone(), meta.times));
            }
            EntryType::Symlink => {
                let target = link_name
                    .clone()
                    .ok_or_else(|| LayerError::MissingLinkName {
                        entry: name.clone(),
                    })?;
                Self::clear(&path, false, &name)?;
                // The target is stored verbatim: a symlink pointing anywhere is
                // harmless; only writing through it is checked (safepath).
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path).map_err(
                    |source| LayerError::Write {
                        entry: name.clone(),
                        source,
                    },
                )?;
                Self::set_meta(&path, &meta, true, &name)?;
                Self::set_times(&path, &meta, &name)?;
            }
            EntryType::Link => {
                let target = link_name
                    .clone()
                    .ok_or_else(|| LayerError::MissingLinkName {
                        entry: name.clone(),
                    })?;
                let target_name = String::from_utf8_lossy(&target).into_owned();
                let escape = || LayerError::HardlinkEscape {
                    entry: name.clone(),
                    target: target_name.clone(),
                };
                let tcomps = safepath::clean(&target).ok_or_else(escape)?;
                let Some((tbase, tparents)) = tcomps.split_last() else {
                    return Err(escape());
                };
                let tparent = safepath::resolve_dir(self.root, tparents, false, &mut |_| {})
                    .map_err(|e| safepath::link_target_error(e, &name, &target_name))?;
                let tpath = tparent.join(tbase);
                match fs::symlink_metadata(&tpath) {
                    Ok(m) if !m.is_dir() => {}
                    _ => {
                        return Err(LayerError::HardlinkTargetMissing {
                            entry: name,
                            target: target_name,
                        });
                    }
                }
                if tpath == path {
                    // A link to itself (some tools emit these): nothing to do.
                    return Ok(());
                }
                Self::clear(&path, false, &name)?;
                // std's hard_link is linkat(2) without AT_SYMLINK_FOLLOW: a
                // symlink target is linked itself, never followed.
                fs::hard_link(&tpath, &path).map_err(|source| LayerError::Write {
                    entry: name.clone(),
                    source,
                })?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let (ft, dev) = if kind == EntryType::Fifo {
                    (FileType::Fifo, 0)
                } else {
                    let h = entry.header();
                    let major = h.device_major().ok().flatten().unwrap_or(0);
                    let minor = h.device_minor().ok().flatten().unwrap_or(0);
                    let ft = if kind == EntryType::Char {
                        FileType::CharacterDevice
                    } else {
                        FileType::BlockDevice
                    };
                    (ft, rustix::fs::makedev(major, minor))
                };
                Self::clear(&path, false, &name)?;
                rustix::fs::mknodat(CWD, &path, ft, Mode::from_raw_mode(0o600), dev).map_err(
                    |e| LayerError::Write {
                        entry: name.clone(),
                        source: e.into(),
                    },
                )?;
                Self::set_meta(&path, &meta, false, &name)?;
                Self::set_times(&path, &meta, &name)?;
            }
            other => {
                return Err(LayerError::UnsupportedType {
                    entry: name,
                    kind: format!("{other:?}"),
                });
            }
        }
        // Only Flat mode's opaque whiteouts need to know what is new.
        if self.mode == WhiteoutMode::Flat {
            self.unpacked.insert(path);
        }
        Ok(())
    }

    fn resolve_parent(&mut self, parents: &[OsString], name: &str) -> Result<PathBuf, LayerError> {
        if let Some((comps, path)) = &self.parent_cache
            && comps == parents
        {
            return Ok(path.clone());
        }
        let (unpacked, flat) = (&mut self.unpacked, self.mode == WhiteoutMode::Flat);
        let resolved = safepath::resolve_dir_traced(self.root, parents, true, &mut |p: &Path| {
            if flat {
                unpacked.insert(p.to_path_buf());
            }
        });
        if let Ok((path, false)) = &resolved {
            self.parent_cache = Some((parents.to_vec(), path.clone()));
        }
        resolved
            .map(|(p, _)| p)
            .map_err(|e| safepath::parent_error(e, name))
    }

    /// Makes room for a new entry at `path`, like Docker: anything there is
    /// removed, except a directory when a directory comes (they merge). An
    /// existing symlink is replaced, never written through.
    fn clear(path: &Path, new_is_dir: bool, name: &str) -> Result<(), LayerError> {
        let res = match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() && new_is_dir => Ok(()),
            Ok(m) if m.is_dir() => fs::remove_dir_all(path),
            Ok(_) => fs::remove_file(path),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e),
        };
        res.map_err(|source| LayerError::Remove {
            entry: name.to_owned(),
            path: path.to_path_buf(),
            source,
        })
    }

    fn whiteout(
        &mut self,
        parent: &Path,
        base: &[u8],
        victim: &[u8],
        meta: &Meta,
        name: &str,
    ) -> Result<(), LayerError> {
        let remove_err = |path: &Path, source| LayerError::Remove {
            entry: name.to_owned(),
            path: path.to_path_buf(),
            source,
        };
        if base == WHITEOUT_OPAQUE.as_bytes() {
            return match self.mode {
                WhiteoutMode::Overlay => {
                    rustix::fs::lsetxattr(parent, OVERLAY_OPAQUE_XATTR, b"y", XattrFlags::empty())
                        .map_err(|e| LayerError::Metadata {
                            entry: name.to_owned(),
                            source: e.into(),
                        })
                }
                WhiteoutMode::Flat => self
                    .remove_not_unpacked(parent)
                    .map_err(|e| remove_err(parent, e)),
            };
        }
        if victim.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            // `.wh..wh.*` other than the opaque marker is aufs bookkeeping
            // (hardlink dirs, `.wh..wh.plnk`): not content, skipped like Docker.
            return Ok(());
        }
        if matches!(victim, b"" | b"." | b"..") || victim.contains(&b'/') {
            return Err(LayerError::InvalidWhiteout {
                entry: name.to_owned(),
            });
        }
        let target = parent.join(OsStr::from_bytes(victim));
        match self.mode {
            WhiteoutMode::Flat => remove_any(&target).map_err(|e| remove_err(&target, e)),
            WhiteoutMode::Overlay => {
                remove_any(&target).map_err(|e| remove_err(&target, e))?;
                rustix::fs::mknodat(
                    CWD,
                    &target,
                    FileType::CharacterDevice,
                    Mode::empty(),
                    rustix::fs::makedev(0, 0),
                )
                .map_err(|e| LayerError::Write {
                    entry: name.to_owned(),
                    source: e.into(),
                })?;
                rustix::fs::chownat(
                    CWD,
                    &target,
                    Some(Uid::from_raw(meta.uid)),
                    Some(Gid::from_raw(meta.gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|e| LayerError::Metadata {
                    entry: name.to_owned(),
                    source: e.into(),
                })?;
                // The entry's times, like every other entry: a snapshot is
                // then the same whether unpacked or adopted.
                Self::set_times(&target, meta, name)
            }
        }
    }

    /// Flat-mode opaque directory: removes everything below `dir` that this
    /// layer did not create, descending into kept directories.
    fn remove_not_unpacked(&self, dir: &Path) -> io::Result<()> {
        for child in fs::read_dir(dir)? {
            let path = child?.path();
            if self.unpacked.contains(&path) {
                if fs::symlink_metadata(&path)?.is_dir() {
                    self.remove_not_unpacked(&path)?;
                }
            } else {
                remove_any(&path)?;
            }
        }
        Ok(())
    }

    /// [`Self::set_meta`] and times for a regular file, through its fd.
    fn set_meta_fd(f: &fs::File, meta: &Meta, name: &str) -> Result<(), LayerError> {
        let err = |e: rustix::io::Errno| LayerError::Metadata {
            entry: name.to_owned(),
            source: e.into(),
        };
        rustix::fs::fchown(
            f,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
        )
        .map_err(err)?;
        rustix::fs::fchmod(f, Mode::from_raw_mode(meta.mode)).map_err(err)?;
        for (xname, value) in &meta.xattrs {
            match rustix::fs::fsetxattr(f, xname.as_os_str(), value, XattrFlags::empty()) {
                Ok(()) | Err(rustix::io::Errno::NOTSUP | rustix::io::Errno::PERM) => {}
                Err(e) => return Err(err(e)),
            }
        }
        rustix::fs::futimens(f, &meta.times).map_err(err)
    }

    /// Owner, mode and xattrs, in that order: chown clears setuid bits and
    /// file capabilities, so those come after it.
    fn set_meta(path: &Path, meta: &Meta, symlink: bool, name: &str) -> Result<(), LayerError> {
        let err = |e: rustix::io::Errno| LayerError::Metadata {
            entry: name.to_owned(),
            source: e.into(),
        };
        rustix::fs::chownat(
            CWD,
            path,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(err)?;
        if !symlink {
            rustix::fs::chmodat(CWD, path, Mode::from_raw_mode(meta.mode), AtFlags::empty())
                .map_err(err)?;
        }
        for (xname, value) in &meta.xattrs {
            match rustix::fs::lsetxattr(path, xname.as_os_str(), value, XattrFlags::empty()) {
                // A filesystem without xattrs, or a `user.*` xattr on a
                // symlink or device, cannot hold it; Docker skips those too.
                Ok(()) | Err(rustix::io::Errno::NOTSUP | rustix::io::Errno::PERM) => {}
                Err(e) => return Err(err(e)),
            }
        }
        Ok(())
    }

    fn set_times(path: &Path, meta: &Meta, name: &str) -> Result<(), LayerError> {
        rustix::fs::utimensat(CWD, path, &meta.times, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| {
            LayerError::Metadata {
                entry: name.to_owned(),
                source: e.into(),
            }
        })
    }

    fn finish(&mut self) -> Result<(), LayerError> {
        for (path, times) in std::mem::take(&mut self.dir_times) {
            // A later entry may have replaced the directory.
            if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                rustix::fs::utimensat(CWD, &path, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(
                    |e| LayerError::Metadata {
                        entry: path.display().to_string(),
                        source: e.into(),
                    },
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::pax_time;
    use rustix::fs::Timespec;

    #[test]
    fn parses_pax_times() {
        assert_eq!(
            pax_time(b"1700000000.5"),
            Some(Timespec {
                tv_sec: 1_700_000_000,
                tv_nsec: 500_000_000
            })
        );
        assert_eq!(
            pax_time(b"12"),
            Some(Timespec {
                tv_sec: 12,
                tv_nsec: 0
            })
        );
        assert_eq!(
            pax_time(b"-1.25"),
            Some(Timespec {
                tv_sec: -2,
                tv_nsec: 750_000_000
            })
        );
        assert_eq!(pax_time(b"x"), None);
        assert_eq!(pax_time(b"1.x"), None);
    }
}
