//! Node client certificates (kube-controller-manager's csrapproving and
//! csrsigning for `kubernetes.io/kube-apiserver-client-kubelet`): a CSR
//! for `CN=system:node:<name>, O=system:nodes` asked by a bootstrap token
//! (`system:bootstrappers`) or by that node itself is approved and signed
//! with the server's CA. Anything else is left for a human (`kubectl
//! certificate approve`) and never signed here.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use keel_api::Loopback;
use keel_api::client::{ChangeKind, WatchEvent};
use keel_api::resources::Resource;
use serde_json::{Value, json};

use crate::objects::meta_str;

const KUBELET_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";

fn csrs() -> &'static Resource {
    keel_api::resources::find("certificates.k8s.io", "v1", "certificatesigningrequests")
        .expect("served")
}

/// Signs node CSRs with the CA under `state_dir` (`<root>/server`).
pub struct CsrSigner {
    api: Loopback,
    paths: keel_api::pki::Paths,
}

impl CsrSigner {
    pub fn new(api: Loopback, state_dir: PathBuf) -> Self {
        CsrSigner {
            api,
            paths: keel_api::pki::Paths::new(&state_dir),
        }
    }

    pub async fn run(self) {
        loop {
            let Ok((list, rev)) = self.api.list(csrs(), None).await else {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            for c in &list {
                self.handle(c).await;
            }
            let Ok(mut w) = self.api.watch(csrs(), rev + 1).await else {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            while let Some(Ok(ev)) = w.next().await {
                if let WatchEvent::Change(c) = ev
                    && c.kind == ChangeKind::Put
                    && let Some(obj) = self.api.object(&c)
                {
                    self.handle(&obj).await;
                }
            }
        }
    }

    async fn handle(&self, csr: &Value) {
        if !is_node_client_request(csr) {
            return;
        }
        let name = meta_str(csr, "name").to_string();
        let pem = csr
            .pointer("/spec/request")
            .and_then(Value::as_str)
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default();
        let username = csr
            .pointer("/spec/username")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let signed = keel_api::pki::sign_node_csr(&self.paths, &pem);
        let cert = match signed {
            // A node renewing may only ask for its own name.
            Ok(c) if username.starts_with("system:node:") && !pem_names(&c, username) => {
                tracing::warn!(csr = name, username, "node CSR for another node refused");
                return;
            }
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(csr = name, error = %e, "node CSR not signed");
                return;
            }
        };
        let now = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_bytes());
        let r = self
            .api
            .modify(csrs(), None, &name, Some("status"), "csrsigning", |cur| {
                if cur.pointer("/status/certificate").is_some() {
                    return None;
                }
                let mut v = cur.clone();
                v["status"]["conditions"] = json!([{
                    "type": "Approved", "status": "True", "reason": "AutoApproved",
                    "message": "Auto approving kubelet client certificate after SubjectAccessReview.",
                    "lastUpdateTime": now, "lastTransitionTime": now,
                }]);
                v["status"]["certificate"] = json!(b64);
                Some(v)
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(csr = name, error = %e, "node CSR status not written");
        }
    }
}

/// A kubelet client CSR not yet answered, from a bootstrap token or a node.
fn is_node_client_request(csr: &Value) -> bool {
    let signer = csr
        .pointer("/spec/signerName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let answered = csr.pointer("/status/certificate").is_some()
        || csr
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|c| !c.is_empty());
    let groups: Vec<&str> = csr
        .pointer("/spec/groups")
        .and_then(Value::as_array)
        .map(|g| g.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    signer == KUBELET_SIGNER
        && !answered
        && (groups.contains(&"system:bootstrappers") || groups.contains(&"system:nodes"))
}

/// Whether certificate `pem` is for user `username` (its CN).
fn pem_names(pem: &str, username: &str) -> bool {
    keel_api::pki::pem_user(pem).is_some_and(|u| u.name == username)
}
