//! The local backend as terraform has it: `terraform.tfstate` (or
//! `terraform.tfstate.d/WORKSPACE/terraform.tfstate`), locked with a POSIX
//! record lock on the state file itself plus `.terraform.tfstate.lock.info`,
//! so keel and terraform exclude each other. State is rewritten through the
//! locked descriptor (a rename would move the lock's inode away), after a
//! backup; the journal covers a crash in between.

use std::fs::File;
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::state::{Journal, StateError, StateFile, write_atomic};

/// Terraform's `LockInfo`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LockInfo {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Operation")]
    pub operation: String,
    #[serde(rename = "Info")]
    pub info: String,
    #[serde(rename = "Who")]
    pub who: String,
    #[serde(rename = "Version")]
    pub version: String,
    #[serde(rename = "Created")]
    pub created: String,
    #[serde(rename = "Path")]
    pub path: String,
}

impl LockInfo {
    pub fn new(operation: &str, path: &str) -> LockInfo {
        let host = std::fs::read_to_string("/etc/hostname")
            .unwrap_or_default()
            .trim()
            .to_string();
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        LockInfo {
            id: uuid::Uuid::new_v4().to_string(),
            operation: operation.to_string(),
            info: String::new(),
            who: format!("{user}@{host}"),
            version: crate::state::TERRAFORM_VERSION.to_string(),
            // Go's JSON time format, which terraform parses.
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            path: path.to_string(),
        }
    }

    /// The block terraform prints under "Lock Info:".
    pub fn describe(&self) -> String {
        format!(
            "Lock Info:\n  ID:        {}\n  Path:      {}\n  Operation: {}\n  Who:       {}\n  Version:   {}\n  Created:   {}\n  Info:      {}\n",
            self.id,
            self.path,
            self.operation,
            self.who,
            self.version,
            chrono::DateTime::parse_from_rfc3339(&self.created).map_or_else(
                |_| self.created.clone(),
                |t| t
                    .with_timezone(&chrono::Utc)
                    .format("%Y-%m-%d %H:%M:%S%.9f +0000 UTC")
                    .to_string()
            ),
            self.info
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("Error acquiring the state lock\n\nError message: resource temporarily unavailable\n{}\nTerraform acquires a state lock to protect the state from being written\nby multiple users at the same time. Please resolve the issue above and try\nagain. For most commands, you can disable locking with the \"-lock=false\"\nflag, but this is not recommended.", .0.as_ref().map(LockInfo::describe).unwrap_or_default())]
    Locked(Option<LockInfo>),
    #[error("{0}")]
    State(#[from] StateError),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("Failed to unlock state: lock ID {given:?} does not match existing lock ID {held:?}")]
    WrongLockId { given: String, held: String },
    #[error("Failed to unlock state: no lock is held on {0}")]
    NotLocked(PathBuf),
    #[error("{0}")]
    Http(String),
    #[error("Workspace {0:?} doesn't exist.")]
    NoWorkspace(String),
    #[error("Workspace {0:?} already exists")]
    WorkspaceExists(String),
    #[error(
        "Workspace {0:?} is your active workspace.\n\nYou cannot delete the currently active workspace. Please switch\nto another workspace and try again."
    )]
    ActiveWorkspace(String),
    #[error(
        "Workspace is not empty\n\nWorkspace {0:?} is currently tracking resources. Deleting it would leave them\nunmanaged. Destroy them first, or use -force."
    )]
    WorkspaceNotEmpty(String),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackendError + use<> {
    let path = path.to_path_buf();
    move |source| BackendError::Io { what, path, source }
}

/// The local backend of one working directory.
#[derive(Clone, Debug)]
pub struct LocalBackend {
    pub dir: PathBuf,
    /// `path` from the backend block, relative to `dir`.
    pub path: Option<PathBuf>,
    pub workspace: String,
}

/// A held state lock; dropping it unlocks.
#[derive(Debug)]
pub struct StateLock {
    file: File,
    info_path: PathBuf,
    pub state_path: PathBuf,
    first_write: bool,
}

impl LocalBackend {
    pub fn new(dir: &Path, path: Option<PathBuf>) -> LocalBackend {
        let workspace = std::env::var("TF_WORKSPACE")
            .ok()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| {
                std::fs::read_to_string(dir.join(".terraform/environment"))
                    .map(|s| s.trim().to_string())
                    .ok()
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "default".into())
            });
        LocalBackend {
            dir: dir.to_path_buf(),
            path,
            workspace,
        }
    }

    pub fn state_path(&self) -> PathBuf {
        let base = self.dir.join(
            self.path
                .clone()
                .unwrap_or_else(|| PathBuf::from("terraform.tfstate")),
        );
        if self.workspace == "default" {
            base
        } else {
            self.dir
                .join("terraform.tfstate.d")
                .join(&self.workspace)
                .join(base.file_name().unwrap_or_default())
        }
    }

    fn info_path(state: &Path) -> PathBuf {
        let name = state
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        state.with_file_name(format!(".{name}.lock.info"))
    }

    /// Takes the lock, retrying until `timeout`.
    pub fn lock(&self, operation: &str, timeout: Duration) -> Result<StateLock, BackendError> {
        let path = self.state_path();
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).map_err(io("creating", d))?;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io("opening", &path))?;
        let start = Instant::now();
        loop {
            match rustix::fs::fcntl_lock(
                &file,
                rustix::fs::FlockOperation::NonBlockingLockExclusive,
            ) {
                Ok(()) => break,
                Err(_) if start.elapsed() < timeout => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(_) => {
                    let info = std::fs::read_to_string(Self::info_path(&path))
                        .ok()
                        .and_then(|t| serde_json::from_str(&t).ok());
                    return Err(BackendError::Locked(info));
                }
            }
        }
        let info_path = Self::info_path(&path);
        let rel = path
            .strip_prefix(&self.dir)
            .unwrap_or(&path)
            .display()
            .to_string();
        let info = LockInfo::new(operation, &rel);
        // Informational only (the record lock is what excludes): no fsync.
        std::fs::write(&info_path, serde_json::to_string(&info).unwrap_or_default())
            .map_err(io("writing", &info_path))?;
        Ok(StateLock {
            file,
            info_path,
            state_path: path,
            first_write: true,
        })
    }

    /// Reads state without locking (show, output, state list).
    pub fn read_unlocked(&self) -> Result<StateFile, BackendError> {
        let path = self.state_path();
        let mut s = StateFile::read(&path)?.unwrap_or_default();
        Journal::replay(&path, &mut s);
        Ok(s)
    }

    /// Removes a stale lock info file (`force-unlock`): terraform's local
    /// locks die with their process, so only the info can be left over.
    pub fn force_unlock(&self, id: &str) -> Result<(), BackendError> {
        let path = self.state_path();
        let ip = Self::info_path(&path);
        let info: Option<LockInfo> = std::fs::read_to_string(&ip)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        match info {
            Some(i) if i.id == id => {
                std::fs::remove_file(&ip).map_err(io("removing", &ip))?;
                Ok(())
            }
            Some(i) => Err(BackendError::WrongLockId {
                given: id.into(),
                held: i.id,
            }),
            None => Err(BackendError::NotLocked(path)),
        }
    }

    pub fn workspaces(&self) -> Vec<String> {
        let mut out = vec!["default".to_string()];
        if let Ok(rd) = std::fs::read_dir(self.dir.join("terraform.tfstate.d")) {
            let mut more: Vec<String> = rd
                .flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            more.sort();
            out.extend(more);
        }
        out
    }

    pub fn select_workspace(&self, name: &str) -> Result<(), BackendError> {
        if !self.workspaces().iter().any(|w| w == name) {
            return Err(BackendError::NoWorkspace(name.into()));
        }
        let p = self.dir.join(".terraform/environment");
        if name == "default" {
            let _ = std::fs::remove_file(&p);
            return Ok(());
        }
        write_atomic(&p, name.as_bytes()).map_err(io("writing", &p))
    }

    pub fn new_workspace(&self, name: &str) -> Result<(), BackendError> {
        if self.workspaces().iter().any(|w| w == name) {
            return Err(BackendError::WorkspaceExists(name.into()));
        }
        let d = self.dir.join("terraform.tfstate.d").join(name);
        std::fs::create_dir_all(&d).map_err(io("creating", &d))?;
        self.select_workspace(name)
    }

    pub fn delete_workspace(&self, name: &str, force: bool) -> Result<(), BackendError> {
        if name == self.workspace {
            return Err(BackendError::ActiveWorkspace(name.into()));
        }
        if name == "default" || !self.workspaces().iter().any(|w| w == name) {
            return Err(BackendError::NoWorkspace(name.into()));
        }
        let other = LocalBackend {
            workspace: name.into(),
            ..self.clone()
        };
        if !force && other.read_unlocked()?.resource_count() > 0 {
            return Err(BackendError::WorkspaceNotEmpty(name.into()));
        }
        let d = self.dir.join("terraform.tfstate.d").join(name);
        std::fs::remove_dir_all(&d).map_err(io("removing", &d))
    }
}

impl StateLock {
    /// Reads the state through the locked descriptor, replaying a leftover journal.
    pub fn read(&mut self) -> Result<StateFile, BackendError> {
        let mut text = String::new();
        self.file
            .rewind()
            .map_err(io("reading", &self.state_path))?;
        self.file
            .read_to_string(&mut text)
            .map_err(io("reading", &self.state_path))?;
        let mut s = match StateFile::parse(&self.state_path, &text) {
            Ok(s) => s.unwrap_or_default(),
            // A write torn by a crash: the backup plus the journal is the state.
            Err(e) => match StateFile::read(&backup_path(&self.state_path)) {
                Ok(Some(b)) if Journal::path_for(&self.state_path).exists() => b,
                _ => return Err(e.into()),
            },
        };
        Journal::replay(&self.state_path, &mut s);
        Ok(s)
    }

    /// Writes the state in place (serial bumped), after backing up the
    /// previous one on the first write of this run.
    pub fn write(&mut self, s: &mut StateFile) -> Result<(), BackendError> {
        let mut old = String::new();
        self.file
            .rewind()
            .map_err(io("reading", &self.state_path))?;
        self.file
            .read_to_string(&mut old)
            .map_err(io("reading", &self.state_path))?;
        if old.trim() == s.to_json().trim() {
            return Ok(());
        }
        if self.first_write && !old.trim().is_empty() {
            let b = backup_path(&self.state_path);
            // The state itself is synced below; the backup need not be.
            std::fs::write(&b, old.as_bytes()).map_err(io("writing", &b))?;
        }
        self.first_write = false;
        s.serial += 1;
        let bytes = s.to_json();
        self.file
            .set_len(0)
            .map_err(io("writing", &self.state_path))?;
        self.file
            .rewind()
            .map_err(io("writing", &self.state_path))?;
        self.file
            .write_all(bytes.as_bytes())
            .map_err(io("writing", &self.state_path))?;
        self.file
            .sync_all()
            .map_err(io("syncing", &self.state_path))?;
        Ok(())
    }

    pub fn journal(&self) -> std::io::Result<Journal> {
        Journal::open(&self.state_path)
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.info_path);
        let _ = rustix::fs::fcntl_lock(&self.file, rustix::fs::FlockOperation::NonBlockingUnlock);
    }
}

pub fn backup_path(state: &Path) -> PathBuf {
    let name = state
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    state.with_file_name(format!("{name}.backup"))
}
