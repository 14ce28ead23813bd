//! `keel server`: the Kubernetes-compatible API server with its controllers
//! (keel-controllers, in the same process) and, unless `--disable-agent`, a
//! node agent for this machine (keel-agent); `keel server token create`
//! for extra (read-only) tokens and `--join` tokens for `keel agent`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::Hint;

/// Arguments of `keel server`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ServerArgs {
    /// Address and port to serve HTTPS on.
    #[arg(long, default_value = "0.0.0.0:6443")]
    pub listen: SocketAddr,
    #[arg(
        long,
        value_name = "URL",
        help = "Datastore: sqlite:///path or etcd://host:port,host:port (default: SQLite under <root>/server)"
    )]
    pub datastore: Option<String>,
    /// Write a kubeconfig for this server (admin token) to PATH.
    #[arg(long, value_name = "PATH")]
    pub write_kubeconfig: Option<PathBuf>,
    /// How long a node's Lease may go unrenewed before the node is marked
    /// Unknown and tainted unreachable (Kubernetes: 40s).
    #[arg(long, value_name = "DURATION", default_value = "8s", value_parser = parse_duration)]
    pub node_monitor_grace_period: std::time::Duration,
    /// tolerationSeconds new pods get for the not-ready and unreachable
    /// taints: how long they stay on a lost node (Kubernetes: 300).
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub default_toleration_seconds: u32,
    /// How often the Horizontal Pod Autoscaler syncs (Kubernetes: 15s).
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_duration)]
    pub hpa_sync_period: std::time::Duration,
    /// How long the autoscaler keeps the highest recent recommendation
    /// before scaling down (Kubernetes: 5m).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub hpa_downscale_stabilization: std::time::Duration,
    /// Pod CIDRs for nodes are cut from this range ("" to not allocate).
    #[arg(long, value_name = "CIDR", default_value = "10.42.0.0/16")]
    pub cluster_cidr: String,
    /// Prefix length of each node's pod CIDR.
    #[arg(long, value_name = "BITS", default_value_t = 24)]
    pub node_cidr_mask_size: u8,
    /// Do not run a node agent (kubelet) for this machine.
    #[arg(long)]
    pub disable_agent: bool,
    /// Name of this machine's node (default: its hostname).
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// Run the controllers and the scheduler only while holding the Lease
    /// kube-system/keel-controllers, so that of several servers on one etcd
    /// exactly one does (default: on with etcd, off with the embedded store).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub leader_elect: Option<bool>,
    /// How long the others wait after the leader's last renewal.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_duration)]
    pub leader_elect_lease_duration: std::time::Duration,
    /// How long the leader goes on without renewing before it stops.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub leader_elect_renew_deadline: std::time::Duration,
    /// How often candidates try and the leader renews.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub leader_elect_retry_period: std::time::Duration,
    /// The cluster domain of the cluster DNS.
    #[arg(long, value_name = "DOMAIN", default_value = keel_dns::DEFAULT_ZONE)]
    pub cluster_domain: String,
    /// Cluster IP of the kube-dns Service (default: the 10th address of the
    /// service range, 10.43.0.10).
    #[arg(long, value_name = "IP")]
    pub cluster_dns: Option<std::net::IpAddr>,
    /// Also serve the cluster DNS on ADDR (UDP and TCP), e.g. 127.0.0.1:10053.
    #[arg(long, value_name = "ADDR")]
    pub dns_listen: Vec<SocketAddr>,
    /// Do not serve cluster DNS (pods then get the node's resolver).
    #[arg(long)]
    pub disable_dns: bool,
    /// Leave Argo Rollouts to Argo: do not create its CRDs (`argoproj.io`
    /// `Rollout`, `AnalysisTemplate`, ...) nor run keel's rollout and
    /// analysis controllers, so that Argo's own chart installs with its CRDs.
    #[arg(long)]
    pub disable_rollouts: bool,
    #[command(flatten)]
    pub metrics: crate::server_metrics::MetricsArgs,
    #[command(flatten)]
    pub ingress: crate::agent::IngressArgs,
    #[command(subcommand)]
    pub command: Option<ServerCommand>,
}

#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// Manage bearer tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a new token and print it.
    Create {
        /// The token may only read (get, list, watch).
        #[arg(long, conflicts_with = "join")]
        read_only: bool,
        /// A join token for `keel agent --token` (it pins this server's CA).
        #[arg(long)]
        join: bool,
    },
}

pub fn run(root: &Path, args: ServerArgs) -> anyhow::Result<ExitCode> {
    let state_dir = root.join("server");
    if let Some(ServerCommand::Token(TokenCommand::Create { read_only, join })) = args.command {
        let paths = keel_api::pki::Paths::new(&state_dir);
        if join {
            let token = keel_api::pki::create_join_token(&paths).map_err(|e| {
                anyhow::Error::new(Hint::new(
                    "start `keel server` with this --root once first: it creates the CA the token pins",
                ))
                .context(format!("create join token: {e}"))
            })?;
            println!("{token}");
            return Ok(ExitCode::SUCCESS);
        }
        let role = if read_only {
            keel_api::pki::Role::ReadOnly
        } else {
            keel_api::pki::Role::Admin
        };
        let token = keel_api::pki::create_token(&paths, role).context("create token")?;
        println!("{token}");
        return Ok(ExitCode::SUCCESS);
    }
    let cluster_cidr = if args.cluster_cidr.is_empty() {
        None
    } else {
        Some(
            keel_controllers::node_ipam::CidrPlan::parse(
                &args.cluster_cidr,
                args.node_cidr_mask_size,
            )
            .map_err(|e| {
                anyhow::Error::new(Hint::new(
                    "pass --cluster-cidr as an IPv4 range like 10.42.0.0/16 and --node-cidr-mask-size between its prefix and 30",
                ))
                .context(format!("--cluster-cidr: {e}"))
            })?,
        )
    };
    let election = args
        .leader_elect
        .unwrap_or_else(|| {
            args.datastore
                .as_deref()
                .is_some_and(|d| d.starts_with("etcd://"))
        })
        .then(|| election(&args))
        .transpose()?;
    let mut controller_opts = keel_controllers::Options {
        node_monitor_grace_period: args.node_monitor_grace_period,
        cluster_cidr,
        state_dir: Some(state_dir.clone()),
        hpa: keel_controllers::hpa::Options {
            sync_period: args.hpa_sync_period,
            downscale_stabilization: args.hpa_downscale_stabilization,
            ..keel_controllers::hpa::Options::default()
        },
        hpa_source: None,
        rollouts: !args.disable_rollouts,
    };
    crate::malloc::limit_arenas();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    rt.block_on(async move {
        let builtins = keel_api::Builtins {
            argo_rollouts: !args.disable_rollouts,
        };
        let server = keel_api::Server::bind_with(
            keel_api::Config {
                state_dir: state_dir.clone(),
                listen: args.listen,
                datastore: args.datastore.clone(),
            },
            builtins,
        )
        .await
        .map_err(|e| {
            // The hint is the root error so render_error finds it; the
            // message keeps the whole cause chain.
            let hint = match &e {
                keel_api::ApiError::Listen { .. } => Some(
                    "another server may be running; pick a free port with --listen 127.0.0.1:PORT",
                ),
                keel_api::ApiError::Datastore { url, .. } if url.starts_with("etcd://") => {
                    Some("check that etcd is running and reachable at the --datastore endpoints")
                }
                _ => None,
            };
            let msg = format!("{:#}", anyhow::Error::new(e));
            match hint {
                Some(h) => anyhow::Error::new(Hint::new(h)).context(msg),
                None => anyhow::anyhow!(msg),
            }
        })
        .context("start keel server")?;
        let addr = server.local_addr();
        let metrics_store = crate::server_metrics::store(&args.metrics);
        controller_opts.hpa_source = Some(crate::server_metrics_hpa::source(
            server.loopback(),
            metrics_store.clone(),
            args.metrics.scrape_interval,
        ));
        if let Some(path) = &args.write_kubeconfig {
            let kc = server.kubeconfig().context("build kubeconfig")?;
            keel_api::pki::write_private(path, kc.as_bytes(), 0o600)
                .with_context(|| format!("write kubeconfig {}", path.display()))?;
        }
        server.set_default_toleration_seconds(i64::from(args.default_toleration_seconds));
        match election {
            Some(e) => {
                tracing::info!(identity = e.identity, "leader election: campaigning");
                keel_controllers::spawn_elected(&server.loopback(), &controller_opts, e);
            }
            None => {
                keel_controllers::spawn_with(&server.loopback(), &controller_opts);
            }
        }
        let node = (!args.disable_agent).then(|| {
            args.node_name
                .clone()
                .unwrap_or_else(crate::agent::hostname)
        });
        if !args.disable_dns {
            let opts = crate::server_dns::Options {
                domain: args.cluster_domain.clone(),
                service_ip: args
                    .cluster_dns
                    .unwrap_or_else(crate::server_dns::default_service_ip),
                listen: args.dns_listen.clone(),
                node: node.clone(),
                endpoint: crate::server_dns::endpoint_for(args.listen.ip()),
            };
            crate::server_dns::start(server.loopback(), opts)
                .await
                .map_err(|e| {
                    anyhow::Error::new(Hint::new(
                        "pick a free address with --dns-listen 127.0.0.1:PORT, or --disable-dns",
                    ))
                    .context(format!("cluster DNS: {e:#}"))
                })?;
        }
        crate::server_metrics::start(
            server.loopback(),
            &state_dir,
            node.clone(),
            &args.metrics,
            metrics_store,
        )
        .await?;
        if let Some(name) = node {
            let mut cfg = own_agent(root, &state_dir, addr, name)?;
            cfg.cluster_domain.clone_from(&args.cluster_domain);
            cfg.ingress = args.ingress.config();
            if args.disable_dns {
                // Pods fall back to the node's resolver.
                cfg.cluster_dns = None;
                cfg.cluster_domain.clear();
            }
            tokio::spawn(async move {
                if let Err(e) = keel_agent::run(cfg).await {
                    tracing::error!(error = %e, "the node agent stopped");
                }
            });
        }
        tracing::info!(
            %addr,
            state = %state_dir.display(),
            datastore = args.datastore.as_deref().unwrap_or("sqlite"),
            "keel server listening"
        );
        server.serve().await.context("serve")?;
        Ok(ExitCode::SUCCESS)
    })
}

/// The agent for this machine: credentials straight from the CA (no join
/// token needed), talking to the server over loopback.
fn own_agent(
    root: &Path,
    state_dir: &Path,
    addr: SocketAddr,
    name: String,
) -> anyhow::Result<keel_agent::Config> {
    let paths = keel_api::pki::Paths::new(state_dir);
    let (cert_pem, key_pem) =
        keel_api::pki::issue_node_cert(&paths, &name).context("issue the node's certificate")?;
    let ca_pem = std::fs::read_to_string(paths.ca_cert()).context("read the CA")?;
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    Ok(keel_agent::Config {
        server: format!("https://{host}:{}", addr.port()),
        credentials: keel_agent::Credentials::Issued {
            ca_pem,
            cert_pem,
            key_pem,
        },
        root: root.to_path_buf(),
        name,
        exe: crate::agent::exe()?,
        // The pod network's gateway: this server answers there.
        cluster_dns: None,
        cluster_domain: keel_dns::DEFAULT_ZONE.into(),
        ingress: None,
        pod_network: keel_net::vxlan::Backend::default(),
    })
}

/// The election of this process: its identity is the host name and a
/// random id, as client-go makes it.
fn election(args: &ServerArgs) -> anyhow::Result<keel_controllers::leader::Election> {
    let mut e = keel_controllers::leader::Election::new(format!(
        "{}_{}",
        crate::agent::hostname(),
        keel_api::new_uid()
    ));
    e.lease_duration = args.leader_elect_lease_duration;
    e.renew_deadline = args.leader_elect_renew_deadline;
    e.retry_period = args.leader_elect_retry_period;
    e.check().map_err(|m| {
        anyhow::Error::new(Hint::new(
            "keep --leader-elect-retry-period < --leader-elect-renew-deadline < --leader-elect-lease-duration (defaults 2s, 10s, 15s)",
        ))
        .context(format!("leader election: {m}"))
    })?;
    Ok(e)
}

/// `500ms`, `8s`, `2m` or a number of seconds.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, ""), |i| s.split_at(i));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s}: expected a duration like 8s, 500ms or 2m"))?;
    match unit {
        "" | "s" => Ok(std::time::Duration::from_secs(n)),
        "ms" => Ok(std::time::Duration::from_millis(n)),
        "m" => Ok(std::time::Duration::from_secs(n * 60)),
        _ => Err(format!("{s}: unknown unit {unit:?} (use ms, s or m)")),
    }
}
