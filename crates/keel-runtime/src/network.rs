//! The seam to keel-net: the runtime creates a network namespace per container
//! (a bind-mounted nsfs file under `<root>/run/netns/<id>`) and asks a
//! [`NetworkAttacher`] to connect it (to several networks: eth0, eth1, …).
//! `none` (loopback only), `host` (the host's stack, no namespace) and
//! `container:ID` (another container's namespace and etc files) are handled here.

use std::fmt::Write as _;
use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use crate::error::{Result, RuntimeError, write_err};

/// A port to publish, as keel-net takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    pub host_ip: Option<IpAddr>,
    /// 0: pick a free port.
    pub host_port: u16,
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

/// What to connect.
#[derive(Debug, Clone)]
pub struct AttachRequest {
    pub container_id: String,
    pub name: String,
    pub hostname: String,
    pub netns: PathBuf,
    pub network: String,
    pub aliases: Vec<String>,
    pub ports: Vec<PortMapping>,
    /// A static address (`--ip`).
    pub ip: Option<Ipv4Addr>,
    pub extra_hosts: Vec<keel_net::ExtraHost>,
    pub dns: keel_net::DnsConfig,
}

/// What keel-net set up.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub mac: String,
    pub ports: Vec<PortMapping>,
    /// /etc/hosts keel-net maintains for this container; bind-mounted.
    pub hosts_file: PathBuf,
    pub resolv_conf: PathBuf,
    /// The network's name, ID and this endpoint's ID.
    pub network: String,
    pub network_id: String,
    pub endpoint_id: String,
    /// `eth0`, `eth1`, … inside the container.
    pub ifname: String,
    pub aliases: Vec<String>,
}

/// Connects network namespaces to named networks (implemented by keel-net).
pub trait NetworkAttacher {
    /// Connects to one more network; the first becomes the primary (eth0,
    /// default route, published ports).
    fn attach(&self, req: &AttachRequest) -> std::result::Result<Attachment, String>;
    /// Undoes every `attach` of the container; idempotent.
    fn detach(&self, container_id: &str) -> std::result::Result<(), String>;
    /// Disconnects the container from one network only.
    fn detach_network(&self, container_id: &str, network: &str) -> std::result::Result<(), String>;
}

/// Used when no network driver is linked in: only `none` and `host` work.
#[derive(Debug, Default)]
pub struct NoNetworks;

impl NetworkAttacher for NoNetworks {
    fn attach(&self, req: &AttachRequest) -> std::result::Result<Attachment, String> {
        Err(format!(
            "{} not found: this keel has no network driver for it (use --network none or host)",
            req.network
        ))
    }
    fn detach(&self, _container_id: &str) -> std::result::Result<(), String> {
        Ok(())
    }
    fn detach_network(&self, _id: &str, network: &str) -> std::result::Result<(), String> {
        Err(format!(
            "{network} not found: this keel has no network driver"
        ))
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
        .map(|h| keel_net::parse_extra_host(h).map_err(|e| RuntimeError::Network(e.to_string())))
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
