//! Applying a layer tar to a directory.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{AtFlags, CWD, FileType, Gid, Mode, Timespec, Timestamps, Uid, XattrFlags};
use tar::EntryType;

use super::safepath::{self, ResolveError};
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
    // Headers are read 512 bytes at a time: buffer them. Big reads of file
    // data bypass the buffer.
    let tap = Rc::new(RefCell::new(TapState::default()));
    let mut archive = tar::Archive::new(Tap {
        inner: io::BufReader::with_capacity(64 * 1024, tar),
        state: Rc::clone(&tap),
    });
    let mut ap = Applier {
        root: dest,
        mode,
        stats: ApplyStats::default(),
        dir_times: Vec::new(),
        unpacked: HashSet::new(),
        buf: vec![0; 256 * 1024],
        parent_cache: None,
    };
    let mut entries = archive.entries().map_err(LayerError::Read)?;
    loop {
        tap.borrow_mut().start_capture();
        let next = entries.next();
        tap.borrow_mut().capturing = false;
        let Some(entry) = next else { break };
        let mut entry = entry.map_err(LayerError::Read)?;
        let pax = tap.borrow().pax_before(entry.raw_header_position());
        ap.entry(&mut entry, pax.as_deref())?;
        // Consume what the entry did not (data of links, dirs...), so the
        // next capture starts right after this entry's data.
        io::copy(&mut entry, &mut io::sink()).map_err(LayerError::Read)?;
    }
    ap.finish()?;
    // The tar end marker may be followed by padding (and a compressed stream
    // by its trailer): read it all so truncation and digests are noticed.
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(LayerError::Read)?;
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
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    times: Timestamps,
    xattrs: Vec<(OsString, Vec<u8>)>,
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

/// Reading the raw PAX records ourselves: the tar crate splits PAX records
/// at `\n` instead of using their length prefix, which breaks binary xattr
/// values (`security.capability`, user data) that contain a newline. The
/// tap records what the crate reads while it looks for the next entry (its
/// extended headers and the entry's header); `pax_before` then walks those
/// 512-byte blocks to the `x` header's data.
#[derive(Default)]
struct TapState {
    /// Bytes consumed so far (an archive offset).
    pos: u64,
    capturing: bool,
    /// Archive offset of `buf[0]`.
    start: u64,
    buf: Vec<u8>,
    /// Captured more than `TAP_LIMIT`: fall back to the crate's parse.
    overflow: bool,
}

/// Extended headers beyond this are left to the tar crate.
const TAP_LIMIT: usize = 16 << 20;

impl TapState {
    fn start_capture(&mut self) {
        self.buf.clear();
        self.start = self.pos;
        self.overflow = false;
        self.capturing = true;
    }

    /// The raw data of the PAX `x` header preceding the entry whose header
    /// is at archive offset `header_pos`, if there is one and the captured
    /// blocks add up.
    fn pax_before(&self, header_pos: u64) -> Option<Vec<u8>> {
        if self.overflow {
            return None;
        }
        let mut at = self.start.div_ceil(512) * 512;
        let mut pax = None;
        while at < header_pos {
            let off = usize::try_from(at - self.start).ok()?;
            let h = self.buf.get(off..off + 512)?;
            let size = tar_number(&h[124..136])?;
            if h[156] == b'x' {
                let len = usize::try_from(size).ok()?;
                pax = Some(self.buf.get(off + 512..off + 512 + len)?.to_vec());
            }
            at = at.checked_add(512)?.checked_add(size.div_ceil(512) * 512)?;
        }
        if at == header_pos { pax } else { None }
    }
}

struct Tap<R> {
    inner: R,
    state: Rc<RefCell<TapState>>,
}

impl<R: Read> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut s = self.state.borrow_mut();
        s.pos += n as u64;
        if s.capturing && !s.overflow {
            if s.buf.len() + n > TAP_LIMIT {
                s.overflow = true;
                s.buf = Vec::new();
            } else {
                s.buf.extend_from_slice(&buf[..n]);
            }
        }
        Ok(n)
    }
}

/// A tar numeric field: octal (space/NUL padded) or GNU base-256.
fn tar_number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let digits: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(u8::is_ascii_digit)
        .collect();
    if digits.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(std::str::from_utf8(&digits).ok()?, 8).ok()
}

/// PAX records (`"<len> <key>=<value>\n"`), using the length prefix so that
/// values may hold any byte. `None` when malformed.
fn parse_pax(mut data: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let sp = data.iter().position(|b| *b == b' ')?;
        let len: usize = std::str::from_utf8(&data[..sp]).ok()?.parse().ok()?;
        if len <= sp + 1 || len > data.len() {
            return None;
        }
        let rec = data[sp + 1..len].strip_suffix(b"\n")?;
        let eq = rec.iter().position(|b| *b == b'=')?;
        out.push((rec[..eq].to_vec(), rec[eq + 1..].to_vec()));
        data = &data[len..];
    }
    Some(out)
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
        raw_pax: Option<&[u8]>,
    ) -> Result<(), LayerError> {
        self.stats.entries += 1;
        // Our own parse of the PAX records when we have them (see `Tap`);
        // the tar crate's otherwise.
        let pax: Option<Vec<(Vec<u8>, Vec<u8>)>> = match raw_pax {
            Some(raw) => Some(parse_pax(raw).ok_or_else(|| {
                LayerError::Read(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "malformed pax extended header",
                ))
            })?),
            None => match entry.pax_extensions().map_err(LayerError::Read)? {
                Some(exts) => Some(
                    exts.map(|e| e.map(|e| (e.key_bytes().to_vec(), e.value_bytes().to_vec())))
                        .collect::<io::Result<_>>()
                        .map_err(LayerError::Read)?,
                ),
                None => None,
            },
        };
        let pax = pax.unwrap_or_default();
        let pax_value = |key: &[u8]| {
            pax.iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        let raw_name = pax_value(b"path").unwrap_or_else(|| entry.path_bytes().into_owned());
        let link_name =
            pax_value(b"linkpath").or_else(|| entry.link_name_bytes().map(Cow::into_owned));
        let name = String::from_utf8_lossy(&raw_name).into_owned();
        let mut kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader) {
            return Ok(());
        }
        // Pre-POSIX tars mark directories only by a trailing slash.
        if kind == EntryType::Regular && raw_name.ends_with(b"/") {
            kind = EntryType::Directory;
        }
        let comps = safepath::clean(&raw_name).ok_or_else(|| LayerError::EscapesRoot {
            entry: name.clone(),
        })?;
        let meta = Self::meta(entry, &pax, &name)?;

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
                let tparent = match safepath::resolve_dir(self.root, tparents, false, &mut |_| {}) {
                    Ok(p) => p,
                    Err(ResolveError::Escape { .. }) => return Err(escape()),
                    Err(ResolveError::Missing | ResolveError::NotDir { .. }) => {
                        return Err(LayerError::HardlinkTargetMissing {
                            entry: name,
                            target: target_name,
                        });
                    }
                    Err(ResolveError::Loop) => return Err(LayerError::SymlinkLoop { entry: name }),
                    Err(ResolveError::Io(source)) => {
                        return Err(LayerError::Resolve {
                            entry: name,
                            source,
                        });
                    }
                };
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

    fn meta<R: Read>(
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
        resolved.map(|(p, _)| p).map_err(|e| match e {
            ResolveError::Escape { link } => LayerError::SymlinkEscape {
                entry: name.to_owned(),
                link,
            },
            ResolveError::Loop => LayerError::SymlinkLoop {
                entry: name.to_owned(),
            },
            ResolveError::NotDir { parent } => LayerError::NotADirectory {
                entry: name.to_owned(),
                parent,
            },
            ResolveError::Missing => LayerError::Resolve {
                entry: name.to_owned(),
                source: io::ErrorKind::NotFound.into(),
            },
            ResolveError::Io(source) => LayerError::Resolve {
                entry: name.to_owned(),
                source,
            },
        })
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
    use super::{parse_pax, pax_time, tar_number};

    #[test]
    fn parses_pax_records_by_length() {
        // A binary value with a newline inside, as security.capability can be.
        let value = b"a\nb\0c";
        let rec = format!("{} SCHILY.xattr.user.k=", 3 + 20 + value.len() + 1);
        let mut data = rec.into_bytes();
        data.extend_from_slice(value);
        data.push(b'\n');
        data.extend_from_slice(b"12 path=a/b\n");
        let recs = parse_pax(&data).unwrap();
        assert_eq!(recs[0].0, b"SCHILY.xattr.user.k");
        assert_eq!(recs[0].1, value);
        assert_eq!(recs[1], (b"path".to_vec(), b"a/b".to_vec()));
        for bad in [&b"x"[..], b"99 a=b\n", b"3 a=b\n", b"6 ab\n", b"7 a=bc"] {
            assert!(
                parse_pax(bad).is_none(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(parse_pax(b""), Some(vec![]));
    }

    #[test]
    fn parses_tar_numbers() {
        assert_eq!(tar_number(b"00000001750\0"), Some(0o1750));
        assert_eq!(tar_number(b"     1750 \0"), Some(0o1750));
        assert_eq!(tar_number(b"\0\0\0\0"), Some(0));
        assert_eq!(
            tar_number(&[0x80, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]),
            Some(1 << 32)
        );
        assert_eq!(tar_number(&[0xff; 12]), None);
    }
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
