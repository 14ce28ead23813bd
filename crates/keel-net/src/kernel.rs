//! Every kernel effect keel-net has, behind [`Kernel`], and its real
//! implementation [`HostKernel`] driving iproute2 (`ip -batch`) and
//! `iptables-save`/`iptables-restore --noflush` (whichever backend, nft or legacy,
//! the host's `iptables` alternative selects, so rules land where its admin looks).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ipnet::Ipv4Net;

use crate::NetError;
use crate::ports::Protocol;

/// One veth pair to create: `host_if` on the bridge, `ifname` in the netns.
#[derive(Debug, Clone)]
pub struct VethSpec {
    pub host_if: String,
    pub bridge: String,
    pub netns: PathBuf,
    pub mac: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    /// `eth0`, `eth1`, … inside the container.
    pub ifname: String,
    /// Only the container's first network carries its default route.
    pub default_route: bool,
    /// Both ends' MTU (`None`: the kernel's default); the pod network's is
    /// the link's less the VXLAN overhead.
    pub mtu: Option<u32>,
}

/// One macvlan or ipvlan link to create on `parent`, directly inside the
/// netns as `ifname` (the container's only link on such a network).
#[derive(Debug, Clone)]
pub struct SublinkSpec {
    /// `macvlan` or `ipvlan`.
    pub kind: String,
    /// `bridge`, `private`, `vepa`, `passthru` (macvlan); `l2`, `l3`, `l3s` (ipvlan).
    pub mode: String,
    pub parent: String,
    pub netns: PathBuf,
    pub ifname: String,
    /// macvlan only: ipvlan links share their parent's address.
    pub mac: Option<String>,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    /// `None`: no default route (not the primary network, or an internal one).
    pub gateway: Option<Ipv4Addr>,
}

/// An overlay network's VXLAN device, a port of the network's bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanPort {
    pub name: String,
    pub vni: u32,
    /// This node's address (the device's source; other nodes send to it).
    pub local: Ipv4Addr,
    pub port: u16,
    pub bridge: String,
    /// The link's less VXLAN's 50 bytes (`None`: the kernel's choice).
    pub mtu: Option<u32>,
    /// Its owner mark, as the bridge's ([`Kernel::ensure_bridge`]).
    pub owner: String,
}

/// One iptables rule; `tag` goes into `-m comment` so removal can find it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub table: &'static str,
    pub chain: &'static str,
    pub spec: String,
    pub tag: String,
}

/// Kernel operations keel-net needs. Implementations must be idempotent where noted.
pub trait Kernel: Send + Sync {
    /// Creates bridge `name` with `gateway/prefix`, marks it with `owner`
    /// (its alias: which keel root made it, see [`Kernel::owned_links`])
    /// and brings it up. Returns false when it existed already (nothing
    /// changed then).
    fn ensure_bridge(
        &self,
        name: &str,
        gateway: Ipv4Addr,
        prefix_len: u8,
        owner: &str,
    ) -> Result<bool, NetError>;
    /// Every link carrying an owner mark (bridges, overlay networks' VXLAN
    /// devices), as `(name, owner)`: what a root whose state was deleted
    /// left behind is found by its mark.
    fn owned_links(&self) -> Result<Vec<(String, String)>, NetError>;
    /// The IPv4 addresses of link `name` (none when it is absent).
    fn link_addrs(&self, name: &str) -> Result<Vec<Ipv4Net>, NetError>;
    /// Removes every keel rule naming link `name` (`-i`/`-o`) and the rules
    /// sharing their tags (a published port's DNAT names no link): what a
    /// bridge of a forgotten root left in iptables.
    fn remove_link_rules(&self, name: &str) -> Result<(), NetError>;
    /// Whether a network interface of that name exists.
    fn link_exists(&self, name: &str) -> bool;
    /// A host-wide lock (across keel roots) held while a subnet is chosen
    /// against the host's routes and its bridge created, so two roots never
    /// pick the same subnet. `None` where there is nothing to share.
    fn lock_host(&self) -> Result<Option<std::fs::File>, NetError> {
        Ok(None)
    }
    /// Deletes a link; absent is fine.
    fn delete_link(&self, name: &str) -> Result<(), NetError>;
    /// Creates the veth pair with the peer as `ifname` in the netns, sets its
    /// address and (with `default_route`) the default route.
    fn add_veth(&self, spec: &VethSpec) -> Result<(), NetError>;
    /// Creates a macvlan/ipvlan link inside the netns with its address and
    /// (with a gateway) the default route.
    fn add_sublink(&self, spec: &SublinkSpec) -> Result<(), NetError>;
    /// Deletes link `ifname` inside the namespace at `netns`; a namespace or
    /// link that is gone already is fine.
    fn delete_link_in(&self, netns: &Path, ifname: &str) -> Result<(), NetError>;
    /// Creates keel's chains and the jumps into them, if missing.
    fn ensure_chains(&self) -> Result<(), NetError>;
    /// Removes keel's chains that hold no rule, with the jumps into them
    /// (called under [`Kernel::lock_host`], which every bridge's creation
    /// holds too). Default: nothing to remove.
    fn remove_empty_chains(&self) -> Result<(), NetError> {
        Ok(())
    }
    fn add_rules(&self, rules: &[Rule]) -> Result<(), NetError>;
    /// Removes every rule carrying `tag`; none present is fine.
    fn remove_rules(&self, tag: &str) -> Result<(), NetError>;
    /// Removes exactly `rules` (as added); when some are gone already, falls
    /// back to removing by their tags, so it stays idempotent.
    fn delete_rules(&self, rules: &[Rule]) -> Result<(), NetError> {
        let mut tags: Vec<&str> = rules.iter().map(|r| r.tag.as_str()).collect();
        tags.dedup();
        tags.into_iter().try_for_each(|t| self.remove_rules(t))
    }
    /// Writes `/proc/sys/<key with . as />`.
    fn sysctl(&self, key: &str, value: &str) -> Result<(), NetError>;
    /// Whether binding `ip:port` fails because something holds it (`Ok(true)`);
    /// other bind failures (say, `ip` is not an address of this host) are errors.
    fn port_in_use(
        &self,
        ip: Option<Ipv4Addr>,
        port: u16,
        proto: Protocol,
    ) -> Result<bool, NetError>;
    /// A port the kernel considers free right now.
    fn free_port(&self, ip: Option<Ipv4Addr>, proto: Protocol) -> Result<u16, NetError>;
    /// IPv4 routes of the host (to choose subnets that do not collide).
    fn routes(&self) -> Result<Vec<Ipv4Net>, NetError>;
    /// Creates VXLAN device `spec.name` (learning nothing: its FDB entries
    /// come from the cluster) as a port of `spec.bridge` and brings it up;
    /// an existing one is kept.
    fn ensure_vxlan_port(&self, spec: &VxlanPort) -> Result<(), NetError> {
        Err(NetError::Overlay(format!(
            "{}: this kernel has no overlay networks",
            spec.name
        )))
    }
    /// Adds and removes overlay networks' FDB entries.
    fn vxlan_entries(
        &self,
        add: &[crate::vxlan::Entry],
        del: &[crate::vxlan::Entry],
    ) -> Result<(), NetError> {
        if add.is_empty() && del.is_empty() {
            return Ok(());
        }
        Err(NetError::Overlay(
            "this kernel has no overlay networks".into(),
        ))
    }
}

/// The real kernel, through iproute2 and iptables in the caller's network namespace.
#[derive(Debug, Default)]
pub struct HostKernel;

/// Runs `prog args` with `stdin`, returning stdout or the trimmed stderr.
pub(crate) fn run(prog: &str, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot run {prog}: {e}"))?;
    if let Some(s) = stdin {
        let mut w = child.stdin.take().expect("piped");
        w.write_all(s.as_bytes())
            .map_err(|e| format!("writing to {prog}: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for {prog}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let err = err.trim();
        Err(if err.is_empty() {
            format!("{prog} exited with {}", out.status)
        } else {
            err.replace('\n', "; ")
        })
    }
}

/// Runs `ip -batch -` inside the network namespace at `netns`. A short-lived
/// thread enters it (setns affects only the calling thread) and the child `ip`
/// inherits that thread's namespace; cheaper than spawning nsenter.
fn ip_batch_in(netns: &Path, batch: String) -> Result<(), String> {
    let ns =
        std::fs::File::open(netns).map_err(|e| format!("cannot open {}: {e}", netns.display()))?;
    std::thread::scope(|s| {
        s.spawn(move || {
            rustix::thread::move_into_link_name_space(
                ns.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .map_err(|e| format!("cannot enter {}: {e}", netns.display()))?;
            run("ip", &["-batch", "-"], Some(&batch)).map(|_| ())
        })
        .join()
        .unwrap_or_else(|_| Err("netns thread panicked".into()))
    })
}

/// Whether a link exists in the calling thread's network namespace: one
/// SIOCGIFINDEX ioctl instead of spawning `ip` (sysfs would show the namespace
/// it was mounted in, not necessarily ours).
pub(crate) fn link_exists(name: &str) -> bool {
    use rustix::net::{AddressFamily, SocketType, netdevice, socket};
    socket(AddressFamily::INET, SocketType::DGRAM, None)
        .and_then(|s| netdevice::name_to_index(&s, name))
        .is_ok()
}

/// Shared by every keel root on the host (tmpfs: nothing to keep across boots).
const HOST_LOCK: &str = "/run/keel/net.lock";

/// The `iptables-save` line form of a rule (without `-A chain`), as we write it.
fn rule_line(op: &str, r: &Rule) -> String {
    format!(
        "{op} {} {} -m comment --comment {} ",
        r.chain, r.spec, r.tag
    )
    .trim_end()
    .to_string()
}

/// Chains keel owns and the jumps into them: (table, chain, jump rule in a built-in chain).
const CHAINS: &[(&str, &str, &str)] = &[
    (
        "nat",
        "KEEL",
        "PREROUTING -m addrtype --dst-type LOCAL -j KEEL",
    ),
    ("nat", "KEEL", "OUTPUT -m addrtype --dst-type LOCAL -j KEEL"),
    ("nat", "KEEL-POSTROUTING", "POSTROUTING -j KEEL-POSTROUTING"),
    ("filter", "KEEL-FORWARD", "FORWARD -j KEEL-FORWARD"),
];

/// Whether `target` is one of keel's filtering chains that must see
/// forwarded packets before the pod network's accepts: `KEEL-NETPOL` and
/// the service proxy's `KEEL-<6 hex>-FILTER`.
fn is_keel_filter(target: &str) -> bool {
    target == crate::netpol::CHAIN
        || target
            .strip_prefix("KEEL-")
            .and_then(|r| r.strip_suffix("-FILTER"))
            .is_some_and(|h| h.len() == 6 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The 1-based FORWARD position for the pod network's accept jump: just
/// below the last of keel's filtering jumps, or first when there is none.
fn forward_slot(have_rules: &[(String, String)]) -> usize {
    have_rules
        .iter()
        .filter(|(t, r)| t == "filter" && r.starts_with("FORWARD "))
        .enumerate()
        .filter(|(_, (_, r))| {
            r.strip_prefix("FORWARD -j ")
                .is_some_and(|c| is_keel_filter(c.trim()))
        })
        .map(|(i, _)| i + 2)
        .last()
        .unwrap_or(1)
}

/// Whether an `iptables-save` line carries exactly comment `tag`.
fn has_tag(line: &str, tag: &str) -> bool {
    line.contains(&format!("--comment \"{tag}\""))
        || line.ends_with(&format!("--comment {tag}"))
        || line.contains(&format!("--comment {tag} "))
}

/// The keel tag (`keel:…`, `keel-net:…`) of an `iptables-save` line.
fn keel_tag(line: &str) -> Option<&str> {
    let (_, rest) = line.split_once("--comment ")?;
    let tag = match rest.strip_prefix('"') {
        Some(q) => q.split('"').next()?,
        None => rest.split_whitespace().next()?,
    };
    (tag.starts_with("keel:") || tag.starts_with("keel-net:")).then_some(tag)
}

/// The lines of `iptables-save` output `saved` in keel's tables (`nat`,
/// `filter`), each with its table.
fn table_lines(saved: &str) -> impl Iterator<Item = (&'static str, &str)> {
    let mut table = "";
    saved.lines().filter_map(move |line| {
        if let Some(t) = line.strip_prefix('*') {
            table = match t {
                "nat" => "nat",
                "filter" => "filter",
                _ => "",
            };
            return None;
        }
        (!table.is_empty()).then_some((table, line))
    })
}

/// The `-D` lines (per table) removing every keel rule of `saved` that names
/// link `name` with `-i`/`-o`, and every rule sharing a tag with one.
fn link_rule_deletions(saved: &str, name: &str) -> Vec<(&'static str, String)> {
    let tables = || table_lines(saved).filter(|(_, l)| l.starts_with("-A "));
    let names_link = |line: &str| {
        let w: Vec<&str> = line.split_whitespace().collect();
        w.windows(2)
            .any(|p| matches!(p[0], "-i" | "-o") && p[1] == name)
    };
    let tags: BTreeSet<&str> = tables()
        .filter(|(_, l)| names_link(l))
        .filter_map(|(_, l)| keel_tag(l))
        .collect();
    tables()
        .filter(|(_, l)| keel_tag(l).is_some_and(|t| tags.contains(t)))
        .map(|(t, l)| (t, format!("-D {}", &l[3..])))
        .collect()
}

/// The lines removing keel's chains when `saved` shows them all empty: the
/// jumps into them, then the chains. One with a rule keeps them all: a
/// bridge's rules are in two of them, and a published port's DNAT goes
/// into `KEEL` without making it again.
fn empty_chain_removals(saved: &str) -> Vec<(&'static str, String)> {
    let section = |t: &str| -> Vec<&str> {
        table_lines(saved)
            .filter(|(x, _)| *x == t)
            .map(|(_, l)| l)
            .collect()
    };
    let mut jumps = Vec::new();
    let mut chains: Vec<(&'static str, String)> = Vec::new();
    for (t, chain, jump) in CHAINS {
        let lines = section(t);
        let declared = lines.iter().any(|l| {
            l.strip_prefix(':')
                .and_then(|c| c.split_whitespace().next())
                == Some(*chain)
        });
        let used = lines.iter().any(|l| {
            l.strip_prefix("-A ")
                .and_then(|r| r.split_whitespace().next())
                == Some(*chain)
        });
        if used {
            return Vec::new();
        }
        if !declared {
            continue;
        }
        if lines.iter().any(|l| l.strip_prefix("-A ") == Some(*jump)) {
            jumps.push((*t, format!("-D {jump}")));
        }
        let drop = (*t, format!("-X {chain}"));
        if !chains.contains(&drop) {
            chains.push(drop);
        }
    }
    jumps.extend(chains);
    jumps
}

/// `iptables-restore --noflush` of `lines` (`(table, line)`), one section
/// per table.
fn iptables_restore(lines: &[(&str, String)]) -> Result<(), NetError> {
    let mut b = crate::restore::Batch::default();
    for (t, l) in lines {
        b.push(t, l.as_str());
    }
    b.apply().map_err(NetError::Iptables)
}

pub(crate) fn iptables_save() -> Result<String, NetError> {
    crate::restore::save(None).map_err(NetError::Iptables)
}

impl Kernel for HostKernel {
    fn ensure_bridge(
        &self,
        name: &str,
        gateway: Ipv4Addr,
        prefix_len: u8,
        owner: &str,
    ) -> Result<bool, NetError> {
        let create_err = |e: String| NetError::CreateBridge {
            name: name.to_string(),
            reason: e,
        };
        if link_exists(name) {
            return Ok(false);
        }
        match run("ip", &["link", "add", "name", name, "type", "bridge"], None) {
            Ok(_) => {}
            Err(e) if e.contains("File exists") => return Ok(false),
            Err(e) => return Err(create_err(e)),
        }
        // The mark is a double-quoted batch word; `owner_mark` keeps quotes,
        // backslashes and newlines out of it.
        let batch = format!(
            "link set dev {name} alias \"{owner}\"\naddr add {gateway}/{prefix_len} dev {name}\nlink set dev {name} up\n"
        );
        run("ip", &["-batch", "-"], Some(&batch)).map_err(create_err)?;
        Ok(true)
    }

    fn link_exists(&self, name: &str) -> bool {
        link_exists(name)
    }

    fn owned_links(&self) -> Result<Vec<(String, String)>, NetError> {
        let out = run("ip", &["-j", "link", "show"], None).map_err(NetError::ListLinks)?;
        let links: Vec<serde_json::Value> =
            serde_json::from_str(&out).map_err(|e| NetError::ListLinks(e.to_string()))?;
        Ok(links
            .iter()
            .filter_map(|l| {
                Some((
                    l["ifname"].as_str()?.to_string(),
                    l["ifalias"].as_str()?.to_string(),
                ))
            })
            .collect())
    }

    fn link_addrs(&self, name: &str) -> Result<Vec<Ipv4Net>, NetError> {
        if !link_exists(name) {
            return Ok(Vec::new());
        }
        let out = run("ip", &["-j", "-4", "addr", "show", "dev", name], None)
            .map_err(NetError::ListLinks)?;
        let links: Vec<serde_json::Value> =
            serde_json::from_str(&out).map_err(|e| NetError::ListLinks(e.to_string()))?;
        Ok(links
            .iter()
            .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
            .filter_map(|a| {
                let ip: Ipv4Addr = a["local"].as_str()?.parse().ok()?;
                Ipv4Net::new(ip, u8::try_from(a["prefixlen"].as_u64()?).ok()?).ok()
            })
            .collect())
    }

    fn remove_link_rules(&self, name: &str) -> Result<(), NetError> {
        let saved = iptables_save()?;
        let lines = link_rule_deletions(&saved, name);
        iptables_restore(
            &lines
                .iter()
                .map(|(t, l)| (*t, l.clone()))
                .collect::<Vec<_>>(),
        )
    }

    fn lock_host(&self) -> Result<Option<std::fs::File>, NetError> {
        let path = Path::new(HOST_LOCK);
        let err = |e: std::io::Error| NetError::Lock {
            path: path.to_path_buf(),
            source: e,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let f = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(err)?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| err(e.into()))?;
        Ok(Some(f))
    }

    fn delete_link(&self, name: &str) -> Result<(), NetError> {
        if !link_exists(name) {
            return Ok(());
        }
        match run("ip", &["link", "del", "dev", name], None) {
            Ok(_) => Ok(()),
            // Gone meanwhile: a veth also goes when the namespace holding its
            // peer is torn down, which the kernel does asynchronously.
            Err(_) if !link_exists(name) => Ok(()),
            Err(e) => Err(NetError::DeleteLink {
                name: name.to_string(),
                reason: e,
            }),
        }
    }

    fn add_veth(&self, s: &VethSpec) -> Result<(), NetError> {
        // The peer is created directly inside the netns under its final name, so
        // it never needs renaming and never clashes with the host's eth0.
        // Hairpin: with br_netfilter, a container's own connection to its
        // published port on a host address is DNAT-ed and bridged back out the
        // port it came in by.
        let ns = s.netns.display().to_string();
        // ip's batch parser takes double-quoted words, so paths with spaces are fine.
        if ns.contains(['"', '\n', '\\']) {
            return Err(NetError::CreateVeth {
                name: s.host_if.clone(),
                reason: format!("unsupported character in namespace path {ns:?}"),
            });
        }
        let mtu = s.mtu.map(|m| format!(" mtu {m}")).unwrap_or_default();
        let host = format!(
            "link add {h}{mtu} type veth peer name {ifname}{mtu} address {mac} netns \"{ns}\"\n\
             link set dev {h} master {br} up\n\
             link set dev {h} type bridge_slave hairpin on\n",
            h = s.host_if,
            ifname = s.ifname,
            mac = s.mac,
            br = s.bridge,
        );
        run("ip", &["-batch", "-"], Some(&host)).map_err(|e| NetError::CreateVeth {
            name: s.host_if.clone(),
            reason: e,
        })?;
        let mut inside = format!(
            "link set dev lo up\naddr add {ip}/{p} dev {i}\nlink set dev {i} up\n",
            ip = s.ip,
            p = s.prefix_len,
            i = s.ifname,
        );
        if s.default_route {
            let _ = writeln!(
                inside,
                "route add default via {} dev {}",
                s.gateway, s.ifname
            );
        }
        ip_batch_in(&s.netns, inside).map_err(|e| {
            let _ = self.delete_link(&s.host_if);
            NetError::ConfigureNetns {
                netns: s.netns.clone(),
                reason: e,
            }
        })
    }

    fn add_sublink(&self, s: &SublinkSpec) -> Result<(), NetError> {
        let ns = s.netns.display().to_string();
        let err = |reason: String| NetError::CreateSublink {
            kind: s.kind.clone(),
            parent: s.parent.clone(),
            reason,
        };
        if ns.contains(['"', '\n', '\\']) {
            return Err(err(format!(
                "unsupported character in namespace path {ns:?}"
            )));
        }
        // Created straight in the container's namespace (the parent is looked
        // up in ours), so its name never clashes with a host interface.
        let mac = s
            .mac
            .as_ref()
            .map(|m| format!(" address {m}"))
            .unwrap_or_default();
        let add = format!(
            "link add link {p} name {i}{mac} netns \"{ns}\" type {k} mode {m}\n",
            p = s.parent,
            i = s.ifname,
            k = s.kind,
            m = s.mode,
        );
        run("ip", &["-batch", "-"], Some(&add)).map_err(err)?;
        let mut inside = format!(
            "link set dev lo up\naddr add {ip}/{p} dev {i}\nlink set dev {i} up\n",
            ip = s.ip,
            p = s.prefix_len,
            i = s.ifname,
        );
        if let Some(gw) = s.gateway {
            let _ = writeln!(inside, "route add default via {gw} dev {}", s.ifname);
        }
        ip_batch_in(&s.netns, inside).map_err(|e| {
            let _ = self.delete_link_in(&s.netns, &s.ifname);
            NetError::ConfigureNetns {
                netns: s.netns.clone(),
                reason: e,
            }
        })
    }

    fn delete_link_in(&self, netns: &Path, ifname: &str) -> Result<(), NetError> {
        if !netns.exists() {
            return Ok(());
        }
        match ip_batch_in(netns, format!("link del dev {ifname}\n")) {
            Ok(()) => Ok(()),
            // Gone with its namespace, or the namespace file is no nsfs mount any more.
            Err(e)
                if e.contains("Cannot find device")
                    || e.contains("cannot open")
                    || e.contains("cannot enter") =>
            {
                Ok(())
            }
            Err(e) => Err(NetError::DeleteLink {
                name: ifname.to_string(),
                reason: e,
            }),
        }
    }

    fn ensure_chains(&self) -> Result<(), NetError> {
        let saved = iptables_save()?;
        let mut have_chains: Vec<(String, String)> = Vec::new();
        let mut have_rules: Vec<(String, String)> = Vec::new();
        for (table, line) in table_lines(&saved) {
            if let Some(c) = line.strip_prefix(':') {
                let name = c.split_whitespace().next().unwrap_or_default();
                have_chains.push((table.to_string(), name.to_string()));
            } else if let Some(r) = line.strip_prefix("-A ") {
                have_rules.push((table.to_string(), r.to_string()));
            }
        }
        let mut lines: Vec<(&str, String)> = Vec::new();
        for (t, chain, jump) in CHAINS {
            if !have_chains.iter().any(|(ht, hc)| ht == t && hc == chain)
                && !lines
                    .iter()
                    .any(|(lt, l)| lt == t && l == &format!("-N {chain}"))
            {
                lines.push((t, format!("-N {chain}")));
            }
            if !have_rules.iter().any(|(ht, hr)| ht == t && hr == jump) {
                // Insert (not append) into FORWARD so an admin's DROP policy rules
                // further down do not shadow keel's accepts, yet below keel's
                // own rejects (NetworkPolicy, the service proxy), which the
                // accept would otherwise bypass.
                let op = if jump.starts_with("FORWARD") {
                    format!("-I FORWARD {}", forward_slot(&have_rules))
                } else {
                    "-A".to_string()
                };
                let jump = if jump.starts_with("FORWARD") {
                    jump.trim_start_matches("FORWARD ")
                } else {
                    jump
                };
                lines.push((t, format!("{op} {jump}")));
            }
        }
        iptables_restore(&lines)
    }

    fn remove_empty_chains(&self) -> Result<(), NetError> {
        let saved = iptables_save()?;
        iptables_restore(&empty_chain_removals(&saved))
    }

    fn add_rules(&self, rules: &[Rule]) -> Result<(), NetError> {
        let lines: Vec<(&str, String)> = rules
            .iter()
            .map(|r| (r.table, rule_line("-A", r)))
            .collect();
        iptables_restore(&lines)
    }

    fn delete_rules(&self, rules: &[Rule]) -> Result<(), NetError> {
        // One iptables-restore of exact -D lines; the save-and-scan path only
        // when that fails because a rule is missing.
        let lines: Vec<(&str, String)> = rules
            .iter()
            .map(|r| (r.table, rule_line("-D", r)))
            .collect();
        if iptables_restore(&lines).is_ok() {
            return Ok(());
        }
        let mut tags: Vec<&str> = rules.iter().map(|r| r.tag.as_str()).collect();
        tags.dedup();
        tags.into_iter().try_for_each(|t| self.remove_rules(t))
    }

    fn remove_rules(&self, tag: &str) -> Result<(), NetError> {
        let saved = iptables_save()?;
        let mut lines: Vec<(&str, String)> = Vec::new();
        for (table, line) in table_lines(&saved) {
            if let Some(r) = line.strip_prefix("-A ")
                && has_tag(line, tag)
            {
                // iptables-save prints rules in a form -D accepts verbatim.
                lines.push((table, format!("-D {r}")));
            }
        }
        iptables_restore(&lines)
    }

    fn sysctl(&self, key: &str, value: &str) -> Result<(), NetError> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        std::fs::write(&path, value).map_err(|e| NetError::Sysctl {
            key: key.to_string(),
            source: e,
        })
    }

    fn port_in_use(
        &self,
        ip: Option<Ipv4Addr>,
        port: u16,
        proto: Protocol,
    ) -> Result<bool, NetError> {
        let addr = SocketAddr::new(IpAddr::V4(ip.unwrap_or(Ipv4Addr::UNSPECIFIED)), port);
        let res = match proto {
            Protocol::Tcp => TcpListener::bind(addr).map(drop),
            Protocol::Udp => UdpSocket::bind(addr).map(drop),
        };
        match res {
            Ok(()) => Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Ok(true),
            Err(e) => Err(NetError::PublishAddress {
                addr: addr.ip(),
                source: e,
            }),
        }
    }

    fn free_port(&self, ip: Option<Ipv4Addr>, proto: Protocol) -> Result<u16, NetError> {
        let addr = SocketAddr::new(IpAddr::V4(ip.unwrap_or(Ipv4Addr::UNSPECIFIED)), 0);
        let port = match proto {
            Protocol::Tcp => TcpListener::bind(addr).and_then(|l| l.local_addr()),
            Protocol::Udp => UdpSocket::bind(addr).and_then(|l| l.local_addr()),
        };
        port.map(|a| a.port()).map_err(NetError::NoFreePort)
    }

    fn ensure_vxlan_port(&self, s: &VxlanPort) -> Result<(), NetError> {
        let err = |e: String| NetError::Overlay(format!("{}: {e}", s.name));
        if !link_exists(&s.name) {
            // No `dev`: the underlay is whatever routes to the other nodes.
            crate::vxlan::add_vxlan(&s.name, s.vni, s.local, None, s.port).map_err(err)?;
        }
        let mtu = s.mtu.map(|m| format!(" mtu {m}")).unwrap_or_default();
        let batch = format!(
            "link set dev {n} alias \"{o}\"\nlink set dev {n}{mtu} master {b}\nlink set dev {n} up\n",
            n = s.name,
            o = s.owner,
            b = s.bridge
        );
        run("ip", &["-batch", "-"], Some(&batch))
            .map(|_| ())
            .map_err(err)
    }

    fn vxlan_entries(
        &self,
        add: &[crate::vxlan::Entry],
        del: &[crate::vxlan::Entry],
    ) -> Result<(), NetError> {
        use crate::vxlan::{HostOverlay, OverlayKernel};
        if !del.is_empty() {
            HostOverlay.del_entries(del)?;
        }
        if !add.is_empty() {
            HostOverlay.add_entries(add)?;
        }
        Ok(())
    }

    fn routes(&self) -> Result<Vec<Ipv4Net>, NetError> {
        let out = run("ip", &["-4", "route", "show", "table", "all"], None)
            .map_err(NetError::ListRoutes)?;
        Ok(out
            .lines()
            .filter_map(|l| {
                let dst = l.split_whitespace().next()?;
                // Skip `default`, broadcast/local entries and the like; only networks can collide.
                if l.starts_with("broadcast") || l.starts_with("local") || l.starts_with("default")
                {
                    return None;
                }
                dst.parse::<Ipv4Net>()
                    .ok()
                    .or_else(|| dst.parse::<Ipv4Addr>().ok().map(Ipv4Net::from))
            })
            .filter(|n| !n.network().is_loopback())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_matching_is_exact() {
        let l = "-A KEEL -p tcp -m tcp --dport 80 -m comment --comment \"keel:abc\" -j DNAT --to-destination 1.2.3.4:80";
        assert!(has_tag(l, "keel:abc"));
        assert!(!has_tag(l, "keel:ab"));
    }

    #[test]
    fn only_empty_chains_go_with_their_jumps() {
        let saved = "*nat\n:PREROUTING ACCEPT [0:0]\n:KEEL - [0:0]\n:KEEL-POSTROUTING - [0:0]\n\
-A PREROUTING -m addrtype --dst-type LOCAL -j KEEL\n\
-A OUTPUT -m addrtype --dst-type LOCAL -j KEEL\n\
-A POSTROUTING -j KEEL-POSTROUTING\n\
COMMIT\n\
*filter\n:KEEL-FORWARD - [0:0]\n-A FORWARD -j KEEL-FORWARD\nCOMMIT\n";
        let got: Vec<String> = empty_chain_removals(saved)
            .into_iter()
            .map(|(t, l)| format!("{t} {l}"))
            .collect();
        assert_eq!(
            got,
            [
                "nat -D PREROUTING -m addrtype --dst-type LOCAL -j KEEL",
                "nat -D OUTPUT -m addrtype --dst-type LOCAL -j KEEL",
                "nat -D POSTROUTING -j KEEL-POSTROUTING",
                "filter -D FORWARD -j KEEL-FORWARD",
                "nat -X KEEL",
                "nat -X KEEL-POSTROUTING",
                "filter -X KEEL-FORWARD",
            ]
        );
        assert!(empty_chain_removals("*nat\nCOMMIT\n").is_empty());
        // A rule in any of them keeps them all.
        let busy = saved.replace(
            "-A FORWARD -j KEEL-FORWARD\n",
            "-A FORWARD -j KEEL-FORWARD\n-A KEEL-FORWARD -i keel0 -j ACCEPT\n",
        );
        assert!(empty_chain_removals(&busy).is_empty());
    }

    #[test]
    fn a_links_rules_go_with_their_tags_and_no_others() {
        let saved = "*nat\n:KEEL - [0:0]\n\
-A KEEL -d 127.0.0.1/32 -p tcp -m tcp --dport 8080 -m comment --comment \"keel:c1\" -j DNAT --to-destination 172.17.0.2:80\n\
-A KEEL-POSTROUTING -s 172.17.0.0/16 ! -o keel0-1a2b3c4d -m comment --comment keel-net:aaaaaaaaaaaa -j MASQUERADE\n\
-A KEEL-POSTROUTING -s 172.18.0.0/16 ! -o keel0-1a2b3c4d5 -m comment --comment keel-net:bbbbbbbbbbbb -j MASQUERADE\n\
COMMIT\n*filter\n\
-A KEEL-FORWARD -d 172.17.0.2/32 ! -i keel0-1a2b3c4d -o keel0-1a2b3c4d -p tcp -m tcp --dport 80 -m comment --comment \"keel:c1\" -j ACCEPT\n\
-A KEEL-FORWARD -i keel0-1a2b3c4d -o keel+ -m comment --comment keel-net:aaaaaaaaaaaa -j DROP\n\
-A KEEL-FORWARD -i keel0-1a2b3c4d -j ACCEPT\n\
-A FORWARD -i keel0-1a2b3c4d -m comment --comment admin -j ACCEPT\n\
COMMIT\n";
        let del = link_rule_deletions(saved, "keel0-1a2b3c4d");
        let got: Vec<String> = del.iter().map(|(t, l)| format!("{t} {l}")).collect();
        assert_eq!(got.len(), 4, "{got:#?}");
        assert!(
            got[0].starts_with("nat -D KEEL -d 127.0.0.1/32"),
            "{got:#?}"
        );
        assert!(
            got.iter()
                .all(|l| !l.contains("bbbbbbbbbbbb") && !l.contains("admin"))
        );
        // Rules without a keel tag (the admin's, untagged ones) are never touched.
        assert!(got.iter().all(|l| l.contains("--comment")));
    }

    #[test]
    fn the_pod_accepts_go_below_keels_rejects_and_above_the_admins() {
        let rules = |v: &[&str]| -> Vec<(String, String)> {
            v.iter()
                .map(|r| ("filter".to_string(), (*r).to_string()))
                .collect()
        };
        assert_eq!(forward_slot(&[]), 1);
        assert_eq!(forward_slot(&rules(&["FORWARD -j DOCKER-USER"])), 1);
        assert_eq!(
            forward_slot(&rules(&[
                "FORWARD -j KEEL-NETPOL",
                "FORWARD -j KEEL-0a1b2c-FILTER",
                "FORWARD -j DROP",
            ])),
            3
        );
        assert_eq!(
            forward_slot(&rules(&[
                "INPUT -j KEEL-0a1b2c-FILTER",
                "FORWARD -j KEEL-0a1b2c-FILTER",
                "FORWARD -s 10.0.0.0/8 -j DROP",
            ])),
            2
        );
        // Only keel's own filtering chains count.
        assert!(!is_keel_filter("KEEL-FORWARD"));
        assert!(!is_keel_filter("KEEL-zzzzzz-FILTER"));
    }
}
