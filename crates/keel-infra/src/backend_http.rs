//! Terraform's `http` backend, client side: the state at `address` (GET,
//! POST with `?ID=` of the held lock), locks by `LOCK`/`UNLOCK` with
//! terraform's `LockInfo` (423 or 409 name the holder), HTTP Basic auth,
//! HTTPS verified against `client_ca_certificate_pem` (or not at all with
//! `skip_cert_verification`), through [`crate::http`]'s client.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use keel_hcl::Value;

use crate::backend::{BackendError, LockInfo};
pub use crate::http::HttpClient;
use crate::state::StateFile;

/// The http backend's settings (backend block, `-backend-config`, `TF_HTTP_*`).
#[derive(Clone, Debug, Default)]
pub struct HttpBackend {
    pub address: String,
    pub lock_address: Option<String>,
    pub unlock_address: Option<String>,
    pub update_method: String,
    pub lock_method: String,
    pub unlock_method: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub ca_pem: Option<String>,
    pub skip_verify: bool,
}

fn http_err(msg: impl Into<String>) -> BackendError {
    BackendError::Http(msg.into())
}

impl HttpBackend {
    /// From the backend block's values, with `TF_HTTP_*` for what is unset.
    pub fn from_config(cfg: &BTreeMap<String, Value>) -> Result<HttpBackend, BackendError> {
        let get = |k: &str| -> Option<String> {
            cfg.get(k)
                .and_then(|v| v.as_str().map(str::to_string))
                .or_else(|| std::env::var(format!("TF_HTTP_{}", k.to_ascii_uppercase())).ok())
        };
        let address = get("address")
            .ok_or_else(|| http_err("the http backend needs \"address\" (or TF_HTTP_ADDRESS)"))?;
        Ok(HttpBackend {
            address,
            lock_address: get("lock_address"),
            unlock_address: get("unlock_address"),
            update_method: get("update_method").unwrap_or_else(|| "POST".into()),
            lock_method: get("lock_method").unwrap_or_else(|| "LOCK".into()),
            unlock_method: get("unlock_method").unwrap_or_else(|| "UNLOCK".into()),
            username: get("username"),
            password: get("password"),
            ca_pem: get("client_ca_certificate_pem"),
            skip_verify: cfg
                .get("skip_cert_verification")
                .and_then(Value::as_bool)
                .unwrap_or(false)
                || get("skip_cert_verification").is_some_and(|v| v == "true"),
        })
    }

    fn client(&self) -> HttpClient {
        HttpClient {
            basic: self.username.clone().zip(self.password.clone()),
            bearer: None,
            ca_pem: self.ca_pem.clone(),
            client_cert: None,
            skip_verify: self.skip_verify,
        }
    }

    fn request(
        &self,
        method: &str,
        url: &str,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), BackendError> {
        self.client().request(method, url, body, "application/json")
    }

    /// The state (empty when there is none).
    pub fn read(&self) -> Result<StateFile, BackendError> {
        let (status, body) = self.request("GET", &self.address, &[])?;
        match status {
            200 => Ok(StateFile::parse(
                std::path::Path::new(&self.address),
                &String::from_utf8_lossy(&body),
            )?
            .unwrap_or_default()),
            204 | 404 => Ok(StateFile::new()),
            s => Err(http_err(format!(
                "HTTP error {s} reading state from {}",
                self.address
            ))),
        }
    }

    pub fn write(&self, s: &StateFile, lock_id: Option<&str>) -> Result<(), BackendError> {
        let url = match lock_id {
            Some(id) => format!(
                "{}{}ID={id}",
                self.address,
                if self.address.contains('?') { '&' } else { '?' }
            ),
            None => self.address.clone(),
        };
        let (status, body) = self.request(&self.update_method, &url, s.to_json().as_bytes())?;
        match status {
            200..=299 => Ok(()),
            409 | 423 => Err(BackendError::Locked(serde_json::from_slice(&body).ok())),
            s => Err(http_err(format!(
                "HTTP error {s} writing state to {}",
                self.address
            ))),
        }
    }

    /// Takes the lock, retrying until `timeout`.
    pub fn lock(&self, operation: &str, timeout: Duration) -> Result<HttpLock, BackendError> {
        let Some(url) = self.lock_address.clone() else {
            return Ok(HttpLock {
                backend: self.clone(),
                info: None,
            });
        };
        let info = LockInfo::new(operation, "");
        let start = Instant::now();
        loop {
            let (status, body) = self.request(
                &self.lock_method,
                &url,
                serde_json::to_string(&info).unwrap_or_default().as_bytes(),
            )?;
            match status {
                200..=299 => {
                    return Ok(HttpLock {
                        backend: self.clone(),
                        info: Some(info),
                    });
                }
                409 | 423 if start.elapsed() < timeout => {
                    std::thread::sleep(Duration::from_millis(500));
                }
                409 | 423 => return Err(BackendError::Locked(serde_json::from_slice(&body).ok())),
                s => return Err(http_err(format!("HTTP error {s} locking state at {url}"))),
            }
        }
    }

    /// `force-unlock ID`.
    pub fn force_unlock(&self, id: &str) -> Result<(), BackendError> {
        let url = self
            .unlock_address
            .clone()
            .ok_or_else(|| http_err("the http backend has no unlock_address"))?;
        let body = serde_json::json!({ "ID": id }).to_string();
        let (status, held) = self.request(&self.unlock_method, &url, body.as_bytes())?;
        match status {
            200..=299 => Ok(()),
            409 | 423 => Err(BackendError::WrongLockId {
                given: id.into(),
                held: serde_json::from_slice::<LockInfo>(&held)
                    .map(|i| i.id)
                    .unwrap_or_default(),
            }),
            s => Err(http_err(format!("HTTP error {s} unlocking state at {url}"))),
        }
    }
}

/// A held http lock; dropping it unlocks.
#[derive(Debug)]
pub struct HttpLock {
    backend: HttpBackend,
    info: Option<LockInfo>,
}

impl HttpLock {
    pub fn read(&self) -> Result<StateFile, BackendError> {
        self.backend.read()
    }

    pub fn write(&self, s: &mut StateFile) -> Result<(), BackendError> {
        s.serial += 1;
        self.backend
            .write(s, self.info.as_ref().map(|i| i.id.as_str()))
    }
}

impl Drop for HttpLock {
    fn drop(&mut self) {
        if let (Some(info), Some(url)) = (&self.info, &self.backend.unlock_address) {
            let _ = self.backend.request(
                &self.backend.unlock_method,
                url,
                serde_json::to_string(info).unwrap_or_default().as_bytes(),
            );
        }
    }
}
