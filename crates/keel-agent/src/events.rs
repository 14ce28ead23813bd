//! Events about pods as the kubelet writes them (core/v1 `Event`, source
//! `kubelet` on this node, `involvedObject.fieldPath` naming the
//! container): `Pulling`/`Pulled`, `Created`, `Started`, `Killing`,
//! `Unhealthy`, `BackOff`, `Failed`. An event that repeats (a probe failing every period)
//! is one object whose `count` and `lastTimestamp` go up, as client-go's
//! correlator does it. Writing never blocks a pod's worker, and a failed
//! write is only logged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Container, Event, Pod};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

use crate::node::now_rfc3339;

/// Repeats of one event: its object's name and count so far.
type Seen = HashMap<(String, String, String, String), (String, i32)>;

pub(crate) struct Recorder {
    client: kube::Client,
    node: String,
    seen: Mutex<Seen>,
}

/// `involvedObject.fieldPath` of a container.
pub(crate) fn field_path(c: &Container, init: bool) -> String {
    let list = if init { "initContainers" } else { "containers" };
    format!("spec.{list}{{{}}}", c.name)
}

impl Recorder {
    pub(crate) fn new(client: kube::Client, node: String) -> Arc<Self> {
        Arc::new(Recorder {
            client,
            node,
            seen: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn normal(
        self: &Arc<Self>,
        pod: &Pod,
        fp: Option<String>,
        reason: &str,
        msg: String,
    ) {
        self.emit(pod, fp, "Normal", reason, msg);
    }

    pub(crate) fn warning(
        self: &Arc<Self>,
        pod: &Pod,
        fp: Option<String>,
        reason: &str,
        msg: String,
    ) {
        self.emit(pod, fp, "Warning", reason, msg);
    }

    /// Forgets a deleted pod's events (their objects stay for their TTL).
    pub(crate) fn forget(&self, uid: &str) {
        if let Ok(mut s) = self.seen.lock() {
            s.retain(|k, _| k.0 != uid);
        }
    }

    fn emit(
        self: &Arc<Self>,
        pod: &Pod,
        fp: Option<String>,
        kind: &str,
        reason: &str,
        msg: String,
    ) {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let now = now_rfc3339();
        let key = (
            uid.clone(),
            fp.clone().unwrap_or_default(),
            reason.to_string(),
            msg.clone(),
        );
        let repeat = self.seen.lock().ok().and_then(|mut s| {
            let e = s.get_mut(&key)?;
            e.1 += 1;
            Some(e.clone())
        });
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let this = self.clone();
        if let Some((ev_name, count)) = repeat {
            tokio::spawn(async move {
                let patch = json!({"count": count, "lastTimestamp": now});
                if let Err(e) = api
                    .patch(&ev_name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    tracing::debug!(event = ev_name, error = %e, "event not updated");
                }
            });
            return;
        }
        let nanos = k8s_openapi::jiff::Timestamp::now().as_nanosecond();
        let ev_name = format!("{name}.{nanos:x}");
        let mut involved = json!({
            "apiVersion": "v1", "kind": "Pod", "namespace": ns, "name": name, "uid": uid,
        });
        if let Some(rv) = &pod.metadata.resource_version {
            involved["resourceVersion"] = json!(rv);
        }
        if let Some(fp) = &fp {
            involved["fieldPath"] = json!(fp);
        }
        let ev = json!({
            "metadata": {"name": ev_name, "namespace": ns},
            "involvedObject": involved,
            "reason": reason,
            "message": msg,
            "source": {"component": "kubelet", "host": self.node},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "type": kind,
            "reportingComponent": "kubelet",
            "reportingInstance": self.node,
        });
        if let Ok(mut s) = self.seen.lock() {
            s.insert(key.clone(), (ev_name.clone(), 1));
        }
        tokio::spawn(async move {
            let Ok(ev) = serde_json::from_value::<Event>(ev) else {
                return;
            };
            if let Err(e) = api.create(&PostParams::default(), &ev).await {
                tracing::debug!(event = ev_name, error = %e, "event not written");
                if let Ok(mut s) = this.seen.lock() {
                    s.remove(&key);
                }
            }
        });
    }
}
