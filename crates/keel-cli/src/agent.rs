//! `keel agent`: this machine joins a keel server as a node and runs the
//! pods bound to it (keel-agent, the kubelet).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::Hint;

/// Arguments of `keel agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The API server, https://HOST:PORT.
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// Join token from `keel server token create --join` on the server's machine.
    #[arg(long, value_name = "TOKEN", env = "KEEL_TOKEN", hide_env_values = true)]
    pub token: String,
    /// The node's name (default: this machine's hostname).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Nameserver of the pods' resolv.conf (dnsPolicy `ClusterFirst`): the
    /// kube-dns Service's cluster IP.
    #[arg(long, value_name = "IP", default_value = "10.43.0.10")]
    pub cluster_dns: std::net::IpAddr,
    /// The cluster domain ("" for no cluster DNS: pods get this machine's resolver).
    #[arg(long, value_name = "DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,
    /// How pods reach pods on other nodes: `vxlan` (an overlay, any
    /// network between nodes) or `host-gw` (routes via the nodes'
    /// addresses; the nodes must share a link). Every node must use the same.
    #[arg(long, value_name = "BACKEND", default_value = "vxlan")]
    pub flannel_backend: keel_net::vxlan::Backend,
    #[command(flatten)]
    pub ingress: IngressArgs,
}

/// The node's ingress gateway (`keel agent` and `keel server`'s own node).
#[derive(Debug, Args)]
pub struct IngressArgs {
    /// Port of the ingress gateway's plain HTTP listener.
    #[arg(long, value_name = "PORT", default_value_t = 80)]
    pub ingress_http_port: u16,
    /// Port of the ingress gateway's HTTPS listener.
    #[arg(long, value_name = "PORT", default_value_t = 443)]
    pub ingress_https_port: u16,
    /// Do not run the ingress gateway (Ingress, `HTTPRoute`) on this node.
    #[arg(long)]
    pub disable_ingress: bool,
}

impl IngressArgs {
    pub(crate) fn config(&self) -> Option<keel_gateway::Config> {
        (!self.disable_ingress).then(|| keel_gateway::Config {
            http_port: self.ingress_http_port,
            https_port: self.ingress_https_port,
            ..keel_gateway::Config::default()
        })
    }
}

/// This machine's hostname, lowercased (a node name).
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_ascii_lowercase())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "keel-node".into())
}

pub(crate) fn exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("find the keel binary")
}

pub fn run(root: &Path, a: AgentArgs) -> anyhow::Result<ExitCode> {
    keel_agent::join::parse_token(&a.token).map_err(|e| {
        anyhow::Error::new(Hint::new(
            "run `keel server token create --join` on the server's machine and pass what it prints",
        ))
        .context(format!("--token: {e}"))
    })?;
    keel_agent::join::host_port(&a.server).map_err(|e| {
        anyhow::Error::new(Hint::new("pass the server's address as https://HOST:PORT"))
            .context(e.to_string())
    })?;
    let cfg = keel_agent::Config {
        server: a.server,
        credentials: keel_agent::Credentials::JoinToken(a.token),
        root: root.to_path_buf(),
        name: a.name.unwrap_or_else(hostname),
        exe: exe()?,
        cluster_dns: Some(a.cluster_dns),
        cluster_domain: a.cluster_domain,
        pod_network: a.flannel_backend,
        ingress: a.ingress.config(),
    };
    crate::malloc::limit_arenas();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    rt.block_on(keel_agent::run(cfg)).context("keel agent")?;
    Ok(ExitCode::SUCCESS)
}
