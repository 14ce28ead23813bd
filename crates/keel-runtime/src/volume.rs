//! Named volumes: `<root>/volumes/<name>/_data` plus `<root>/volumes/<name>/volume.json`.
//! They outlive containers; only `volume rm`/`prune` and `rm -v` (anonymous
//! volumes) remove them.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError, read_err, write_err};
use crate::record::{Containers, MountKind};

/// The mount option (`-v name:/dst:nocopy`, `--mount volume-nocopy`,
/// compose's `volume.nocopy`) that keeps an empty volume empty instead of
/// filling it from the image (docker's copy-up).
pub const NOCOPY: &str = "nocopy";

/// A volume's metadata.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Volume {
    pub name: String,
    pub created: DateTime<Utc>,
    pub labels: BTreeMap<String, String>,
    pub anonymous: bool,
    #[serde(skip)]
    pub mountpoint: PathBuf,
}

/// All volumes of one root.
#[derive(Debug, Clone)]
pub struct Volumes {
    dir: PathBuf,
}

impl Volumes {
    pub fn open(root: &Path) -> Result<Self> {
        let dir = root.join("volumes");
        fs::create_dir_all(&dir).map_err(write_err(&dir))?;
        Ok(Volumes { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn check_name(name: &str) -> Result<()> {
        if crate::ids::valid_name(name) {
            Ok(())
        } else {
            Err(RuntimeError::InvalidOption {
                what: "volume name",
                value: name.to_string(),
                why: "only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed".to_string(),
            })
        }
    }

    /// Creates a volume; an existing one of that name is returned as is (like Docker).
    pub fn create(
        &self,
        name: &str,
        labels: BTreeMap<String, String>,
        anonymous: bool,
    ) -> Result<Volume> {
        Self::check_name(name)?;
        if let Ok(v) = self.get(name) {
            return Ok(v);
        }
        let d = self.dir.join(name);
        let data = d.join("_data");
        fs::create_dir_all(&data).map_err(write_err(&data))?;
        let v = Volume {
            name: name.to_string(),
            created: Utc::now(),
            labels,
            anonymous,
            mountpoint: data,
        };
        let bytes = serde_json::to_vec_pretty(&v).expect("volume serializes");
        crate::record::write_atomic(&d.join("volume.json"), &bytes)?;
        Ok(v)
    }

    pub fn get(&self, name: &str) -> Result<Volume> {
        let p = self.dir.join(name).join("volume.json");
        if Self::check_name(name).is_err() || !p.exists() {
            return Err(RuntimeError::NoSuchVolume(name.to_string()));
        }
        let bytes = fs::read(&p).map_err(read_err(&p))?;
        let mut v: Volume =
            serde_json::from_slice(&bytes).map_err(|source| RuntimeError::Parse {
                path: p.clone(),
                source,
            })?;
        v.mountpoint = self.dir.join(name).join("_data");
        Ok(v)
    }

    pub fn list(&self) -> Result<Vec<Volume>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir).map_err(read_err(&self.dir))? {
            let e = e.map_err(read_err(&self.dir))?;
            if let Ok(v) = self.get(&e.file_name().to_string_lossy()) {
                out.push(v);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// IDs of containers (any state) that mount `name`.
    pub fn users(&self, containers: &Containers, name: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for id in containers.ids()? {
            if let Ok(c) = containers.config(&id)
                && c.mounts
                    .iter()
                    .any(|m| m.kind == MountKind::Volume && m.source == name)
            {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// Removes a volume unless a container uses it (`force` skips that check).
    pub fn remove(&self, containers: &Containers, name: &str, force: bool) -> Result<()> {
        self.get(name)?;
        if !force && let Some(id) = self.users(containers, name)?.into_iter().next() {
            return Err(RuntimeError::VolumeInUse {
                name: name.to_string(),
                id,
            });
        }
        let d = self.dir.join(name);
        fs::remove_dir_all(&d).map_err(write_err(&d))
    }

    /// Removes every volume no container uses; returns the names removed.
    /// Like Docker ≥ 23, only anonymous volumes unless `all`.
    pub fn prune(&self, containers: &Containers, all: bool) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for v in self.list()? {
            if (all || v.anonymous) && self.users(containers, &v.name)?.is_empty() {
                self.remove(containers, &v.name, true)?;
                removed.push(v.name);
            }
        }
        Ok(removed)
    }
}
