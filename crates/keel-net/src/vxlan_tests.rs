use std::sync::{Arc, Mutex};

use super::*;

/// Records every call; the kernel state it models is what tests assert on.
#[derive(Clone, Default)]
struct Fake {
    log: Arc<Mutex<Vec<String>>>,
    entries: Arc<Mutex<BTreeSet<Entry>>>,
    chains: Arc<Mutex<std::collections::BTreeMap<String, Vec<String>>>>,
    device: Arc<Mutex<Option<VxlanSpec>>>,
}

impl Chains for Fake {
    fn set_chain(
        &self,
        table: &str,
        hook: &str,
        chain: &str,
        rules: &[String],
    ) -> Result<(), NetError> {
        self.chains
            .lock()
            .unwrap()
            .insert(format!("{table}/{hook}/{chain}"), rules.to_vec());
        Ok(())
    }
    fn delete_chain(&self, table: &str, hook: &str, chain: &str) -> Result<(), NetError> {
        self.chains
            .lock()
            .unwrap()
            .remove(&format!("{table}/{hook}/{chain}"));
        Ok(())
    }
}

impl OverlayKernel for Fake {
    fn link_of(&self, _ip: Ipv4Addr) -> Result<(String, u32), NetError> {
        Ok(("eth0".into(), 1500))
    }
    fn ensure_vxlan(&self, spec: &VxlanSpec) -> Result<String, NetError> {
        *self.device.lock().unwrap() = Some(spec.clone());
        Ok("0a:00:00:00:00:01".into())
    }
    fn delete_link(&self, name: &str) -> Result<(), NetError> {
        self.log.lock().unwrap().push(format!("del {name}"));
        *self.device.lock().unwrap() = None;
        // The kernel drops the device's neighbours and FDB with it.
        self.entries
            .lock()
            .unwrap()
            .retain(|e| matches!(e, Entry::Route { .. }));
        Ok(())
    }
    fn add_entries(&self, entries: &[Entry]) -> Result<(), NetError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("add {}", entries.len()));
        self.entries.lock().unwrap().extend(entries.iter().cloned());
        Ok(())
    }
    fn del_entries(&self, entries: &[Entry]) -> Result<(), NetError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("del {}", entries.len()));
        let mut s = self.entries.lock().unwrap();
        for e in entries {
            s.remove(e);
        }
        Ok(())
    }
    fn flush_routes(&self) -> Result<(), NetError> {
        self.entries
            .lock()
            .unwrap()
            .retain(|e| !matches!(e, Entry::Route { .. }));
        Ok(())
    }
}

fn local() -> Local {
    Local {
        public_ip: "172.31.0.2".parse().unwrap(),
        link: "eth0".into(),
        link_mtu: 1500,
        pod_cidr: "10.42.0.0/24".parse().unwrap(),
    }
}

fn peer(i: u8, mac: Option<&str>) -> Peer {
    Peer {
        name: format!("node-{i}"),
        public_ip: Ipv4Addr::new(172, 31, i, 2),
        pod_cidr: format!("10.42.{i}.0/24").parse().unwrap(),
        vtep_mac: mac.map(str::to_string),
    }
}

#[test]
fn vxlan_programs_route_neighbour_and_fdb_per_peer() {
    let k = Fake::default();
    let mut o = Overlay::new(k.clone(), Backend::Vxlan, local());
    assert_eq!(o.start().unwrap().as_deref(), Some("0a:00:00:00:00:01"));
    let dev = k.device.lock().unwrap().clone().unwrap();
    assert_eq!((dev.vni, dev.port, dev.mtu), (1, 8472, 1450));
    assert_eq!(dev.addr, Ipv4Addr::new(10, 42, 0, 0));
    assert_eq!(o.pod_mtu(), 1450);
    // The node itself and a peer without a VTEP MAC yet get nothing.
    let me = Peer {
        name: "self".into(),
        ..peer(0, Some("0a:00:00:00:00:01"))
    };
    o.sync(&[me, peer(1, Some("0a:00:00:00:01:01")), peer(2, None)])
        .unwrap();
    let got: Vec<Entry> = k.entries.lock().unwrap().iter().cloned().collect();
    assert_eq!(
        got,
        vec![
            Entry::Route {
                dst: "10.42.1.0/24".parse().unwrap(),
                via: "10.42.1.0".parse().unwrap(),
                dev: VXLAN_DEV.into(),
                onlink: true
            },
            Entry::Neigh {
                dev: VXLAN_DEV.into(),
                ip: "10.42.1.0".parse().unwrap(),
                mac: "0a:00:00:00:01:01".into()
            },
            Entry::Fdb {
                dev: VXLAN_DEV.into(),
                mac: "0a:00:00:00:01:01".into(),
                dst: "172.31.1.2".parse().unwrap()
            },
        ]
    );
    let chains = k.chains.lock().unwrap().clone();
    assert_eq!(
        chains[&format!("nat/POSTROUTING/{NAT_CHAIN}")],
        vec![
            "-s 10.42.0.0/24 -d 10.42.1.0/24 -j ACCEPT",
            "-s 10.42.0.0/24 -d 10.42.2.0/24 -j ACCEPT"
        ]
    );
}

#[test]
fn sync_is_incremental_and_follows_removals() {
    let k = Fake::default();
    let mut o = Overlay::new(k.clone(), Backend::Vxlan, local());
    o.start().unwrap();
    let (a, b) = (
        peer(1, Some("0a:00:00:00:01:01")),
        peer(2, Some("0a:00:00:00:02:01")),
    );
    o.sync(&[a.clone(), b.clone()]).unwrap();
    k.log.lock().unwrap().clear();
    // Unchanged: nothing touched.
    o.sync(&[a.clone(), b.clone()]).unwrap();
    assert!(k.log.lock().unwrap().is_empty());
    // b's MAC changes (its agent re-created the device): only b's neighbour and FDB move.
    let b2 = Peer {
        vtep_mac: Some("0a:00:00:00:02:02".into()),
        ..b
    };
    o.sync(&[a.clone(), b2]).unwrap();
    assert_eq!(*k.log.lock().unwrap(), vec!["del 2", "add 2"]);
    // b goes away: its three entries go.
    o.sync(std::slice::from_ref(&a)).unwrap();
    assert_eq!(k.entries.lock().unwrap().len(), 3);
    assert!(k.entries.lock().unwrap().iter().all(|e| match e {
        Entry::Route { dst, .. } => *dst == a.pod_cidr,
        Entry::Neigh { mac, .. } | Entry::Fdb { mac, .. } => mac == "0a:00:00:00:01:01",
        Entry::Flood { .. } => false,
    }));
}

#[test]
fn host_gw_routes_via_the_peer_and_cleanup_removes_everything() {
    let k = Fake::default();
    let mut o = Overlay::new(k.clone(), Backend::HostGw, local());
    assert_eq!(o.start().unwrap(), None);
    assert_eq!(o.pod_mtu(), 1500);
    o.sync(&[peer(1, None)]).unwrap();
    assert_eq!(
        k.entries
            .lock()
            .unwrap()
            .iter()
            .cloned()
            .collect::<Vec<_>>(),
        vec![Entry::Route {
            dst: "10.42.1.0/24".parse().unwrap(),
            via: "172.31.1.2".parse().unwrap(),
            dev: "eth0".into(),
            onlink: false
        }]
    );
    o.cleanup().unwrap();
    assert!(k.entries.lock().unwrap().is_empty());
    assert!(k.chains.lock().unwrap().is_empty());
    assert!(k.device.lock().unwrap().is_none());
}

#[test]
fn batch_lines_render_iproute2_syntax() {
    let l = local();
    let es = peer_entries(Backend::Vxlan, &l, &peer(3, Some("0a:00:00:00:03:01")));
    let (ip, br) = batch_lines(&es, true);
    assert_eq!(
        ip,
        "route replace 10.42.3.0/24 via 10.42.3.0 dev kvxlan.1 onlink proto 75\n\
         neigh replace 10.42.3.0 lladdr 0a:00:00:00:03:01 dev kvxlan.1 nud permanent\n"
    );
    assert_eq!(
        br,
        "fdb replace 0a:00:00:00:03:01 dev kvxlan.1 dst 172.31.3.2 self permanent\n"
    );
    let (ip, br) = batch_lines(&es, false);
    assert!(ip.starts_with("route del 10.42.3.0/24 dev kvxlan.1 proto 75\n"));
    assert_eq!(
        br,
        "fdb del 0a:00:00:00:03:01 dev kvxlan.1 dst 172.31.3.2 self\n"
    );
    assert!(only_absent(
        "RTNETLINK answers: No such process; Command failed -:1"
    ));
    assert!(!only_absent("RTNETLINK answers: Operation not permitted"));
}

#[test]
fn backend_parses() {
    assert_eq!("vxlan".parse::<Backend>().unwrap(), Backend::Vxlan);
    assert_eq!("host-gw".parse::<Backend>().unwrap(), Backend::HostGw);
    assert!(
        "udp"
            .parse::<Backend>()
            .unwrap_err()
            .contains("vxlan or host-gw")
    );
}
