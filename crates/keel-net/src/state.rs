//! keel-net's state on disk, under `<root>/net`: network definitions in
//! `networks.json` (fsync'd: the user was told they exist) and endpoints
//! (leases, veths, published ports) in `endpoints-<boot id>.json`
//! (rewritten atomically without fsync: a reboot wipes what they describe,
//! so a new boot starts from an empty file and removes older ones). Both
//! are read and written only under the exclusive `flock` on `<root>/net/lock`
//! that a [`Locked`] holds. Per-container hosts and resolv.conf files live
//! in `<root>/net/containers/<id>/`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::Read;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use rustix::fs::{FlockOperation, flock};
use serde::{Deserialize, Serialize};

use crate::hosts::{DnsConfig, ExtraHost};
use crate::ports::PortMapping;
use crate::{NetError, Networks, ipam};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct NetRecord {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) driver: String,
    pub(crate) subnet: Option<Ipv4Net>,
    pub(crate) bridge: Option<String>,
    pub(crate) created: String,
    pub(crate) predefined: bool,
    /// Created with `--subnet`: only then may containers ask for a static IP (Docker's rule).
    #[serde(default)]
    pub(crate) user_subnet: bool,
    /// `--gateway`; unset, the subnet's first host address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) gateway: Option<Ipv4Addr>,
    /// `--ip-range`: where addresses are handed out from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) ip_range: Option<Ipv4Net>,
    /// `--aux-address NAME=IP`: addresses never handed out.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) aux_addresses: BTreeMap<String, Ipv4Addr>,
    /// `--internal`: no route out of the network.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) internal: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) labels: BTreeMap<String, String>,
    /// `-o KEY=VALUE` driver options as given (`parent`, `macvlan_mode`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) options: BTreeMap<String, String>,
    /// Overlay networks: the containers other nodes run on it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) remote: Vec<RemotePeer>,
}

/// A container on another node of an overlay network: reached through the
/// network's VXLAN device (an FDB entry towards `host`) and named in local
/// containers' hosts files.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RemotePeer {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    pub ip: Ipv4Addr,
    pub mac: String,
    /// The address of the node it runs on (its VTEP).
    pub host: Ipv4Addr,
}

/// docker's option that turns outbound NAT off on a bridge network.
pub(crate) const OPT_MASQUERADE: &str = "com.docker.network.bridge.enable_ip_masquerade";
/// docker's option for the MTU of containers' interfaces on a network.
pub(crate) const OPT_MTU: &str = "com.docker.network.driver.mtu";
/// docker's overlay option naming the network's VXLAN id.
pub const OPT_VNI: &str = "com.docker.network.driver.overlay.vxlanid_list";
/// keel's overlay option: this node's address, where its VXLAN device
/// sends from and other nodes send to.
pub const OPT_VTEP: &str = "keel.overlay.vtep";
/// The UDP port of overlay networks' VXLAN (IANA's, as Docker's overlay;
/// the pod network uses Linux's 8472).
pub const OVERLAY_PORT: u16 = 4789;

impl NetRecord {
    /// The gateway containers route through: `--gateway` or the subnet's first host.
    pub(crate) fn gateway_ip(&self) -> Option<Ipv4Addr> {
        self.gateway.or_else(|| self.subnet.map(ipam::gateway))
    }

    /// An overlay network's VNI and VTEP address, from its options.
    pub(crate) fn overlay(&self) -> Option<(u32, Ipv4Addr)> {
        if self.driver != "overlay" {
            return None;
        }
        Some((
            self.options.get(OPT_VNI)?.parse().ok()?,
            self.options.get(OPT_VTEP)?.parse().ok()?,
        ))
    }

    /// The VXLAN device of an overlay network (`kvx-<vni>`).
    pub(crate) fn vxlan_dev(&self) -> Option<String> {
        self.overlay().map(|(vni, _)| format!("kvx-{vni}"))
    }

    /// macvlan and ipvlan networks hang containers directly off a host interface.
    pub(crate) fn is_sublink(&self) -> bool {
        matches!(self.driver.as_str(), "macvlan" | "ipvlan")
    }

    /// Outbound NAT: on for bridges unless internal or turned off by option.
    pub(crate) fn masquerade(&self) -> bool {
        !self.internal
            && self
                .options
                .get(OPT_MASQUERADE)
                .is_none_or(|v| v != "false")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[allow(clippy::struct_field_names)] // endpoint_id is Docker's name
pub(crate) struct Endpoint {
    pub(crate) container_id: String,
    pub(crate) endpoint_id: String,
    pub(crate) name: String,
    pub(crate) hostname: String,
    pub(crate) aliases: Vec<String>,
    pub(crate) network_id: String,
    pub(crate) ip: Ipv4Addr,
    pub(crate) mac: String,
    pub(crate) host_if: String,
    pub(crate) ports: Vec<PortMapping>,
    #[serde(default = "eth0")]
    pub(crate) ifname: String,
    #[serde(default)]
    pub(crate) extra_hosts: Vec<ExtraHost>,
    #[serde(default)]
    pub(crate) dns: DnsConfig,
    /// The container's network namespace, where a macvlan/ipvlan endpoint's
    /// only link lives (bridge endpoints are removed by their host side).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) netns: Option<PathBuf>,
}

pub(crate) fn eth0() -> String {
    "eth0".to_string()
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct State {
    pub(crate) networks: Vec<NetRecord>,
    pub(crate) endpoints: Vec<Endpoint>,
}

impl State {
    pub(crate) fn find(&self, name: &str) -> Option<&NetRecord> {
        self.networks
            .iter()
            .find(|n| n.name == name)
            .or_else(|| self.networks.iter().find(|n| n.id == name))
            .or_else(|| {
                let mut hits = self
                    .networks
                    .iter()
                    .filter(|n| name.len() >= 3 && n.id.starts_with(name));
                match (hits.next(), hits.next()) {
                    (Some(n), None) => Some(n),
                    _ => None,
                }
            })
    }

    pub(crate) fn endpoints_of<'a>(
        &'a self,
        net_id: &'a str,
    ) -> impl Iterator<Item = &'a Endpoint> + 'a {
        self.endpoints
            .iter()
            .filter(move |e| e.network_id == net_id)
    }

    /// A container's endpoints, in the order they were attached (the first is its primary).
    pub(crate) fn endpoints_of_container<'a>(
        &'a self,
        id: &'a str,
    ) -> impl Iterator<Item = &'a Endpoint> + 'a {
        self.endpoints.iter().filter(move |e| e.container_id == id)
    }

    pub(crate) fn network_by_id(&self, id: &str) -> Option<&NetRecord> {
        self.networks.iter().find(|n| n.id == id)
    }
}

/// Held while working on the state: the exclusive flock lives as long as this.
pub(crate) struct Locked {
    pub(crate) _lock: File,
    pub(crate) state: State,
}

pub(crate) const NETWORKS: &str = "networks.json";

pub(crate) fn valid_name(name: &str) -> bool {
    let mut b = name.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

pub(crate) fn random_hex(bytes: usize) -> Result<String, NetError> {
    let mut buf = vec![0u8; bytes];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(NetError::Random)?;
    Ok(buf.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

impl Networks {
    pub(crate) fn lock(&self) -> Result<Locked, NetError> {
        let lock_path = self.dir.join("lock");
        let lock_err = |e: std::io::Error| NetError::Lock {
            path: lock_path.clone(),
            source: e,
        };
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(lock_err)?;
        flock(&f, FlockOperation::LockExclusive).map_err(|e| lock_err(e.into()))?;
        let path = self.dir.join(NETWORKS);
        let networks = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| NetError::ParseState {
                path: path.clone(),
                source: e,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Before the default subnet is picked against the routes.
                self.prune_forgotten()?;
                let n = self.initial_networks()?;
                self.save_json(&path, &n, true)?;
                n
            }
            Err(e) => return Err(NetError::ReadState { path, source: e }),
        };
        let path = self.endpoints_path()?;
        let endpoints = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| NetError::ParseState {
                path: path.clone(),
                source: e,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.forget_earlier_boots();
                Vec::new()
            }
            Err(e) => return Err(NetError::ReadState { path, source: e }),
        };
        let state = State {
            networks,
            endpoints,
        };
        Ok(Locked { _lock: f, state })
    }

    /// Endpoints describe kernel state (veths, rules), which a reboot wipes; so
    /// they are kept per boot and written without fsync: after a crash the file
    /// of the old boot is simply ignored.
    pub(crate) fn endpoints_path(&self) -> Result<PathBuf, NetError> {
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map_err(|e| {
            NetError::ReadState {
                path: "/proc/sys/kernel/random/boot_id".into(),
                source: e,
            }
        })?;
        Ok(self.dir.join(format!("endpoints-{}.json", boot.trim())))
    }

    /// Removes endpoint files and container files of earlier boots.
    pub(crate) fn forget_earlier_boots(&self) {
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with("endpoints-") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        if let Ok(rd) = std::fs::read_dir(self.dir.join("containers")) {
            for e in rd.flatten() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    /// Docker's three predefined networks; the default bridge's subnet avoids the host's routes.
    pub(crate) fn initial_networks(&self) -> Result<Vec<NetRecord>, NetError> {
        let routes = self.kernel.routes()?;
        // With every pool subnet taken, the bridge still gets docker's first
        // one on paper: `prepare_bridge` checks the routes again (and reports
        // the exhaustion) when a container first needs it, and networks made
        // with their own --subnet keep working meanwhile.
        let subnet = ipam::pick_subnet(&routes, false)
            .unwrap_or_else(|_| ipam::pool().next().expect("the pool is not empty"));
        let created = now();
        let mk = |name: &str,
                  driver: &str,
                  subnet,
                  bridge: Option<&str>|
         -> Result<NetRecord, NetError> {
            Ok(NetRecord {
                id: random_hex(32)?,
                name: name.into(),
                driver: driver.into(),
                subnet,
                bridge: bridge.map(Into::into),
                created: created.clone(),
                predefined: true,
                user_subnet: false,
                gateway: None,
                ip_range: None,
                aux_addresses: BTreeMap::new(),
                internal: false,
                labels: BTreeMap::new(),
                options: BTreeMap::new(),
                remote: Vec::new(),
            })
        };
        Ok(vec![
            mk(
                "bridge",
                "bridge",
                Some(subnet),
                Some(&self.default_bridge_name()),
            )?,
            mk("host", "host", None, None)?,
            mk("none", "null", None, None)?,
        ])
    }

    /// Atomic replace: temp file, (fsync,) rename, (fsync directory).
    pub(crate) fn save_json<T: Serialize>(
        &self,
        path: &Path,
        v: &T,
        durable: bool,
    ) -> Result<(), NetError> {
        let werr = |e: std::io::Error| NetError::WriteState {
            path: path.to_path_buf(),
            source: e,
        };
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(werr)?;
        serde_json::to_writer_pretty(&mut tmp, v).map_err(|e| werr(e.into()))?;
        if durable {
            tmp.as_file().sync_all().map_err(werr)?;
        }
        tmp.persist(path).map_err(|e| werr(e.error))?;
        if durable {
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(werr)?;
        }
        Ok(())
    }

    /// Network definitions: durable, the user was told they exist.
    pub(crate) fn save_networks(&self, st: &State) -> Result<(), NetError> {
        self.save_json(&self.dir.join(NETWORKS), &st.networks, true)
    }

    pub(crate) fn save_endpoints(&self, st: &State) -> Result<(), NetError> {
        self.save_json(&self.endpoints_path()?, &st.endpoints, false)
    }
}
