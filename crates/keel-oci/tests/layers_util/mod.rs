//! Shared helpers for the layer tests: a tar writer that can produce any entry
//! (hostile ones included), a full tree listing to compare results, an
//! overlayfs mount guard and a "nothing changed outside" check.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use tar::{EntryType, Header};

/// Builds layer tars entry by entry, writing names and link targets verbatim
/// (the tar crate's own setters refuse `..`, which hostile tests need).
pub struct TarBuilder {
    b: tar::Builder<Vec<u8>>,
}

pub struct E<'a> {
    pub kind: EntryType,
    pub name: &'a str,
    pub link: &'a str,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub data: &'a [u8],
    pub dev: (u32, u32),
    pub xattrs: &'a [(&'a str, &'a [u8])],
}

impl Default for E<'_> {
    fn default() -> Self {
        E {
            kind: EntryType::Regular,
            name: "",
            link: "",
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1_600_000_000,
            data: b"",
            dev: (0, 0),
            xattrs: &[],
        }
    }
}

impl Default for TarBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl TarBuilder {
    pub fn new() -> Self {
        TarBuilder {
            b: tar::Builder::new(Vec::new()),
        }
    }

    pub fn add(&mut self, e: &E<'_>) -> &mut Self {
        let mut pax: Vec<(String, Vec<u8>)> = e
            .xattrs
            .iter()
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.to_vec()))
            .collect();
        let mut h = Header::new_ustar();
        h.set_entry_type(e.kind);
        if e.name.len() <= 100 {
            h.as_old_mut().name[..e.name.len()].copy_from_slice(e.name.as_bytes());
        } else {
            pax.push(("path".into(), e.name.as_bytes().to_vec()));
        }
        h.as_old_mut().linkname[..e.link.len()].copy_from_slice(e.link.as_bytes());
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(e.mtime);
        h.set_size(e.data.len() as u64);
        if matches!(e.kind, EntryType::Char | EntryType::Block) {
            h.set_device_major(e.dev.0).unwrap();
            h.set_device_minor(e.dev.1).unwrap();
        }
        if !pax.is_empty() {
            self.b
                .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .unwrap();
        }
        h.set_cksum();
        self.b.append(&h, e.data).unwrap();
        self
    }

    pub fn dir(&mut self, name: &str, mtime: u64) -> &mut Self {
        self.add(&E {
            kind: EntryType::Directory,
            name,
            mode: 0o755,
            mtime,
            ..E::default()
        })
    }

    pub fn file(&mut self, name: &str, data: &[u8], mtime: u64) -> &mut Self {
        self.add(&E {
            name,
            mtime,
            data,
            ..E::default()
        })
    }

    pub fn symlink(&mut self, name: &str, target: &str, mtime: u64) -> &mut Self {
        self.add(&E {
            kind: EntryType::Symlink,
            name,
            link: target,
            mode: 0o777,
            mtime,
            ..E::default()
        })
    }

    pub fn hardlink(&mut self, name: &str, target: &str, mtime: u64) -> &mut Self {
        self.add(&E {
            kind: EntryType::Link,
            name,
            link: target,
            mtime,
            ..E::default()
        })
    }

    /// A whiteout entry (empty regular file), as Docker writes them.
    pub fn whiteout(&mut self, name: &str, mtime: u64) -> &mut Self {
        self.add(&E {
            name,
            mode: 0o600,
            mtime,
            ..E::default()
        })
    }

    pub fn finish(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

fn xattr_list(p: &Path) -> Vec<(String, Vec<u8>)> {
    let mut buf = vec![0u8; 64 * 1024];
    let n = rustix::fs::llistxattr(p, &mut buf[..]).unwrap_or(0);
    let mut out = Vec::new();
    for name in buf[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        if name.starts_with("security.") {
            continue;
        }
        let mut v = vec![0u8; 64 * 1024];
        let m = rustix::fs::lgetxattr(p, name.as_str(), &mut v[..]).unwrap();
        v.truncate(m);
        out.push((name, v));
    }
    out.sort();
    out
}

fn walk_listing(root: &Path, dir: &Path, out: &mut Vec<(String, fs::Metadata, PathBuf)>) {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for n in names {
        let p = dir.join(&n);
        let md = fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        let is_dir = md.is_dir();
        out.push((rel, md, p.clone()));
        if is_dir {
            walk_listing(root, &p, out);
        }
    }
}

/// A full listing of a tree (root excluded): one line per entry with path,
/// type, mode, owner, mtime, content or target, device numbers, xattrs and
/// hardlink identity (the first path sharing the inode).
pub fn listing(root: &Path) -> Vec<String> {
    let mut entries: Vec<(String, fs::Metadata, PathBuf)> = Vec::new();
    walk_listing(root, root, &mut entries);
    let mut first_of_inode: HashMap<(u64, u64), String> = HashMap::new();
    for (rel, md, _) in &entries {
        if !md.is_dir() && md.nlink() > 1 {
            first_of_inode
                .entry((md.dev(), md.ino()))
                .or_insert_with(|| rel.clone());
        }
    }
    entries
        .iter()
        .map(|(rel, md, p)| {
            let ft = md.file_type();
            let mut line = if ft.is_dir() {
                format!("{rel}/ dir")
            } else if ft.is_symlink() {
                format!("{rel} symlink -> {}", fs::read_link(p).unwrap().display())
            } else if ft.is_file() {
                let data = fs::read(p).unwrap();
                if data.len() <= 64 {
                    format!("{rel} file {:?}", String::from_utf8_lossy(&data))
                } else {
                    format!("{rel} file len={} {}", data.len(), sha256_digest(&data))
                }
            } else if ft.is_char_device() {
                format!(
                    "{rel} char {}:{}",
                    rustix::fs::major(md.rdev()),
                    rustix::fs::minor(md.rdev())
                )
            } else if ft.is_block_device() {
                format!(
                    "{rel} block {}:{}",
                    rustix::fs::major(md.rdev()),
                    rustix::fs::minor(md.rdev())
                )
            } else if ft.is_fifo() {
                format!("{rel} fifo")
            } else {
                format!("{rel} other")
            };
            if !ft.is_symlink() {
                let _ = write!(line, " mode={:04o}", md.mode() & 0o7777);
            }
            let _ = write!(
                line,
                " owner={}:{} mtime={}",
                md.uid(),
                md.gid(),
                md.mtime()
            );
            for (k, v) in xattr_list(p) {
                let _ = write!(line, " xattr:{k}={:?}", String::from_utf8_lossy(&v));
            }
            if let Some(first) = first_of_inode.get(&(md.dev(), md.ino())) {
                let _ = write!(line, " inode-of={first}");
            }
            line
        })
        .collect()
}

fn walk_outside(dir: &Path, skip: &Path, out: &mut Vec<String>) {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for p in names {
        if p == skip {
            continue;
        }
        let md = fs::symlink_metadata(&p).unwrap();
        out.push(format!(
            "{} {:?} len={} nlink={} mtime={}",
            p.display(),
            md.file_type(),
            md.len(),
            md.nlink(),
            md.mtime()
        ));
        if md.is_dir() {
            walk_outside(&p, skip, out);
        }
    }
}

/// Every path (with type and size) under `dir`, skipping the subtree `skip`:
/// taken before and after a hostile apply to show nothing changed outside.
pub fn outside_state(dir: &Path, skip: &Path) -> Vec<String> {
    let mut out = Vec::new();
    walk_outside(dir, skip, &mut out);
    out
}

/// A read-only overlayfs mount of `lowers` (topmost first), unmounted on drop.
pub struct OverlayMount {
    pub target: PathBuf,
}

impl OverlayMount {
    pub fn new(lowers: &[&Path], target: &Path) -> Self {
        fs::create_dir_all(target).unwrap();
        let lowerdir: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
        let status = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o"])
            .arg(format!("ro,lowerdir={}", lowerdir.join(":")))
            .arg(target)
            .status()
            .expect("running mount");
        assert!(status.success(), "mount -t overlay failed: {status}");
        OverlayMount {
            target: target.to_path_buf(),
        }
    }
}

impl OverlayMount {
    /// A writable overlay: changes land in `upper`.
    pub fn rw(lower: &Path, upper: &Path, work: &Path, target: &Path) -> Self {
        for d in [upper, work, target] {
            fs::create_dir_all(d).unwrap();
        }
        let status = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o"])
            .arg(format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.display(),
                upper.display(),
                work.display()
            ))
            .arg(target)
            .status()
            .expect("running mount");
        assert!(status.success(), "mount -t overlay failed: {status}");
        OverlayMount {
            target: target.to_path_buf(),
        }
    }
}

impl Drop for OverlayMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.target).status();
    }
}

pub fn sha256_digest(data: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(data);
    let mut out = String::from("sha256:");
    for b in d {
        let _ = write!(out, "{b:02x}");
    }
    out
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).unwrap()
}

/// Name bytes as a path (tests build odd names).
pub fn p(bytes: &[u8]) -> &Path {
    Path::new(std::ffi::OsStr::from_bytes(bytes))
}
