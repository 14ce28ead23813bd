//! The kubelet's atomic writer for configMap, secret, projected and
//! downwardAPI volumes: the files live in a timestamped directory
//! (`..2026_12_07_09_00_00.123456789`), `..data` is a symlink to it, and each
//! top-level name is a symlink through `..data`. An update writes a new
//! directory and renames a fresh `..data` link over the old one, so a
//! container reading the volume sees all old or all new files, never a mix.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// What a volume holds: relative path → (bytes, mode).
pub(super) type Payload = BTreeMap<String, (Vec<u8>, u32)>;

const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

/// Adds a file to a payload; the path must stay inside the volume.
pub(super) fn add(p: &mut Payload, rel: &str, data: &[u8], mode: i32) -> Result<(), String> {
    if rel.is_empty()
        || rel.starts_with('/')
        || rel.starts_with("..")
        || rel.split('/').any(|c| c == ".." || c.is_empty())
    {
        return Err(format!("volume path {rel:?} must be relative without .."));
    }
    let mode = u32::try_from(mode).unwrap_or(0o644) & 0o7777;
    p.insert(rel.to_string(), (data.to_vec(), mode));
    Ok(())
}

fn files_under(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = format!("{prefix}{}", e.file_name().to_string_lossy());
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            files_under(&e.path(), &format!("{name}/"), out);
        } else {
            out.push(name);
        }
    }
}

/// Whether the data directory `cur` holds exactly `payload`.
fn holds(cur: &Path, payload: &Payload) -> bool {
    let mut names = Vec::new();
    files_under(cur, "", &mut names);
    names.len() == payload.len()
        && payload.iter().all(|(rel, (data, mode))| {
            let p = cur.join(rel);
            std::fs::read(&p).is_ok_and(|d| d == *data)
                && std::fs::metadata(&p).is_ok_and(|m| m.permissions().mode() & 0o7777 == *mode)
        })
}

fn err(what: &str, p: &Path) -> impl FnOnce(std::io::Error) -> String {
    let s = format!("{what} {}", p.display());
    move |e| format!("{s}: {e}")
}

/// Makes `dir` hold `payload`; returns whether anything changed.
pub(super) fn write(dir: &Path, payload: &Payload) -> Result<bool, String> {
    let old = std::fs::read_link(dir.join(DATA)).ok();
    if let Some(o) = &old
        && holds(&dir.join(o), payload)
    {
        return Ok(false);
    }
    let ts = format!("..{}", chrono::Utc::now().format("%Y_%m_%d_%H_%M_%S.%9f"));
    let new = dir.join(&ts);
    std::fs::create_dir_all(&new).map_err(err("create", &new))?;
    std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o755))
        .map_err(err("chmod", &new))?;
    for (rel, (data, mode)) in payload {
        let p = new.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(err("create", parent))?;
        }
        std::fs::write(&p, data).map_err(err("write", &p))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode))
            .map_err(err("chmod", &p))?;
    }
    let tmp = dir.join(DATA_TMP);
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&ts, &tmp).map_err(err("link", &tmp))?;
    std::fs::rename(&tmp, dir.join(DATA)).map_err(err("rename", &tmp))?;
    // The user-visible names: one link per top-level entry, through ..data.
    let top: BTreeSet<&str> = payload.keys().filter_map(|k| k.split('/').next()).collect();
    for name in &top {
        let p = dir.join(name);
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
            continue;
        }
        // A file or directory written before links were used.
        let _ = std::fs::remove_file(&p).or_else(|_| std::fs::remove_dir_all(&p));
        std::os::unix::fs::symlink(format!("{DATA}/{name}"), &p).map_err(err("link", &p))?;
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let stale_link = !name.starts_with("..")
                && !top.contains(name.as_str())
                && e.file_type().is_ok_and(|t| t.is_symlink());
            let stale_data = name.starts_with("..") && name != ts && name != DATA;
            if stale_link {
                let _ = std::fs::remove_file(e.path());
            } else if stale_data {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(items: &[(&str, &str)]) -> Payload {
        let mut p = Payload::new();
        for (k, v) in items {
            add(&mut p, k, v.as_bytes(), 0o644).unwrap();
        }
        p
    }

    #[test]
    fn updates_swap_the_data_link_and_follow_added_and_removed_keys() {
        let dir = std::env::temp_dir().join(format!("keel-atomic-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert!(write(&dir, &payload(&[("a", "1"), ("sub/b", "2")])).unwrap());
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "1");
        assert_eq!(std::fs::read_to_string(dir.join("sub/b")).unwrap(), "2");
        assert_eq!(
            std::fs::read_link(dir.join("a")).unwrap(),
            Path::new("..data/a")
        );
        let first = std::fs::read_link(dir.join(DATA)).unwrap();
        // The same content changes nothing.
        assert!(!write(&dir, &payload(&[("a", "1"), ("sub/b", "2")])).unwrap());
        assert_eq!(std::fs::read_link(dir.join(DATA)).unwrap(), first);
        // An update: a new data directory, the old one gone, keys follow.
        assert!(write(&dir, &payload(&[("a", "changed"), ("c", "3")])).unwrap());
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "changed");
        assert_eq!(std::fs::read_to_string(dir.join("c")).unwrap(), "3");
        assert!(!dir.join("sub").exists() && !dir.join(&first).exists());
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with("..2"))
            .collect();
        left.sort();
        assert_eq!(left, ["..data", "a", "c"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn paths_stay_inside_the_volume() {
        let mut p = Payload::new();
        for bad in ["", "/etc/x", "../x", "a/../../x", "..data", "a//b"] {
            assert!(add(&mut p, bad, b"", 0o644).is_err(), "{bad}");
        }
        assert!(add(&mut p, "a/b.txt", b"", 0o644).is_ok());
    }
}
