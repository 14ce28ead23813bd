//! The build cache under `<root>/build/cache`: one JSON entry per step key
//! (`entries/<key>.json`: the layer the step made, its history entry and the
//! inputs it was computed from), written atomically (temp, rename). An entry
//! is written only once its layer blob is durable, and only used after that
//! blob is checked: present, and its content hashing to its digest
//! (re-hashed whenever the blob file's stat differs from the last
//! verification). A bad entry is deleted, never used.
//! `positions/<hash>.json` remembers the inputs last seen at each Dockerfile
//! position, so a miss can say which input changed (`--explain-cache`).

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use keel_oci::{BlobStore, Digest};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::{Result, io_err};

/// Changes whenever a step would make a different result from the same
/// inputs (a fix in how COPY or RUN work), so old entries stop matching.
const KEY_VERSION: &str = "keel-build 2\n";

/// A layer as the build keeps it: an uncompressed tar blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    pub digest: String,
    pub diff_id: String,
    pub size: u64,
    /// Empty for keel's own (uncompressed tar) layers.
    #[serde(default)]
    pub media_type: String,
}

/// What a step's key is made of.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs {
    /// The previous step's key (or the base image's).
    pub parent: String,
    /// The instruction after substitution (and everything else that decides
    /// the result: mounts, network, the stage's shell, user and workdir).
    pub instruction: String,
    /// Build args the step uses, with their values.
    pub args: BTreeMap<String, String>,
    /// For COPY/ADD: source path → hash of its type, mode, owner and content.
    pub sources: BTreeMap<String, String>,
}

impl Inputs {
    /// The cache key: sha256 of the canonical JSON of the inputs.
    pub fn key(&self) -> String {
        let bytes = serde_json::to_vec(self).expect("inputs serialize");
        let mut h = Sha256::new();
        h.update(KEY_VERSION.as_bytes());
        h.update(&bytes);
        hex::encode(h.finalize())
    }
}

/// A cached step result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub layer: Option<LayerRef>,
    pub history: serde_json::Value,
    pub inputs: Inputs,
    /// Stat of the layer blob when it was last verified against its digest.
    #[serde(default)]
    pub verified: Option<(u64, u64, i64, i64)>,
}

/// The cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

fn blob_stat(md: &fs::Metadata) -> (u64, u64, i64, i64) {
    (md.ino(), md.size(), md.mtime(), md.mtime_nsec())
}

/// Writes `bytes` to `path` atomically: readers see the old file or the
/// new one, never a torn one. Not synced: after a crash a file may be
/// missing or empty, which every reader here treats as absent (an entry is
/// also checked against its key and its blob), so a sync would buy nothing.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

pub(crate) fn sha256_file(path: &Path) -> std::io::Result<String> {
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
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

/// The stat to record for a layer blob this process just wrote (and so
/// knows to match its digest): saves re-hashing it on the next hit.
pub fn fresh_stat(blobs: &BlobStore, layer: &LayerRef) -> Option<(u64, u64, i64, i64)> {
    let d = Digest::parse(&layer.digest).ok()?;
    fs::metadata(blobs.path(&d)).ok().map(|m| blob_stat(&m))
}

impl Cache {
    pub fn open(build_dir: &Path) -> Result<Self> {
        let dir = build_dir.join("cache");
        for d in [dir.join("entries"), dir.join("positions")] {
            fs::create_dir_all(&d).map_err(io_err("create", &d))?;
        }
        Ok(Cache { dir })
    }

    fn entry_path(&self, key: &str) -> PathBuf {
        self.dir.join("entries").join(format!("{key}.json"))
    }

    /// The entry for `key` if it exists and its layer checks out. A corrupt or
    /// partial entry (unreadable JSON, missing blob, wrong content) is removed.
    pub fn get(&self, key: &str, blobs: &BlobStore) -> Option<Entry> {
        let path = self.entry_path(key);
        let bytes = fs::read(&path).ok()?;
        let Ok(mut entry) = serde_json::from_slice::<Entry>(&bytes) else {
            let _ = fs::remove_file(&path);
            return None;
        };
        if entry.inputs.key() != key {
            let _ = fs::remove_file(&path);
            return None;
        }
        if let Some(l) = &entry.layer {
            let Ok(d) = Digest::parse(&l.digest) else {
                let _ = fs::remove_file(&path);
                return None;
            };
            let blob = blobs.path(&d);
            let Ok(md) = fs::metadata(&blob) else {
                let _ = fs::remove_file(&path);
                return None;
            };
            let stat = blob_stat(&md);
            if entry.verified != Some(stat) {
                if md.size() != l.size || sha256_file(&blob).ok().as_deref() != Some(&l.digest) {
                    let _ = fs::remove_file(&path);
                    return None;
                }
                entry.verified = Some(stat);
                let _ = self.put(key, &entry);
            }
        }
        Some(entry)
    }

    /// Stores an entry (atomically: readers see the old or the new file).
    pub fn put(&self, key: &str, entry: &Entry) -> Result<()> {
        let path = self.entry_path(key);
        let bytes = serde_json::to_vec(entry).expect("entry serializes");
        write_atomic(&path, &bytes).map_err(io_err("write", &path))
    }

    /// Records the inputs seen at a Dockerfile position.
    pub fn remember_position(&self, position: &str, inputs: &Inputs) {
        let path = self.dir.join("positions").join(format!("{position}.json"));
        let _ = write_atomic(
            &path,
            &serde_json::to_vec(inputs).expect("inputs serialize"),
        );
    }

    /// The inputs last seen at a Dockerfile position.
    pub fn position(&self, position: &str) -> Option<Inputs> {
        let path = self.dir.join("positions").join(format!("{position}.json"));
        serde_json::from_slice(&fs::read(path).ok()?).ok()
    }

    /// Layer digests of every entry (kept by `keel builder prune` without `-a`? no:
    /// used to report what a prune released).
    pub fn layers(&self) -> Vec<String> {
        let Ok(rd) = fs::read_dir(self.dir.join("entries")) else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice::<Entry>(&b).ok())
            .filter_map(|e| e.layer.map(|l| l.digest))
            .collect()
    }

    /// Removes every entry and position; returns how many entries there were.
    pub fn clear(&self) -> Result<usize> {
        let mut n = 0;
        for sub in ["entries", "positions"] {
            let d = self.dir.join(sub);
            if let Ok(rd) = fs::read_dir(&d) {
                for e in rd.flatten() {
                    if sub == "entries" {
                        n += 1;
                    }
                    let p = e.path();
                    fs::remove_file(&p).map_err(io_err("remove", &p))?;
                }
            }
        }
        Ok(n)
    }
}

/// Why a step missed, compared with the inputs last seen at its position.
pub fn explain(old: Option<&Inputs>, new: &Inputs) -> String {
    let Some(old) = old else {
        return "no earlier build of this step".to_string();
    };
    if old.instruction != new.instruction {
        return format!("instruction changed (was {:?})", old.instruction);
    }
    let mut why = Vec::new();
    for (k, v) in &new.args {
        match old.args.get(k) {
            Some(o) if o != v => why.push(format!("build arg {k} changed {o} -> {v}")),
            None => why.push(format!("build arg {k} set to {v}")),
            _ => {}
        }
    }
    for k in old.args.keys() {
        if !new.args.contains_key(k) {
            why.push(format!("build arg {k} unset"));
        }
    }
    for (k, v) in &new.sources {
        match old.sources.get(k) {
            Some(o) if o != v => why.push(format!("source {k} changed")),
            None => why.push(format!("source {k} added")),
            _ => {}
        }
    }
    for k in old.sources.keys() {
        if !new.sources.contains_key(k) {
            why.push(format!("source {k} removed"));
        }
    }
    if why.is_empty() && old.parent != new.parent {
        why.push("parent changed".to_string());
    }
    if why.is_empty() {
        why.push("cache entry missing or invalid".to_string());
    }
    why.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explain_names_the_change() {
        let mut a = Inputs {
            parent: "p".into(),
            instruction: "RUN x".into(),
            ..Inputs::default()
        };
        a.args.insert("VERSION".into(), "1".into());
        a.sources.insert("app/main.go".into(), "h1".into());
        let mut b = a.clone();
        b.args.insert("VERSION".into(), "2".into());
        assert_eq!(explain(Some(&a), &b), "build arg VERSION changed 1 -> 2");
        let mut c = a.clone();
        c.sources.insert("app/main.go".into(), "h2".into());
        assert_eq!(explain(Some(&a), &c), "source app/main.go changed");
        let mut d = a.clone();
        d.parent = "q".into();
        assert_eq!(explain(Some(&a), &d), "parent changed");
        assert_ne!(a.key(), d.key());
        assert_eq!(explain(Some(&a), &a), "cache entry missing or invalid");
    }

    #[test]
    fn corrupt_entries_are_never_used() {
        let dir = tempfile::tempdir().unwrap();
        let store = keel_oci::ImageStore::open(dir.path()).unwrap();
        let cache = Cache::open(&dir.path().join("build")).unwrap();
        let put = store.blobs().put_bytes(b"layer bytes").unwrap();
        let inputs = Inputs {
            parent: "x".into(),
            ..Inputs::default()
        };
        let key = inputs.key();
        let entry = Entry {
            layer: Some(LayerRef {
                digest: put.digest.to_string(),
                diff_id: put.digest.to_string(),
                size: put.size,
                media_type: String::new(),
            }),
            history: serde_json::json!({}),
            inputs,
            verified: None,
        };
        cache.put(&key, &entry).unwrap();
        assert!(cache.get(&key, store.blobs()).is_some());
        // Same size, other content: the digest check catches it.
        fs::write(store.blobs().path(&put.digest), b"LAYER BYTES").unwrap();
        assert!(cache.get(&key, store.blobs()).is_none());
        // And the entry is gone for good.
        fs::write(store.blobs().path(&put.digest), b"layer bytes").unwrap();
        assert!(cache.get(&key, store.blobs()).is_none());
        // A torn entry file is not an entry.
        cache.put(&key, &entry).unwrap();
        fs::write(cache.entry_path(&key), b"{\"layer\":").unwrap();
        assert!(cache.get(&key, store.blobs()).is_none());
    }
}
