//! Who is asking and what they may do: the authenticated [`User`] of a
//! request, the [`Attributes`] of what it asks (verb, group, resource,
//! namespace, name, or a non-resource path), the authorizer, and the review
//! kinds that ask those questions through the API (`SelfSubjectReview` for
//! `kubectl auth whoami`, `SelfSubjectAccessReview` for `kubectl auth
//! can-i`, ``SubjectAccessReview``, ``LocalSubjectAccessReview``,
//! `SelfSubjectRulesReview`, `TokenReview`).

use std::sync::Arc;

use serde_json::{Value, json};

use crate::State;
use crate::handlers::Ctx;
use crate::http::Fail;
use crate::pki::{self, Role};

/// Group whose members may do anything (the admin credentials).
pub const MASTERS: &str = "system:masters";
pub const AUTHENTICATED: &str = "system:authenticated";
/// The user of keel's read-only tokens.
pub const READ_ONLY_USER: &str = "keel:read-only";
/// The user of keel's admin token and client certificate.
pub const ADMIN_USER: &str = "keel:admin";

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl User {
    pub fn new(name: &str, groups: &[&str]) -> Self {
        User {
            name: name.to_string(),
            uid: String::new(),
            groups: groups.iter().map(|g| (*g).to_string()).collect(),
        }
    }

    /// keel's own controllers, in process.
    pub fn controllers() -> Self {
        User::new("system:kube-controller-manager", &[MASTERS, AUTHENTICATED])
    }

    fn info(&self) -> Value {
        let mut v = json!({"username": self.name, "groups": self.groups});
        if !self.uid.is_empty() {
            v["uid"] = json!(self.uid);
        }
        v
    }
}

/// What a request asks to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// Set for non-resource requests (`/healthz`, `/version`, …).
    pub path: Option<String>,
}

impl Attributes {
    /// apiserver's words for a refusal (`forbiddenMessage` wrapped by
    /// `NewForbidden`).
    pub fn forbidden_message(&self, user: &User, reason: &str) -> String {
        let what = if let Some(p) = &self.path {
            format!("User {:?} cannot {} path {p:?}", user.name, self.verb)
        } else {
            {
                let mut res = self.resource.clone();
                if !self.subresource.is_empty() {
                    res = format!("{res}/{}", self.subresource);
                }
                let scope = if self.namespace.is_empty() {
                    " at the cluster scope".to_string()
                } else {
                    format!(" in the namespace {:?}", self.namespace)
                };
                format!(
                    "User {:?} cannot {} resource {res:?} in API group {:?}{scope}",
                    user.name, self.verb, self.group
                )
            }
        };
        let what = if reason.is_empty() {
            what
        } else {
            format!("{what}: {reason}")
        };
        let gr = match (&self.path, self.group.is_empty()) {
            (Some(_), _) => String::new(),
            (None, true) => self.resource.clone(),
            (None, false) => format!("{}.{}", self.resource, self.group),
        };
        match (gr.is_empty(), self.name.is_empty()) {
            (true, _) => format!("forbidden: {what}"),
            (false, true) => format!("{gr} is forbidden: {what}"),
            (false, false) => format!("{gr} {:?} is forbidden: {what}", self.name),
        }
    }
}

/// Whether `user` may do `attrs`, and why: the Node authorizer for node
/// credentials, then RBAC (Kubernetes' `--authorization-mode=Node,RBAC`).
pub(crate) async fn authorize(state: &State, user: &User, attrs: &Attributes) -> (bool, String) {
    let node = crate::node_authz::authorize(state, user, attrs).await;
    if let Some((true, why)) = node {
        return (true, why);
    }
    let (ok, why) = crate::rbac::authorize(state, user, attrs).await;
    match node {
        Some((false, node_why)) if !ok && !node_why.is_empty() => (false, node_why),
        _ => (ok, why),
    }
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// The user a bearer token belongs to, for a token meant for `audiences`
/// (empty: this API's own audience): keel's static tokens, `ServiceAccount`
/// JWTs, bootstrap tokens.
pub(crate) async fn authenticate_token(
    state: &State,
    token: &str,
    audiences: &[String],
) -> Option<User> {
    if let Some(u) = static_token(state, token) {
        return Some(u);
    }
    if token.matches('.').count() == 2 {
        return service_account_token(state, token, audiences).await;
    }
    bootstrap_token(state, token).await
}

fn static_token(state: &State, token: &str) -> Option<User> {
    let mut tokens = state.tokens.lock().ok()?;
    // Re-read the tokens file when it changed (`keel server token create`).
    let modified = std::fs::metadata(state.paths.tokens())
        .and_then(|m| m.modified())
        .ok();
    if modified != tokens.modified {
        if let Ok(list) = pki::read_tokens(&state.paths) {
            tokens.list = list;
        }
        tokens.modified = modified;
    }
    let role = tokens
        .list
        .iter()
        .find(|(t, _)| t.len() == token.len() && t == token)
        .map(|(_, r)| *r)?;
    Some(match role {
        Role::Admin => User::new(ADMIN_USER, &[MASTERS, AUTHENTICATED]),
        Role::ReadOnly => User::new(READ_ONLY_USER, &[AUTHENTICATED]),
        Role::Join => User::new(
            &format!(
                "system:bootstrap:{}",
                token.split_once('.').map_or("", |(id, _)| id)
            ),
            &["system:bootstrappers", AUTHENTICATED],
        ),
    })
}

async fn stored(state: &State, plural: &str, ns: Option<&str>, name: &str) -> Option<Value> {
    let r = crate::resources::find("", "v1", plural)?;
    let (_, v) = crate::handlers::get_current(state, r, ns, name)
        .await
        .ok()?;
    Some(v)
}

fn uid_of(v: &Value) -> &str {
    v.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

async fn service_account_token(state: &State, token: &str, audiences: &[String]) -> Option<User> {
    let claims = state.sa_keys.verify(token)?;
    if let Some(why) = crate::tokens::refuse(&claims, now(), audiences) {
        tracing::debug!(reason = why, "service account token refused");
        return None;
    }
    let k = claims.get("kubernetes.io")?;
    let ns = k.get("namespace")?.as_str()?;
    let sa_name = k.pointer("/serviceaccount/name")?.as_str()?;
    let sa_uid = k.pointer("/serviceaccount/uid")?.as_str()?;
    // The account (and what the token is bound to) must still be the same
    // objects: a token outlives neither.
    let sa = stored(state, "serviceaccounts", Some(ns), sa_name).await?;
    if uid_of(&sa) != sa_uid || sa.pointer("/metadata/deletionTimestamp").is_some() {
        return None;
    }
    for (kind, plural, namespaced) in [
        ("pod", "pods", true),
        ("secret", "secrets", true),
        ("node", "nodes", false),
    ] {
        if let Some(b) = k.get(kind) {
            let name = b.get("name")?.as_str()?;
            let obj = stored(state, plural, namespaced.then_some(ns), name).await?;
            if uid_of(&obj) != b.get("uid")?.as_str()?
                || obj.pointer("/metadata/deletionTimestamp").is_some()
            {
                return None;
            }
        }
    }
    Some(User {
        name: format!("system:serviceaccount:{ns}:{sa_name}"),
        uid: sa_uid.to_string(),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{ns}"),
            AUTHENTICATED.into(),
        ],
    })
}

/// `abcdef.0123456789abcdef` against the `bootstrap-token-abcdef` Secret in
/// kube-system (what nodes join with).
async fn bootstrap_token(state: &State, token: &str) -> Option<User> {
    let (id, secret) = token.split_once('.')?;
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    if !ok(id, 6) || !ok(secret, 16) {
        return None;
    }
    let sec = stored(
        state,
        "secrets",
        Some("kube-system"),
        &format!("bootstrap-token-{id}"),
    )
    .await?;
    if sec.get("type").and_then(Value::as_str) != Some("bootstrap.kubernetes.io/token") {
        return None;
    }
    let field = |k: &str| {
        sec.pointer(&format!("/data/{k}"))
            .and_then(Value::as_str)
            .and_then(|b| {
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b).ok()
            })
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default()
    };
    if field("token-id") != id
        || field("token-secret").as_bytes() != secret.as_bytes()
        || field("usage-bootstrap-authentication") != "true"
    {
        return None;
    }
    let exp = field("expiration");
    if !exp.is_empty()
        && exp
            .parse::<jiff::Timestamp>()
            .map_or(true, |t| t.as_second() <= now())
    {
        return None;
    }
    let mut groups = vec!["system:bootstrappers".to_string()];
    groups.extend(
        field("auth-extra-groups")
            .split(',')
            .map(str::trim)
            .filter(|g| g.starts_with("system:bootstrappers:"))
            .map(String::from),
    );
    groups.push(AUTHENTICATED.into());
    Some(User {
        name: format!("system:bootstrap:{id}"),
        uid: String::new(),
        groups,
    })
}

fn str_at<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or_default()
}

fn attributes_of(spec: &Value, namespace_override: Option<&str>) -> Attributes {
    if let Some(nr) = spec.get("nonResourceAttributes") {
        return Attributes {
            verb: str_at(nr, "/verb").to_string(),
            path: Some(str_at(nr, "/path").to_string()),
            ..Attributes::default()
        };
    }
    let ra = spec.get("resourceAttributes").unwrap_or(&Value::Null);
    Attributes {
        verb: str_at(ra, "/verb").to_string(),
        group: str_at(ra, "/group").to_string(),
        resource: str_at(ra, "/resource").to_string(),
        subresource: str_at(ra, "/subresource").to_string(),
        namespace: namespace_override
            .unwrap_or(str_at(ra, "/namespace"))
            .to_string(),
        name: str_at(ra, "/name").to_string(),
        path: None,
    }
}

async fn access_status(state: &State, user: &User, attrs: &Attributes) -> Value {
    let (allowed, reason) = authorize(state, user, attrs).await;
    let mut st = json!({"allowed": allowed});
    if !reason.is_empty() {
        st["reason"] = json!(reason);
    }
    st
}

/// Answers a review object (already decoded and checked).
pub(crate) async fn review(ctx: &Ctx, mut obj: Value) -> Result<Value, Fail> {
    let state = &ctx.state;
    let me: Arc<User> = ctx.user.clone();
    let status = match ctx.target.resource.kind {
        "SelfSubjectReview" => json!({"userInfo": me.info()}),
        "SelfSubjectAccessReview" => {
            let attrs = attributes_of(obj.get("spec").unwrap_or(&Value::Null), None);
            access_status(state, &me, &attrs).await
        }
        "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
            let ns = ctx.target.namespace.as_deref();
            if ctx.target.resource.kind == "LocalSubjectAccessReview"
                && str_at(&spec, "/resourceAttributes/namespace") != ns.unwrap_or_default()
            {
                return Err(Fail::bad_request(format!(
                    "spec.resourceAttributes.namespace must match namespace: {}",
                    ns.unwrap_or_default()
                )));
            }
            let user = User {
                name: str_at(&spec, "/user").to_string(),
                uid: str_at(&spec, "/uid").to_string(),
                groups: spec
                    .get("groups")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            access_status(state, &user, &attributes_of(&spec, ns)).await
        }
        "SelfSubjectRulesReview" => {
            crate::rbac::rules_review(state, &me, str_at(&obj, "/spec/namespace"))
        }
        "TokenReview" => {
            let token = str_at(&obj, "/spec/token");
            let audiences: Vec<String> = obj
                .pointer("/spec/audiences")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            match authenticate_token(state, token, &audiences).await {
                Some(u) => {
                    let granted = if audiences.is_empty() {
                        vec![crate::tokens::ISSUER.to_string()]
                    } else {
                        audiences
                    };
                    json!({"authenticated": true, "user": u.info(), "audiences": granted})
                }
                None => json!({"authenticated": false, "error": "invalid bearer token"}),
            }
        }
        other => return Err(Fail::bad_request(format!("{other} cannot be created"))),
    };
    if let Some(m) = obj.as_object_mut() {
        m.insert("status".into(), status);
        m.entry("metadata").or_insert_with(|| json!({}));
    }
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("creationTimestamp".into(), Value::Null);
    }
    Ok(obj)
}
