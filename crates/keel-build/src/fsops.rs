//! File operations inside a root directory that is not ours to escape: paths
//! are resolved component by component with symlinks interpreted relative to
//! the root (as `chroot` would), so that no write or read leaves it.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Symlink hops allowed while resolving one path (Linux uses 40 too).
const MAX_HOPS: usize = 40;

/// Cleans `path` (absolute or relative to `/`) into root-relative components;
/// `..` stops at the root.
pub fn components(path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c.to_string()),
        }
    }
    out
}

/// Resolves `path` inside `root`, following symlinks (also the last component
/// when `follow_last`) without ever leaving `root`. Components that do not
/// exist are kept as they are.
pub fn resolve(root: &Path, path: &str, follow_last: bool) -> io::Result<PathBuf> {
    let mut todo: Vec<String> = components(path);
    todo.reverse();
    let mut done: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            done.pop();
            continue;
        }
        let is_last = todo.is_empty();
        let candidate = root.join(done.join("/")).join(&c);
        match fs::symlink_metadata(&candidate) {
            Ok(md) if md.file_type().is_symlink() && (!is_last || follow_last) => {
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(io::Error::other(format!(
                        "too many levels of symbolic links at /{}",
                        done.join("/")
                    )));
                }
                let target = fs::read_link(&candidate)?;
                let t = target.to_string_lossy().into_owned();
                if t.starts_with('/') {
                    done.clear();
                }
                let mut parts: Vec<String> = t
                    .split('/')
                    .filter(|p| !p.is_empty() && *p != ".")
                    .map(str::to_string)
                    .collect();
                parts.reverse();
                todo.extend(parts);
            }
            _ => done.push(c),
        }
    }
    Ok(root.join(done.join("/")))
}

/// Creates the directory `path` (and missing parents) inside `root`; new
/// directories get `mode` and owner `uid:gid` (`None`: the process's).
/// Returns the real path.
pub fn mkdir_all(
    root: &Path,
    path: &str,
    mode: u32,
    owner: Option<(u32, u32)>,
) -> io::Result<PathBuf> {
    let mut cur = String::new();
    let mut real = root.to_path_buf();
    for c in components(path) {
        cur.push('/');
        cur.push_str(&c);
        real = resolve(root, &cur, true)?;
        match fs::symlink_metadata(&real) {
            Ok(md) if md.is_dir() => {}
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{cur} exists and is not a directory"),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&real)?;
                fs::set_permissions(&real, fs::Permissions::from_mode(mode))?;
                if let Some((uid, gid)) = owner {
                    std::os::unix::fs::lchown(&real, Some(uid), Some(gid))?;
                }
            }
            Err(e) => return Err(e),
        }
        cur = format!(
            "/{}",
            real.strip_prefix(root)
                .unwrap_or(Path::new(""))
                .to_string_lossy()
        );
    }
    Ok(real)
}

/// Owner and mode overrides of COPY/ADD (`--chown`, `--chmod`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Overrides {
    pub owner: Option<(u32, u32)>,
    pub mode: Option<u32>,
    /// Leave owners as the process makes them instead of `owner` or root
    /// (no `lchown`: unit tests that run without root).
    pub keep_owners: bool,
}

impl Overrides {
    /// The owner to give what is copied: `--chown`'s, else root's; `None`
    /// with `keep_owners`.
    pub fn owner_ids(&self) -> Option<(u32, u32)> {
        (!self.keep_owners).then(|| self.owner.unwrap_or((0, 0)))
    }
}

fn lchown(p: &Path, owner: Option<(u32, u32)>) -> io::Result<()> {
    match owner {
        Some((uid, gid)) => std::os::unix::fs::lchown(p, Some(uid), Some(gid)),
        None => Ok(()),
    }
}

/// Copies one entry (file, symlink or directory itself, not its children)
/// from `src` to the real path `dst`, replacing a non-directory there.
pub fn copy_entry(src: &Path, md: &fs::Metadata, dst: &Path, o: Overrides) -> io::Result<()> {
    let ft = md.file_type();
    let owner = o.owner_ids();
    if let Ok(existing) = fs::symlink_metadata(dst)
        && !(existing.is_dir() && ft.is_dir())
    {
        if existing.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("cannot replace directory {} with a file", dst.display()),
            ));
        }
        fs::remove_file(dst)?;
    }
    let mode = o.mode.unwrap_or(md.mode() & 0o7777);
    if ft.is_dir() {
        if !dst.exists() {
            fs::create_dir(dst)?;
        }
        lchown(dst, owner)?;
        fs::set_permissions(dst, fs::Permissions::from_mode(mode))?;
    } else if ft.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(src)?, dst)?;
        lchown(dst, owner)?;
        return Ok(());
    } else if ft.is_file() {
        fs::copy(src, dst)?;
        lchown(dst, owner)?;
        // After chown, which clears setuid bits.
        fs::set_permissions(dst, fs::Permissions::from_mode(mode))?;
    } else {
        // Devices, fifos and sockets are not copied (BuildKit refuses them too).
        return Ok(());
    }
    set_mtime(dst, md)
}

/// Keeps the source's modification time, as COPY does.
pub fn set_mtime(dst: &Path, md: &fs::Metadata) -> io::Result<()> {
    let ts = rustix::fs::Timespec {
        tv_sec: md.mtime(),
        tv_nsec: md.mtime_nsec(),
    };
    let times = rustix::fs::Timestamps {
        last_access: ts,
        last_modification: ts,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        dst,
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(io::Error::from)
}

/// Whether `rel` (context-relative, cleaned) stays inside the context.
pub fn inside(rel: &str) -> bool {
    !Path::new(rel)
        .components()
        .any(|c| matches!(c, Component::ParentDir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_stay_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        fs::create_dir_all(r.join("real")).unwrap();
        std::os::unix::fs::symlink("/etc", r.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../real", r.join("rel")).unwrap();
        std::os::unix::fs::symlink("loop", r.join("loop")).unwrap();
        assert_eq!(
            resolve(r, "/abs/passwd", true).unwrap(),
            r.join("etc/passwd")
        );
        assert_eq!(resolve(r, "rel/x", true).unwrap(), r.join("real/x"));
        assert_eq!(resolve(r, "/../../x", true).unwrap(), r.join("x"));
        assert_eq!(resolve(r, "abs", false).unwrap(), r.join("abs"));
        assert!(resolve(r, "loop/x", true).is_err());
        let made = mkdir_all(r, "/abs/new/dir", 0o755, None).unwrap();
        assert_eq!(made, r.join("etc/new/dir"));
        assert!(made.is_dir());
    }

    #[test]
    fn inside_context() {
        assert!(inside("a/b"));
        assert!(!inside("../a"));
    }
}
