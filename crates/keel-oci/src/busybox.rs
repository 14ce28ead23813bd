//! The test base image: a busybox root filesystem built from Debian's
//! busybox-static (`/bin/busybox`), laid out like the official busybox image
//! (applet symlinks, `/etc/passwd`, `/etc/group`, `/tmp` 1777, ...). Used by
//! tests, the quickstart and `keel image seed-busybox`.
//!
//! Every entry gets the busybox binary's mtime and root ownership, so the
//! layer from [`build_rootfs_tar`] is byte-identical for a given package
//! version, and so is the image digest.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, CWD, Gid, Timespec, Timestamps, Uid};

use crate::layer::{DiffStats, LayerError, diff_to_layer};

/// Where Debian's busybox-static installs its binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// The hint for when busybox-static is missing or unusable.
pub const INSTALL_HINT: &str = "apt-get install busybox-static";

#[derive(Debug, thiserror::Error)]
pub enum BusyboxError {
    #[error("{path} not found: busybox-static is not installed ({INSTALL_HINT})")]
    Missing { path: PathBuf },
    #[error(
        "{path} is not a statically linked ELF executable, so it cannot run in an empty root filesystem ({INSTALL_HINT})"
    )]
    NotStatic { path: PathBuf },
    #[error("reading {path}")]
    ReadBinary {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("running {path} --list-full")]
    ListApplets {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} --list-full failed: {stderr}")]
    ListAppletsFailed { path: PathBuf, stderr: String },
    #[error("busybox lists an unsafe applet path {0:?}")]
    BadAppletPath(String),
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("creating scratch directory {path}")]
    Scratch {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing the busybox layer")]
    Layer(#[source] LayerError),
}

impl BusyboxError {
    /// What the user can do about it, when there is something.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            BusyboxError::Missing { .. } | BusyboxError::NotStatic { .. } => Some(INSTALL_HINT),
            _ => None,
        }
    }
}

/// What [`build_rootfs`] made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootfsStats {
    /// Applet symlinks created.
    pub applets: usize,
}

// The same accounts as the official busybox image.
const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
";

const GROUP: &str = "root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
tape:x:32:
www-data:x:33:
operator:x:37:
utmp:x:43:
plugdev:x:46:
staff:x:50:
lock:x:54:
netdev:x:82:
users:x:100:
nogroup:x:65534:
";

// Locked passwords: the image has no login.
const SHADOW: &str = "root:*::0:::::
daemon:*::0:::::
bin:*::0:::::
sys:*::0:::::
sync:*::0:::::
mail:*::0:::::
www-data:*::0:::::
operator:*::0:::::
nobody:*::0:::::
";

const DIRS: &[(&str, u32)] = &[
    ("bin", 0o755),
    ("dev", 0o755),
    ("etc", 0o755),
    ("home", 0o755),
    ("proc", 0o555),
    ("root", 0o700),
    ("sbin", 0o755),
    ("sys", 0o555),
    ("tmp", 0o1777),
    ("usr", 0o755),
    ("usr/bin", 0o755),
    ("usr/sbin", 0o755),
    ("var", 0o755),
    ("var/spool", 0o755),
    ("var/spool/mail", 0o755),
    ("var/www", 0o755),
];

/// Whether an ELF image has no program interpreter (`PT_INTERP`), i.e. is
/// statically linked. `None` when it is not a well-formed ELF file.
fn is_static_elf(b: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    if b.get(..4)? != b"\x7fELF" {
        return None;
    }
    let le = match b.get(5)? {
        1 => true,
        2 => false,
        _ => return None,
    };
    let rd = |off: usize, len: usize| -> Option<u64> {
        let s = b.get(off..off.checked_add(len)?)?;
        let mut v = 0u64;
        for i in 0..len {
            let byte = if le { s[len - 1 - i] } else { s[i] };
            v = (v << 8) | u64::from(byte);
        }
        Some(v)
    };
    let (phoff, phentsize, phnum) = match b.get(4)? {
        1 => (rd(0x1c, 4)?, rd(0x2a, 2)?, rd(0x2c, 2)?),
        2 => (rd(0x20, 8)?, rd(0x36, 2)?, rd(0x38, 2)?),
        _ => return None,
    };
    for i in 0..phnum {
        let off = usize::try_from(phoff.checked_add(i.checked_mul(phentsize)?)?).ok()?;
        if rd(off, 4)? == u64::from(PT_INTERP) {
            return Some(false);
        }
    }
    Some(true)
}

/// Builds a busybox root filesystem in `dest` (created if missing) from
/// Debian's busybox-static at [`BUSYBOX`].
pub fn build_rootfs(dest: &Path) -> Result<RootfsStats, BusyboxError> {
    build_rootfs_from(Path::new(BUSYBOX), dest)
}

/// [`build_rootfs`] with another busybox binary (it must be static).
pub fn build_rootfs_from(busybox: &Path, dest: &Path) -> Result<RootfsStats, BusyboxError> {
    let binary = match fs::read(busybox) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(BusyboxError::Missing {
                path: busybox.to_path_buf(),
            });
        }
        Err(source) => {
            return Err(BusyboxError::ReadBinary {
                path: busybox.to_path_buf(),
                source,
            });
        }
    };
    if is_static_elf(&binary) != Some(true) {
        return Err(BusyboxError::NotStatic {
            path: busybox.to_path_buf(),
        });
    }
    let mtime = fs::metadata(busybox)
        .map_err(|source| BusyboxError::ReadBinary {
            path: busybox.to_path_buf(),
            source,
        })?
        .mtime();

    let out = Command::new(busybox)
        .arg("--list-full")
        .output()
        .map_err(|source| BusyboxError::ListApplets {
            path: busybox.to_path_buf(),
            source,
        })?;
    if !out.status.success() {
        return Err(BusyboxError::ListAppletsFailed {
            path: busybox.to_path_buf(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    let list = String::from_utf8_lossy(&out.stdout).into_owned();

    let werr = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BusyboxError::Write { path, source }
    };
    fs::create_dir_all(dest).map_err(werr(dest))?;
    for (d, mode) in DIRS {
        let p = dest.join(d);
        match fs::DirBuilder::new().mode(0o755).create(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && p.is_dir() => {}
            Err(e) => return Err(werr(&p)(e)),
        }
        fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).map_err(werr(&p))?;
    }

    let bin = dest.join("bin/busybox");
    remove_if_present(&bin).map_err(werr(&bin))?;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .open(&bin)
        .and_then(|mut f| f.write_all(&binary))
        .map_err(werr(&bin))?;
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).map_err(werr(&bin))?;

    let mut applets = 0;
    for line in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let rel = line.trim_start_matches('/');
        let unsafe_path = rel
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
        if unsafe_path {
            return Err(BusyboxError::BadAppletPath(line.to_owned()));
        }
        // The binary itself is listed; so is `/linuxrc` (an initramfs init,
        // absent from the official image): only applets in a bin dir count.
        if rel == "bin/busybox" || !rel.contains('/') {
            continue;
        }
        let link = dest.join(rel);
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent).map_err(werr(parent))?;
        }
        remove_if_present(&link).map_err(werr(&link))?;
        std::os::unix::fs::symlink(BUSYBOX, &link).map_err(werr(&link))?;
        applets += 1;
    }

    for (name, content, mode) in [
        ("etc/passwd", PASSWD, 0o644),
        ("etc/group", GROUP, 0o644),
        ("etc/shadow", SHADOW, 0o600),
    ] {
        let p = dest.join(name);
        remove_if_present(&p).map_err(werr(&p))?;
        fs::write(&p, content).map_err(werr(&p))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).map_err(werr(&p))?;
    }

    normalize(dest, mtime).map_err(werr(dest))?;
    Ok(RootfsStats { applets })
}

fn remove_if_present(p: &Path) -> io::Result<()> {
    match fs::remove_file(p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Root ownership (when we may chown) and one mtime for every entry below
/// `root`, children before their directory so the directory's time sticks.
fn normalize(root: &Path, mtime: i64) -> io::Result<()> {
    fn walk(p: &Path, times: &Timestamps) -> io::Result<()> {
        let md = fs::symlink_metadata(p)?;
        if md.is_dir() {
            let mut names: Vec<_> = fs::read_dir(p)?
                .map(|e| e.map(|e| e.path()))
                .collect::<io::Result<_>>()?;
            names.sort();
            for child in names {
                walk(&child, times)?;
            }
        }
        match rustix::fs::chownat(
            CWD,
            p,
            Some(Uid::ROOT),
            Some(Gid::ROOT),
            AtFlags::SYMLINK_NOFOLLOW,
        ) {
            // Unprivileged builds keep the caller's ids.
            Ok(()) | Err(rustix::io::Errno::PERM) => {}
            Err(e) => return Err(e.into()),
        }
        // chown clears setuid bits; re-assert the mode (not on symlinks).
        if !md.file_type().is_symlink() {
            fs::set_permissions(p, fs::Permissions::from_mode(md.mode() & 0o7777))?;
        }
        rustix::fs::utimensat(CWD, p, times, AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(())
    }
    let ts = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    let times = Timestamps {
        last_access: ts,
        last_modification: ts,
    };
    walk(root, &times)
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Removes the scratch tree however [`build_rootfs_tar`] ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The busybox root filesystem as one deterministic layer tar (built in a
/// scratch dir under the system temp dir, then [`diff_to_layer`]).
pub fn build_rootfs_tar<W: Write>(out: W) -> Result<DiffStats, BusyboxError> {
    let dir = std::env::temp_dir().join(format!(
        "keel-busybox-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|source| BusyboxError::Scratch {
            path: dir.clone(),
            source,
        })?;
    let scratch = Scratch(dir);
    build_rootfs(&scratch.0)?;
    diff_to_layer(&scratch.0, out).map_err(BusyboxError::Layer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_static_detection() {
        let bb = fs::read(BUSYBOX).expect("busybox-static must be installed");
        assert_eq!(is_static_elf(&bb), Some(true));
        // A dynamically linked Debian binary has an interpreter.
        let ls = fs::read("/bin/ls").unwrap();
        assert_eq!(is_static_elf(&ls), Some(false));
        assert_eq!(is_static_elf(b"#!/bin/sh\n"), None);
        assert_eq!(is_static_elf(b"\x7fELF"), None);
        // Truncated headers never panic.
        for n in 0..64.min(bb.len()) {
            let _ = is_static_elf(&bb[..n]);
        }
    }
}
