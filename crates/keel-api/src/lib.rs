//! keel's Kubernetes-compatible API server on `keel-store`: HTTPS (rustls,
//! certificates from [`pki`]), bearer-token authentication (admin and
//! read-only), discovery and `OpenAPI` documents kubectl needs, and the REST
//! verbs (get, list, watch, create, update, patch, delete, deletecollection,
//! status and scale subresources) on the built-in kinds of [`resources`].
//! Objects are JSON in the store; Secrets are sealed with `keel-secrets`.
//! Deletion follows Kubernetes: propagation policies become finalizers that
//! the garbage collector in keel-controllers acts on; those controllers reach
//! the API in process through [`Loopback`].
//! [`Server`] is the entry point: `Server::bind(config)` then `serve()`.

pub mod admission;
mod argo_analysis_schema;
mod argo_defaults;
mod argo_rollout_schema;
mod audit;
pub mod auth;
mod cel;
pub mod client;
pub mod crd;
pub mod cron;
pub mod discovery;
mod handlers;
mod hpa_v1;
mod http;
mod infra_state;
mod ingress_defaults;
pub mod managed;
pub mod metrics;
mod node_authz;
mod node_proxy;
pub mod openapi;
pub mod patch;
pub mod pki;
pub mod proto;
mod quota;
pub mod rbac;
pub mod resources;
pub mod selectors;
mod service_alloc;
pub mod strategic;
pub mod table;
pub mod tokens;
pub mod validate;
mod webhook;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use client::{ClientError, Loopback};
pub use handlers::{AGENT_NODE, DeleteOptions, FOREGROUND_FINALIZER, ORPHAN_FINALIZER, new_uid};
pub use http::{Builtins, Server};

/// Everything starting or running the server can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("open datastore {url}")]
    Datastore {
        url: String,
        #[source]
        source: keel_store::StoreError,
    },
    #[error("bootstrap the datastore")]
    Bootstrap(#[source] keel_store::StoreError),
    #[error("read or write {path}")]
    Files {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("tls certificate: {0}")]
    Certificate(String),
    #[error("load the secrets encryption key")]
    SecretsKey(#[source] keel_secrets::SecretsError),
    #[error("listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// How to run a server.
#[derive(Debug, Clone)]
pub struct Config {
    /// Directory for certificates, tokens, the encryption key and the
    /// embedded database (`<root>/server`).
    pub state_dir: PathBuf,
    pub listen: SocketAddr,
    /// `etcd://…` or `sqlite://…`; `None` for `SQLite` under `state_dir`.
    pub datastore: Option<String>,
}

/// The store and keys every request handler shares.
pub(crate) struct State {
    pub store: Arc<dyn keel_store::Store>,
    pub secrets: keel_secrets::SecretBox,
    pub paths: pki::Paths,
    pub tokens: std::sync::Mutex<Tokens>,
    pub next_ip: std::sync::atomic::AtomicU32,
    pub reserved: service_alloc::Reserved,
    pub rbac: rbac::Cache,
    pub webhooks: webhook::Cache,
    pub policies: cel::policy::Cache,
    /// Watch events' objects, decoded once for all in-process watchers.
    pub decoded: handlers::Decoded,
    pub sa_keys: tokens::Keys,
    /// `tolerationSeconds` the `DefaultTolerationSeconds` admission gives pods
    /// for `not-ready` and `unreachable` nodes (Kubernetes: 300).
    pub default_toleration_seconds: std::sync::atomic::AtomicI64,
    /// The server's own handle on this state, for work that outlives a
    /// borrow (CEL's authorizer asking the Node authorizer).
    pub me: std::sync::Weak<State>,
}

pub(crate) struct Tokens {
    pub modified: Option<std::time::SystemTime>,
    pub list: Vec<(String, pki::Role)>,
}

/// `../shared/conformance/<sub>` (or `$KEEL_CONFORMANCE/<sub>`): peer
/// projects' test data, never copied into the repo.
#[cfg(test)]
pub(crate) fn conformance(sub: &str) -> std::path::PathBuf {
    use std::path::{Path, PathBuf};
    let dir = std::env::var_os("KEEL_CONFORMANCE").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .ancestors()
                .map(|a| a.join("shared/conformance").join(sub))
                .find(|d| d.is_dir())
                .unwrap_or_else(|| PathBuf::from("../shared/conformance").join(sub))
        },
        |c| PathBuf::from(c).join(sub),
    );
    assert!(
        dir.is_dir(),
        "conformance data missing at {} (set KEEL_CONFORMANCE)",
        dir.display()
    );
    dir
}
