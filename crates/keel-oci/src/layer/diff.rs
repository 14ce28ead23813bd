//! A directory to a layer tar: deterministic, so the same tree always yields
//! the same bytes and therefore the same digest.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use tar::{EntryType, Header};

use super::check::LayerTree;
use super::{
    LayerError, OVERLAY_OPAQUE_USER_XATTR, OVERLAY_OPAQUE_XATTR, WHITEOUT_OPAQUE, WHITEOUT_PREFIX,
};

/// What one [`diff_to_layer`] call wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiffStats {
    /// Tar entries written (whiteouts and hardlinks included).
    pub entries: u64,
    /// Bytes of regular-file content written.
    pub bytes: u64,
}

/// Turns a directory into an OCI layer tar: an overlayfs upper dir (0/0 char
/// devices become `.wh.name`, an opaque xattr `trusted.overlay.opaque` or
/// `user.overlay.opaque` = `y` becomes `.wh..wh..opq`) or a plain tree.
///
/// The output is deterministic: names sorted bytewise, numeric uid/gid with
/// empty user/group names, mtimes in whole seconds, no atime/ctime. Files
/// sharing an inode become tar hardlinks to the first path; xattrs become PAX
/// `SCHILY.xattr.*` records (overlay and `SELinux` ones excluded); sockets are
/// skipped. The root directory itself is not an entry. Every entry passes
/// [`super::check_layer`]'s rules as it is written.
pub fn diff_to_layer<W: Write>(dir: &Path, out: W) -> Result<DiffStats, LayerError> {
    diff_to_layer_except(dir, out, &[])
}

/// [`diff_to_layer`] leaving out the entries at `except` (paths relative to
/// `dir`, e.g. `etc/hosts`: what a container runtime mounts over its root,
/// which `commit` does not keep).
pub fn diff_to_layer_except<W: Write>(
    dir: &Path,
    out: W,
    except: &[&str],
) -> Result<DiffStats, LayerError> {
    let mut d = Differ {
        except: except.iter().map(|e| e.as_bytes().to_vec()).collect(),
        builder: tar::Builder::new(out),
        links: HashMap::new(),
        stats: DiffStats::default(),
        buf: vec![0; 256 * 1024],
        tree: LayerTree::default(),
    };
    d.walk(dir, b"")?;
    d.builder
        .into_inner()
        .and_then(|mut w| w.flush())
        .map_err(LayerError::TarWrite)?;
    Ok(d.stats)
}

struct Differ<W: Write> {
    /// Entries left out (names relative to the root).
    except: Vec<Vec<u8>>,
    builder: tar::Builder<W>,
    /// (dev, ino) of multiply-linked files already written → their tar name.
    links: HashMap<(u64, u64), Vec<u8>>,
    stats: DiffStats,
    /// Copy buffer: `Builder::append` copies 8 KiB at a time.
    buf: Vec<u8>,
    /// What the layer holds so far: every entry passes the check a layer
    /// read from elsewhere passes (see [`super::check_layer`]).
    tree: LayerTree,
}

fn read_err(path: &Path) -> impl FnOnce(io::Error) -> LayerError + '_ {
    move |source| LayerError::DiffRead {
        path: path.to_path_buf(),
        source,
    }
}

/// The names of `path`'s xattrs (none where the filesystem has none).
pub(super) fn xattr_names(path: &Path) -> io::Result<Vec<Vec<u8>>> {
    let mut names = vec![0u8; 1024];
    let len = loop {
        match rustix::fs::llistxattr(path, &mut names[..]) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) => names.resize(names.len() * 4, 0),
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    };
    Ok(names[..len]
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

/// Whether a layer carries xattr `name` of `path`: not overlayfs's own nor
/// `security.selinux`. A redirect or a metacopy is refused.
pub(super) fn carries_xattr(path: &Path, name: &str) -> Result<bool, LayerError> {
    let overlay = name
        .strip_prefix("trusted.overlay.")
        .or_else(|| name.strip_prefix("user.overlay."));
    if let Some(feature @ ("redirect" | "metacopy")) = overlay {
        // A renamed dir or a metadata-only copy-up: its content lives in
        // a lower layer, so diffing the upper dir alone would be wrong.
        return Err(LayerError::OverlayFeature {
            path: path.to_path_buf(),
            feature: feature.to_owned(),
        });
    }
    Ok(overlay.is_none() && name != "security.selinux")
}

/// xattrs worth carrying in a layer, sorted by name.
fn xattrs(path: &Path) -> Result<BTreeMap<String, Vec<u8>>, LayerError> {
    let mut out = BTreeMap::new();
    for name in xattr_names(path).map_err(read_err(path))? {
        let Ok(name) = std::str::from_utf8(&name) else {
            continue;
        };
        if !carries_xattr(path, name)? {
            continue;
        }
        let mut value = vec![0u8; 256];
        let n = loop {
            match rustix::fs::lgetxattr(path, name, &mut value[..]) {
                Ok(n) => break Some(n),
                Err(rustix::io::Errno::RANGE) => value.resize(value.len() * 4, 0),
                // Removed between list and get.
                Err(rustix::io::Errno::NODATA) => break None,
                Err(e) => return Err(read_err(path)(e.into())),
            }
        };
        if let Some(n) = n {
            value.truncate(n);
            out.insert(name.to_owned(), value);
        }
    }
    Ok(out)
}

fn is_opaque(path: &Path) -> bool {
    [OVERLAY_OPAQUE_XATTR, OVERLAY_OPAQUE_USER_XATTR]
        .iter()
        .any(|x| {
            let mut v = [0u8; 4];
            matches!(rustix::fs::lgetxattr(path, *x, &mut v[..]), Ok(1) if v[0] == b'y')
        })
}

/// Puts `name` into the ustar name/prefix fields when it fits; otherwise the
/// caller adds a PAX `path` record.
fn set_name(h: &mut Header, name: &[u8]) -> bool {
    let ustar = h.as_ustar_mut().expect("ustar header");
    if name.len() <= 100 {
        ustar.name[..name.len()].copy_from_slice(name);
        return true;
    }
    // Split at a '/' so that prefix ≤ 155 and name ≤ 100 bytes.
    let body = name.strip_suffix(b"/").unwrap_or(name);
    for (i, _) in body.iter().enumerate().filter(|&(_, &b)| b == b'/') {
        let (prefix, rest) = (&name[..i], &name[i + 1..]);
        if prefix.len() <= 155 && rest.len() <= 100 && !rest.is_empty() {
            ustar.prefix[..prefix.len()].copy_from_slice(prefix);
            ustar.name[..rest.len()].copy_from_slice(rest);
            return true;
        }
    }
    let cut = &name[..100];
    ustar.name.copy_from_slice(cut);
    false
}

/// Reads exactly `len` bytes, failing if the file shrank under us (a short
/// entry would corrupt every following header).
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let max = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being archived",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

impl<W: Write> Differ<W> {
    fn walk(&mut self, dir: &Path, prefix: &[u8]) -> Result<(), LayerError> {
        let mut names: Vec<OsString> = fs::read_dir(dir)
            .and_then(|rd| rd.map(|e| e.map(|e| e.file_name())).collect())
            .map_err(read_err(dir))?;
        names.sort();
        for file_name in names {
            let path = dir.join(&file_name);
            let md = fs::symlink_metadata(&path).map_err(read_err(&path))?;
            let ft = md.file_type();
            let mut name = prefix.to_vec();
            name.extend_from_slice(file_name.as_bytes());
            if ft.is_socket() || self.except.contains(&name) {
                continue;
            }
            if ft.is_char_device() && md.rdev() == 0 {
                // overlayfs whiteout.
                let mut wh = prefix.to_vec();
                wh.extend_from_slice(WHITEOUT_PREFIX.as_bytes());
                wh.extend_from_slice(file_name.as_bytes());
                let h = header(EntryType::Regular, &md, 0o600, 0);
                self.append(h, &wh, None, &BTreeMap::new(), io::empty())?;
                continue;
            }
            let xattrs = xattrs(&path)?;
            let perm = md.mode() & 0o7777;
            if ft.is_dir() {
                name.push(b'/');
                let h = header(EntryType::Directory, &md, perm, 0);
                self.append(h, &name, None, &xattrs, io::empty())?;
                if is_opaque(&path) {
                    let mut opq = name.clone();
                    opq.extend_from_slice(WHITEOUT_OPAQUE.as_bytes());
                    let h = header(EntryType::Regular, &md, perm & 0o777, 0);
                    self.append(h, &opq, None, &BTreeMap::new(), io::empty())?;
                }
                self.walk(&path, &name)?;
            } else if ft.is_symlink() {
                let target = fs::read_link(&path).map_err(read_err(&path))?;
                let h = header(EntryType::Symlink, &md, perm, 0);
                let target = target.as_os_str().as_bytes();
                self.append(h, &name, Some(target), &xattrs, io::empty())?;
            } else if ft.is_file() {
                if md.nlink() > 1 {
                    let key = (md.dev(), md.ino());
                    if let Some(first) = self.links.get(&key).cloned() {
                        let h = header(EntryType::Link, &md, perm, 0);
                        self.append(h, &name, Some(&first), &BTreeMap::new(), io::empty())?;
                        continue;
                    }
                    self.links.insert(key, name.clone());
                }
                let f = fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                    .open(&path)
                    .map_err(read_err(&path))?;
                let h = header(EntryType::Regular, &md, perm, md.len());
                let data = Exact {
                    inner: f,
                    left: md.len(),
                };
                self.append(h, &name, None, &xattrs, data)
                    .map_err(|e| match e {
                        LayerError::TarWrite(source)
                            if source.kind() == io::ErrorKind::UnexpectedEof =>
                        {
                            LayerError::DiffRead {
                                path: path.clone(),
                                source,
                            }
                        }
                        e => e,
                    })?;
                self.stats.bytes += md.len();
            } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
                let kind = if ft.is_char_device() {
                    EntryType::Char
                } else if ft.is_block_device() {
                    EntryType::Block
                } else {
                    EntryType::Fifo
                };
                let mut h = header(kind, &md, perm, 0);
                if kind != EntryType::Fifo {
                    let rdev = md.rdev();
                    h.set_device_major(rustix::fs::major(rdev))
                        .and_then(|()| h.set_device_minor(rustix::fs::minor(rdev)))
                        .map_err(LayerError::TarWrite)?;
                }
                self.append(h, &name, None, &xattrs, io::empty())?;
            }
        }
        Ok(())
    }

    fn append(
        &mut self,
        mut h: Header,
        name: &[u8],
        link: Option<&[u8]>,
        xattrs: &BTreeMap<String, Vec<u8>>,
        data: impl Read,
    ) -> Result<(), LayerError> {
        self.tree.entry(name, h.entry_type(), link)?;
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        if !set_name(&mut h, name) {
            pax.push(("path".into(), name.to_vec()));
        }
        if let Some(link) = link {
            let old = h.as_old_mut();
            if link.len() <= old.linkname.len() {
                old.linkname[..link.len()].copy_from_slice(link);
            } else {
                old.linkname.copy_from_slice(&link[..100]);
                pax.push(("linkpath".into(), link.to_vec()));
            }
        }
        for (k, v) in xattrs {
            pax.push((format!("SCHILY.xattr.{k}"), v.clone()));
        }
        if !pax.is_empty() {
            self.builder
                .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .map_err(LayerError::TarWrite)?;
        }
        h.set_cksum();
        let size = h.size().map_err(LayerError::TarWrite)?;
        let out = self.builder.get_mut();
        out.write_all(h.as_bytes()).map_err(LayerError::TarWrite)?;
        let mut data = data;
        let mut copied = 0u64;
        loop {
            let n = match data.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(LayerError::TarWrite(e)),
            };
            out.write_all(&self.buf[..n])
                .map_err(LayerError::TarWrite)?;
            copied += n as u64;
        }
        debug_assert_eq!(copied, size, "Exact guarantees the header's size");
        let pad = (512 - copied % 512) % 512;
        out.write_all(&[0u8; 512][..pad as usize])
            .map_err(LayerError::TarWrite)?;
        self.stats.entries += 1;
        Ok(())
    }
}

fn header(kind: EntryType, md: &fs::Metadata, mode: u32, size: u64) -> Header {
    let mut h = Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(u64::from(md.uid()));
    h.set_gid(u64::from(md.gid()));
    h.set_mtime(u64::try_from(md.mtime()).unwrap_or(0));
    h.set_size(size);
    h
}
