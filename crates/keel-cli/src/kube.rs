//! A small synchronous Kubernetes client for `keel chart`'s releases: the
//! cluster from a kubeconfig (keel-infra reads it as client-go does), API
//! discovery from kind to resource, and the verbs Helm uses (get, list,
//! server-side apply with a field manager, create, update, delete).

use std::cell::RefCell;
use std::collections::HashMap;

use anyhow::{Context as _, bail};
use keel_infra::kubeconfig::{Connection, connect, default_path};
use serde_json::Value as J;

/// The `Accept` header for server-side tables, as Helm asks for them.
pub const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io";

/// What discovery says about one kind.
#[derive(Debug, Clone)]
pub struct Resource {
    pub plural: String,
    pub namespaced: bool,
}

/// One cluster, reached through a kubeconfig.
pub struct Kube {
    conn: Connection,
    /// apiVersion → (kind → resource), filled on first use.
    discovery: RefCell<HashMap<String, HashMap<String, Resource>>>,
}

/// An API error as the server returned it (status and its `message`).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: String,
    pub message: String,
}

/// Percent-encoding of a path segment or query value.
fn enc(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b));
            }
            b => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

impl Kube {
    /// The cluster of `kubeconfig` (else `KUBECONFIG`, `~/.kube/config`)
    /// and `context` (else its current one).
    pub fn connect(kubeconfig: Option<&str>, context: Option<&str>) -> anyhow::Result<Kube> {
        let path = kubeconfig
            .map(str::to_string)
            .or_else(|| std::env::var("KUBECONFIG").ok().filter(|v| !v.is_empty()))
            .or_else(default_path)
            .context("no kubeconfig: pass --kubeconfig or set KUBECONFIG")?;
        // KUBECONFIG may list several files; the first that exists is used.
        let path = path
            .split(':')
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or(&path)
            .to_string();
        let conn = connect(&path, context, false).map_err(|e| anyhow::anyhow!(e))?;
        Ok(Kube {
            conn,
            discovery: RefCell::new(HashMap::new()),
        })
    }

    /// The context's namespace, if the kubeconfig names one.
    pub fn context_namespace(&self) -> Option<&str> {
        self.conn.namespace.as_deref()
    }

    /// One request; the body is JSON unless `ct` says otherwise.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&J>,
        ct: &str,
    ) -> anyhow::Result<Result<J, ApiError>> {
        self.call_accepting(method, path, body, ct, None)
    }

    fn call_accepting(
        &self,
        method: &str,
        path: &str,
        body: Option<&J>,
        ct: &str,
        accept: Option<&str>,
    ) -> anyhow::Result<Result<J, ApiError>> {
        let url = format!("{}{path}", self.conn.server.trim_end_matches('/'));
        let bytes = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
        let (code, data) = self
            .conn
            .client
            .request_accepting(
                method,
                &url,
                bytes.as_deref().unwrap_or_default(),
                ct,
                accept,
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let j: J = serde_json::from_slice(&data).unwrap_or(J::Null);
        if (200..300).contains(&code) {
            return Ok(Ok(j));
        }
        Ok(Err(ApiError {
            code,
            reason: j["reason"].as_str().unwrap_or_default().to_string(),
            message: j["message"].as_str().map_or_else(
                || String::from_utf8_lossy(&data).into_owned(),
                str::to_string,
            ),
        }))
    }

    fn ok(&self, method: &str, path: &str, body: Option<&J>, ct: &str) -> anyhow::Result<J> {
        Ok(self.call(method, path, body, ct)??)
    }

    /// GET; `None` when the object does not exist.
    pub fn get(&self, path: &str) -> anyhow::Result<Option<J>> {
        match self.call("GET", path, None, "application/json")? {
            Ok(j) => Ok(Some(j)),
            Err(e) if e.code == 404 => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// GET as a server-side `Table` (what kubectl and Helm's status print).
    pub fn get_table(&self, path: &str) -> anyhow::Result<Option<J>> {
        match self.call_accepting("GET", path, None, "application/json", Some(TABLE))? {
            Ok(j) => Ok(Some(j)),
            Err(e) if e.code == 404 => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn resources(&self, api_version: &str) -> anyhow::Result<HashMap<String, Resource>> {
        if let Some(r) = self.discovery.borrow().get(api_version) {
            return Ok(r.clone());
        }
        let path = if api_version.contains('/') {
            format!("/apis/{api_version}")
        } else {
            format!("/api/{api_version}")
        };
        let list = self.get(&path)?.unwrap_or(J::Null);
        let mut out = HashMap::new();
        for r in list["resources"].as_array().into_iter().flatten() {
            let name = r["name"].as_str().unwrap_or_default();
            if name.contains('/') {
                continue;
            }
            out.insert(
                r["kind"].as_str().unwrap_or_default().to_string(),
                Resource {
                    plural: name.to_string(),
                    namespaced: r["namespaced"].as_bool().unwrap_or(false),
                },
            );
        }
        self.discovery
            .borrow_mut()
            .insert(api_version.to_string(), out.clone());
        Ok(out)
    }

    /// Forgets discovery (after CRDs are created).
    pub fn rediscover(&self) {
        self.discovery.borrow_mut().clear();
    }

    /// The resource of `kind` in `api_version`.
    pub fn resource(&self, api_version: &str, kind: &str) -> anyhow::Result<Resource> {
        match self.resources(api_version)?.get(kind) {
            Some(r) => Ok(r.clone()),
            None => bail!(
                "resource mapping not found for kind \"{kind}\" in version \"{api_version}\": ensure CRDs are installed first"
            ),
        }
    }

    /// The collection path of `kind` (in `ns` if it is namespaced).
    pub fn collection(&self, api_version: &str, kind: &str, ns: &str) -> anyhow::Result<String> {
        let r = self.resource(api_version, kind)?;
        let base = if api_version.contains('/') {
            format!("/apis/{api_version}")
        } else {
            format!("/api/{api_version}")
        };
        Ok(if r.namespaced {
            format!("{base}/namespaces/{}/{}", enc(ns), r.plural)
        } else {
            format!("{base}/{}", r.plural)
        })
    }

    /// The path of `obj` (its namespace, else `ns`), and whether it is namespaced.
    pub fn object_path(&self, obj: &J, ns: &str) -> anyhow::Result<(String, bool)> {
        let av = obj["apiVersion"].as_str().unwrap_or_default();
        let kind = obj["kind"].as_str().unwrap_or_default();
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        let ns = obj["metadata"]["namespace"].as_str().unwrap_or(ns);
        let r = self.resource(av, kind)?;
        Ok((
            format!("{}/{}", self.collection(av, kind, ns)?, enc(name)),
            r.namespaced,
        ))
    }

    /// Server-side apply with field manager `manager`.
    pub fn apply(&self, path: &str, obj: &J, manager: &str, force: bool) -> anyhow::Result<J> {
        self.ok(
            "PATCH",
            &format!("{path}?fieldManager={}&force={force}", enc(manager)),
            Some(obj),
            "application/apply-patch+yaml",
        )
    }

    /// POST into a collection; `Err` carries the API's refusal.
    pub fn create(&self, collection: &str, obj: &J) -> anyhow::Result<Result<J, ApiError>> {
        self.call("POST", collection, Some(obj), "application/json")
    }

    /// PUT.
    pub fn update(&self, path: &str, obj: &J) -> anyhow::Result<J> {
        self.ok("PUT", path, Some(obj), "application/json")
    }

    /// DELETE with background propagation; `false` when it was already gone.
    pub fn delete(&self, path: &str) -> anyhow::Result<bool> {
        let body = serde_json::json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"});
        match self.call("DELETE", path, Some(&body), "application/json")? {
            Ok(_) => Ok(true),
            Err(e) if e.code == 404 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// A collection (matching `selector`) as one list object, or as one
    /// server-side `Table`.
    pub fn list_object(
        &self,
        collection: &str,
        selector: &str,
        table: bool,
    ) -> anyhow::Result<Option<J>> {
        let path = format!("{collection}?labelSelector={}", enc(selector));
        let accept = table.then_some(TABLE);
        match self.call_accepting("GET", &path, None, "application/json", accept)? {
            Ok(j) => Ok(Some(j)),
            Err(e) if e.code == 404 => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The items of a collection matching `selector`.
    pub fn list(&self, collection: &str, selector: &str) -> anyhow::Result<Vec<J>> {
        let path = if selector.is_empty() {
            collection.to_string()
        } else {
            format!("{collection}?labelSelector={}", enc(selector))
        };
        let j = self.ok("GET", &path, None, "application/json")?;
        Ok(j["items"].as_array().cloned().unwrap_or_default())
    }
}
