//! Dynamic admission: Mutating and Validating webhooks from
//! `admissionregistration.k8s.io/v1` configurations, called as
//! kube-apiserver calls them: an `admission.k8s.io/v1` `AdmissionReview`
//! sent by POST over TLS checked against the webhook's `caBundle`, rules matched on
//! operation, group, version, resource (with subresources) and scope,
//! namespace and object selectors, `failurePolicy`, `timeoutSeconds`,
//! `sideEffects` against dry run, `matchConditions` (CEL, in
//! `cel::policy`); mutating webhooks answer with a JSON
//! patch, applied in configuration-name order. Service references have no
//! endpoints until keel routes Services, which Kubernetes reports as a call
//! failure too. The configurations live in an index kept current from a
//! watch, so a write costs no store read for them.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::State;
use crate::auth::User;
use crate::http::Fail;
use crate::resources::{self, Resource};
use crate::selectors::LabelSelector;
use crate::validate::Cause;

pub(crate) const GROUP: &str = "admissionregistration.k8s.io";

tokio::task_local! {
    /// Who sent the request being admitted (the HTTP layer sets it; in-process
    /// controllers run without one).
    pub(crate) static USER: Arc<User>;
    /// Warnings for the client (`Warning` headers): from webhooks and
    /// PodSecurity's `warn` mode.
    pub(crate) static WARNINGS: Arc<std::sync::Mutex<Vec<String>>>;
}

/// Adds a warning to the current request's answer (none outside a request).
pub(crate) fn warn(msg: String) {
    let _ = WARNINGS.try_with(|w| {
        if let Ok(mut w) = w.lock() {
            w.push(msg);
        }
    });
}

#[derive(Default)]
struct Index {
    revision: i64,
    /// (configuration name, webhook) in name order.
    mutating: Vec<(String, Value)>,
    validating: Vec<(String, Value)>,
}

/// The webhook configurations, indexed.
#[derive(Default)]
pub(crate) struct Cache(RwLock<Arc<Index>>);

fn kinds() -> [&'static Resource; 2] {
    let find = |p| resources::find(GROUP, "v1", p).expect("admissionregistration is served");
    [
        find("mutatingwebhookconfigurations"),
        find("validatingwebhookconfigurations"),
    ]
}

impl Cache {
    async fn reload(&self, state: &State) -> Result<(), keel_store::StoreError> {
        let rev = state.store.current_revision().await?;
        let mut idx = Index {
            revision: rev,
            ..Index::default()
        };
        for r in kinds() {
            let list = state
                .store
                .list(
                    &r.key_prefix(),
                    keel_store::ListOptions {
                        revision: Some(rev),
                        ..keel_store::ListOptions::default()
                    },
                )
                .await?;
            let mut items: Vec<(String, Value)> = Vec::new();
            for kv in list.items {
                let Ok(obj) = serde_json::from_slice::<Value>(&kv.value) else {
                    continue;
                };
                let name = obj
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                for w in obj
                    .get("webhooks")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    items.push((name.clone(), w.clone()));
                }
            }
            // Stable sort: webhooks keep their order inside a configuration.
            items.sort_by(|a, b| a.0.cmp(&b.0));
            if r.plural.starts_with("mutating") {
                idx.mutating = items;
            } else {
                idx.validating = items;
            }
        }
        if let Ok(mut w) = self.0.write()
            && w.revision <= rev
        {
            *w = Arc::new(idx);
        }
        Ok(())
    }

    fn snapshot(&self) -> Arc<Index> {
        self.0
            .read()
            .map_or_else(|e| e.into_inner().clone(), |i| i.clone())
    }

    /// Loads the configurations and keeps them current from a watch; the
    /// same watch feeds the admission policy index (`cel::policy`), whose
    /// kinds share the group.
    pub(crate) fn follow(state: Arc<State>) {
        async fn reload(state: &State) -> Result<(), keel_store::StoreError> {
            state.webhooks.reload(state).await?;
            state.policies.reload(state).await
        }
        let revision = |state: &State| {
            state
                .webhooks
                .snapshot()
                .revision
                .min(state.policies.revision())
        };
        tokio::spawn(async move {
            loop {
                if let Err(e) = reload(&state).await {
                    tracing::warn!(error = %e, "webhooks: reload failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                let from = revision(&state) + 1;
                let prefix = format!("{}{GROUP}/", resources::REGISTRY);
                let Ok(mut w) = state.store.watch(&prefix, from).await else {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                };
                while let Some(item) = w.next().await {
                    match item {
                        // The store makes an event's write readable before
                        // announcing it, so one reload holds it.
                        Ok(keel_store::WatchItem::Event(_)) => {
                            if let Err(e) = reload(&state).await {
                                tracing::warn!(error = %e, "webhooks: reload failed");
                            }
                        }
                        Ok(keel_store::WatchItem::Progress(_)) => {}
                        Err(_) => break,
                    }
                }
            }
        });
    }
}

/// What is being admitted.
pub(crate) struct Request<'a> {
    pub r: &'a Resource,
    pub sub: Option<&'a str>,
    /// CREATE, UPDATE or DELETE.
    pub op: &'a str,
    pub name: &'a str,
    pub namespace: Option<&'a str>,
    pub old: Option<&'a Value>,
    pub dry_run: bool,
}

fn strs(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn rule_matches(rule: &Value, req: &Request) -> bool {
    let any = |list: Vec<&str>, x: &str| list.iter().any(|v| *v == "*" || *v == x);
    if !any(strs(rule.get("operations")), req.op)
        || !any(strs(rule.get("apiGroups")), req.r.group)
        || !any(strs(rule.get("apiVersions")), req.r.version)
    {
        return false;
    }
    let plural = req.r.plural;
    let res_ok = strs(rule.get("resources")).iter().any(|res| {
        let (rp, rs) = res.split_once('/').unwrap_or((res, ""));
        let p_ok = rp == "*" || rp == plural;
        // `pods/*` and `*/*` take the resource itself too, as in Kubernetes.
        p_ok && (rs == "*" || rs == req.sub.unwrap_or_default())
    });
    if !res_ok {
        return false;
    }
    match rule.get("scope").and_then(Value::as_str).unwrap_or("*") {
        "Namespaced" => req.r.namespaced,
        "Cluster" => !req.r.namespaced,
        _ => true,
    }
}

fn selector_matches(sel: Option<&Value>, labels: Option<&Value>) -> bool {
    match sel {
        None => true,
        Some(s) => LabelSelector::from_json(s).matches(labels),
    }
}

fn labels(v: &Value) -> Option<&Value> {
    v.pointer("/metadata/labels")
}

/// Whether webhook `w` is called for `req` on `obj` in namespace `ns_obj`.
pub(crate) fn applies(w: &Value, req: &Request, obj: &Value, ns_obj: Option<&Value>) -> bool {
    let rules = w.get("rules").and_then(Value::as_array);
    if !rules
        .into_iter()
        .flatten()
        .any(|rule| rule_matches(rule, req))
    {
        return false;
    }
    // The namespace selector: a namespace matches on its own labels, other
    // cluster-scoped objects always match.
    let ns_labels = if req.r.kind == "Namespace" && req.r.group.is_empty() {
        labels(obj).or_else(|| req.old.and_then(labels))
    } else if req.r.namespaced {
        ns_obj.and_then(labels)
    } else {
        return selector_matches(w.get("objectSelector"), labels(obj))
            || req
                .old
                .is_some_and(|o| selector_matches(w.get("objectSelector"), labels(o)));
    };
    if !selector_matches(w.get("namespaceSelector"), ns_labels) {
        return false;
    }
    let sel = w.get("objectSelector");
    selector_matches(sel, labels(obj)) || req.old.is_some_and(|o| selector_matches(sel, labels(o)))
}

fn user_info() -> Value {
    USER.try_with(|u| json!({"username": u.name, "uid": u.uid, "groups": u.groups}))
        .unwrap_or_else(|_| json!({"username": "system:apiserver", "groups": ["system:masters"]}))
}

pub(crate) fn review(req: &Request, obj: &Value, uid: &str) -> Value {
    let r = req.r;
    let options = match req.op {
        "CREATE" => "CreateOptions",
        "UPDATE" => "UpdateOptions",
        _ => "DeleteOptions",
    };
    let object = if req.op == "DELETE" {
        Value::Null
    } else {
        obj.clone()
    };
    let mut request = json!({
        "uid": uid,
        "kind": {"group": r.group, "version": r.version, "kind": r.kind},
        "resource": {"group": r.group, "version": r.version, "resource": r.plural},
        "requestKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "requestResource": {"group": r.group, "version": r.version, "resource": r.plural},
        "name": req.name,
        "operation": req.op,
        "userInfo": user_info(),
        "object": object,
        "oldObject": req.old.cloned().unwrap_or(Value::Null),
        "dryRun": req.dry_run,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": options},
    });
    if let Some(ns) = req.namespace {
        request["namespace"] = json!(ns);
    }
    if let Some(sub) = req.sub {
        request["subResource"] = json!(sub);
        request["requestSubResource"] = json!(sub);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
}

/// A webhook that could not be called or answered nonsense.
fn call_failed(name: &str, why: &str) -> Fail {
    Fail::new(
        500,
        "InternalError",
        format!("Internal error occurred: failed calling webhook {name:?}: {why}"),
    )
}

/// A webhook's refusal, worded as kube-apiserver words it.
fn denied(name: &str, status: Option<&Value>) -> Fail {
    let get = |k: &str| {
        status
            .and_then(|s| s.get(k))
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let code = status
        .and_then(|s| s.get("code"))
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| *c >= 400)
        .unwrap_or(400);
    let by = format!("admission webhook {name:?} denied the request");
    let message = match (get("message"), get("reason")) {
        (m, _) if !m.is_empty() => format!("{by}: {m}"),
        (_, r) if !r.is_empty() => format!("{by}: {r}"),
        _ => format!("{by} without explanation"),
    };
    let reason = match get("reason") {
        "Forbidden" => "Forbidden",
        "Invalid" => "Invalid",
        "Unauthorized" => "Unauthorized",
        "NotFound" => "NotFound",
        "Conflict" => "Conflict",
        _ => "BadRequest",
    };
    Fail::new(code, reason, message)
}

/// POSTs `body` to the webhook's URL and returns the decoded answer.
async fn post(w: &Value, body: &Value) -> Result<Value, String> {
    let cc = w.get("clientConfig").cloned().unwrap_or(Value::Null);
    let timeout = w
        .get("timeoutSeconds")
        .and_then(Value::as_u64)
        .unwrap_or(10);
    let url = match (cc.get("url").and_then(Value::as_str), cc.get("service")) {
        (Some(u), _) => u.to_string(),
        (None, Some(svc)) => {
            let get = |k| svc.get(k).and_then(Value::as_str).unwrap_or_default();
            let port = svc.get("port").and_then(Value::as_u64).unwrap_or(443);
            return Err(format!(
                "failed to call webhook: Post \"https://{}.{}.svc:{port}{}?timeout={timeout}s\": no endpoints available for service \"{}\"",
                get("name"),
                get("namespace"),
                get("path"),
                get("name")
            ));
        }
        _ => return Err("no url or service in clientConfig".into()),
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    let full = format!("{url}{sep}timeout={timeout}s");
    let fail = |e: &dyn std::fmt::Display| format!("failed to call webhook: Post {full:?}: {e}");
    let call = async {
        if !url.starts_with("https://") {
            return Err(fail(&"webhook URLs must be https"));
        }
        let uri: hyper::Uri = full.parse().map_err(|e| fail(&e))?;
        let host = uri
            .host()
            .ok_or_else(|| fail(&"no host in URL"))?
            .trim_matches(['[', ']'])
            .to_string();
        let port = uri.port_u16().unwrap_or(443);
        let hostport = uri.authority().map(ToString::to_string).unwrap_or_default();
        let path = uri
            .path_and_query()
            .map_or_else(|| "/".to_string(), ToString::to_string);
        let addr = (host.clone(), port);
        let tls = tls_config(&cc).map_err(|e| fail(&e))?;
        let tcp = tokio::net::TcpStream::connect(&addr)
            .await
            .map_err(|e| fail(&e))?;
        let name = rustls::pki_types::ServerName::try_from(host).map_err(|e| fail(&e))?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| fail(&e))?;
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| fail(&e))?;
        tokio::spawn(conn);
        let bytes = serde_json::to_vec(body).map_err(|e| fail(&e))?;
        let req = hyper::Request::post(path)
            .header("host", hostport)
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(bytes)))
            .map_err(|e| fail(&e))?;
        let resp = send.send_request(req).await.map_err(|e| fail(&e))?;
        let status = resp.status();
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .map_err(|e| fail(&e))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!(
                "failed to call webhook: the server responded with status {}",
                status.as_u16()
            ));
        }
        serde_json::from_slice::<Value>(&body)
            .map_err(|e| format!("received invalid webhook response: {e}"))
    };
    match tokio::time::timeout(Duration::from_secs(timeout), call).await {
        Ok(r) => r,
        Err(_) => Err(fail(&"context deadline exceeded")),
    }
}

fn tls_config(cc: &Value) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject as _;
    let bundle = cc
        .get("caBundle")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let pem = base64::engine::general_purpose::STANDARD
        .decode(bundle)
        .map_err(|e| format!("caBundle: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots
            .add(c.map_err(|e| format!("caBundle: {e}"))?)
            .map_err(|e| format!("caBundle: {e}"))?;
    }
    if roots.is_empty() {
        // Kubernetes would fall back to the system's roots; keel has none offline.
        return Err(
            "x509: certificate signed by unknown authority (the webhook has no caBundle)".into(),
        );
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Calls one webhook; `Ok(Some(patch))` is a mutation to apply.
async fn call_one(w: &Value, req: &Request<'_>, obj: &Value) -> Result<Option<Value>, Fail> {
    let name = w.get("name").and_then(Value::as_str).unwrap_or_default();
    let ignore = w.get("failurePolicy").and_then(Value::as_str) == Some("Ignore");
    if req.dry_run
        && !matches!(
            w.get("sideEffects").and_then(Value::as_str),
            Some("None" | "NoneOnDryRun")
        )
    {
        return Err(Fail::new(
            400,
            "BadRequest",
            format!("admission webhook {name:?} has side effects and does not support dry run"),
        ));
    }
    let uid = crate::handlers::new_uid();
    let answer = match post(w, &review(req, obj, &uid)).await {
        Ok(a) => a,
        Err(e) if ignore => {
            tracing::warn!(webhook = name, error = %e, "webhook failed; failurePolicy Ignore");
            return Ok(None);
        }
        Err(e) => return Err(call_failed(name, &e)),
    };
    let resp = answer.get("response").cloned().unwrap_or(Value::Null);
    if resp.get("uid").and_then(Value::as_str) != Some(uid.as_str()) {
        let why = format!(
            "expected response.uid={uid:?}, got {:?}",
            resp.get("uid").and_then(Value::as_str).unwrap_or_default()
        );
        if ignore {
            tracing::warn!(webhook = name, why, "webhook failed; failurePolicy Ignore");
            return Ok(None);
        }
        return Err(call_failed(name, &why));
    }
    for w in resp
        .get("warnings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        warn(w.to_string());
    }
    if resp.get("allowed") != Some(&json!(true)) {
        return Err(denied(name, resp.get("status")));
    }
    let Some(patch) = resp.get("patch").and_then(Value::as_str) else {
        return Ok(None);
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .map_err(|e| call_failed(name, &format!("invalid patch: {e}")))?;
    let patch: Value = serde_json::from_slice(&bytes)
        .map_err(|e| call_failed(name, &format!("invalid patch: {e}")))?;
    Ok(Some(patch))
}

fn exempt(r: &Resource) -> bool {
    // Webhooks never see their own configurations, so a bad one can be fixed.
    r.group == GROUP && r.plural.ends_with("webhookconfigurations")
}

/// Runs the mutating webhooks that apply, in order, on `obj`.
pub(crate) async fn mutate(
    state: &State,
    req: &Request<'_>,
    obj: &mut Value,
    ns_obj: Option<&Value>,
) -> Result<(), Fail> {
    if exempt(req.r) {
        return Ok(());
    }
    let idx = state.webhooks.snapshot();
    for (_, w) in &idx.mutating {
        if !applies(w, req, obj, ns_obj)
            || !crate::cel::policy::webhook_matches(state, w, req, obj).await?
        {
            continue;
        }
        if let Some(patch) = call_one(w, req, obj).await? {
            let name = w.get("name").and_then(Value::as_str).unwrap_or_default();
            crate::patch::json_patch(obj, &patch)
                .map_err(|e| call_failed(name, &format!("invalid patch: {e}")))?;
        }
    }
    Ok(())
}

/// Runs the validating webhooks that apply; any refusal refuses the request.
pub(crate) async fn validate(
    state: &State,
    req: &Request<'_>,
    obj: &Value,
    ns_obj: Option<&Value>,
) -> Result<(), Fail> {
    if exempt(req.r) {
        return Ok(());
    }
    let idx = state.webhooks.snapshot();
    // One after the other (Kubernetes calls them in parallel; the outcome,
    // refused if any refuses, is the same).
    for (_, w) in &idx.validating {
        if applies(w, req, obj, ns_obj)
            && crate::cel::policy::webhook_matches(state, w, req, obj).await?
        {
            call_one(w, req, obj).await?;
        }
    }
    Ok(())
}

/// Namespace of a namespaced request, loaded for the namespace selector.
pub(crate) async fn namespace_of(state: &State, ns: Option<&str>) -> Option<Value> {
    let ns = ns?;
    if state.webhooks.snapshot().mutating.is_empty()
        && state.webhooks.snapshot().validating.is_empty()
        && !state.policies.any()
    {
        return None;
    }
    let r = resources::find("", "v1", "namespaces")?;
    let kv = state.store.get(&r.key(None, ns)).await.ok()??;
    crate::handlers::decode(state, &kv, kv.mod_revision).ok()
}

/// Defaults of a webhook configuration, as `admissionregistration` sets them.
pub(crate) fn apply_defaults(kind: &str, obj: &mut Value) {
    let mutating = kind == "MutatingWebhookConfiguration";
    for w in obj
        .get_mut("webhooks")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        let Some(m) = w.as_object_mut() else { continue };
        for (k, v) in [
            ("failurePolicy", json!("Fail")),
            ("matchPolicy", json!("Equivalent")),
            ("namespaceSelector", json!({})),
            ("objectSelector", json!({})),
            ("timeoutSeconds", json!(10)),
        ] {
            m.entry(k).or_insert(v);
        }
        if mutating {
            m.entry("reinvocationPolicy").or_insert(json!("Never"));
        }
        for rule in m
            .get_mut("rules")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if let Some(r) = rule.as_object_mut() {
                r.entry("scope").or_insert(json!("*"));
            }
        }
        if let Some(svc) = m
            .get_mut("clientConfig")
            .and_then(|c| c.get_mut("service"))
            .and_then(Value::as_object_mut)
        {
            svc.entry("port").or_insert(json!(443));
        }
    }
}

/// Validation of a webhook configuration with `admissionregistration`'s
/// messages, for what keel relies on when calling it.
pub(crate) fn validate_config(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, w) in obj
        .get("webhooks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = |f: &str| format!("webhooks[{i}].{f}");
        let name = w.get("name").and_then(Value::as_str).unwrap_or_default();
        if name.is_empty() {
            out.push(Cause::required(&at("name")));
        } else if !crate::validate::is_dns_subdomain(name) || name.split('.').count() < 3 {
            out.push(Cause::invalid(
                &at("name"),
                &json!(name),
                "should be a domain with at least three segments separated by dots",
            ));
        } else if !seen.insert(name) {
            out.push(crate::validate::duplicate(&at("name"), name));
        }
        let cc = w.get("clientConfig").cloned().unwrap_or(Value::Null);
        match (cc.get("url").and_then(Value::as_str), cc.get("service")) {
            (Some(_), Some(_)) | (None, None) => out.push(Cause {
                reason: "FieldValueRequired",
                field: at("clientConfig"),
                message: "Required value: exactly one of url or service is required".into(),
            }),
            (Some(u), None) => {
                if !u.starts_with("https://") {
                    out.push(Cause::invalid(
                        &at("clientConfig.url"),
                        &json!(u),
                        "'https' is the only allowed URL scheme",
                    ));
                } else if u.contains('#')
                    || u["https://".len()..]
                        .split('/')
                        .next()
                        .is_some_and(|h| h.contains('@'))
                {
                    out.push(Cause::invalid(
                        &at("clientConfig.url"),
                        &json!(u),
                        "fragments and user information are not permitted in the URL",
                    ));
                }
            }
            (None, Some(_)) => {}
        }
        match w.get("sideEffects").and_then(Value::as_str) {
            None => out.push(Cause {
                reason: "FieldValueRequired",
                field: at("sideEffects"),
                message: "Required value: must specify one of None, NoneOnDryRun".into(),
            }),
            Some("None" | "NoneOnDryRun") => {}
            Some(s) => out.push(crate::validate::not_supported(
                &at("sideEffects"),
                s,
                &["None", "NoneOnDryRun"],
            )),
        }
        let versions = strs(w.get("admissionReviewVersions"));
        if versions.is_empty() {
            out.push(Cause {
                reason: "FieldValueRequired",
                field: at("admissionReviewVersions"),
                message: "Required value: must specify one of v1, v1beta1".into(),
            });
        } else if !versions.contains(&"v1") {
            // keel speaks admission.k8s.io/v1 only.
            out.push(Cause::invalid(
                &at("admissionReviewVersions"),
                &json!(versions),
                "keel sends admission.k8s.io/v1 reviews: the list must include v1",
            ));
        }
        if let Some(t) = w.get("timeoutSeconds").and_then(Value::as_i64)
            && !(1..=30).contains(&t)
        {
            out.push(Cause::invalid(
                &at("timeoutSeconds"),
                &json!(t),
                "the timeout value must be between 1 and 30 seconds",
            ));
        }
        if let Some(p) = w.get("failurePolicy").and_then(Value::as_str)
            && !matches!(p, "Fail" | "Ignore")
        {
            out.push(crate::validate::not_supported(
                &at("failurePolicy"),
                p,
                &["Fail", "Ignore"],
            ));
        }
        out.extend(crate::cel::policy::check_match_conditions(
            w,
            &at("matchConditions"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(r: &'a Resource, op: &'a str, sub: Option<&'a str>) -> Request<'a> {
        Request {
            r,
            sub,
            op,
            name: "x",
            namespace: Some("default"),
            old: None,
            dry_run: false,
        }
    }

    #[test]
    fn rules_match_as_kubernetes_matches_them() {
        let pods = resources::find("", "v1", "pods").unwrap();
        let rule = json!({"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "*"});
        assert!(rule_matches(&rule, &req(pods, "CREATE", None)));
        assert!(!rule_matches(&rule, &req(pods, "UPDATE", None)));
        assert!(!rule_matches(&rule, &req(pods, "CREATE", Some("status"))));
        let all = json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*/*"]});
        assert!(rule_matches(&all, &req(pods, "UPDATE", Some("status"))));
        let star = json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]});
        assert!(rule_matches(&star, &req(pods, "UPDATE", None)));
        assert!(!rule_matches(&star, &req(pods, "UPDATE", Some("status"))));
        let cluster = json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"], "scope": "Cluster"});
        assert!(!rule_matches(&cluster, &req(pods, "CREATE", None)));
    }

    #[test]
    fn denial_worded_as_kube_apiserver() {
        let f = denied(
            "deny.example.com",
            Some(&json!({"message": "no", "code": 403})),
        );
        assert_eq!(f.code, 403);
        assert_eq!(
            f.message,
            "admission webhook \"deny.example.com\" denied the request: no"
        );
        let f = denied("d.example.com", None);
        assert_eq!(f.code, 400);
        assert!(
            f.message
                .ends_with("denied the request without explanation")
        );
    }

    #[test]
    fn configurations_validated() {
        let bad = json!({"webhooks": [{"name": "short", "clientConfig": {"url": "http://x"}, "admissionReviewVersions": ["v1"]}]});
        let fields: Vec<String> = validate_config(&bad).into_iter().map(|c| c.field).collect();
        assert_eq!(
            fields,
            [
                "webhooks[0].name",
                "webhooks[0].clientConfig.url",
                "webhooks[0].sideEffects"
            ]
        );
    }
}
