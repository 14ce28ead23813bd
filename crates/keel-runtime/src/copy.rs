//! `keel cp`: copies between the host and a container's root without ever
//! leaving that root. Container paths are resolved by the kernel with
//! `openat2(RESOLVE_IN_ROOT)` (symlinks, absolute or `..`, are followed as if
//! the root were `/`, like a chroot), and every file of a tree is created,
//! opened and inspected relative to its parent's descriptor with
//! `O_NOFOLLOW`, so a symlink the container plants, even while the copy runs,
//! is copied as a link and never written or read through.
//!
//! Semantics follow `docker cp`: a symlink named as the source is copied as a
//! link; a destination that is a directory receives the source by name (its
//! contents when the source ends in `/.`); an existing file is replaced.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{
    AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags, Stat, Timespec, Timestamps, fstat, openat,
    openat2, readlinkat, statat, symlinkat, unlinkat, utimensat,
};
use rustix::io::Errno;

use crate::{Result, RuntimeError};

/// Symlink hops allowed while resolving a destination (Linux uses 40 too).
const MAX_HOPS: usize = 40;

/// One side of a copy: a directory every path is resolved under.
pub struct Tree {
    dir: OwnedFd,
    /// `RESOLVE_IN_ROOT` for a container root; empty for the host.
    resolve: ResolveFlags,
}

impl Tree {
    /// A container's root directory (`/proc/<pid>/root` of a running one, or
    /// its mounted overlay): every path is resolved inside it.
    pub fn container(root: &Path) -> Result<Tree> {
        let dir = rustix::fs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| copy_err(&root.display().to_string(), e))?;
        Ok(Tree {
            dir,
            resolve: ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        })
    }

    /// The host, with paths relative to the current directory.
    pub fn host() -> Result<Tree> {
        let dir = rustix::fs::open(
            ".",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| copy_err(".", e))?;
        Ok(Tree {
            dir,
            resolve: ResolveFlags::empty(),
        })
    }

    fn open(&self, path: &[u8], flags: OFlags) -> io::Result<OwnedFd> {
        let path = if path.is_empty() { b"." as &[u8] } else { path };
        Ok(openat2(
            &self.dir,
            OsStr::from_bytes(path),
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            self.resolve,
        )?)
    }
}

fn copy_err(what: &str, e: impl Into<io::Error>) -> RuntimeError {
    RuntimeError::Copy {
        what: what.to_string(),
        source: e.into(),
    }
}

/// Splits a path into its parent and last component; a last component of
/// `.`, `..` or nothing names the whole path as a directory (`None`).
fn split(path: &[u8]) -> (&[u8], Option<&[u8]>) {
    let trimmed = {
        let mut p = path;
        while p.len() > 1 && p.ends_with(b"/") {
            p = &p[..p.len() - 1];
        }
        p
    };
    let (parent, name) = match trimmed.iter().rposition(|&b| b == b'/') {
        Some(0) => (&trimmed[..1], &trimmed[1..]),
        Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
        None => (&b""[..], trimmed),
    };
    match name {
        b"" | b"." | b".." => (trimmed, None),
        _ => (parent, Some(name)),
    }
}

fn kind(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// What `path` of `tree` names once the symlinks of its last component are
/// followed (`docker cp -L`), resolved in the tree like every other path:
/// the returned path is then copied with [`copy`], never read through the link.
pub fn resolve_link(tree: &Tree, path: &str) -> Result<String> {
    let mut p = path.as_bytes().to_vec();
    for _ in 0..MAX_HOPS {
        let (parent, name) = split(&p);
        let Some(name) = name else {
            return Ok(String::from_utf8_lossy(&p).into_owned());
        };
        let pfd = tree
            .open(parent, OFlags::PATH | OFlags::DIRECTORY)
            .map_err(|e| copy_err(path, e))?;
        let name = OsStr::from_bytes(name);
        let st = statat(&pfd, name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| copy_err(path, e))?;
        if kind(&st) != FileType::Symlink {
            return Ok(String::from_utf8_lossy(&p).into_owned());
        }
        let target = readlinkat(&pfd, name, Vec::new()).map_err(|e| copy_err(path, e))?;
        let t = target.as_bytes();
        p = if t.starts_with(b"/") {
            t.to_vec()
        } else {
            let mut q = parent.to_vec();
            if !q.is_empty() && !q.ends_with(b"/") {
                q.push(b'/');
            }
            q.extend_from_slice(t);
            q
        };
    }
    Err(copy_err(path, Errno::LOOP))
}

/// Copies `src` of tree `from` to `dst` of tree `to` with `docker cp`'s rules.
pub fn copy(from: &Tree, src: &str, to: &Tree, dst: &str) -> Result<()> {
    let contents_only = src.ends_with("/.") || src == ".";
    let (sparent, sname) = split(src.as_bytes());
    // What to copy: one named entry of a directory, or a directory's contents.
    let (sdir, sname): (OwnedFd, Option<OsString>) = match sname {
        Some(n) => (
            from.open(sparent, OFlags::PATH | OFlags::DIRECTORY)
                .map_err(|e| copy_err(src, e))?,
            Some(OsStr::from_bytes(n).to_os_string()),
        ),
        None => (
            from.open(sparent, OFlags::PATH | OFlags::DIRECTORY)
                .map_err(|e| copy_err(src, e))?,
            None,
        ),
    };
    let sstat = match &sname {
        Some(n) => statat(&sdir, n, AtFlags::SYMLINK_NOFOLLOW),
        None => fstat(&sdir),
    }
    .map_err(|e| copy_err(src, e))?;
    let src_is_dir = kind(&sstat) == FileType::Directory;
    if !src_is_dir && dst.ends_with('/') {
        // Docker: a trailing slash asks for an existing directory.
        match to.open(dst.as_bytes(), OFlags::PATH | OFlags::DIRECTORY) {
            Ok(_) => {}
            Err(e) => return Err(copy_err(dst, e)),
        }
    }
    let mut dpath = dst.as_bytes().to_vec();
    for _ in 0..MAX_HOPS {
        let (dparent, dname) = split(&dpath);
        let Some(dname) = dname else {
            let d = to
                .open(dparent, OFlags::RDONLY | OFlags::DIRECTORY)
                .map_err(|e| copy_err(dst, e))?;
            return into_dir(&sdir, sname.as_deref(), &sstat, contents_only, &d);
        };
        let pfd = to
            .open(dparent, OFlags::PATH | OFlags::DIRECTORY)
            .map_err(|e| copy_err(dst, e))?;
        let dname = OsStr::from_bytes(dname);
        match statat(&pfd, dname, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if kind(&st) == FileType::Symlink => {
                // Follow the destination's own link, resolved in the same tree.
                let target = readlinkat(&pfd, dname, Vec::new()).map_err(|e| copy_err(dst, e))?;
                let t = target.as_bytes();
                dpath = if t.starts_with(b"/") {
                    t.to_vec()
                } else {
                    let mut p = dparent.to_vec();
                    if !p.is_empty() && !p.ends_with(b"/") {
                        p.push(b'/');
                    }
                    p.extend_from_slice(t);
                    p
                };
            }
            Ok(st) if kind(&st) == FileType::Directory => {
                let d = openat(
                    &pfd,
                    dname,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| copy_err(dst, e))?;
                return into_dir(&sdir, sname.as_deref(), &sstat, contents_only, &d);
            }
            Ok(_) if src_is_dir => return Err(RuntimeError::CopyDirOverFile(dst.to_string())),
            Ok(_) => {
                let pd = reopen_dir(&pfd).map_err(|e| copy_err(dst, e))?;
                return entry(&sdir, sname.as_deref(), &sstat, &pd, dname, false)
                    .map_err(|e| copy_err(dst, e));
            }
            Err(Errno::NOENT) => {
                let pd = reopen_dir(&pfd).map_err(|e| copy_err(dst, e))?;
                return entry(&sdir, sname.as_deref(), &sstat, &pd, dname, false)
                    .map_err(|e| copy_err(dst, e));
            }
            Err(e) => return Err(copy_err(dst, e)),
        }
    }
    Err(copy_err(dst, Errno::LOOP))
}

fn reopen_dir(fd: &OwnedFd) -> rustix::io::Result<OwnedFd> {
    openat(
        fd,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// The source into directory `d`: by its name, or its contents.
fn into_dir(
    sdir: &OwnedFd,
    sname: Option<&OsStr>,
    sstat: &Stat,
    contents_only: bool,
    d: &OwnedFd,
) -> Result<()> {
    match sname {
        Some(n) if !contents_only => {
            entry(sdir, Some(n), sstat, d, n, false).map_err(|e| copy_err(&n.to_string_lossy(), e))
        }
        _ => {
            let s = match sname {
                Some(n) => openat(
                    sdir,
                    n,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ),
                None => reopen_dir(sdir),
            }
            .map_err(|e| copy_err(".", e))?;
            contents(&s, d, false).map_err(|e| copy_err(".", e))
        }
    }
}

/// Copies the entry `sname` of `sdir` (or `sdir` itself) to `name` in `dir`;
/// with `owners`, the copy keeps the source's uid and gid (copy-up does,
/// `docker cp` does not).
fn entry(
    sdir: &OwnedFd,
    sname: Option<&OsStr>,
    st: &Stat,
    dir: &OwnedFd,
    name: &OsStr,
    owners: bool,
) -> io::Result<()> {
    // Before chmod: a chown clears set-id bits.
    let chown_fd = |fd: &OwnedFd| -> io::Result<()> {
        if owners {
            rustix::fs::fchown(fd, Some(uid_of(st)), Some(gid_of(st)))?;
        }
        Ok(())
    };
    let chown_at = || -> io::Result<()> {
        if owners {
            rustix::fs::chownat(
                dir,
                name,
                Some(uid_of(st)),
                Some(gid_of(st)),
                AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        Ok(())
    };
    let mode = Mode::from_raw_mode(st.st_mode & 0o7777);
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: Timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec as _,
        },
    };
    let open_src = |flags: OFlags| -> rustix::io::Result<OwnedFd> {
        match sname {
            Some(n) => openat(
                sdir,
                n,
                flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ),
            None => openat(sdir, ".", flags | OFlags::CLOEXEC, Mode::empty()),
        }
    };
    match kind(st) {
        FileType::Directory => {
            let s = open_src(OFlags::RDONLY | OFlags::DIRECTORY)?;
            let d = make_dir(dir, name, mode)?;
            contents(&s, &d, owners)?;
            chown_fd(&d)?;
            rustix::fs::fchmod(&d, mode)?;
            rustix::fs::futimens(&d, &times)?;
        }
        FileType::RegularFile => {
            let s = open_src(OFlags::RDONLY | OFlags::NONBLOCK)?;
            // Checked on the open descriptor: the entry may have been swapped.
            if kind(&fstat(&s)?) != FileType::RegularFile {
                return Err(io::Error::other("source changed while copying"));
            }
            clear(dir, name, false)?;
            let d = openat(
                dir,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                mode,
            )?;
            io::copy(&mut File::from(s), &mut &File::from(d.try_clone()?))?;
            chown_fd(&d)?;
            rustix::fs::fchmod(&d, mode)?;
            rustix::fs::futimens(&d, &times)?;
        }
        FileType::Symlink => {
            let Some(n) = sname else {
                return Err(io::Error::other("cannot copy a symlink root"));
            };
            let target = readlinkat(sdir, n, Vec::new())?;
            clear(dir, name, false)?;
            symlinkat(target.as_c_str(), dir, name)?;
            chown_at()?;
            utimensat(dir, name, &times, AtFlags::SYMLINK_NOFOLLOW)?;
        }
        FileType::Fifo | FileType::CharacterDevice | FileType::BlockDevice => {
            clear(dir, name, false)?;
            rustix::fs::mknodat(dir, name, kind(st), mode, st.st_rdev)?;
            chown_at()?;
            rustix::fs::chmodat(dir, name, mode, AtFlags::empty())?;
            utimensat(dir, name, &times, AtFlags::SYMLINK_NOFOLLOW)?;
        }
        _ => {} // Sockets are not copied (as with tar).
    }
    Ok(())
}

/// Removes whatever non-directory `name` is in `dir` (a symlink is removed,
/// never followed); with `keep_dir`, an existing directory stays.
fn clear(dir: &OwnedFd, name: &OsStr, keep_dir: bool) -> io::Result<bool> {
    match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if kind(&st) == FileType::Directory => {
            if keep_dir {
                Ok(true)
            } else {
                Err(io::Error::other(format!(
                    "cannot overwrite directory {} with a non-directory",
                    name.to_string_lossy()
                )))
            }
        }
        Ok(_) => {
            unlinkat(dir, name, AtFlags::empty())?;
            Ok(false)
        }
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// `name` in `dir` as a directory (made if missing), opened without
/// following a symlink.
fn make_dir(dir: &OwnedFd, name: &OsStr, mode: Mode) -> io::Result<OwnedFd> {
    if !clear(dir, name, true)? {
        rustix::fs::mkdirat(dir, name, mode | Mode::RWXU)?;
    }
    Ok(openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn uid_of(st: &Stat) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw_unchecked(st.st_uid)
}

fn gid_of(st: &Stat) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw_unchecked(st.st_gid)
}

/// Docker's copy-up: a volume directory `data` that is empty is filled with
/// what the container root `root` has at `target` (resolved inside the
/// root), owners, modes and times kept, and takes that directory's owner and
/// mode. Returns whether anything was copied; a target the image does not
/// have (or that is not a directory) leaves the volume as it is.
pub fn copy_up(root: &Path, target: &str, data: &Path) -> Result<bool> {
    let c = Tree::container(root)?;
    let s = match c.open(target.as_bytes(), OFlags::RDONLY | OFlags::DIRECTORY) {
        Ok(s) => s,
        Err(e)
            if [Errno::NOENT, Errno::NOTDIR]
                .iter()
                .any(|n| e.raw_os_error() == Some(n.raw_os_error())) =>
        {
            return Ok(false);
        }
        Err(e) => return Err(copy_err(target, e)),
    };
    let shown = data.display().to_string();
    let d = rustix::fs::open(
        data,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| copy_err(&shown, e))?;
    let empty = Dir::read_from(&d)
        .map_err(|e| copy_err(&shown, e))?
        .filter_map(std::result::Result::ok)
        .all(|e| matches!(e.file_name().to_bytes(), b"." | b".."));
    if !empty {
        return Ok(false);
    }
    let st = fstat(&s).map_err(|e| copy_err(target, e))?;
    contents(&s, &d, true).map_err(|e| copy_err(target, e))?;
    rustix::fs::fchown(&d, Some(uid_of(&st)), Some(gid_of(&st)))
        .and_then(|()| rustix::fs::fchmod(&d, Mode::from_raw_mode(st.st_mode & 0o7777)))
        .map_err(|e| copy_err(&shown, e))?;
    Ok(true)
}

/// `mkdir -p path` inside the container root `root` (every component
/// resolved inside it, so a link the image has cannot lead out), new
/// directories 0755 and owned by root, as docker makes a missing `-w`.
pub fn mkdir_all_in_root(root: &Path, path: &str) -> Result<()> {
    let c = Tree::container(root)?;
    let mut prefix = String::new();
    for name in path.split('/').filter(|s| !s.is_empty() && *s != ".") {
        let parent = if prefix.is_empty() { "/" } else { &prefix };
        let here = format!("{prefix}/{name}");
        match c.open(here.as_bytes(), OFlags::PATH | OFlags::DIRECTORY) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => {
                let pd = c
                    .open(parent.as_bytes(), OFlags::RDONLY | OFlags::DIRECTORY)
                    .map_err(|e| copy_err(path, e))?;
                match rustix::fs::mkdirat(&pd, name, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(copy_err(path, e)),
                }
            }
            Err(e) => return Err(copy_err(path, e)),
        }
        prefix = here;
    }
    Ok(())
}

/// Every entry of directory `s` into directory `d`.
fn contents(s: &OwnedFd, d: &OwnedFd, owners: bool) -> io::Result<()> {
    let mut names = Vec::new();
    for e in Dir::read_from(s)? {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(OsStr::from_bytes(n).to_os_string());
        }
    }
    for n in names {
        let st = statat(s, &n, AtFlags::SYMLINK_NOFOLLOW)?;
        entry(s, Some(&n), &st, d, &n, owners)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    #[test]
    fn splits_paths() {
        assert_eq!(split(b"/a/b"), (&b"/a"[..], Some(&b"b"[..])));
        assert_eq!(split(b"/a"), (&b"/"[..], Some(&b"a"[..])));
        assert_eq!(split(b"a"), (&b""[..], Some(&b"a"[..])));
        assert_eq!(split(b"a/b/"), (&b"a"[..], Some(&b"b"[..])));
        assert_eq!(split(b"/"), (&b"/"[..], None));
        assert_eq!(split(b"a/."), (&b"a/."[..], None));
        assert_eq!(split(b"a/.."), (&b"a/.."[..], None));
    }

    /// A container root full of links pointing out, and a host outside it.
    fn hostile() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let outside = t.path().join("outside");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::create_dir_all(root.join("d/sub")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("secret"), "host secret").unwrap();
        fs::write(root.join("etc/secret"), "container file").unwrap();
        symlink(&outside, root.join("abs")).unwrap();
        symlink("../../../../../../..", root.join("up")).unwrap();
        symlink(outside.join("secret"), root.join("final")).unwrap();
        symlink("/etc/secret", root.join("inside")).unwrap();
        symlink(outside.join("secret"), root.join("d/sub/leak")).unwrap();
        (t, root, outside)
    }

    #[test]
    fn writes_stay_inside_the_root() {
        let (t, root, outside) = hostile();
        let src = t.path().join("src.txt");
        fs::write(&src, "payload").unwrap();
        let c = Tree::container(&root).unwrap();
        let h = Tree::host().unwrap();
        let s = src.to_str().unwrap();
        // Links resolve inside the root, where their targets do not exist.
        for dst in ["/abs/secret", "/final", "up/final", "/d/sub/leak"] {
            copy(&h, s, &c, dst).unwrap_err();
        }
        assert_eq!(
            fs::read_to_string(outside.join("secret")).unwrap(),
            "host secret"
        );
        for dst in ["/up/etc/secret", "/inside"] {
            fs::write(root.join("etc/secret"), "container file").unwrap();
            copy(&h, s, &c, dst).unwrap();
            assert_eq!(
                fs::read_to_string(root.join("etc/secret")).unwrap(),
                "payload"
            );
        }
        // A tree whose names meet the container's links replaces them.
        let tree = t.path().join("tree");
        fs::create_dir_all(tree.join("sub")).unwrap();
        fs::write(tree.join("sub/leak"), "replaced").unwrap();
        copy(&h, &format!("{}/.", tree.display()), &c, "/d").unwrap();
        assert_eq!(
            fs::read_to_string(root.join("d/sub/leak")).unwrap(),
            "replaced"
        );
        assert_eq!(
            fs::read_to_string(outside.join("secret")).unwrap(),
            "host secret"
        );
    }

    /// Copy-up and the `-w` directory resolve inside the root: an image's
    /// links cannot make keel read or write the host.
    #[test]
    fn copy_up_and_workdir_stay_inside_the_root() {
        let (t, root, outside) = hostile();
        let vol = t.path().join("vol");
        fs::create_dir(&vol).unwrap();
        // /abs -> the host's `outside`: inside the root it leads nowhere.
        assert!(!copy_up(&root, "/abs", &vol).unwrap());
        assert!(!copy_up(&root, "/up/abs", &vol).unwrap());
        assert_eq!(fs::read_dir(&vol).unwrap().count(), 0);
        // A real directory is copied, its links as links.
        assert!(copy_up(&root, "/d", &vol).unwrap());
        assert!(
            fs::symlink_metadata(vol.join("sub/leak"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        // Not again once the volume has content.
        fs::remove_file(vol.join("sub/leak")).unwrap();
        assert!(!copy_up(&root, "/d", &vol).unwrap());
        assert!(!vol.join("sub/leak").exists());
        // mkdir -p through links that point out stays inside: a link that
        // leads nowhere inside the root is an error, `..` stops at the root.
        mkdir_all_in_root(&root, "/abs/made/here").unwrap_err();
        mkdir_all_in_root(&root, "/up/up/w").unwrap();
        assert!(!outside.join("made").exists());
        assert!(root.join("w").is_dir());
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 1);
    }

    #[test]
    fn reads_stay_inside_the_root() {
        let (t, root, _outside) = hostile();
        let c = Tree::container(&root).unwrap();
        let h = Tree::host().unwrap();
        let out = t.path().join("out");
        fs::create_dir(&out).unwrap();
        let o = out.to_str().unwrap();
        // The final link is copied as a link, not as the host file.
        copy(&c, "/final", &h, &format!("{o}/f")).unwrap();
        assert!(
            fs::symlink_metadata(out.join("f"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        // Through an intermediate link, the path resolves inside the root.
        copy(&c, "/up/etc/secret", &h, &format!("{o}/s")).unwrap();
        assert_eq!(fs::read_to_string(out.join("s")).unwrap(), "container file");
        copy(&c, "/abs/secret", &h, &format!("{o}/x")).unwrap_err();
        // A tree with a link inside keeps the link.
        copy(&c, "/d", &h, &format!("{o}/d")).unwrap();
        assert!(
            fs::symlink_metadata(out.join("d/sub/leak"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }
}
