//! Sources of COPY/ADD: the build context (filtered by `.dockerignore`) or
//! another stage's or image's root. Selects what a source names (wildcards,
//! `--exclude`), hashes it for the cache (names, contents, modes, owners,
//! link targets; never times) and copies it into a stage's root.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use keel_dockerfile::Ignore;
use keel_dockerfile::ignore::clean;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::fsops::{self, Overrides};

/// Where COPY reads from.
#[derive(Debug)]
pub struct SourceRoot<'a> {
    pub dir: &'a Path,
    /// `.dockerignore` (the build context only).
    pub ignore: Option<&'a Ignore>,
    /// Paths are resolved inside `dir` following symlinks (stage roots), or
    /// taken literally and refused when they climb out (the context).
    pub is_context: bool,
}

/// One selected source: its context-relative path and real path.
#[derive(Debug, Clone)]
pub struct Selected {
    pub rel: String,
    pub real: PathBuf,
    pub is_dir: bool,
}

/// Why a source cannot be used.
#[derive(Debug)]
pub enum SelectError {
    Outside(String),
    Missing(String),
    Io(String, std::io::Error),
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn matcher(patterns: &[String]) -> Option<Ignore> {
    if patterns.is_empty() {
        return None;
    }
    Ignore::parse(&patterns.join("\n"), "--exclude").ok()
}

impl SourceRoot<'_> {
    fn ignored(&self, rel: &str) -> bool {
        self.ignore.is_some_and(|i| i.matches(rel, false))
    }

    /// The entries `source` names: a path or a wildcard pattern.
    pub fn select(&self, source: &str) -> Result<Vec<Selected>, SelectError> {
        let rel = clean(source.trim_start_matches('/'));
        if self.is_context && !fsops::inside(&rel) {
            return Err(SelectError::Outside(source.to_string()));
        }
        if has_wildcard(&rel) {
            let pat = Ignore::parse(&rel, "source")
                .map_err(|e| SelectError::Io(source.to_string(), std::io::Error::other(e)))?;
            let mut out = Vec::new();
            self.walk_matching(Path::new(""), &pat, &mut out)?;
            if out.is_empty() {
                return Err(SelectError::Missing(source.to_string()));
            }
            return Ok(out);
        }
        let real = if self.is_context {
            if rel == "." {
                self.dir.to_path_buf()
            } else {
                self.dir.join(&rel)
            }
        } else {
            fsops::resolve(self.dir, &rel, true)
                .map_err(|e| SelectError::Io(source.to_string(), e))?
        };
        // The context's own symlinks are followed only inside it.
        let real = if self.is_context && fs::symlink_metadata(&real).is_ok_and(|m| m.is_symlink()) {
            fsops::resolve(self.dir, &rel, true)
                .map_err(|e| SelectError::Io(source.to_string(), e))?
        } else {
            real
        };
        if rel != "." && self.ignored(&rel) {
            return Err(SelectError::Missing(source.to_string()));
        }
        match fs::metadata(&real) {
            Ok(md) => Ok(vec![Selected {
                rel,
                real,
                is_dir: md.is_dir(),
            }]),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(SelectError::Missing(source.to_string()))
            }
            Err(e) => Err(SelectError::Io(source.to_string(), e)),
        }
    }

    fn walk_matching(
        &self,
        rel: &Path,
        pat: &Ignore,
        out: &mut Vec<Selected>,
    ) -> Result<(), SelectError> {
        let dir = self.dir.join(rel);
        let mut names: Vec<_> = fs::read_dir(&dir)
            .and_then(|rd| rd.map(|e| e.map(|e| e.file_name())).collect())
            .map_err(|e| SelectError::Io(dir.display().to_string(), e))?;
        names.sort();
        for n in names {
            let r = rel.join(&n);
            let rs = r.to_string_lossy().into_owned();
            if self.ignored(&rs) {
                continue;
            }
            let real = self.dir.join(&r);
            let md = fs::symlink_metadata(&real)
                .map_err(|e| SelectError::Io(real.display().to_string(), e))?;
            if pat.matches(&rs, md.is_dir()) {
                out.push(Selected {
                    rel: rs,
                    real,
                    is_dir: md.is_dir(),
                });
            } else if md.is_dir() {
                self.walk_matching(&r, pat, out)?;
            }
        }
        Ok(())
    }

    /// Every entry below a selected source (itself first), with the path
    /// relative to the source, honouring `.dockerignore` and `--exclude`.
    pub fn entries(
        &self,
        sel: &Selected,
        exclude: &[String],
    ) -> std::io::Result<Vec<(String, PathBuf, fs::Metadata)>> {
        let ex = matcher(exclude);
        let mut out = Vec::new();
        let md = fs::metadata(&sel.real)?;
        out.push((String::new(), sel.real.clone(), md.clone()));
        if md.is_dir() {
            self.walk_all(sel, &sel.real, "", ex.as_ref(), &mut out)?;
        }
        Ok(out)
    }

    fn walk_all(
        &self,
        sel: &Selected,
        dir: &Path,
        rel: &str,
        ex: Option<&Ignore>,
        out: &mut Vec<(String, PathBuf, fs::Metadata)>,
    ) -> std::io::Result<()> {
        let mut names: Vec<_> = fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();
        for n in names {
            let name = n.to_string_lossy();
            let r = if rel.is_empty() {
                name.to_string()
            } else {
                format!("{rel}/{name}")
            };
            let ctx_rel = if sel.rel == "." {
                r.clone()
            } else {
                format!("{}/{r}", sel.rel)
            };
            let real = dir.join(&n);
            let md = fs::symlink_metadata(&real)?;
            let excluded = self.ignored(&ctx_rel) || ex.is_some_and(|e| e.matches(&r, md.is_dir()));
            if excluded {
                // A `!` exception may re-include something below an excluded dir.
                let may = self.ignore.is_some_and(|i| i.may_reinclude_below(&ctx_rel));
                if md.is_dir() && may {
                    self.walk_all(sel, &real, &r, ex, out)?;
                }
                continue;
            }
            let is_dir = md.is_dir();
            out.push((r.clone(), real.clone(), md));
            if is_dir {
                self.walk_all(sel, &real, &r, ex, out)?;
            }
        }
        Ok(())
    }
}

/// Remembers file content hashes by (device, inode, size, mtime, ctime), so a
/// rebuild does not re-read unchanged files. A touched file is re-read (its
/// times changed) and, same content, hashes the same: mtime never reaches a key.
#[derive(Debug, Default)]
pub struct HashMemo {
    path: Option<PathBuf>,
    map: Mutex<HashMap<String, MemoEntry>>,
    dirty: Mutex<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct MemoEntry {
    stat: (u64, u64, u64, i64, i64, i64, i64),
    hash: String,
}

fn stat_key(md: &fs::Metadata) -> (u64, u64, u64, i64, i64, i64, i64) {
    (
        md.dev(),
        md.ino(),
        md.size(),
        md.mtime(),
        md.mtime_nsec(),
        md.ctime(),
        md.ctime_nsec(),
    )
}

impl HashMemo {
    /// Loads the memo stored at `path` (a missing or unreadable one is empty).
    pub fn load(path: PathBuf) -> Self {
        let map = fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        HashMemo {
            path: Some(path),
            map: Mutex::new(map),
            dirty: Mutex::new(false),
        }
    }

    /// Writes the memo back (atomically) if it changed.
    pub fn save(&self) {
        let Some(path) = &self.path else { return };
        if !*self.dirty.lock().expect("memo lock") {
            return;
        }
        let map = self.map.lock().expect("memo lock");
        let bytes = serde_json::to_vec(&*map).expect("memo serializes");
        let _ = crate::cache::write_atomic(path, &bytes);
    }

    /// The sha256 of a regular file's content.
    pub fn file_hash(&self, path: &Path, md: &fs::Metadata) -> std::io::Result<String> {
        let key = path.to_string_lossy().into_owned();
        let stat = stat_key(md);
        if let Some(e) = self.map.lock().expect("memo lock").get(&key)
            && e.stat == stat
        {
            return Ok(e.hash.clone());
        }
        let mut f = fs::File::open(path)?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let hash = hex::encode(h.finalize());
        self.map.lock().expect("memo lock").insert(
            key,
            MemoEntry {
                stat,
                hash: hash.clone(),
            },
        );
        *self.dirty.lock().expect("memo lock") = true;
        Ok(hash)
    }
}

/// Hash of every entry of a selected source: `path → hash of (type, mode,
/// owner, content or link target)`. The map feeds the cache key and
/// `--explain-cache`.
pub fn hash_entries(
    entries: &[(String, PathBuf, fs::Metadata)],
    sel: &Selected,
    memo: &HashMemo,
) -> std::io::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (rel, real, md) in entries {
        let ft = md.file_type();
        let what = if ft.is_dir() {
            "dir".to_string()
        } else if ft.is_symlink() {
            format!("link:{}", fs::read_link(real)?.to_string_lossy())
        } else if ft.is_file() {
            format!("file:{}", memo.file_hash(real, md)?)
        } else {
            "other".to_string()
        };
        let name = match (sel.rel.as_str(), rel.as_str()) {
            (s, "") => s.to_string(),
            (".", r) => r.to_string(),
            (s, r) => format!("{s}/{r}"),
        };
        out.insert(
            name,
            format!("{what} {:o} {}:{}", md.mode() & 0o7777, md.uid(), md.gid()),
        );
    }
    Ok(out)
}

/// Copies `entries` of one source into `dest_real` (already resolved in `root`).
/// `dest_is_dir` says whether the source goes below the destination directory.
pub fn copy_into(
    root: &Path,
    entries: &[(String, PathBuf, fs::Metadata)],
    dest: &str,
    o: Overrides,
) -> std::io::Result<()> {
    let owner = o.owner_ids();
    let mut dirs = Vec::new();
    for (rel, real, md) in entries {
        if rel.is_empty() && md.is_dir() {
            // A directory source copies its contents; the destination directory
            // keeps its own metadata, or is made 0755 (as buildah does).
            fsops::mkdir_all(root, dest, 0o755, owner)?;
            continue;
        }
        let target = if rel.is_empty() {
            dest.to_string()
        } else {
            format!("{}/{rel}", dest.trim_end_matches('/'))
        };
        let comps = fsops::components(&target);
        let parent = format!("/{}", comps[..comps.len().saturating_sub(1)].join("/"));
        let parent_real = fsops::mkdir_all(root, &parent, 0o755, owner)?;
        let Some(last) = comps.last() else {
            // The destination is the root itself: only its children are copied.
            continue;
        };
        let dst = parent_real.join(last);
        // A symlink at the destination of a directory is followed (inside the root).
        let dst = if md.is_dir() {
            fsops::resolve(root, &target, true)?
        } else {
            dst
        };
        // --chmod applies to what is copied, not to the destination
        // directory a directory source's contents go into (as buildah does).
        let o = if rel.is_empty() && md.is_dir() {
            Overrides { mode: None, ..o }
        } else {
            o
        };
        fsops::copy_entry(real, md, &dst, o)?;
        if md.is_dir() {
            dirs.push((dst, md));
        }
    }
    // Directory times last: writing their entries changed them.
    for (dst, md) in dirs.iter().rev() {
        fsops::set_mtime(dst, md)?;
    }
    Ok(())
}
