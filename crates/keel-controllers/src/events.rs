//! Events as kube-controller-manager records them (core/v1 `Event`s with
//! `source.component` and `reportingComponent` naming the controller), so
//! `kubectl describe` and `kubectl events` show what a controller did.
//!
//! Recording never blocks a reconcile: events go through a channel to one
//! writer task. As client-go's recorder does, a repeated event (same object,
//! reason and message) raises the `count` of the first instead of adding a
//! new one, and one object gets at most 25 events in a burst, then one per
//! five minutes (client-go's spam filter), so a 1,000-pod scale-up does not
//! write 1,000 events.

use std::collections::HashMap;
use std::time::Duration;

use keel_api::Loopback;
use keel_api::resources::{self, Resource};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::objects::meta_str;

const BURST: f64 = 25.0;
const REFILL: Duration = Duration::from_mins(5);

fn events() -> &'static Resource {
    resources::find("", "v1", "events").expect("events are served")
}

/// Where a controller records events (cheap to clone).
#[derive(Debug, Clone)]
pub(crate) struct Recorder {
    tx: mpsc::UnboundedSender<Value>,
}

impl Recorder {
    /// Starts the writer task for `component` (e.g. `deployment-controller`).
    pub fn new(api: Loopback, component: &'static str) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_events(api, component, rx));
        Recorder { tx }
    }

    /// Records a `Normal` event about `obj` (of resource `r`).
    pub fn normal(&self, r: &Resource, obj: &Value, reason: &str, message: String) {
        self.record(r, obj, "Normal", reason, message);
    }

    pub fn warning(&self, r: &Resource, obj: &Value, reason: &str, message: String) {
        self.record(r, obj, "Warning", reason, message);
    }

    fn record(&self, r: &Resource, obj: &Value, kind: &str, reason: &str, message: String) {
        let involved = json!({
            "apiVersion": r.api_version(),
            "kind": r.kind,
            "namespace": meta_str(obj, "namespace"),
            "name": meta_str(obj, "name"),
            "uid": meta_str(obj, "uid"),
            "resourceVersion": meta_str(obj, "resourceVersion"),
        });
        let _ = self.tx.send(json!({
            "involvedObject": involved,
            "type": kind,
            "reason": reason,
            "message": message,
        }));
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

async fn write_events(
    api: Loopback,
    component: &'static str,
    mut rx: mpsc::UnboundedReceiver<Value>,
) {
    let events_r = events();
    // (uid, reason, message) → (event name, namespace, count)
    let mut seen: HashMap<(String, String, String), (String, String, u64)> = HashMap::new();
    let mut buckets: HashMap<String, Bucket> = HashMap::new();
    while let Some(ev) = rx.recv().await {
        let s = |p: &str| {
            ev.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let (uid, ns, name) = (
            s("/involvedObject/uid"),
            s("/involvedObject/namespace"),
            s("/involvedObject/name"),
        );
        let now = Instant::now();
        let bucket = buckets.entry(uid.clone()).or_insert(Bucket {
            tokens: BURST,
            at: now,
        });
        bucket.tokens = (bucket.tokens
            + now.duration_since(bucket.at).as_secs_f64() / REFILL.as_secs_f64())
        .min(BURST);
        bucket.at = now;
        if bucket.tokens < 1.0 {
            continue;
        }
        bucket.tokens -= 1.0;
        let ts = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let ns = if ns.is_empty() {
            "default".to_string()
        } else {
            ns
        };
        let key = (uid, s("/reason"), s("/message"));
        if let Some((ev_name, ev_ns, count)) = seen.get_mut(&key) {
            *count += 1;
            let n = *count;
            let res = api
                .modify(
                    events_r,
                    Some(ev_ns),
                    ev_name,
                    None,
                    crate::MANAGER,
                    |cur| {
                        let mut v = cur.clone();
                        v["count"] = json!(n);
                        v["lastTimestamp"] = json!(ts);
                        Some(v)
                    },
                )
                .await;
            match res {
                Ok(_) => continue,
                // Gone (expired or deleted): record it anew below.
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    tracing::debug!(error = %e, "event not recorded");
                    continue;
                }
            }
        }
        let nanos = jiff::Timestamp::now().as_nanosecond();
        let ev_name = format!("{name}.{nanos:x}");
        let mut obj = ev;
        obj["apiVersion"] = json!("v1");
        obj["kind"] = json!("Event");
        obj["metadata"] = json!({"name": ev_name, "namespace": ns});
        obj["source"] = json!({"component": component});
        obj["reportingComponent"] = json!(component);
        obj["reportingInstance"] = json!("");
        obj["firstTimestamp"] = json!(ts);
        obj["lastTimestamp"] = json!(ts);
        obj["count"] = json!(1);
        match api.create(events_r, obj, crate::MANAGER).await {
            Ok(_) => {
                seen.insert(key, (ev_name, ns, 1));
            }
            Err(e) => tracing::debug!(error = %e, "event not recorded"),
        }
        // Keep the memory bounded on long runs.
        if seen.len() > 4096 {
            seen.clear();
        }
        if buckets.len() > 4096 {
            buckets.retain(|_, b| b.tokens < BURST);
        }
    }
}
