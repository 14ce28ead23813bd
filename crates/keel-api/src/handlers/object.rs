//! Objects between the wire and the store: request bodies (JSON, YAML,
//! protobuf) checked against the URL and decoded into the typed structs,
//! and the storage encoding (no `resourceVersion`; Secrets sealed).

use std::sync::atomic::Ordering;

use base64::Engine;
use keel_store::KeyValue;
use serde_json::{Value, json};

use super::{Ctx, MAX_OBJECT, error_chain, store_fail};
use crate::State;
use crate::http::Fail;
use crate::resources::Resource;
use crate::validate;

pub(crate) fn encode(state: &State, r: &Resource, key: &str, obj: &Value) -> Result<Vec<u8>, Fail> {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    let bytes = serde_json::to_vec(&o).map_err(Fail::internal)?;
    if bytes.len() > MAX_OBJECT {
        return Err(Fail::new(
            413,
            "RequestEntityTooLarge",
            format!(
                "Request entity too large: object is {} bytes, limit is {MAX_OBJECT}",
                bytes.len()
            ),
        ));
    }
    if r.kind == "Secret" {
        return state
            .secrets
            .seal(&bytes, key.as_bytes())
            .map_err(|e| Fail::internal(error_chain(&e)));
    }
    Ok(bytes)
}

pub(crate) fn decode(state: &State, kv: &KeyValue, rev: i64) -> Result<Value, Fail> {
    let plain;
    let bytes = if keel_secrets::is_sealed(&kv.value) {
        plain = state
            .secrets
            .open(&kv.value, kv.key.as_bytes())
            .map_err(|e| Fail::internal(error_chain(&e)))?;
        &plain
    } else {
        &kv.value
    };
    let mut v: Value = serde_json::from_slice(bytes).map_err(Fail::internal)?;
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), json!(rev.to_string()));
    }
    Ok(v)
}

/// Objects decoded from watch events, shared by every in-process watcher:
/// each controller sees every change, and decoding one JSON object once per
/// watcher was most of their CPU and of the server's heap (a copy per
/// controller cache). Keyed by revision and key, for the newest
/// [`Self::KEEP`] revisions (watchers run a little behind one another).
/// The memo holds them weakly: an object lives while a watcher keeps it (in
/// its cache), and older versions no one holds are freed at once (held
/// strongly, the memo kept 1024 versions of mostly stale pods: 11-17 MB of
/// a 100-pod node's heap). Without `metadata.managedFields`: no in-process
/// watcher reads them, and they are about half of a pod's decoded values.
#[derive(Debug, Default)]
pub(crate) struct Decoded(std::sync::Mutex<DecodedInner>);

type Shared = std::sync::Arc<Value>;

#[derive(Debug, Default)]
struct DecodedInner {
    by_rev: std::collections::HashMap<i64, Vec<(String, std::sync::Weak<Value>)>>,
    order: std::collections::VecDeque<i64>,
}

impl DecodedInner {
    fn hit(&self, rev: i64, key: &str) -> Option<Shared> {
        self.by_rev
            .get(&rev)?
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.upgrade())
    }
}

impl Decoded {
    const KEEP: usize = 1024;

    /// `kv` decoded at its own revision, from the memo when another watcher
    /// decoded it and still holds it.
    pub(crate) fn get(&self, state: &State, kv: &KeyValue) -> Result<Shared, Fail> {
        let rev = kv.mod_revision;
        if let Some(v) = self.0.lock().ok().and_then(|i| i.hit(rev, &kv.key)) {
            return Ok(v);
        }
        // Decoded outside the lock: two watchers may both decode, never wait.
        let mut v = decode(state, kv, rev)?;
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("managedFields");
        }
        let v = std::sync::Arc::new(v);
        if let Ok(mut inner) = self.0.lock() {
            if let Some(known) = inner.hit(rev, &kv.key) {
                return Ok(known);
            }
            if !inner.by_rev.contains_key(&rev) {
                inner.order.push_back(rev);
            }
            let entries = inner.by_rev.entry(rev).or_default();
            match entries.iter_mut().find(|(k, _)| *k == kv.key) {
                Some(e) => e.1 = std::sync::Arc::downgrade(&v),
                None => entries.push((kv.key.clone(), std::sync::Arc::downgrade(&v))),
            }
            while inner.order.len() > Self::KEEP {
                if let Some(old) = inner.order.pop_front() {
                    inner.by_rev.remove(&old);
                }
            }
        }
        Ok(v)
    }
}

pub(crate) async fn get_current(
    state: &State,
    r: &Resource,
    ns: Option<&str>,
    name: &str,
) -> Result<(KeyValue, Value), Fail> {
    let key = r.key(ns, name);
    let kv = state
        .store
        .get(&key)
        .await
        .map_err(|e| store_fail(r, name, e))?
        .ok_or_else(|| Fail::not_found(r, name))?;
    let v = decode(state, &kv, kv.mod_revision)?;
    Ok((kv, v))
}

// ---------- request parsing ----------

pub(super) fn parse_body(ctx: &Ctx) -> Result<Value, Fail> {
    if ctx
        .content_type
        .contains("application/vnd.kubernetes.protobuf")
    {
        return crate::proto::decode(&ctx.body)
            .map_err(|e| Fail::bad_request(format!("error decoding protobuf: {e}")));
    }
    let yaml = ctx.content_type.contains("yaml");
    let v: Value = if yaml {
        serde_yaml_ng::from_slice(&ctx.body)
            .map_err(|e| Fail::bad_request(format!("error decoding YAML: {e}")))?
    } else {
        serde_json::from_slice(&ctx.body).map_err(|e| {
            Fail::bad_request(format!(
                "error decoding JSON: {e} (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?
    };
    Ok(v)
}

/// Checks an incoming object against the URL and strictness settings.
pub(super) fn check_object(ctx: &Ctx, obj: &mut Value) -> Result<(), Fail> {
    let r = ctx.target.resource;
    if !obj.is_object() {
        return Err(Fail::bad_request(
            "the request body must be a JSON or YAML object",
        ));
    }
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if api_version.is_empty() && kind.is_empty() {
        obj["apiVersion"] = json!(r.api_version());
        obj["kind"] = json!(r.kind);
    } else if api_version != r.api_version() || kind != r.kind {
        return Err(Fail::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({}) or the kind ({kind}) does not match {}",
            r.api_version(),
            r.kind
        )));
    }
    if !obj.get("metadata").is_none_or(Value::is_object) {
        return Err(Fail::bad_request("metadata must be an object"));
    }
    if obj.get("metadata").is_none() {
        obj["metadata"] = json!({});
    }
    if r.namespaced {
        let url_ns = ctx
            .target
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        match obj.pointer("/metadata/namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() && ns != url_ns => {
                return Err(Fail::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => obj["metadata"]["namespace"] = json!(url_ns),
        }
    } else if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("namespace");
    }
    if let Some(version) = crate::crd::version_of(r) {
        // Custom objects: unknown fields are pruned (an error when strict),
        // defaults come from the schema.
        let strict = ctx.query.get("fieldValidation") == Some("Strict");
        let before = obj.clone();
        crate::crd::prune_and_default_object(&version, obj);
        if strict {
            let mut unknown = Vec::new();
            validate::unknown_fields(&mut before.clone(), obj, "", false, &mut unknown);
            if !unknown.is_empty() {
                let list: Vec<String> = unknown
                    .iter()
                    .map(|u| format!("unknown field \"{u}\""))
                    .collect();
                return Err(Fail::bad_request(format!(
                    "strict decoding error: {}",
                    list.join(", ")
                )));
            }
        }
        return Ok(());
    }
    // A CRD's schema has keys such as `requests` that are not quantities.
    let crd = r.group == crate::crd::GROUP;
    if !crd {
        validate::normalize_quantities(obj);
    }
    let typed = (if crd {
        Ok(())
    } else {
        validate::check_quantities(obj)
    })
    .and_then(|()| (r.typed)(obj))
    .map_err(|e| {
        Fail::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {e}",
            r.kind, r.version, r.kind
        ))
    })?;
    let mut unknown = Vec::new();
    let strict = ctx.query.get("fieldValidation") == Some("Strict");
    validate::unknown_fields(obj, &typed, "", !strict, &mut unknown);
    if strict && !unknown.is_empty() {
        let list: Vec<String> = unknown
            .iter()
            .map(|u| format!("unknown field \"{u}\""))
            .collect();
        return Err(Fail::bad_request(format!(
            "strict decoding error: {}",
            list.join(", ")
        )));
    }
    Ok(())
}

pub(super) fn next_cluster_ip(state: &State) -> String {
    let n = state.next_ip.fetch_add(1, Ordering::SeqCst);
    // Random start so restarts rarely hand out a live address again.
    let base = u32::from_be_bytes([0, 0, (std::process::id() % 200) as u8, 10]);
    // From .0.11 on: 10.43.0.10 is the kube-dns Service's (keel server).
    let x = (base + n) % 65_000 + 11;
    format!("10.43.{}.{}", (x >> 8) & 0xff, x & 0xff)
}

/// `stringData` is write-only: merged into base64 `data`.
pub(super) fn merge_string_data(obj: &mut Value) {
    let Some(sd) = obj.as_object_mut().and_then(|m| m.remove("stringData")) else {
        return;
    };
    let Some(sd) = sd.as_object() else { return };
    if !obj.get("data").is_some_and(Value::is_object) {
        obj["data"] = json!({});
    }
    for (k, v) in sd {
        let enc = base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap_or_default());
        obj["data"][k] = json!(enc);
    }
}
