//! Chart.lock as Helm writes and checks it: the digest of the requirements
//! (`resolver.HashReq`: SHA-256 of Go's JSON of `[Chart.yaml dependencies,
//! locked dependencies]`) and the lock file's YAML. Resolving versions
//! needs indexes and registries, so that is the CLI's part.

use serde::{Deserialize, Serialize};

use crate::chart::Dependency;

/// Chart.lock (or requirements.lock).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Lock {
    #[serde(default)]
    pub generated: String,
    #[serde(default)]
    pub digest: String,
    #[serde(default)]
    pub dependencies: Vec<Dependency>,
}

/// Helm's `HashReq(req, lock)`.
#[must_use]
pub fn hash_req(req: &[Dependency], lock: &[Dependency]) -> String {
    // a nil slice marshals as null: Chart.yaml without dependencies;
    // serialized directly (a serde_json::Value would sort the fields)
    let side = |d: &'_ [Dependency]| if d.is_empty() { None } else { Some(d.to_vec()) };
    crate::oci::digest(&crate::oci::go_json(&(side(req), side(lock))))
}

/// The lock's YAML as `yaml.Marshal(lock)` writes it: keys sorted, each
/// locked dependency with name, repository and version only.
#[must_use]
pub fn lock_yaml(lock: &Lock) -> String {
    let deps: Vec<serde_json::Value> = lock
        .dependencies
        .iter()
        .map(|d| {
            let mut m = serde_json::Map::new();
            m.insert("name".into(), d.name.clone().into());
            m.insert("repository".into(), d.repository.clone().into());
            if !d.version.is_empty() {
                m.insert("version".into(), d.version.clone().into());
            }
            serde_json::Value::Object(m)
        })
        .collect();
    crate::json_to_yaml(&serde_json::json!({
        "dependencies": deps,
        "digest": lock.digest,
        "generated": lock.generated,
    }))
}

/// Reads a lock file's text.
pub fn parse_lock(text: &str) -> Result<Lock, String> {
    serde_yaml_ng::from_str(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(name: &str, version: &str, repo: &str) -> Dependency {
        Dependency {
            name: name.into(),
            version: version.into(),
            repository: repo.into(),
            ..Dependency::default()
        }
    }

    #[test]
    fn hash_is_of_go_json_of_both_lists() {
        let req = [dep("web", "^0.1", "https://x.test/a&b")];
        let lock = [dep("web", "0.1.0", "https://x.test/a&b")];
        let json = r#"[[{"name":"web","version":"^0.1","repository":"https://x.test/a\u0026b"}],[{"name":"web","version":"0.1.0","repository":"https://x.test/a\u0026b"}]]"#;
        assert_eq!(hash_req(&req, &lock), crate::oci::digest(json.as_bytes()));
        assert_eq!(hash_req(&[], &[]), crate::oci::digest(b"[null,null]"));
    }
}
