//! keel's node agent, the kubelet: `keel agent` (and the agent `keel server`
//! runs for its own machine) joins a cluster and runs the pods the scheduler
//! binds to its node on keel-runtime.
//!
//! - [`join`]: credentials. A join token (`K10<CA sha256>::<id>.<secret>`,
//!   from `keel server token create --join`) pins the server's CA and
//!   authenticates as a bootstrap token; the agent asks for its own client
//!   certificate (`CN=system:node:<name>, O=system:nodes`) with a
//!   `CertificateSigningRequest`, as kubeadm's and k3s's kubelets do, and keeps
//!   it under `<root>/agent/`.
//! - `node`: the Node object (capacity from the machine, addresses,
//!   nodeInfo, conditions) and its Lease in `kube-node-lease`.
//! - `pods`: one task per pod bound to the node. A sandbox container (the
//!   node's busybox `sleep`, like Kubernetes' pause) holds the pod's network
//!   namespace on the node bridge `keel-pods` (the node's podCIDR, through
//!   keel-net); init containers, then containers, join it (`container:`
//!   network mode); volumes, env, resources, restart back-off, probes
//!   (`probe`), graceful termination, and status written as the kubelet
//!   writes it.
//! - [`streams`]: the node's HTTPS endpoint for the API server (the
//!   kubelet's :10250): logs, exec, attach, port-forward.
//! - [`overlaynet`]: overlay networks for plain containers across the
//!   nodes (`keel network create -d overlay`), recorded in namespace
//!   `keel-overlay`.
//! - [`podspec`]: the pure parts (quantities, commands, env expansion,
//!   field paths, the hosts file).
//!
//! Containers are created with keel-runtime's `engine` (records only) and
//! started by spawning `keel __monitor` processes; stop, remove and exec run
//! as child `keel` processes: libcontainer never runs in this (tokio,
//! multi-threaded) process.

pub mod dns;
mod events;
mod grpc_probe;
pub mod join;
mod netpol;
mod node;
mod overlay;
pub mod overlaynet;
mod pods;
pub mod podspec;
mod probe;
mod proxy;
mod runtime;
mod shutdown;
pub mod streams;

use std::path::PathBuf;
use std::sync::Arc;

/// The annotation the agent puts on its Node; keel's API server deletes
/// pods on such nodes gracefully (the kubelet finishes the deletion).
pub const AGENT_NODE: &str = "node.keel.dev/agent";

/// The keel network (bridge) pods of this node are attached to.
pub const POD_NETWORK: &str = "keel-pods";

/// How the agent authenticates.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// A join token from `keel server token create --join`.
    JoinToken(String),
    /// Credentials issued directly (the server's own agent).
    Issued {
        ca_pem: String,
        cert_pem: String,
        key_pem: String,
    },
}

/// What `keel agent` was given.
#[derive(Debug, Clone)]
pub struct Config {
    /// `https://HOST:PORT` of the API server.
    pub server: String,
    pub credentials: Credentials,
    /// The node's keel root (images, containers, networks; `agent/`).
    pub root: PathBuf,
    /// The Node's name.
    pub name: String,
    /// The keel binary (monitors, stop, rm, exec).
    pub exe: PathBuf,
    /// The nameserver of `ClusterFirst` pods; `None`: the pod network's
    /// gateway on this node (where `keel server` serves its cluster DNS).
    pub cluster_dns: Option<std::net::IpAddr>,
    /// The cluster domain (`cluster.local`); empty: no cluster DNS, pods
    /// get the node's resolver.
    pub cluster_domain: String,
    /// The ingress gateway (keel-gateway) on the node's ports; `None`: off.
    pub ingress: Option<keel_gateway::Config>,
    /// How other nodes' podCIDRs are reached (flannel's `vxlan` or `host-gw`).
    pub pod_network: keel_net::vxlan::Backend,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("join token: {0}")]
    Token(String),
    #[error("fetching the server's CA from {server}: {why}")]
    Ca { server: String, why: String },
    #[error("credentials: {0}")]
    Credentials(String),
    #[error("API: {0}")]
    Api(#[from] kube::Error),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("node network: {0}")]
    Network(String),
    #[error("{0}")]
    Other(String),
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> AgentError {
    let what = what.into();
    move |source| AgentError::Io { what, source }
}

/// The ingress gateway, when configured; a port in use is logged, not fatal.
async fn start_gateway(
    client: &kube::Client,
    cfg: &Config,
    node_ip: &str,
) -> Option<keel_gateway::Handle> {
    let g = cfg.ingress.clone()?;
    keel_gateway::start(client.clone(), g, node_ip.to_string())
        .await
        .inspect_err(|e| tracing::warn!(error = %e, "ingress gateway not started"))
        .ok()
}

/// Joins the cluster and runs the node until the task is dropped or a
/// fatal error; pods keep running when the agent stops.
pub async fn run(cfg: Config) -> Result<(), AgentError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = join::client(&cfg).await?;
    let node_ip = node::node_ip(&cfg.server);
    node::register(&client, &cfg.name, &node_ip).await?;
    tracing::info!(node = cfg.name, ip = node_ip, "node registered");
    tokio::spawn(node::heartbeat(client.clone(), cfg.name.clone()));
    let sctx = streams::Ctx {
        root: cfg.root.clone(),
        exe: cfg.exe.clone(),
        gateway: start_gateway(&client, &cfg, &node_ip).await,
    };
    streams::start(&client, &cfg.name, &node_ip, sctx).await?;
    proxy::start(&client, &cfg.name);
    let cidr = node::await_pod_cidr(&client, &cfg.name).await?;
    let pod_mtu = overlay::start(&client, &cfg.name, &node_ip, &cidr, cfg.pod_network).await?;
    let root = cfg.root.clone();
    let exe = cfg.exe.clone();
    let gateway = tokio::task::spawn_blocking(move || {
        let gw = runtime::ensure_network(&root, &cidr, pod_mtu)?;
        runtime::ensure_image(&root, &exe, runtime::PAUSE_IMAGE, None)?;
        Ok::<_, AgentError>(gw)
    })
    .await
    .map_err(|e| AgentError::Other(e.to_string()))??;
    let dns = cfg
        .cluster_dns
        .or(gateway.map(std::net::IpAddr::V4))
        .filter(|_| !cfg.cluster_domain.is_empty())
        .map(|ip| dns::ClusterDns {
            server: ip.to_string(),
            domain: cfg.cluster_domain.clone(),
        });
    tokio::spawn(async {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            let _ = tokio::task::spawn_blocking(runtime::reap).await;
        }
    });
    let ctx = Arc::new(pods::Ctx {
        events: events::Recorder::new(client.clone(), cfg.name.clone()),
        client,
        node: cfg.name.clone(),
        node_ip,
        root: cfg.root.clone(),
        exe: cfg.exe.clone(),
        dns,
    });
    netpol::spawn(ctx.client.clone(), cfg.name.clone());
    overlaynet::spawn(
        ctx.client.clone(),
        cfg.name.clone(),
        &ctx.node_ip,
        cfg.root.clone(),
    );
    pods::run(ctx).await
}
