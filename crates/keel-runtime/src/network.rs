//! The seam to keel-net: the runtime creates a network namespace per container
//! (a bind-mounted nsfs file under `<root>/run/netns/<id>`) and asks a
//! [`NetworkAttacher`] to connect it (to several networks: eth0, eth1, …),
//! in keel-net's own types ([`AttachRequest`], [`Attachment`], [`NetError`]).
//! keel-net's [`Networks`] is one; [`Bridges`] is the one keel uses, which
//! also waits out releases of `--rm` containers. `none` (loopback only),
//! `host` (the host's stack, no namespace) and `container:ID` (another
//! container's namespace and etc files) are handled here.

use std::fmt::Write as _;
use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

pub use keel_net::{AttachRequest, Attachment, NetError, Networks, PortMapping, Protocol};

use crate::error::{Result, RuntimeError, write_err};
use crate::record::Containers;

/// Connects network namespaces to named networks.
pub trait NetworkAttacher {
    /// Connects to one more network; the first becomes the primary (eth0,
    /// default route, published ports).
    fn attach(&self, req: &AttachRequest) -> Result<Attachment, NetError>;
    /// Undoes every `attach` of the container; idempotent.
    fn detach(&self, container_id: &str) -> Result<(), NetError>;
    /// Disconnects the container from one network only.
    fn detach_network(&self, container_id: &str, network: &str) -> Result<(), NetError>;
}

impl NetworkAttacher for Networks {
    fn attach(&self, req: &AttachRequest) -> Result<Attachment, NetError> {
        Networks::attach(self, req)
    }
    fn detach(&self, container_id: &str) -> Result<(), NetError> {
        Networks::detach(self, container_id)
    }
    fn detach_network(&self, container_id: &str, network: &str) -> Result<(), NetError> {
        Networks::detach_network(self, container_id, network)
    }
}

/// keel-net's bridges for the containers of one root. An attach refused for
/// a port or an address that an `--rm` container still holds while its
/// monitor releases it (`run` reported it gone already) waits for that
/// release and tries once more, as docker finishes removing before `run`
/// returns.
#[derive(Debug)]
pub struct Bridges {
    nets: Networks,
    containers: Containers,
}

impl Bridges {
    /// keel-net's state of `containers`' root.
    pub fn open(containers: &Containers) -> Result<Bridges, NetError> {
        Ok(Bridges {
            nets: Networks::open(containers.root())?,
            containers: containers.clone(),
        })
    }

    pub fn networks(&self) -> &Networks {
        &self.nets
    }

    /// See [`wait_for_releases`].
    pub fn wait_for_releases(&self, network: Option<&str>) {
        wait_for_releases(&self.containers, &self.nets, network);
    }
}

impl NetworkAttacher for Bridges {
    fn attach(&self, req: &AttachRequest) -> Result<Attachment, NetError> {
        match self.nets.attach(req) {
            Err(
                NetError::PortTaken { .. }
                | NetError::PortRangeTaken { .. }
                | NetError::IpInUse { .. }
                | NetError::AddressesExhausted(_),
            ) => {
                self.wait_for_releases(None);
                self.nets.attach(req)
            }
            r => r,
        }
    }
    fn detach(&self, container_id: &str) -> Result<(), NetError> {
        self.nets.detach(container_id)
    }
    fn detach_network(&self, container_id: &str, network: &str) -> Result<(), NetError> {
        self.nets.detach_network(container_id, network)
    }
}

/// Waits, a few seconds at most, while an endpoint on `network` (on any,
/// with `None`) belongs to a container that has no record any more: an
/// `--rm` container whose monitor releases it right after `run` returned (a
/// veth takes ~15 ms to delete). So `run --rm --network N ...; network rm N`
/// (or `network prune`, or another `run -p` of the same port) works. What
/// monitors that are gone left unreleased is released first, as `keel rm`
/// does.
pub fn wait_for_releases(containers: &Containers, nets: &Networks, network: Option<&str>) {
    crate::engine::sweep_leftovers(containers, nets);
    let releasing = || {
        let infos = match network {
            Some(n) => nets.inspect(n).map(|i| vec![i]),
            None => nets.list(),
        };
        infos.is_ok_and(|v| {
            v.iter()
                .flat_map(|n| &n.containers)
                .any(|e| !containers.dir(&e.container_id).exists())
        })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while releasing() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The attacher for `containers`: their root's [`Bridges`], or, when
/// keel-net's state cannot be opened, [`NoNetworks`] saying why (only
/// `none` and `host` work then; the reason is logged as a warning).
pub fn attacher(containers: &Containers) -> Box<dyn NetworkAttacher> {
    match Bridges::open(containers) {
        Ok(b) => Box::new(b),
        Err(e) => {
            tracing::warn!(error = %e, "networks unavailable");
            Box::new(NoNetworks {
                reason: e.to_string(),
            })
        }
    }
}

/// Without a network driver only `none` and `host` work.
#[derive(Debug)]
pub struct NoNetworks {
    /// Why there is none.
    pub reason: String,
}

impl Default for NoNetworks {
    fn default() -> Self {
        NoNetworks {
            reason: "this keel has no network driver".to_string(),
        }
    }
}

impl NetworkAttacher for NoNetworks {
    fn attach(&self, req: &AttachRequest) -> Result<Attachment, NetError> {
        Err(NetError::Unavailable {
            network: req.network.clone(),
            reason: self.reason.clone(),
        })
    }
    fn detach(&self, _container_id: &str) -> Result<(), NetError> {
        Ok(())
    }
    fn detach_network(&self, _id: &str, network: &str) -> Result<(), NetError> {
        Err(NetError::Unavailable {
            network: network.to_string(),
            reason: self.reason.clone(),
        })
    }
}

/// How a container is networked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    None,
    Host,
    Network(String),
    /// `container:NAME|ID`: another container's network namespace.
    Container(String),
}

impl Mode {
    pub fn parse(s: &str) -> Mode {
        match s {
            "none" => Mode::None,
            "host" => Mode::Host,
            "" | "default" => Mode::Network("bridge".to_string()),
            n => match n.strip_prefix("container:") {
                Some(c) => Mode::Container(c.to_string()),
                None => Mode::Network(n.to_string()),
            },
        }
    }
}

/// A static address (`--ip`) as given.
pub fn parse_ip(s: &str) -> Result<Ipv4Addr> {
    s.parse().map_err(|_| RuntimeError::InvalidOption {
        what: "IPv4 address",
        value: s.to_string(),
        why: "not an IPv4 address".to_string(),
    })
}

/// The container's `--dns*` settings as keel-net takes them.
pub fn dns_config(n: &crate::record::NetworkConfig) -> keel_net::DnsConfig {
    keel_net::DnsConfig {
        servers: n.dns.clone(),
        search: n.dns_search.clone(),
        options: n.dns_options.clone(),
    }
}

/// The container's `--add-host` entries, parsed.
pub fn extra_hosts(n: &crate::record::NetworkConfig) -> Result<Vec<keel_net::ExtraHost>> {
    n.extra_hosts
        .iter()
        .map(|h| keel_net::parse_extra_host(h).map_err(RuntimeError::from))
        .collect()
}

/// Creates a fresh network namespace with loopback up and pins it at `path`.
/// The calling thread enters it only while setting it up and then returns to
/// the namespace it came from: network drivers attach the pinned namespace from
/// the host's stack (bridges and host-side veths must not land inside it).
/// Only the single-threaded monitor calls this.
pub fn create_netns(path: &Path) -> Result<()> {
    use nix::sched::{CloneFlags, setns};
    let host = fs::File::open("/proc/thread-self/ns/net").map_err(|e| {
        RuntimeError::Netns(std::io::Error::other(format!(
            "opening the host network namespace: {e}"
        )))
    })?;
    let res = enter_new_netns(path);
    // Back to the host's stack whatever happened inside.
    setns(&host, CloneFlags::CLONE_NEWNET).map_err(|e| RuntimeError::Netns(e.into()))?;
    res
}

fn enter_new_netns(path: &Path) -> Result<()> {
    use nix::mount::{MsFlags, mount};
    use nix::sched::{CloneFlags, unshare};
    if let Some(d) = path.parent() {
        fs::create_dir_all(d).map_err(write_err(d))?;
    }
    fs::File::create(path).map_err(write_err(path))?;
    unshare(CloneFlags::CLONE_NEWNET).map_err(|e| RuntimeError::Netns(e.into()))?;
    mount(
        Some("/proc/thread-self/ns/net"),
        path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| RuntimeError::Netns(e.into()))?;
    // Docker's `none` still has a working loopback. A fresh namespace's `lo`
    // is always interface 1; netlink avoids spawning `ip` on every start.
    let lo_up = || -> std::result::Result<(), String> {
        libcontainer::network::link::LinkClient::new(
            libcontainer::network::wrapper::create_network_client(),
        )
        .and_then(|mut l| l.set_up(1))
        .map_err(|e| e.to_string())
    };
    lo_up()
        .map_err(|e| RuntimeError::Netns(std::io::Error::other(format!("bringing lo up: {e}"))))?;
    Ok(())
}

/// Unpins and removes a namespace file; missing is fine.
pub fn remove_netns(path: &Path) -> Result<()> {
    crate::rootfs::unmount_if_mounted(path)?;
    crate::error::removed(fs::remove_file(path), path)
}

/// The host's name, for `--network host`.
pub fn host_hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Writes /etc/hosts, /etc/hostname and /etc/resolv.conf for a container into
/// `dir`, with its `--add-host` entries (`host-gateway` is the host itself,
/// 127.0.0.1, in host mode) and `--dns*` settings.
pub fn write_etc_files(
    dir: &Path,
    mode: &Mode,
    hostname: &str,
    net: &crate::record::NetworkConfig,
) -> Result<()> {
    let extra: String = extra_hosts(net)?
        .into_iter()
        .fold(String::new(), |mut acc, x| {
            let ip = if x.ip == keel_net::HOST_GATEWAY {
                "127.0.0.1".to_string()
            } else {
                x.ip
            };
            let _ = writeln!(acc, "{ip}\t{}", x.name);
            acc
        });
    let hosts = match mode {
        Mode::Host => fs::read_to_string("/etc/hosts").unwrap_or_default() + &extra,
        _ => format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n{extra}127.0.0.1\t{hostname}\n"
        ),
    };
    let resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let dns = dns_config(net);
    // A resolver on the host's loopback is unreachable from a namespace; Docker drops it.
    let resolv: String = if matches!(mode, Mode::Host) && dns == keel_net::DnsConfig::default() {
        resolv
    } else {
        keel_net::render_resolv_conf_with(&resolv, &dns)
    };
    for (name, content) in [
        ("hosts", hosts),
        ("hostname", format!("{hostname}\n")),
        ("resolv.conf", resolv),
    ] {
        let p = dir.join(name);
        fs::write(&p, content).map_err(write_err(&p))?;
    }
    Ok(())
}
