//! Audit annotations, as admission plugins record them in kube-apiserver
//! (`pod-security.kubernetes.io/audit-violations`, ...): a request that
//! collected any is written as one `audit.k8s.io/v1` `Event` (level
//! Metadata, stage `ResponseComplete`) to `<state dir>/audit.log`, one JSON
//! object a line, readable by root only. keel keeps no audit log of
//! requests without annotations.

use std::io::Write as _;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};

#[derive(Default)]
struct Notes {
    list: Vec<(String, String)>,
    /// The object's name when the URL has none (create).
    name: Option<String>,
}

tokio::task_local! {
    /// The annotations of the request being served.
    static ANNOTATIONS: Arc<Mutex<Notes>>;
}

/// Records an annotation about object `name` on the current request's
/// audit event (none outside a request).
pub(crate) fn annotate(name: &str, key: &str, value: String) {
    let _ = ANNOTATIONS.try_with(|a| {
        if let Ok(mut a) = a.lock() {
            a.list.push((key.to_string(), value));
            a.name.get_or_insert_with(|| name.to_string());
        }
    });
}

/// What the event says about the request.
pub(crate) struct Request {
    pub id: String,
    pub uri: String,
    pub verb: String,
    pub user: Arc<crate::auth::User>,
    pub object_ref: Value,
    pub received: String,
}

/// Runs `f` collecting annotations, then writes the event if there are any.
pub(crate) async fn scope<F: std::future::Future<Output = hyper::Response<crate::http::Body>>>(
    dir: &std::path::Path,
    req: Request,
    f: F,
) -> hyper::Response<crate::http::Body> {
    let notes = Arc::new(Mutex::new(Notes::default()));
    let mut resp = ANNOTATIONS.scope(notes.clone(), f).await;
    if let Ok(v) = hyper::header::HeaderValue::from_str(&req.id) {
        resp.headers_mut().insert("audit-id", v);
    }
    let (notes, name) = notes
        .lock()
        .map(|n| (n.list.clone(), n.name.clone()))
        .unwrap_or_default();
    if !notes.is_empty() {
        let mut annotations: Map<String, Value> = Map::new();
        for (k, v) in notes {
            // A key recorded twice with JSON lists (the validation_failure
            // of several policies) holds both lists joined.
            let joined = annotations.get(&k).and_then(|old| {
                let old: Vec<Value> = serde_json::from_str(old.as_str()?).ok()?;
                let new: Vec<Value> = serde_json::from_str(&v).ok()?;
                Some(json!(Value::Array([old, new].concat()).to_string()))
            });
            annotations.insert(k, joined.unwrap_or_else(|| json!(v)));
        }
        let mut object_ref = req.object_ref;
        if let Some(o) = object_ref.as_object_mut() {
            if let (Some(n), None | Some(Value::Null)) = (name, o.get("name")) {
                o.insert("name".into(), json!(n));
            }
            o.retain(|_, v| !v.is_null());
        }
        let event = json!({
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": "Metadata",
            "auditID": req.id,
            "stage": "ResponseComplete",
            "requestURI": req.uri,
            "verb": req.verb,
            "user": {"username": req.user.name, "uid": req.user.uid, "groups": req.user.groups},
            "objectRef": object_ref,
            "responseStatus": {"metadata": {}, "code": resp.status().as_u16()},
            "requestReceivedTimestamp": req.received,
            "stageTimestamp": jiff::Timestamp::now().to_string(),
            "annotations": annotations,
        });
        if let Err(e) = append(&dir.join("audit.log"), &event) {
            tracing::warn!(error = %e, "cannot write the audit log");
        }
    }
    resp
}

fn append(path: &std::path::Path, event: &Value) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut line = serde_json::to_vec(event)?;
    line.push(b'\n');
    // One write of a whole line: concurrent requests never interleave.
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?
        .write_all(&line)
}
