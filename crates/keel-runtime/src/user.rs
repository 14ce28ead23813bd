//! `-u user[:group]` → uid/gid from the image's /etc/passwd and /etc/group.

use std::path::{Path, PathBuf};

use crate::error::{Result, RuntimeError};

/// The resolved identity of a container process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

/// Reads a file of the image as the overlay would show it: from the topmost
/// layer that has it (layers listed base first).
pub fn read_image_file(lowerdirs: &[PathBuf], rel: &str) -> Option<String> {
    lowerdirs
        .iter()
        .rev()
        .map(|d| d.join(rel))
        .find(|p| p.symlink_metadata().is_ok())
        .and_then(|p| std::fs::read_to_string(p).ok())
}

/// Resolves `spec` (`""`, `name`, `uid`, `name:group`, `uid:gid`) against the
/// passwd and group file contents. Numeric IDs need no entry, like Docker.
pub fn resolve(spec: &str, passwd: Option<&str>, group: Option<&str>) -> Result<Identity> {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "root" } else { user };
    let entries: Vec<Vec<&str>> = passwd
        .unwrap_or("")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 7)
        .collect();
    let groups: Vec<Vec<&str>> = group
        .unwrap_or("")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 3)
        .collect();
    let (uid, mut gid, home, name) = if let Ok(uid) = user.parse::<u32>() {
        match entries.iter().find(|f| f[2] == user) {
            Some(f) => (uid, f[3].parse().unwrap_or(0), f[5].to_string(), f[0]),
            None => (uid, 0, "/".to_string(), ""),
        }
    } else {
        let f = entries
            .iter()
            .find(|f| f[0] == user)
            .ok_or_else(|| RuntimeError::UnknownUser(user.to_string()))?;
        (
            f[2].parse()
                .map_err(|_| RuntimeError::UnknownUser(user.to_string()))?,
            f[3].parse().unwrap_or(0),
            f[5].to_string(),
            f[0],
        )
    };
    if let Some(g) = grp {
        gid = if let Ok(n) = g.parse::<u32>() {
            n
        } else {
            groups
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| RuntimeError::UnknownGroup(g.to_string()))?
        };
    }
    // Supplementary groups: every group listing the user by name.
    let mut additional_gids: Vec<u32> = if name.is_empty() {
        Vec::new()
    } else {
        groups
            .iter()
            .filter(|f| f.get(3).is_some_and(|m| m.split(',').any(|m| m == name)))
            .filter_map(|f| f[2].parse().ok())
            .filter(|g| *g != gid)
            .collect()
    };
    additional_gids.sort_unstable();
    additional_gids.dedup();
    Ok(Identity {
        uid,
        gid,
        additional_gids,
        home,
    })
}

/// Resolves `spec` against an image's layers.
pub fn resolve_in_image(spec: &str, lowerdirs: &[PathBuf]) -> Result<Identity> {
    let passwd = read_image_file(lowerdirs, "etc/passwd");
    let group = read_image_file(lowerdirs, "etc/group");
    resolve(spec, passwd.as_deref(), group.as_deref())
}

/// Whether `path` exists in the image (any layer).
pub fn image_has(lowerdirs: &[PathBuf], rel: &Path) -> bool {
    lowerdirs
        .iter()
        .any(|d| d.join(rel).symlink_metadata().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nwww:x:33:33:www:/var/www:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwww:x:33:\nstaff:x:50:www,other\nnogroup:x:65534:\n";

    #[test]
    #[allow(clippy::many_single_char_names)]
    fn names_numbers_and_groups() {
        let r = resolve("", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((r.uid, r.gid, r.home.as_str()), (0, 0, "/root"));
        let w = resolve("www", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((w.uid, w.gid), (33, 33));
        assert_eq!(w.additional_gids, vec![50]);
        let n = resolve("1234:5", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((n.uid, n.gid), (1234, 5));
        let g = resolve("nobody:staff", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((g.uid, g.gid), (65534, 50));
        assert!(matches!(
            resolve("ghost", Some(PASSWD), Some(GROUP)),
            Err(RuntimeError::UnknownUser(u)) if u == "ghost"
        ));
        assert!(matches!(
            resolve("root:ghosts", Some(PASSWD), Some(GROUP)),
            Err(RuntimeError::UnknownGroup(_))
        ));
        assert!(resolve("x", None, None).is_err());
    }
}
