//! The state backend of a working directory: local (with terraform's lock
//! file), terraform's http backend (keel server's `/infra/state/NAME`, or
//! any other server speaking it) or terraform's kubernetes backend (Secrets
//! and Leases of any Kubernetes API, keel server's included; the cluster
//! from a kubeconfig).

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};
use keel_infra::backend::{BackendError, LocalBackend, StateLock};
use keel_infra::backend_http::{HttpBackend, HttpLock};
use keel_infra::backend_k8s::{K8sBackend, K8sLock};
use keel_infra::config::Module;
use keel_infra::state::{Journal, StateFile};

#[derive(Clone, Debug)]
pub(crate) enum AnyBackend {
    Local(LocalBackend),
    Http(Box<HttpBackend>),
    K8s(Box<K8sBackend>),
}

#[derive(Debug)]
pub(crate) enum AnyLock {
    Local(StateLock),
    Http(Box<HttpLock>),
    K8s(Box<K8sLock>),
}

impl AnyBackend {
    pub(crate) fn of(dir: &Path, m: &Module) -> Result<AnyBackend, BackendError> {
        match m.backend.as_ref().map(|b| b.kind.as_str()) {
            Some("http") => {
                // `init -backend-config=k=v` values fill what the block leaves unset.
                let mut cfg = m
                    .backend
                    .as_ref()
                    .map(|b| b.config.clone())
                    .unwrap_or_default();
                for (k, v) in saved_backend_config(dir) {
                    cfg.entry(k).or_insert_with(|| keel_hcl::Value::string(v));
                }
                Ok(AnyBackend::Http(Box::new(HttpBackend::from_config(&cfg)?)))
            }
            Some("kubernetes") => {
                let mut cfg: std::collections::BTreeMap<String, String> = m
                    .backend
                    .as_ref()
                    .map(|b| {
                        b.config
                            .iter()
                            .filter_map(|(k, v)| {
                                v.as_str()
                                    .map(str::to_string)
                                    .or_else(|| v.as_bool().map(|b| b.to_string()))
                                    .map(|v| (k.clone(), v))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                for (k, v) in saved_backend_config(dir) {
                    cfg.entry(k).or_insert(v);
                }
                Ok(AnyBackend::K8s(Box::new(k8s_backend(dir, &cfg)?)))
            }
            Some("local") | None => {
                let path = m
                    .backend
                    .as_ref()
                    .and_then(|b| b.config.get("path"))
                    .and_then(|v| v.as_str())
                    .map(std::path::PathBuf::from);
                Ok(AnyBackend::Local(LocalBackend::new(dir, path)))
            }
            Some(other) => Err(BackendError::Http(format!(
                "Unsupported backend type {other:?}: keel infra speaks the local, http and kubernetes backends"
            ))),
        }
    }

    pub(crate) fn workspace(&self) -> String {
        match self {
            AnyBackend::Local(b) => b.workspace.clone(),
            AnyBackend::Http(_) => "default".into(),
            AnyBackend::K8s(b) => b.workspace.clone(),
        }
    }

    pub(crate) fn read_unlocked(&self) -> Result<StateFile, BackendError> {
        match self {
            AnyBackend::Local(b) => b.read_unlocked(),
            AnyBackend::Http(b) => b.read(),
            AnyBackend::K8s(b) => b.read(),
        }
    }

    pub(crate) fn lock(&self, op: &str, timeout: Duration) -> Result<AnyLock, BackendError> {
        Ok(match self {
            AnyBackend::Local(b) => AnyLock::Local(b.lock(op, timeout)?),
            AnyBackend::Http(b) => AnyLock::Http(Box::new(b.lock(op, timeout)?)),
            AnyBackend::K8s(b) => AnyLock::K8s(Box::new(b.lock(op, timeout)?)),
        })
    }

    /// Writes without holding the lock (`-lock=false`).
    pub(crate) fn write_unlocked(&self, s: &mut StateFile) -> Result<()> {
        s.serial += 1;
        match self {
            AnyBackend::Local(b) => s.write_atomic(&b.state_path())?,
            AnyBackend::Http(b) => b.write(s, None)?,
            AnyBackend::K8s(b) => b.write(s)?,
        }
        Ok(())
    }

    pub(crate) fn force_unlock(&self, id: &str) -> Result<(), BackendError> {
        match self {
            AnyBackend::Local(b) => b.force_unlock(id),
            AnyBackend::Http(b) => b.force_unlock(id),
            AnyBackend::K8s(b) => b.force_unlock(id),
        }
    }

    pub(crate) fn local(&self) -> Result<&LocalBackend> {
        match self {
            AnyBackend::Local(b) => Ok(b),
            AnyBackend::Http(_) => bail!("workspaces are not supported by the http backend"),
            AnyBackend::K8s(_) => bail!("this command needs the local backend"),
        }
    }
}

impl AnyLock {
    pub(crate) fn read(&mut self) -> Result<StateFile, BackendError> {
        match self {
            AnyLock::Local(l) => l.read(),
            AnyLock::Http(l) => l.read(),
            AnyLock::K8s(l) => l.read(),
        }
    }

    pub(crate) fn write(&mut self, s: &mut StateFile) -> Result<(), BackendError> {
        match self {
            AnyLock::Local(l) => l.write(s),
            AnyLock::Http(l) => l.write(s),
            AnyLock::K8s(l) => l.write(s),
        }
    }

    /// The per-resource journal (local state only: a remote state is written at the end).
    pub(crate) fn journal(&self) -> std::io::Result<Option<Journal>> {
        match self {
            AnyLock::Local(l) => l.journal().map(Some),
            AnyLock::Http(_) | AnyLock::K8s(_) => Ok(None),
        }
    }
}

const SAVED: &str = ".terraform/keel-backend-config.json";

/// The `-backend-config` values `init` saved.
pub(crate) fn saved_backend_config(dir: &Path) -> std::collections::BTreeMap<String, String> {
    std::fs::read(dir.join(SAVED))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Saves `init`'s `-backend-config=KEY=VALUE` arguments (owner-only: they may hold a token).
pub(crate) fn save_backend_config(dir: &Path, pairs: &[String]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut m = std::collections::BTreeMap::new();
    for p in pairs {
        let Some((k, v)) = p.split_once('=') else {
            bail!("-backend-config={p}: keel reads KEY=VALUE pairs (not files)");
        };
        m.insert(k.trim().to_string(), v.to_string());
    }
    let path = dir.join(SAVED);
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    std::io::Write::write_all(&mut f, serde_json::to_string(&m)?.as_bytes())?;
    Ok(())
}

/// The kubernetes backend from its settings (`secret_suffix`, `namespace`,
/// `config_path`, `config_context`; `KUBE_CONFIG_PATH`, `KUBE_NAMESPACE`,
/// `KUBE_CTX` as terraform reads them) and the kubeconfig they name.
fn k8s_backend(
    dir: &Path,
    cfg: &std::collections::BTreeMap<String, String>,
) -> Result<K8sBackend, BackendError> {
    let bad = |m: String| BackendError::Http(m);
    let get = |k: &str, env: &str| {
        cfg.get(k)
            .cloned()
            .or_else(|| std::env::var(env).ok().filter(|v| !v.is_empty()))
    };
    let suffix = cfg
        .get("secret_suffix")
        .cloned()
        .ok_or_else(|| bad("the kubernetes backend needs \"secret_suffix\"".into()))?;
    let path = cfg
        .get("config_path")
        .cloned()
        .or_else(keel_infra::kubeconfig::default_path)
        .ok_or_else(|| {
            bad("the kubernetes backend needs config_path (or KUBE_CONFIG_PATH)".into())
        })?;
    let conn = keel_infra::kubeconfig::connect(
        &path,
        get("config_context", "KUBE_CTX").as_deref(),
        cfg.get("insecure").is_some_and(|v| v == "true"),
    )
    .map_err(bad)?;
    let namespace = get("namespace", "KUBE_NAMESPACE").unwrap_or_else(|| "default".into());
    Ok(K8sBackend {
        server: conn.server,
        client: conn.client,
        namespace,
        suffix,
        workspace: LocalBackend::new(dir, None).workspace,
    })
}
