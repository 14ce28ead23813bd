//! A [`Runner`] for unit tests: no mounts, no containers, no root.
//!
//! [`FakeRunner::mount`] emulates an overlay by copying the lower dirs into
//! `merged` (whiteouts applied) and, on unmount, writing what changed into
//! `upper` the way overlayfs would have. [`FakeRunner::run`] records each
//! [`RunRequest`] and lets the test's script write into the upper dir, as
//! the real command would have.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use keel_runtime::RuntimeError;

use crate::runner::{RunDone, RunRequest, Runner, Stream};

/// What the test's script gets for one `RUN`.
pub struct Call<'a> {
    pub req: &'a RunRequest,
    /// Where the command's changes go (already seeded).
    pub upper: &'a Path,
    /// Prints a line as the command would.
    pub output: &'a mut dyn FnMut(Stream, &[u8]),
}

type Script = dyn Fn(Call<'_>) -> i32 + Sync;

pub struct FakeRunner {
    dir: PathBuf,
    script: Box<Script>,
    /// Every `RUN` asked for, in order.
    pub calls: Mutex<Vec<RunRequest>>,
    /// `merged` → its content right after mounting.
    mounted: Mutex<BTreeMap<PathBuf, BTreeMap<PathBuf, Node>>>,
    next: Mutex<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir(u32),
    File(u32, Vec<u8>),
    Symlink(PathBuf),
}

impl FakeRunner {
    /// Upper dirs of runs go under `dir`; `script` plays each command and
    /// returns its exit code.
    pub fn new(dir: &Path, script: impl Fn(Call<'_>) -> i32 + Sync + 'static) -> Self {
        FakeRunner {
            dir: dir.to_path_buf(),
            script: Box::new(script),
            calls: Mutex::new(Vec::new()),
            mounted: Mutex::new(BTreeMap::new()),
            next: Mutex::new(0),
        }
    }
}

/// Writes `content` at `rel` below `root`, creating parents (0755).
pub fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel.trim_start_matches('/'));
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
}

fn io_err(e: io::Error) -> RuntimeError {
    RuntimeError::Start(format!("fake runner: {e}"))
}

/// Copies `src` over `dst` as an overlay lower would show through: a 0/0
/// char device deletes.
fn overlay_copy(src: &Path, dst: &Path) -> io::Result<()> {
    for e in fs::read_dir(src)? {
        let e = e?;
        let (from, to) = (e.path(), dst.join(e.file_name()));
        let md = fs::symlink_metadata(&from)?;
        let ft = md.file_type();
        if ft.is_char_device() && md.rdev() == 0 {
            remove(&to)?;
        } else if ft.is_dir() {
            if !fs::symlink_metadata(&to).is_ok_and(|m| m.is_dir()) {
                remove(&to)?;
                fs::create_dir(&to)?;
            }
            fs::set_permissions(&to, fs::Permissions::from_mode(md.mode() & 0o7777))?;
            overlay_copy(&from, &to)?;
        } else if ft.is_symlink() {
            remove(&to)?;
            symlink(fs::read_link(&from)?, &to)?;
        } else if ft.is_file() {
            remove(&to)?;
            fs::copy(&from, &to)?;
        }
    }
    Ok(())
}

fn remove(p: &Path) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn list(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Node>) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let p = e?.path();
        let md = fs::symlink_metadata(&p)?;
        let rel = p.strip_prefix(root).unwrap().to_path_buf();
        let mode = md.mode() & 0o7777;
        if md.is_dir() {
            out.insert(rel, Node::Dir(mode));
            list(root, &p, out)?;
        } else if md.file_type().is_symlink() {
            out.insert(rel, Node::Symlink(fs::read_link(&p)?));
        } else {
            out.insert(rel, Node::File(mode, fs::read(&p)?));
        }
    }
    Ok(())
}

struct FakeRun {
    upper: PathBuf,
    code: i32,
}

impl RunDone for FakeRun {
    fn code(&self) -> i32 {
        self.code
    }

    fn upper_dir(&self) -> PathBuf {
        self.upper.clone()
    }

    fn remove(&mut self) -> Result<(), RuntimeError> {
        remove(&self.upper).map_err(io_err)
    }
}

impl Runner for FakeRunner {
    /// Trees keep the test process's owners (so no root is needed).
    fn sets_owners(&self) -> bool {
        false
    }

    fn mount(&self, dir: &Path, lowers: &[PathBuf]) -> Result<PathBuf, RuntimeError> {
        let merged = dir.join("merged");
        for d in [&merged, &dir.join("upper")] {
            fs::create_dir_all(d).map_err(io_err)?;
        }
        let mut seen = BTreeMap::new();
        for l in lowers {
            overlay_copy(l, &merged).map_err(io_err)?;
        }
        list(&merged, &merged, &mut seen).map_err(io_err)?;
        self.mounted.lock().unwrap().insert(merged.clone(), seen);
        Ok(merged)
    }

    fn unmount(&self, merged: &Path) -> Result<(), RuntimeError> {
        let Some(before) = self.mounted.lock().unwrap().remove(merged) else {
            return Ok(());
        };
        let mut now = BTreeMap::new();
        list(merged, merged, &mut now).map_err(io_err)?;
        let upper = merged.parent().unwrap().join("upper");
        for (rel, node) in &now {
            if before.get(rel) == Some(node) {
                continue;
            }
            // overlayfs copies the parents up too.
            for parent in rel
                .ancestors()
                .skip(1)
                .filter(|p| !p.as_os_str().is_empty())
            {
                let up = upper.join(parent);
                if !up.exists() {
                    fs::create_dir_all(&up).map_err(io_err)?;
                    let mode = fs::metadata(merged.join(parent)).map_err(io_err)?.mode();
                    fs::set_permissions(&up, fs::Permissions::from_mode(mode & 0o7777))
                        .map_err(io_err)?;
                }
            }
            let to = upper.join(rel);
            match node {
                Node::Dir(mode) => {
                    fs::create_dir_all(&to).map_err(io_err)?;
                    fs::set_permissions(&to, fs::Permissions::from_mode(*mode)).map_err(io_err)?;
                }
                Node::Symlink(t) => symlink(t, &to).map_err(io_err)?,
                Node::File(mode, data) => {
                    fs::write(&to, data).map_err(io_err)?;
                    fs::set_permissions(&to, fs::Permissions::from_mode(*mode)).map_err(io_err)?;
                }
            }
        }
        assert!(
            before.keys().all(|k| now.contains_key(k)),
            "the fake overlay cannot record deletions"
        );
        remove(merged).map_err(io_err)
    }

    fn run(
        &self,
        req: &RunRequest,
        seed: &mut dyn FnMut(&Path) -> io::Result<()>,
        _cancel: &AtomicBool,
        output: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<Box<dyn RunDone>, RuntimeError> {
        self.calls.lock().unwrap().push(req.clone());
        let n = {
            let mut next = self.next.lock().unwrap();
            *next += 1;
            *next
        };
        let upper = self.dir.join(format!("run-{n}"));
        fs::create_dir_all(&upper).map_err(io_err)?;
        seed(&upper).map_err(io_err)?;
        let code = (self.script)(Call {
            req,
            upper: &upper,
            output,
        });
        Ok(Box::new(FakeRun { upper, code }))
    }
}
