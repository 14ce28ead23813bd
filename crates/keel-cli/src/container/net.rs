//! The runtime ↔ keel-net adapter: keel-runtime's `NetworkAttacher` seam
//! driven by keel-net's bridges.

use std::path::Path;

use keel_runtime::network::{NetworkAttacher, NoNetworks};

/// The network driver the runtime calls: keel-net's bridges. If its state
/// cannot be opened, only `none` and `host` work and the error says why.
pub(crate) fn network_attacher(root: &Path) -> Box<dyn NetworkAttacher> {
    match keel_net::Networks::open(root) {
        Ok(n) => Box::new(NetAttacher(n, root.to_path_buf())),
        Err(e) => {
            eprintln!("warning: networks unavailable: {e}");
            Box::new(NoNetworks)
        }
    }
}

/// Adapts keel-net's `Networks` (of the keel root in `.1`) to the runtime's seam.
struct NetAttacher(keel_net::Networks, std::path::PathBuf);

fn to_net_port(p: &keel_runtime::network::PortMapping) -> keel_net::PortMapping {
    keel_net::PortMapping {
        host_ip: p.host_ip,
        host_port: p.host_port,
        container_port: p.container_port,
        protocol: if p.protocol.eq_ignore_ascii_case("udp") {
            keel_net::Protocol::Udp
        } else {
            keel_net::Protocol::Tcp
        },
        ..keel_net::PortMapping::default()
    }
}

fn from_net_port(p: &keel_net::PortMapping) -> keel_runtime::network::PortMapping {
    keel_runtime::network::PortMapping {
        host_ip: p.host_ip,
        host_port: p.host_port,
        container_port: p.container_port,
        protocol: match p.protocol {
            keel_net::Protocol::Udp => "udp".to_string(),
            keel_net::Protocol::Tcp => "tcp".to_string(),
        },
    }
}

impl NetworkAttacher for NetAttacher {
    fn attach(
        &self,
        req: &keel_runtime::network::AttachRequest,
    ) -> std::result::Result<keel_runtime::network::Attachment, String> {
        let req = keel_net::AttachRequest {
            container_id: req.container_id.clone(),
            name: req.name.clone(),
            hostname: req.hostname.clone(),
            netns: req.netns.clone(),
            network: req.network.clone(),
            aliases: req.aliases.clone(),
            ports: req.ports.iter().map(to_net_port).collect(),
            ip: req.ip,
            extra_hosts: req.extra_hosts.clone(),
            dns: req.dns.clone(),
        };
        let a = match self.0.attach(&req) {
            // An --rm container that `run` reported gone may still hold the
            // port or address while its monitor releases it: wait for that
            // (docker finishes removing before `run` returns), try once more.
            Err(
                keel_net::NetError::PortTaken { .. }
                | keel_net::NetError::PortRangeTaken { .. }
                | keel_net::NetError::IpInUse { .. }
                | keel_net::NetError::AddressesExhausted(_),
            ) => {
                crate::network::wait_for_releases(&self.1, &self.0, None);
                self.0.attach(&req)
            }
            r => r,
        }
        .map_err(|e| e.to_string())?;
        Ok(keel_runtime::network::Attachment {
            ip: a.ip,
            prefix_len: a.prefix_len,
            gateway: a.gateway,
            mac: a.mac,
            ports: a.ports.iter().map(from_net_port).collect(),
            hosts_file: a.hosts_file,
            resolv_conf: a.resolv_conf,
            network: a.network,
            network_id: a.network_id,
            endpoint_id: a.endpoint_id,
            ifname: a.ifname,
            aliases: a.aliases,
        })
    }

    fn detach(&self, container_id: &str) -> std::result::Result<(), String> {
        self.0.detach(container_id).map_err(|e| e.to_string())
    }

    fn detach_network(&self, container_id: &str, network: &str) -> std::result::Result<(), String> {
        self.0
            .detach_network(container_id, network)
            .map_err(|e| e.to_string())
    }
}
