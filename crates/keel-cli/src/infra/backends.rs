//! The state backend of a working directory: local (with terraform's lock
//! file), terraform's http backend (keel server's `/infra/state/NAME`, or
//! any other server speaking it) or terraform's kubernetes backend (Secrets
//! and Leases of any Kubernetes API, keel server's included; the cluster
//! from a kubeconfig).

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};
use keel_infra::backend::{BackendError, LocalBackend, StateLock};
use keel_infra::backend_http::{HttpBackend, HttpClient, HttpLock};
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
    let path = get("config_path", "KUBE_CONFIG_PATH")
        .or_else(|| std::env::var("KUBECONFIG").ok().filter(|v| !v.is_empty()))
        .or_else(|| {
            std::env::var("HOME")
                .ok()
                .map(|h| format!("{h}/.kube/config"))
        })
        .ok_or_else(|| {
            bad("the kubernetes backend needs config_path (or KUBE_CONFIG_PATH)".into())
        })?;
    let path = if let Some(rest) = path.strip_prefix("~/") {
        format!("{}/{rest}", std::env::var("HOME").unwrap_or_default())
    } else {
        path
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| bad(format!("reading kubeconfig {path}: {e}")))?;
    let kc: serde_json::Value =
        serde_yaml_ng::from_str(&text).map_err(|e| bad(format!("kubeconfig {path}: {e}")))?;
    let named = |list: &str, name: &str| {
        kc[list]
            .as_array()
            .into_iter()
            .flatten()
            .find(|x| x["name"].as_str() == Some(name))
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    };
    let ctx_name = get("config_context", "KUBE_CTX")
        .or_else(|| kc["current-context"].as_str().map(str::to_string))
        .ok_or_else(|| bad(format!("kubeconfig {path} has no current-context")))?;
    let ctx = named("contexts", &ctx_name)["context"].clone();
    let cluster = named("clusters", ctx["cluster"].as_str().unwrap_or_default())["cluster"].clone();
    let user = named("users", ctx["user"].as_str().unwrap_or_default())["user"].clone();
    let server = cluster["server"]
        .as_str()
        .ok_or_else(|| {
            bad(format!(
                "kubeconfig {path}: context {ctx_name:?} names no server"
            ))
        })?
        .to_string();
    let base = Path::new(&path).parent().unwrap_or(dir).to_path_buf();
    // `*-data` holds base64 PEM; the plain key names a file.
    let pem = |v: &serde_json::Value, key: &str| -> Result<Option<String>, BackendError> {
        use base64::Engine as _;
        if let Some(d) = v[format!("{key}-data")].as_str() {
            let b = base64::engine::general_purpose::STANDARD
                .decode(d)
                .map_err(|e| bad(format!("kubeconfig {path}: {key}-data: {e}")))?;
            return Ok(Some(String::from_utf8_lossy(&b).into_owned()));
        }
        match v[key].as_str() {
            Some(f) => std::fs::read_to_string(base.join(f))
                .map(Some)
                .map_err(|e| bad(format!("kubeconfig {path}: {key} {f}: {e}"))),
            None => Ok(None),
        }
    };
    let client = HttpClient {
        basic: user["username"]
            .as_str()
            .zip(user["password"].as_str())
            .map(|(u, p)| (u.to_string(), p.to_string())),
        bearer: user["token"].as_str().map(str::to_string),
        ca_pem: pem(&cluster, "certificate-authority")?,
        client_cert: pem(&user, "client-certificate")?.zip(pem(&user, "client-key")?),
        skip_verify: cluster["insecure-skip-tls-verify"]
            .as_bool()
            .unwrap_or(false)
            || cfg.get("insecure").is_some_and(|v| v == "true"),
    };
    let namespace = get("namespace", "KUBE_NAMESPACE").unwrap_or_else(|| "default".into());
    Ok(K8sBackend {
        server,
        client,
        namespace,
        suffix,
        workspace: LocalBackend::new(dir, None).workspace,
    })
}
