//! Path safety for layer entries: names are cleaned lexically, then resolved
//! component by component with `lstat`, so that no entry can leave the root,
//! neither by `..` nor through a symlink (one from an earlier entry, or one
//! already in the destination).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::LayerError;

/// Symlink hops allowed while resolving one name (Linux uses 40 too).
const MAX_HOPS: usize = 40;

/// Lexically cleans an entry name into components below the root: a leading
/// `/` is dropped (absolute names are relative to the root, as Docker does),
/// empty and `.` components vanish and `..` removes the previous component.
/// `None` when a `..` climbs above the root.
pub(crate) fn clean(name: &[u8]) -> Option<Vec<OsString>> {
    let mut out: Vec<OsString> = Vec::new();
    for c in name.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                out.pop()?;
            }
            _ => out.push(OsString::from_vec(c.to_vec())),
        }
    }
    Some(out)
}

#[derive(Debug)]
pub(crate) enum ResolveError {
    /// Resolution left the root through the symlink named (root-relative).
    Escape {
        link: String,
    },
    Loop,
    /// A component exists and is neither a directory nor a symlink.
    NotDir {
        parent: String,
    },
    /// A component does not exist (and creation was not asked for).
    Missing,
    Io(io::Error),
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

/// Resolves directory components (root-relative, already cleaned) to a real
/// directory under `root`. Symlinks met on the way are followed only while
/// they stay inside: an absolute target, or a relative one whose `..` climbs
/// above the root, is an [`ResolveError::Escape`]. With `create`, missing
/// directories are made (mode 0755, as Docker does) and passed to `on_create`.
pub(crate) fn resolve_dir(
    root: &Path,
    comps: &[OsString],
    create: bool,
    on_create: &mut dyn FnMut(&Path),
) -> Result<PathBuf, ResolveError> {
    resolve_dir_traced(root, comps, create, on_create).map(|(p, _)| p)
}

/// [`resolve_dir`], also telling whether any symlink was followed (callers
/// only cache resolutions that did not depend on one).
pub(crate) fn resolve_dir_traced(
    root: &Path,
    comps: &[OsString],
    create: bool,
    on_create: &mut dyn FnMut(&Path),
) -> Result<(PathBuf, bool), ResolveError> {
    let mut real = root.to_path_buf();
    let mut depth = 0usize;
    let mut pending: VecDeque<OsString> = comps.iter().cloned().collect();
    let mut hops = 0usize;
    let mut via: Option<String> = None;
    while let Some(c) = pending.pop_front() {
        match c.as_bytes() {
            b"" | b"." => continue,
            b".." => {
                // Only symlink targets can bring `..` here: entry names are cleaned.
                if depth == 0 {
                    return Err(ResolveError::Escape {
                        link: via.unwrap_or_default(),
                    });
                }
                real.pop();
                depth -= 1;
                continue;
            }
            _ => {}
        }
        real.push(&c);
        match fs::symlink_metadata(&real) {
            Ok(m) if m.is_dir() => depth += 1,
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(ResolveError::Loop);
                }
                let target = fs::read_link(&real).map_err(ResolveError::Io)?;
                let link = rel(root, &real);
                real.pop();
                if target.is_absolute() {
                    return Err(ResolveError::Escape { link });
                }
                via = Some(link);
                for t in target.as_os_str().as_bytes().rsplit(|&b| b == b'/') {
                    pending.push_front(OsString::from_vec(t.to_vec()));
                }
            }
            Ok(_) => {
                return Err(ResolveError::NotDir {
                    parent: rel(root, &real),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                match fs::DirBuilder::new().mode(0o755).create(&real) {
                    Ok(()) => on_create(&real),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(ResolveError::Io(e)),
                }
                depth += 1;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ResolveError::Missing),
            Err(e) => return Err(ResolveError::Io(e)),
        }
    }
    Ok((real, hops > 0))
}

/// The error for an entry whose parent directories did not resolve.
pub(super) fn parent_error(e: ResolveError, name: &str) -> LayerError {
    match e {
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
    }
}

/// The error for a hardlink whose target's directories did not resolve.
pub(super) fn link_target_error(e: ResolveError, name: &str, target: &str) -> LayerError {
    match e {
        ResolveError::Escape { .. } => LayerError::HardlinkEscape {
            entry: name.to_owned(),
            target: target.to_owned(),
        },
        ResolveError::Missing | ResolveError::NotDir { .. } => LayerError::HardlinkTargetMissing {
            entry: name.to_owned(),
            target: target.to_owned(),
        },
        ResolveError::Loop => LayerError::SymlinkLoop {
            entry: name.to_owned(),
        },
        ResolveError::Io(source) => LayerError::Resolve {
            entry: name.to_owned(),
            source,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn c(name: &str) -> Option<Vec<String>> {
        clean(name.as_bytes()).map(|v| v.into_iter().map(|s| s.into_string().unwrap()).collect())
    }

    #[test]
    fn cleans_names() {
        assert_eq!(c("a/b/c"), Some(vec!["a".into(), "b".into(), "c".into()]));
        assert_eq!(c("/etc/passwd"), Some(vec!["etc".into(), "passwd".into()]));
        assert_eq!(c("./a//b/./"), Some(vec!["a".into(), "b".into()]));
        assert_eq!(c("a/../b"), Some(vec!["b".into()]));
        assert_eq!(c("./"), Some(vec![]));
        assert_eq!(c("../../etc/x"), None);
        assert_eq!(c("a/../../x"), None);
        assert_eq!(c("/.."), None);
    }

    #[test]
    fn resolves_inside_and_refuses_outside() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        fs::create_dir_all(root.join("usr/lib")).unwrap();
        symlink("usr/lib", root.join("lib")).unwrap();
        symlink("/", root.join("abs")).unwrap();
        symlink("../..", root.join("usr/up")).unwrap();
        symlink("../lib", root.join("usr/ok")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        fs::write(root.join("file"), "").unwrap();
        let comps = |s: &str| clean(s.as_bytes()).unwrap();
        let mut none = |_: &Path| {};
        assert_eq!(
            resolve_dir(&root, &comps("lib"), false, &mut none).unwrap(),
            root.join("usr/lib")
        );
        assert_eq!(
            resolve_dir(&root, &comps("usr/ok"), false, &mut none).unwrap(),
            root.join("usr/lib")
        );
        assert!(matches!(
            resolve_dir(&root, &comps("abs/etc"), true, &mut none),
            Err(ResolveError::Escape { link }) if link == "abs"
        ));
        assert!(matches!(
            resolve_dir(&root, &comps("usr/up"), true, &mut none),
            Err(ResolveError::Escape { link }) if link == "usr/up"
        ));
        assert!(matches!(
            resolve_dir(&root, &comps("loop"), true, &mut none),
            Err(ResolveError::Loop)
        ));
        assert!(matches!(
            resolve_dir(&root, &comps("file/x"), true, &mut none),
            Err(ResolveError::NotDir { .. })
        ));
        assert!(matches!(
            resolve_dir(&root, &comps("new/dir"), false, &mut none),
            Err(ResolveError::Missing)
        ));
        let mut made = Vec::new();
        let p = resolve_dir(&root, &comps("lib/new/dir"), true, &mut |p: &Path| {
            made.push(p.to_path_buf());
        })
        .unwrap();
        assert_eq!(p, root.join("usr/lib/new/dir"));
        assert_eq!(made.len(), 2);
        assert!(!t.path().join("etc").exists());
    }
}
