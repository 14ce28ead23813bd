use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde_json::{Value, json};

use super::*;

/// Records the scripts; fails the next `fail` applies.
#[derive(Default)]
struct FakeNft {
    scripts: Vec<String>,
    fail: usize,
}

impl Nft for FakeNft {
    fn apply(&mut self, script: &str) -> Result<(), ProxyError> {
        self.scripts.push(script.to_string());
        if self.fail > 0 {
            self.fail -= 1;
            return Err(ProxyError::Refused("nft", "fake".into()));
        }
        Ok(())
    }
}

fn svc(name: &str, ip: &str, extra: &Value) -> Value {
    let mut s = json!({
        "metadata": {"namespace": "default", "name": name},
        "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "web"},
                      {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353}]}
    });
    for (k, v) in extra.as_object().unwrap() {
        s["spec"][k] = v.clone();
    }
    s
}

fn ep(ip: &str, node: &str, ready: bool, terminating: bool) -> Value {
    json!({"addresses": [ip], "nodeName": node,
        "conditions": {"ready": ready, "serving": ready || terminating, "terminating": terminating}})
}

fn slice(eps: &[Value], http_port: u16) -> Value {
    json!({"addressType": "IPv4",
        "ports": [{"name": "http", "port": http_port, "protocol": "TCP"},
                  {"name": "dns", "port": 5353, "protocol": "UDP"}],
        "endpoints": eps})
}

#[test]
fn only_ready_endpoints_with_ports_resolved_per_slice() {
    // Two slices: the named targetPort resolved to 8080 for one pod and
    // 9090 for another (different container ports).
    let a = slice(
        &[
            ep("10.42.0.5", "n1", true, false),
            ep("10.42.0.6", "n1", false, false),
        ],
        8080,
    );
    let b = slice(
        &[
            ep("10.42.1.7", "n2", true, false),
            ep("10.42.1.8", "n2", false, true),
        ],
        9090,
    );
    let r = ServiceRules::from_api(&svc("web", "10.43.0.20", &json!({})), &[&a, &b], "n1").unwrap();
    assert_eq!(r.key, "default/web");
    assert_eq!(r.cluster_ips, vec![Ipv4Addr::new(10, 43, 0, 20)]);
    let http = &r.ports[0];
    assert_eq!(
        (http.proto, http.port, http.node_port),
        (Proto::Tcp, 80, None)
    );
    assert_eq!(
        http.endpoints,
        vec![
            Endpoint {
                ip: Ipv4Addr::new(10, 42, 0, 5),
                port: 8080,
                local: true
            },
            Endpoint {
                ip: Ipv4Addr::new(10, 42, 1, 7),
                port: 9090,
                local: false
            },
        ]
    );
    assert_eq!(r.ports[1].proto, Proto::Udp);
    assert_eq!(r.ports[1].endpoints.len(), 2);
    assert_eq!(r.affinity, None);
}

#[test]
fn headless_and_external_name_need_no_rules() {
    let h = svc("h", "None", &json!({}));
    assert_eq!(ServiceRules::from_api(&h, &[], "n1"), None);
    let e = json!({"metadata": {"namespace": "d", "name": "e"},
        "spec": {"type": "ExternalName", "externalName": "example.com"}});
    assert_eq!(ServiceRules::from_api(&e, &[], "n1"), None);
}

#[test]
fn node_ports_load_balancers_affinity_and_traffic_policy() {
    let mut s = svc(
        "lb",
        "10.43.0.30",
        &json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local",
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}),
    );
    s["spec"]["ports"][0]["nodePort"] = json!(30080);
    s["status"] = json!({"loadBalancer": {"ingress": [{"ip": "172.31.0.2"}]}});
    let a = slice(&[ep("10.42.0.5", "n1", true, false)], 8080);
    let r = ServiceRules::from_api(&s, &[&a], "n1").unwrap();
    assert_eq!(r.ports[0].node_port, Some(30080));
    assert_eq!(r.lb_ips, vec![Ipv4Addr::new(172, 31, 0, 2)]);
    assert_eq!(r.affinity, Some(60));
    assert!(r.external_local);
    let script = full_script("keel-svc-t", [&r]);
    assert!(script.contains("timeout 60s"), "{script}");
    assert!(script.contains("tcp . 30080 : goto ext-"), "{script}");
    assert!(
        script.contains("172.31.0.2 . tcp . 80 : goto ext-"),
        "{script}"
    );
    assert!(script.contains("update @aff-"), "{script}");
    // Local policy: the external chain picks local endpoints, unmasqueraded.
    let ext = script
        .lines()
        .filter(|l| l.contains(" ext-") && l.starts_with("add rule"))
        .collect::<Vec<_>>();
    assert!(
        ext.iter().any(|l| l.contains("numgen random mod 1")),
        "{ext:?}"
    );
    assert!(
        ext.iter()
            .filter(|l| l.contains(MASQ_ALL))
            .all(|l| l.contains("127.0.0.0/8")),
        "{ext:?}"
    );
    // On a node without local endpoints it drops.
    let r2 = ServiceRules::from_api(&s, &[&a], "n2").unwrap();
    assert!(full_script("t", [&r2]).contains("drop"));
    // A ClusterIP Service's nodePort field is ignored.
    let mut c = svc("c", "10.43.0.31", &json!({}));
    c["spec"]["ports"][0]["nodePort"] = json!(30081);
    let r3 = ServiceRules::from_api(&c, &[&a], "n1").unwrap();
    assert_eq!(r3.ports[0].node_port, None);
}

const MASQ_ALL: &str = "meta mark set meta mark | 0x4000";

#[test]
fn a_port_without_endpoints_rejects() {
    let r = ServiceRules::from_api(&svc("e", "10.43.0.40", &json!({})), &[], "n1").unwrap();
    let script = full_script("t", [&r]);
    assert!(
        script.contains("add element ip t no_endpoints { 10.43.0.40 . tcp . 80 }"),
        "{script}"
    );
    assert!(!script.contains("add element ip t services"), "{script}");
}

fn rules(name: &str, ip: &str, eps: &[&str]) -> ServiceRules {
    let eps: Vec<Value> = eps.iter().map(|e| ep(e, "n1", true, false)).collect();
    let s = slice(&eps, 8080);
    ServiceRules::from_api(&svc(name, ip, &json!({})), &[&s], "n1").unwrap()
}

#[test]
fn an_update_touches_only_its_service() {
    let mut p = Proxy::new(Nftables(FakeNft::default()), "t".into());
    let mut all = BTreeMap::new();
    for i in 0..50 {
        let r = rules(&format!("s{i}"), &format!("10.43.1.{i}"), &["10.42.0.9"]);
        all.insert(r.key.clone(), r);
    }
    p.sync_all(all).unwrap();
    assert_eq!(p.backend().0.scripts.len(), 1);
    let new = rules("s7", "10.43.1.7", &["10.42.0.9", "10.42.0.10"]);
    p.update("default/s7", Some(new.clone())).unwrap();
    let script = p.backend().0.scripts.last().unwrap().clone();
    // Every chain it names is s7's; other Services' addresses are absent.
    let s7 = nft::port_id(&new, &new.ports[0]);
    assert!(script.contains(&format!("svc-{s7}")), "{script}");
    assert!(script.contains("numgen random mod 2"), "{script}");
    for i in (0..50).filter(|i| *i != 7) {
        assert!(!script.contains(&format!("10.43.1.{i} ")), "{script}");
    }
    assert!(!script.contains("delete table"), "{script}");
    // Nothing changed: nothing applied.
    p.update("default/s7", Some(new)).unwrap();
    assert_eq!(p.backend().0.scripts.len(), 2);
    p.update("default/s7", None).unwrap();
    let gone = p.backend().0.scripts.last().unwrap();
    assert!(
        gone.contains(&format!("delete chain ip t svc-{s7}")),
        "{gone}"
    );
    assert!(!gone.contains("add "), "{gone}");
}

#[test]
fn a_failed_update_rebuilds_the_table() {
    let mut p = Proxy::new(Nftables(FakeNft::default()), "t".into());
    p.sync_all(BTreeMap::new()).unwrap();
    p.backend.0.fail = 1;
    let r = rules("a", "10.43.1.1", &["10.42.0.9"]);
    p.update("default/a", Some(r)).unwrap();
    let last = p.backend().0.scripts.last().unwrap();
    assert!(
        last.starts_with("add table ip t\ndelete table ip t\n"),
        "{last}"
    );
    assert!(last.contains("10.43.1.1 . tcp . 80"), "{last}");
}

#[test]
fn a_burst_of_changes_is_one_transaction() {
    let mut p = Proxy::new(Nftables(FakeNft::default()), "t".into());
    let mut all = BTreeMap::new();
    for i in 0..5 {
        let r = rules(&format!("s{i}"), &format!("10.43.1.{i}"), &["10.42.0.9"]);
        all.insert(r.key.clone(), r);
    }
    p.sync_all(all.clone()).unwrap();
    let mut burst = BTreeMap::new();
    burst.insert(
        "default/s1".to_string(),
        Some(rules("s1", "10.43.1.1", &["10.42.0.10"])),
    );
    burst.insert("default/s2".to_string(), None);
    // Unchanged: left out.
    burst.insert("default/s3".to_string(), all.get("default/s3").cloned());
    p.update_many(burst).unwrap();
    assert_eq!(p.backend().0.scripts.len(), 2);
    let script = p.backend().0.scripts.last().unwrap();
    assert!(script.contains("10.42.0.10:8080"), "{script}");
    assert!(
        script.contains("delete element ip t services { 10.43.1.2 . tcp . 80 }"),
        "{script}"
    );
    assert!(!script.contains("10.43.1.3 "), "{script}");
    // Nothing changed: nothing applied.
    p.update_many(BTreeMap::new()).unwrap();
    assert_eq!(p.backend().0.scripts.len(), 2);
    // A refused burst rebuilds the table with the burst in it.
    p.backend.0.fail = 1;
    let mut burst = BTreeMap::new();
    burst.insert("default/s4".to_string(), None);
    p.update_many(burst).unwrap();
    let last = p.backend().0.scripts.last().unwrap();
    assert!(
        last.starts_with("add table ip t\ndelete table ip t\n"),
        "{last}"
    );
    assert!(
        !last.contains("10.43.1.4 ") && last.contains("10.43.1.1 "),
        "{last}"
    );
}

#[test]
fn table_names_are_nft_identifiers() {
    assert_eq!(table_name("node-1.example"), "keel-svc-node_1_example");
}

/// The scripts are real nftables: applied in a throwaway network
/// namespace, one after the other, then the table listed and removed.
#[test]
fn scripts_apply_in_a_real_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let mut lb = svc(
        "lb",
        "10.43.0.30",
        &json!({"type": "LoadBalancer", "sessionAffinity": "ClientIP"}),
    );
    lb["spec"]["ports"][0]["nodePort"] = json!(30080);
    lb["spec"]["ports"][1]["nodePort"] = json!(30053);
    lb["status"] = json!({"loadBalancer": {"ingress": [{"ip": "172.31.0.2"}]}});
    let a = slice(&[ep("10.42.0.5", "n1", true, false)], 8080);
    let r_lb = ServiceRules::from_api(&lb, &[&a], "n1").unwrap();
    let plain = rules("p", "10.43.0.31", &["10.42.0.9", "10.42.0.10"]);
    let plain2 = rules("p", "10.43.0.31", &["10.42.0.10"]);
    let empty = ServiceRules::from_api(&svc("e", "10.43.0.32", &json!({})), &[], "n1").unwrap();
    let steps = [
        full_script("keel-svc-test", [&r_lb, &plain, &empty]),
        update_script("keel-svc-test", Some(&plain), Some(&plain2)),
        update_script("keel-svc-test", Some(&r_lb), None),
        update_script("keel-svc-test", None, Some(&r_lb)),
    ];
    let mut sh = String::from("set -e\n");
    for (i, s) in steps.iter().enumerate() {
        let f = dir.path().join(format!("{i}.nft"));
        std::fs::write(&f, s).unwrap();
        let _ = writeln!(sh, "nft -f {}", f.display());
    }
    sh.push_str("nft list table ip keel-svc-test\n");
    let f = dir.path().join("cleanup.nft");
    std::fs::write(&f, cleanup_script("keel-svc-test")).unwrap();
    let _ = writeln!(sh, "nft -f {}\nnft list tables", f.display());
    let out = Command::new("unshare")
        .args(["--net", "sh", "-c", &sh])
        .output()
        .expect("unshare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}\nsteps:\n{}",
        String::from_utf8_lossy(&out.stderr),
        steps.join("\n----\n")
    );
    assert!(
        stdout.contains("10.43.0.31 . tcp . 80 : goto svc-"),
        "{stdout}"
    );
    assert!(stdout.contains("10.42.0.10:8080"), "{stdout}");
    assert!(!stdout.contains("10.42.0.9:8080"), "{stdout}");
    assert!(stdout.contains("tcp . 30080 : goto ext-"), "{stdout}");
    assert!(stdout.contains("udp . 30053 : goto ext-"), "{stdout}");
    assert!(stdout.contains("10.43.0.32 . tcp . 80"), "{stdout}");
    // After cleanup no table is left.
    let after = stdout.rsplit("}\n").next().unwrap_or_default();
    assert!(!after.contains("keel-svc-test"), "{stdout}");
}
