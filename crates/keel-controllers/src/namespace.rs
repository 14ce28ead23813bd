//! The namespace controller: when a namespace is being deleted, everything
//! in it is deleted (background propagation), and once nothing is left its
//! `kubernetes` finalizer is removed through the `finalize` subresource, after
//! which the API deletes the namespace. Objects held by finalizers keep the
//! namespace `Terminating` until they go.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_api::client::{ChangeKind, WatchEvent};
use keel_api::resources::{self, Resource};
use keel_api::{ClientError, DeleteOptions, Loopback};
use serde_json::Value;

use crate::MANAGER;
use crate::objects::{is_deleting, meta_str, without_list_entry};

/// The finalizer of `spec.finalizers` this controller owns.
pub const FINALIZER: &str = "kubernetes";

fn namespaces() -> &'static Resource {
    resources::find("", "v1", "namespaces").expect("namespaces are served")
}

/// The namespace controller. [`NamespaceController::run`] never returns.
#[derive(Debug, Clone)]
pub struct NamespaceController {
    api: Loopback,
    /// Namespaces whose termination is in progress.
    running: Arc<Mutex<HashSet<String>>>,
}

impl NamespaceController {
    pub fn new(api: Loopback) -> Self {
        NamespaceController {
            api,
            running: Arc::default(),
        }
    }

    pub async fn run(self) {
        let r = namespaces();
        loop {
            let (items, rev) = match self.api.list(r, None).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "namespace controller: list failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            for ns in items.iter().filter(|o| is_deleting(o)) {
                self.start(meta_str(ns, "name"));
            }
            let mut watch = match self.api.watch(r, rev + 1).await {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(error = %e, "namespace controller: watch failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            while let Some(ev) = watch.next().await {
                match ev {
                    Ok(WatchEvent::Change(c)) if c.kind == ChangeKind::Put => {
                        if let Some(obj) = self.api.object(&c)
                            && is_deleting(&obj)
                        {
                            self.start(meta_str(&obj, "name"));
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "namespace controller: watch failed, listing again");
                        break;
                    }
                }
            }
        }
    }

    fn start(&self, ns: &str) {
        let fresh = self
            .running
            .lock()
            .is_ok_and(|mut r| r.insert(ns.to_string()));
        if !fresh {
            return;
        }
        let me = self.clone();
        let ns = ns.to_string();
        tokio::spawn(async move {
            me.terminate(&ns).await;
            if let Ok(mut r) = me.running.lock() {
                r.remove(&ns);
            }
        });
    }

    async fn terminate(&self, ns: &str) {
        tracing::info!(namespace = ns, "deleting the namespace's contents");
        let mut delay = Duration::from_millis(100);
        loop {
            match self.sweep(ns).await {
                Ok(0) => match self.finalize(ns).await {
                    Ok(()) => {
                        tracing::info!(namespace = ns, "namespace finalized");
                        return;
                    }
                    Err(e) if e.is_not_found() => return,
                    Err(e) => tracing::warn!(namespace = ns, error = %e, "finalize failed"),
                },
                Ok(left) => {
                    tracing::debug!(namespace = ns, left, "waiting for the namespace's objects");
                }
                Err(e) if e.is_not_found() => return,
                Err(e) => tracing::warn!(namespace = ns, error = %e, "deleting contents failed"),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }

    /// Deletes what is left in `ns`; returns how many objects remain.
    async fn sweep(&self, ns: &str) -> Result<usize, ClientError> {
        let opts = DeleteOptions {
            grace_period: None,
            propagation: Some("Background".into()),
            ..DeleteOptions::default()
        };
        let mut left = 0;
        for r in resources::all()
            .into_iter()
            .filter(|r| r.namespaced && r.verbs.stored())
        {
            let (items, _) = self.api.list(r, Some(ns)).await?;
            for obj in items {
                left += 1;
                if is_deleting(&obj) {
                    continue;
                }
                match self
                    .api
                    .delete(r, Some(ns), meta_str(&obj, "name"), &opts)
                    .await
                {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(left)
    }

    async fn finalize(&self, ns: &str) -> Result<(), ClientError> {
        self.api
            .modify(namespaces(), None, ns, Some("finalize"), MANAGER, |cur| {
                without_spec_finalizer(cur)
            })
            .await
            .map(|_| ())
    }
}

fn without_spec_finalizer(ns: &Value) -> Option<Value> {
    without_list_entry(ns, "/spec/finalizers", FINALIZER)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn spec_finalizer_removed_once() {
        let ns = json!({"spec": {"finalizers": ["kubernetes", "other"]}});
        let v = without_spec_finalizer(&ns).unwrap();
        assert_eq!(v["spec"]["finalizers"], json!(["other"]));
        assert!(without_spec_finalizer(&v).is_none());
    }
}
