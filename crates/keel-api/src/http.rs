//! The HTTPS front: TLS accept loop, HTTP/2 (ALPN `h2`) or HTTP/1.1
//! connections, authentication (client certificate, bearer token, or a token
//! as HTTP Basic password) and RBAC, URL routing to discovery documents,
//! resource handlers and terraform's state backend, and Kubernetes `Status`
//! error responses.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde_json::{Value, json};

use crate::auth::{self, User};
use crate::pki::{self, Paths};
use crate::resources::{self, Resource};
use crate::{ApiError, Config, State, Tokens, discovery, handlers, openapi};

pub(crate) type Body = BoxBody<Bytes, Infallible>;

/// Largest request body accepted (Kubernetes' own limit is 3 MiB).
pub(crate) const MAX_BODY: usize = 3 * 1024 * 1024;

/// A failed request, rendered as a Kubernetes `Status`.
#[derive(Debug, Clone)]
pub(crate) struct Fail {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl Fail {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Fail {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }
    pub fn internal(message: impl std::fmt::Display) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {message}"),
        )
    }
    pub fn not_found(r: &Resource, name: &str) -> Self {
        let mut f = Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", qualified(r)),
        );
        f.details = Some(json!({"name": name, "group": r.group, "kind": r.plural}));
        f
    }
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v
    }
}

/// `deployments.apps` or `pods`: how Kubernetes names a resource in messages.
pub(crate) fn qualified(r: &Resource) -> String {
    if r.group.is_empty() {
        r.plural.to_string()
    } else {
        format!("{}.{}", r.plural, r.group)
    }
}

pub(crate) fn json_response(code: u16, v: &Value) -> Response<Body> {
    let body = serde_json::to_vec(v).unwrap_or_default();
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)).boxed())
        .expect("static response parts are valid")
}

pub(crate) fn fail_response(f: &Fail) -> Response<Body> {
    json_response(f.code, &f.to_json())
}

fn bytes_response(code: u16, content_type: &str, body: Vec<u8>) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)).boxed())
        .expect("static response parts are valid")
}

fn text(code: u16, s: &str) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(s.to_string())).boxed())
        .expect("static response parts are valid")
}

/// Kinds keel provides itself, created at bootstrap when missing.
#[derive(Debug, Clone, Copy)]
pub struct Builtins {
    /// Argo Rollouts' CRDs (`argoproj.io`). Off, Argo's own chart can install
    /// them; CRDs an earlier start created stay (deleting them would delete
    /// every Rollout).
    pub argo_rollouts: bool,
}

impl Default for Builtins {
    fn default() -> Self {
        Builtins {
            argo_rollouts: true,
        }
    }
}

/// A running (bound) server.
pub struct Server {
    state: Arc<State>,
    listener: tokio::net::TcpListener,
    tls: tokio_rustls::TlsAcceptor,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listen", &self.listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Prepares state (certificates, tokens, key, store, default namespaces)
    /// and binds the listening socket.
    pub async fn bind(cfg: Config) -> Result<Server, ApiError> {
        Self::bind_with(cfg, Builtins::default()).await
    }

    /// [`Server::bind`], choosing which built-in kinds bootstrap creates.
    pub async fn bind_with(cfg: Config, builtins: Builtins) -> Result<Server, ApiError> {
        let paths = Paths::new(&cfg.state_dir);
        let mut sans = Vec::new();
        if !cfg.listen.ip().is_unspecified() {
            sans.push(cfg.listen.ip().to_string());
        }
        pki::ensure_certificates(&paths, &sans)?;
        // The admin token stays for `keel server token` users and scripts.
        pki::ensure_admin_token(&paths)?;
        pki::ensure_admin_cert(&paths)?;
        pki::ensure_kubelet_client_cert(&paths)?;
        let sa_keys = crate::tokens::Keys::load_or_create(&paths.sa_key())?;
        let tls = pki::tls_config(&paths)?;
        let secrets = keel_secrets::SecretBox::load_or_create(&paths.secrets_key())
            .map_err(ApiError::SecretsKey)?;
        let url = cfg
            .datastore
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", paths.database().display()));
        let store = keel_store::open(&url)
            .await
            .map_err(|source| ApiError::Datastore { url, source })?;
        let state = Arc::new_cyclic(|me| State {
            me: me.clone(),
            store,
            secrets,
            paths,
            tokens: std::sync::Mutex::new(Tokens {
                modified: None,
                list: Vec::new(),
            }),
            next_ip: AtomicU32::new(0),
            reserved: crate::service_alloc::Reserved::default(),
            rbac: crate::rbac::Cache::default(),
            webhooks: crate::webhook::Cache::default(),
            policies: crate::cel::policy::Cache::default(),
            decoded: crate::handlers::Decoded::default(),
            sa_keys,
            default_toleration_seconds: std::sync::atomic::AtomicI64::new(300),
        });
        handlers::bootstrap(&state)
            .await
            .map_err(ApiError::Bootstrap)?;
        crate::crd::follow(state.clone());
        crate::rbac::bootstrap(&state, builtins)
            .await
            .map_err(|f| {
                ApiError::Bootstrap(keel_store::StoreError::InvalidUrl {
                    url: String::new(),
                    reason: f.message,
                })
            })?;
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| ApiError::Listen {
                addr: cfg.listen,
                source,
            })?;
        Ok(Server {
            state,
            listener,
            tls: tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// A kubeconfig for this server with the admin's client certificate
    /// (0.0.0.0 becomes 127.0.0.1).
    pub fn kubeconfig(&self) -> Result<String, ApiError> {
        let mut addr = self.local_addr();
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        pki::kubeconfig(&self.state.paths, &format!("https://{addr}"))
    }

    /// Sets the `tolerationSeconds` admission gives new pods for the
    /// `not-ready` and `unreachable` taints (Kubernetes' default is 300).
    pub fn set_default_toleration_seconds(&self, seconds: i64) {
        self.state
            .default_toleration_seconds
            .store(seconds, std::sync::atomic::Ordering::Relaxed);
    }

    /// In-process API access for controllers running beside the server.
    pub fn loopback(&self) -> crate::Loopback {
        crate::Loopback {
            state: self.state.clone(),
        }
    }

    /// Accepts connections until the process ends.
    pub async fn serve(self) -> Result<(), ApiError> {
        handlers::start_background(&self.state);
        crate::rbac::Cache::follow(self.state.clone());
        crate::webhook::Cache::follow(self.state.clone());
        loop {
            let (tcp, peer) = match self.listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let tls = self.tls.clone();
            let state = self.state.clone();
            tokio::spawn(async move {
                let stream = match tls.accept(tcp).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                };
                let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                // A client certificate rustls verified against the CA.
                let cert_user = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| pki::certificate_user(c))
                    .map(Arc::new);
                let io = hyper_util::rt::TokioIo::new(stream);
                let svc = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    let cert_user = cert_user.clone();
                    async move {
                        // Only pay for the request line when it is logged.
                        let line = tracing::enabled!(tracing::Level::DEBUG).then(|| {
                            let path = req.uri().path().to_string();
                            (std::time::Instant::now(), req.method().clone(), path)
                        });
                        let resp = route(state, cert_user, req).await;
                        if let Some((started, method, path)) = line {
                            tracing::debug!(
                                %method,
                                path,
                                status = resp.status().as_u16(),
                                micros = started.elapsed().as_micros() as u64,
                                "request"
                            );
                        }
                        Ok::<_, Infallible>(resp)
                    }
                });
                // HTTP/2 when the client offered it in ALPN (kubectl and
                // client-go do), HTTP/1.1 otherwise.
                if h2 {
                    let _ = hyper::server::conn::http2::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(io, svc)
                    .await;
                } else {
                    // Upgrades: exec, attach and port-forward streams.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(io, svc)
                        .with_upgrades()
                        .await;
                }
            });
        }
    }
}

/// The user of a request: a bearer token when one is sent (as kubectl's
/// `--token` overrides a kubeconfig's certificate), or a token as the
/// password of HTTP Basic (what terraform's http backend sends), else the
/// connection's client certificate.
async fn authenticate(
    state: &State,
    cert_user: Option<Arc<User>>,
    req: &Request<Incoming>,
) -> Option<Arc<User>> {
    let header = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok());
    let basic = header.and_then(|h| h.strip_prefix("Basic ")).and_then(|b| {
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b.trim())
            .ok()?;
        let s = String::from_utf8(raw).ok()?;
        Some(s.split_once(':')?.1.to_string())
    });
    let token = match &basic {
        Some(t) => Some(t.as_str()),
        None => header
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim),
    };
    match token {
        Some(t) => auth::authenticate_token(state, t, &[]).await.map(Arc::new),
        None => cert_user,
    }
}

/// The RBAC verb of a request on a resource.
fn resource_verb(method: &Method, target: &Target, query: &Query) -> &'static str {
    match (method, target.name.is_some()) {
        (&Method::GET | &Method::HEAD, false) if query.flag("watch") => "watch",
        (&Method::GET | &Method::HEAD, false) => "list",
        (&Method::GET | &Method::HEAD, true) => "get",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => "unknown",
    }
}

fn forbidden(user: &User, attrs: &auth::Attributes, reason: &str) -> Response<Body> {
    let mut f = Fail::new(403, "Forbidden", attrs.forbidden_message(user, reason));
    if attrs.path.is_none() {
        f.details = Some(json!({"name": attrs.name, "group": attrs.group, "kind": attrs.resource}));
    }
    fail_response(&f)
}

/// Decoded query parameters.
#[derive(Debug, Default, Clone)]
pub(crate) struct Query(pub Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Self {
        let mut out = Vec::new();
        for part in q.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            out.push((percent_decode(k), percent_decode(v)));
        }
        Query(out)
    }
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(kk, _)| kk == k)
            .map(|(_, v)| v.as_str())
    }
    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "True" | "1"))
    }
}

fn percent_decode(s: &str) -> String {
    let hex = |ch: u8| (ch as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi * 16 + lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a resource URL addresses.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub resource: &'static Resource,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

fn parse_target(group: &str, version: &str, rest: &[&str]) -> Result<Target, Fail> {
    let not_found = || {
        Fail::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    };
    // namespaces/{ns}/{plural}[/{name}[/{sub}]] when {plural} is namespaced.
    if rest.len() >= 3
        && rest[0] == "namespaces"
        && let Some(r) = resources::find(group, version, rest[2]).filter(|r| r.namespaced)
    {
        if rest.len() > 5 {
            return Err(not_found());
        }
        return Ok(Target {
            resource: r,
            namespace: Some(rest[1].to_string()),
            name: rest.get(3).map(|s| (*s).to_string()),
            subresource: rest.get(4).map(|s| (*s).to_string()),
        });
    }
    let Some(plural) = rest.first() else {
        return Err(not_found());
    };
    let r = resources::find(group, version, plural).ok_or_else(not_found)?;
    if rest.len() > 3 {
        return Err(not_found());
    }
    Ok(Target {
        resource: r,
        namespace: None,
        name: rest.get(1).map(|s| (*s).to_string()),
        subresource: rest.get(2).map(|s| (*s).to_string()),
    })
}

async fn route(
    state: Arc<State>,
    cert_user: Option<Arc<User>>,
    req: Request<Incoming>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    // Health endpoints are public, as in Kubernetes.
    if matches!(path.as_str(), "/healthz" | "/livez" | "/readyz") {
        return match state.store.current_revision().await {
            Ok(_) => text(200, "ok"),
            Err(e) => text(500, &format!("[-]etcd failed: {e}")),
        };
    }
    let Some(user) = authenticate(&state, cert_user, &req).await else {
        return fail_response(&Fail::new(401, "Unauthorized", "Unauthorized"));
    };
    let query = Query::parse(req.uri().query());
    let raw_query = req.uri().query().unwrap_or_default().to_string();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    // autoscaling/v1 HPAs are served from the v2 objects.
    let v1_hpa = crate::hpa_v1::is_v1(&segs);
    let segs: Vec<&str> = if v1_hpa {
        segs.iter()
            .enumerate()
            .map(|(i, s)| if i == 2 { "v2" } else { *s })
            .collect()
    } else {
        segs
    };
    if v1_hpa && (method == Method::PATCH || query.flag("watch")) {
        let what = if method == Method::PATCH {
            "patch"
        } else {
            "watch"
        };
        return crate::hpa_v1::unsupported(what);
    }
    let get = method == Method::GET;
    let doc = |v: Option<Value>| match v {
        Some(v) => json_response(200, &v),
        None => fail_response(&Fail::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )),
    };
    let accept = req
        .headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let accept = if v1_hpa {
        "application/json".to_string()
    } else {
        accept
    };
    let is_resource = matches!(segs.as_slice(), ["api", _, _, ..] | ["apis", _, _, _, ..]);
    if !is_resource {
        let attrs = auth::Attributes {
            verb: method.as_str().to_lowercase(),
            path: Some(path.clone()),
            ..auth::Attributes::default()
        };
        let (allowed, reason) = auth::authorize(&state, &user, &attrs).await;
        if !allowed {
            return forbidden(&user, &attrs, &reason);
        }
    }
    // terraform's http state backend; a non-resource path, so RBAC's
    // nonResourceURLs decide who may read, write or lock a state.
    if let Some(name) = path.strip_prefix("/infra/state/") {
        return crate::infra_state::handle(&state, req, name).await;
    }
    if let [
        "apis",
        crate::metrics::GROUP,
        crate::metrics::VERSION,
        rest @ ..,
    ] = segs.as_slice()
        && get
        && !rest.is_empty()
    {
        return crate::metrics::handle(&state, &user, rest, &query).await;
    }
    match segs.as_slice() {
        [".well-known", "openid-configuration"] if get => {
            return json_response(200, &crate::tokens::openid_configuration());
        }
        ["openid", "v1", "jwks"] if get => {
            return bytes_response(
                200,
                "application/jwk-set+json",
                serde_json::to_vec(&state.sa_keys.jwks()).unwrap_or_default(),
            );
        }
        ["version"] if get => return json_response(200, &discovery::version()),
        ["api" | "apis"] if get && discovery::wants_aggregated(&accept) => {
            let doc = discovery::aggregated(segs[0] == "api");
            return bytes_response(
                200,
                discovery::AGGREGATED,
                serde_json::to_vec(&doc).unwrap_or_default(),
            );
        }
        ["api"] if get => return json_response(200, &discovery::api_versions()),
        ["apis"] if get => return json_response(200, &discovery::api_groups()),
        ["api", v] if get => return doc(discovery::resource_list("", v)),
        ["apis", g] if get => return doc(discovery::api_group(g)),
        ["apis", g, v] if get => return doc(discovery::resource_list(g, v)),
        ["openapi", "v3"] if get => return json_response(200, &openapi::v3_root()),
        ["openapi", "v3", rest @ ..] if get => {
            return match openapi::v3_gv(&rest.join("/")) {
                Some(b) => bytes_response(200, "application/json", b.to_vec()),
                None => doc(None),
            };
        }
        ["openapi", "v2"] if get => {
            let first = accept.split(',').next().unwrap_or_default();
            return if first.contains("protobuf") {
                bytes_response(200, openapi::V2_PROTO_TYPE, openapi::V2_PROTO.clone())
            } else {
                bytes_response(200, "application/json", openapi::V2_JSON.clone())
            };
        }
        _ => {}
    }
    let target = match segs.as_slice() {
        ["api", v, rest @ ..] if !rest.is_empty() => parse_target("", v, rest),
        ["apis", g, v, rest @ ..] if !rest.is_empty() => parse_target(g, v, rest),
        _ => Err(Fail::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )),
    };
    let target = match target {
        Ok(t) => t,
        Err(f) => return fail_response(&f),
    };
    let streamed = crate::node_proxy::subresource(&target);
    let attrs = auth::Attributes {
        verb: match streamed {
            // Connect subresources: `create` whatever the method (kubectl
            // 1.30+ and the Python client open them with GET), as
            // Kubernetes checks them.
            Some(s) if s != "log" => "create".to_string(),
            _ => resource_verb(&method, &target, &query).to_string(),
        },
        group: target.resource.group.to_string(),
        resource: target.resource.plural.to_string(),
        subresource: target.subresource.clone().unwrap_or_default(),
        namespace: match (&target.namespace, target.resource.kind) {
            (Some(ns), _) => ns.clone(),
            // A namespace is its own namespace for authorization.
            (None, "Namespace") if target.resource.group.is_empty() => {
                target.name.clone().unwrap_or_default()
            }
            (None, _) => String::new(),
        },
        name: target.name.clone().unwrap_or_default(),
        path: None,
    };
    let (allowed, reason) = auth::authorize(&state, &user, &attrs).await;
    if !allowed {
        return forbidden(&user, &attrs, &reason);
    }
    if let (Some(sub), Some(name), Some(ns)) = (streamed, &target.name, &target.namespace) {
        return crate::node_proxy::handle(&state, sub, ns, name, &query, req).await;
    }
    let user_agent = req
        .headers()
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let body = if matches!(
        method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        match http_body_util::Limited::new(req.into_body(), MAX_BODY)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return fail_response(&Fail::new(
                    413,
                    "RequestEntityTooLarge",
                    format!("Request entity too large: limit is {MAX_BODY}"),
                ));
            }
        }
    } else {
        Bytes::new()
    };
    let body = if v1_hpa {
        crate::hpa_v1::request(body)
    } else {
        body
    };
    let audit = crate::audit::Request {
        id: handlers::new_uid(),
        uri: match &raw_query {
            q if q.is_empty() => path.clone(),
            q => format!("{path}?{q}"),
        },
        verb: attrs.verb.clone(),
        user: user.clone(),
        object_ref: json!({
            "resource": target.resource.plural,
            "namespace": target.namespace,
            "name": target.name,
            "apiGroup": target.resource.group,
            "apiVersion": target.resource.version,
            "subresource": target.subresource,
        }),
        received: jiff::Timestamp::now().to_string(),
    };
    let audit_dir = state.paths.dir.clone();
    let ctx = handlers::Ctx {
        state,
        target,
        query,
        accept,
        content_type,
        user_agent,
        user: user.clone(),
        body,
    };
    // Admission webhooks tell the webhook who asked; warnings become
    // `Warning` headers as kube-apiserver sends them.
    let warnings = Arc::new(std::sync::Mutex::new(Vec::new()));
    let serve = async {
        let result = crate::webhook::WARNINGS
            .scope(
                warnings.clone(),
                crate::webhook::USER.scope(user, handlers::dispatch(ctx, &method)),
            )
            .await;
        match result {
            Ok(resp) => resp,
            Err(f) => fail_response(&f),
        }
    };
    let mut resp = crate::audit::scope(&audit_dir, audit, serve).await;
    if v1_hpa {
        resp = crate::hpa_v1::response(resp).await;
    }
    for w in warnings.lock().map(|w| w.clone()).unwrap_or_default() {
        let text: String = w
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .collect();
        if let Ok(v) = hyper::header::HeaderValue::from_str(&format!("299 - {text:?}")) {
            resp.headers_mut().append(hyper::header::WARNING, v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = Query::parse(Some("labelSelector=app%3Dweb%2Ctier+in+(a)&watch=1&x"));
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a)"));
        assert!(q.flag("watch"));
        assert_eq!(q.get("x"), Some(""));
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn targets() {
        let t = parse_target("", "v1", &["namespaces", "a", "pods", "p", "status"]).unwrap();
        assert_eq!(
            (
                t.resource.kind,
                t.namespace.as_deref(),
                t.name.as_deref(),
                t.subresource.as_deref()
            ),
            ("Pod", Some("a"), Some("p"), Some("status"))
        );
        let t = parse_target("", "v1", &["namespaces", "a"]).unwrap();
        assert_eq!(
            (t.resource.kind, t.name.as_deref()),
            ("Namespace", Some("a"))
        );
        let t = parse_target("", "v1", &["namespaces", "a", "status"]).unwrap();
        assert_eq!(t.subresource.as_deref(), Some("status"));
        let t = parse_target("apps", "v1", &["deployments"]).unwrap();
        assert!(t.namespace.is_none() && t.name.is_none());
        assert!(parse_target("", "v1", &["nope"]).is_err());
    }
}
