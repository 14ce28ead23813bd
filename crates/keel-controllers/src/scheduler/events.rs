//! Events (core/v1, which `kubectl describe` shows) written in the
//! background, as client-go's recorder does: a repeat of the same reason and
//! message for the same object bumps `count` and `lastTimestamp` of the
//! first event instead of adding another.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use keel_api::Loopback;
use keel_api::resources::{self, Resource};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};

/// The object an event is about.
#[derive(Debug, Clone)]
pub(crate) struct Involved {
    pub kind: &'static str,
    pub api_version: &'static str,
    pub ns: String,
    pub name: String,
    pub uid: String,
}

#[derive(Debug)]
struct Request {
    about: Involved,
    warning: bool,
    reason: &'static str,
    message: String,
}

/// Sends events to a background writer; never blocks the caller.
#[derive(Debug, Clone)]
pub(crate) struct Recorder {
    tx: mpsc::UnboundedSender<Request>,
}

/// Most series remembered for aggregation (then forgotten all at once).
const MAX_SERIES: usize = 20_000;
/// Event writes at once.
const WRITERS: usize = 8;

pub(crate) fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn events() -> &'static Resource {
    resources::find("", "v1", "events").expect("events are served")
}

impl Recorder {
    /// Starts the writer for `component` (the event's `source.component`).
    pub fn new(api: Loopback, component: &'static str) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_events(api, component, rx));
        Recorder { tx }
    }

    pub fn normal(&self, about: &Involved, reason: &'static str, message: String) {
        self.send(about, false, reason, message);
    }

    pub fn warning(&self, about: &Involved, reason: &'static str, message: String) {
        self.send(about, true, reason, message);
    }

    fn send(&self, about: &Involved, warning: bool, reason: &'static str, message: String) {
        let _ = self.tx.send(Request {
            about: about.clone(),
            warning,
            reason,
            message,
        });
    }
}

async fn write_events(
    api: Loopback,
    component: &'static str,
    mut rx: mpsc::UnboundedReceiver<Request>,
) {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let writers = Arc::new(Semaphore::new(WRITERS));
    // (uid, reason, message) → (event name, count).
    let mut series: HashMap<(String, &'static str, String), (String, i64)> = HashMap::new();
    while let Some(req) = rx.recv().await {
        if series.len() > MAX_SERIES {
            series.clear();
        }
        let id = (req.about.uid.clone(), req.reason, req.message.clone());
        let (name, count) = if let Some((name, count)) = series.get_mut(&id) {
            *count += 1;
            (name.clone(), *count)
        } else {
            let nanos = jiff::Timestamp::now().as_nanosecond();
            let seq = SEQ.fetch_add(1, Ordering::Relaxed);
            #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
            let name = format!("{}.{:x}", req.about.name, (nanos as u64).wrapping_add(seq));
            series.insert(id, (name.clone(), 1));
            (name, 1)
        };
        let Ok(permit) = writers.clone().acquire_owned().await else {
            return;
        };
        let api = api.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let ts = now();
            // Events about cluster-scoped objects (nodes) live in `default`.
            let ns = if req.about.ns.is_empty() {
                "default".to_string()
            } else {
                req.about.ns.clone()
            };
            let r = if count == 1 {
                let ev = json!({
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": {"name": name, "namespace": ns},
                    "involvedObject": {
                        "kind": req.about.kind,
                        "apiVersion": req.about.api_version,
                        "namespace": req.about.ns,
                        "name": req.about.name,
                        "uid": req.about.uid,
                    },
                    "reason": req.reason,
                    "message": req.message,
                    "type": if req.warning { "Warning" } else { "Normal" },
                    "source": {"component": component},
                    "reportingComponent": component,
                    "reportingInstance": "",
                    "firstTimestamp": ts,
                    "lastTimestamp": ts,
                    "count": 1,
                });
                api.create(events(), ev, component).await.map(|_| ())
            } else {
                api.modify(events(), Some(&ns), &name, None, component, |cur| {
                    let mut v = cur.clone();
                    v["count"] =
                        json!(count.max(cur.get("count").and_then(Value::as_i64).unwrap_or(0) + 1));
                    v["lastTimestamp"] = json!(ts);
                    Some(v)
                })
                .await
                .map(|_| ())
            };
            if let Err(e) = r
                && !e.is_not_found()
            {
                tracing::debug!(error = %e, reason = req.reason, "event not written");
            }
        });
    }
}
