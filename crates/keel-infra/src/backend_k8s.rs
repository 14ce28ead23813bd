//! Terraform's `kubernetes` backend, client side, in terraform's own format:
//! the state gzipped in Secret `tfstate-{workspace}-{suffix}` (key
//! `tfstate`), the lock in Lease `lock-tfstate-{workspace}-{suffix}` (holder
//! = the lock ID, `LockInfo` in the `app.terraform.io/lock-info`
//! annotation), both labelled as terraform labels them, so keel and real
//! terraform share one state and one lock on any Kubernetes API server
//! (keel server's included).

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value as J, json};

use crate::backend::{BackendError, LockInfo};
use crate::backend_http::HttpClient;
use crate::state::StateFile;

const LOCK_ANNOTATION: &str = "app.terraform.io/lock-info";

fn err(msg: impl Into<String>) -> BackendError {
    BackendError::Http(msg.into())
}

/// The kubernetes backend's settings: where the API server is (from the
/// kubeconfig), the namespace and the secret suffix.
#[derive(Clone, Debug, Default)]
pub struct K8sBackend {
    pub server: String,
    pub client: HttpClient,
    pub namespace: String,
    pub suffix: String,
    pub workspace: String,
}

impl K8sBackend {
    fn secret_name(&self, ws: &str) -> String {
        format!("tfstate-{ws}-{}", self.suffix)
    }

    fn url(&self, kind: &str, name: Option<&str>) -> String {
        let group = if kind == "leases" {
            "apis/coordination.k8s.io/v1"
        } else {
            "api/v1"
        };
        let base = format!(
            "{}/{group}/namespaces/{}/{kind}",
            self.server.trim_end_matches('/'),
            self.namespace
        );
        match name {
            Some(n) => format!("{base}/{n}"),
            None => base,
        }
    }

    fn call(&self, method: &str, url: &str, body: Option<&J>) -> Result<(u16, J), BackendError> {
        let bytes = body.map(ToString::to_string).unwrap_or_default();
        let (status, out) =
            self.client
                .request(method, url, bytes.as_bytes(), "application/json")?;
        let j = serde_json::from_slice(&out).unwrap_or(J::Null);
        Ok((status, j))
    }

    fn labels(&self, ws: &str) -> J {
        json!({
            "app.kubernetes.io/managed-by": "terraform",
            "tfstate": "true",
            "tfstateSecretSuffix": self.suffix,
            "tfstateWorkspace": ws,
        })
    }

    fn api_error(what: &str, status: u16, j: &J) -> BackendError {
        err(format!(
            "{what}: HTTP {status}: {}",
            j["message"].as_str().unwrap_or("no message")
        ))
    }

    /// The state of the current workspace (empty when there is none).
    pub fn read(&self) -> Result<StateFile, BackendError> {
        let name = self.secret_name(&self.workspace);
        let (status, j) = self.call("GET", &self.url("secrets", Some(&name)), None)?;
        match status {
            404 => Ok(StateFile::new()),
            200 => {
                let Some(b64) = j["data"]["tfstate"].as_str() else {
                    return Ok(StateFile::new());
                };
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| err(format!("secret {name}: tfstate is not base64: {e}")))?;
                let mut text = String::new();
                if raw.starts_with(&[0x1f, 0x8b]) {
                    flate2::read::GzDecoder::new(&raw[..])
                        .read_to_string(&mut text)
                        .map_err(|e| err(format!("secret {name}: {e}")))?;
                } else {
                    text = String::from_utf8_lossy(&raw).into_owned();
                }
                Ok(StateFile::parse(std::path::Path::new(&name), &text)?.unwrap_or_default())
            }
            s => Err(Self::api_error(&format!("reading secret {name}"), s, &j)),
        }
    }

    /// Writes the current workspace's state (gzipped, as terraform does).
    pub fn write(&self, s: &StateFile) -> Result<(), BackendError> {
        let name = self.secret_name(&self.workspace);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(s.to_json().as_bytes())
            .map_err(|e| err(e.to_string()))?;
        let data = base64::engine::general_purpose::STANDARD
            .encode(gz.finish().map_err(|e| err(e.to_string()))?);
        let (status, mut j) = self.call("GET", &self.url("secrets", Some(&name)), None)?;
        let (status, j) = match status {
            404 => {
                let secret = json!({
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {
                        "name": name,
                        "namespace": self.namespace,
                        "labels": self.labels(&self.workspace),
                        "annotations": {"encoding": "gzip"},
                    },
                    "type": "Opaque",
                    "data": {"tfstate": data},
                });
                self.call("POST", &self.url("secrets", None), Some(&secret))?
            }
            200 => {
                j["data"]["tfstate"] = J::String(data);
                self.call("PUT", &self.url("secrets", Some(&name)), Some(&j))?
            }
            s => return Err(Self::api_error(&format!("reading secret {name}"), s, &j)),
        };
        match status {
            200 | 201 => Ok(()),
            s => Err(Self::api_error(&format!("writing secret {name}"), s, &j)),
        }
    }

    /// Takes the Lease, retrying until `timeout`.
    pub fn lock(&self, operation: &str, timeout: Duration) -> Result<K8sLock, BackendError> {
        let info = LockInfo::new(operation, "");
        let name = format!("lock-{}", self.secret_name(&self.workspace));
        let start = Instant::now();
        loop {
            match self.try_lock(&name, &info)? {
                TryLock::Taken => {
                    return Ok(K8sLock {
                        backend: self.clone(),
                        lease: name,
                        info,
                    });
                }
                TryLock::Held(_) if start.elapsed() < timeout => {
                    std::thread::sleep(Duration::from_millis(500));
                }
                TryLock::Held(holder) => return Err(BackendError::Locked(holder)),
            }
        }
    }

    fn try_lock(&self, name: &str, info: &LockInfo) -> Result<TryLock, BackendError> {
        let info_json = serde_json::to_string(info).unwrap_or_default();
        let (status, mut j) = self.call("GET", &self.url("leases", Some(name)), None)?;
        let (status, out) = match status {
            404 => {
                let lease = json!({
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {
                        "name": name,
                        "namespace": self.namespace,
                        "labels": self.labels(&self.workspace),
                        "annotations": {LOCK_ANNOTATION: info_json},
                    },
                    "spec": {"holderIdentity": info.id},
                });
                self.call("POST", &self.url("leases", None), Some(&lease))?
            }
            200 => {
                if j["spec"]["holderIdentity"]
                    .as_str()
                    .is_some_and(|h| !h.is_empty())
                {
                    return Ok(TryLock::Held(holder_info(&j)));
                }
                j["spec"]["holderIdentity"] = J::String(info.id.clone());
                if !j["metadata"]["annotations"].is_object() {
                    j["metadata"]["annotations"] = json!({});
                }
                j["metadata"]["annotations"][LOCK_ANNOTATION] = J::String(info_json);
                self.call("PUT", &self.url("leases", Some(name)), Some(&j))?
            }
            s => return Err(Self::api_error(&format!("reading lease {name}"), s, &j)),
        };
        match status {
            200 | 201 => Ok(TryLock::Taken),
            // Another client created or updated it first.
            409 => Ok(TryLock::Held(None)),
            s => Err(Self::api_error(&format!("taking lease {name}"), s, &out)),
        }
    }

    fn unlock(&self, name: &str, id: &str) -> Result<(), BackendError> {
        let (status, mut j) = self.call("GET", &self.url("leases", Some(name)), None)?;
        if status != 200 {
            return Err(err(format!(
                "Failed to unlock state: lease {name} not found (HTTP {status})"
            )));
        }
        let held = j["spec"]["holderIdentity"].as_str().unwrap_or_default();
        if held.is_empty() {
            return Err(err("Failed to unlock state: state is already unlocked"));
        }
        if held != id {
            return Err(BackendError::WrongLockId {
                given: id.into(),
                held: held.into(),
            });
        }
        j["spec"]["holderIdentity"] = J::Null;
        if let Some(a) = j["metadata"]["annotations"].as_object_mut() {
            a.remove(LOCK_ANNOTATION);
        }
        let (status, out) = self.call("PUT", &self.url("leases", Some(name)), Some(&j))?;
        match status {
            200 => Ok(()),
            s => Err(Self::api_error(&format!("releasing lease {name}"), s, &out)),
        }
    }

    /// `force-unlock ID`.
    pub fn force_unlock(&self, id: &str) -> Result<(), BackendError> {
        self.unlock(&format!("lock-{}", self.secret_name(&self.workspace)), id)
    }

    /// Workspaces with a state Secret of this suffix, and `default`.
    pub fn workspaces(&self) -> Result<Vec<String>, BackendError> {
        let url = format!(
            "{}?labelSelector=tfstate%3Dtrue,tfstateSecretSuffix%3D{}",
            self.url("secrets", None),
            self.suffix
        );
        let (status, j) = self.call("GET", &url, None)?;
        if status != 200 {
            return Err(Self::api_error("listing state secrets", status, &j));
        }
        let mut out = vec!["default".to_string()];
        for s in j["items"].as_array().into_iter().flatten() {
            if let Some(w) = s["metadata"]["labels"]["tfstateWorkspace"].as_str()
                && !out.iter().any(|x| x == w)
            {
                out.push(w.to_string());
            }
        }
        out[1..].sort();
        Ok(out)
    }

    /// Deletes a workspace's Secret and Lease.
    pub fn delete_workspace(&self, ws: &str) -> Result<(), BackendError> {
        let name = self.secret_name(ws);
        for (kind, n) in [
            ("secrets", name.clone()),
            ("leases", format!("lock-{name}")),
        ] {
            let (status, j) = self.call("DELETE", &self.url(kind, Some(&n)), None)?;
            if !matches!(status, 200 | 202 | 404) {
                return Err(Self::api_error(&format!("deleting {n}"), status, &j));
            }
        }
        Ok(())
    }
}

/// One attempt at the Lease: ours now, or held (by whom, when it says).
enum TryLock {
    Taken,
    Held(Option<LockInfo>),
}

fn holder_info(lease: &J) -> Option<LockInfo> {
    lease["metadata"]["annotations"][LOCK_ANNOTATION]
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok())
}

/// A held Lease; dropping it releases it.
#[derive(Debug)]
pub struct K8sLock {
    backend: K8sBackend,
    lease: String,
    info: LockInfo,
}

impl K8sLock {
    pub fn read(&self) -> Result<StateFile, BackendError> {
        self.backend.read()
    }

    pub fn write(&self, s: &mut StateFile) -> Result<(), BackendError> {
        s.serial += 1;
        self.backend.write(s)
    }
}

impl Drop for K8sLock {
    fn drop(&mut self) {
        let _ = self.backend.unlock(&self.lease, &self.info.id);
    }
}
