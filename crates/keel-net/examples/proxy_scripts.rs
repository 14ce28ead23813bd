//! Writes the nftables scripts of `N` Services (3 endpoints each) for
//! scripts/bench-services.sh: `full.nft` (the table with all of them),
//! `update.nft` (one Service's endpoints change: what keel's proxy applies),
//! `burst.nft` (10 Services' changes in one transaction), and
//! `iptables.rules` (the same Services as kube-proxy's iptables mode
//! writes them, which it restores whole on every change).
//!
//! Usage: `proxy_scripts N DIR`

use std::fmt::Write as _;

use keel_net::proxy::{ServiceRules, full_script, update_script};
use serde_json::json;

fn service(i: usize, eps: &[String]) -> ServiceRules {
    let ip = format!("10.43.{}.{}", 100 + i / 250, 1 + i % 250);
    let svc = json!({"metadata": {"namespace": "bench", "name": format!("s{i}")},
        "spec": {"type": "NodePort", "clusterIP": ip, "clusterIPs": [ip],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30000 + i}]}});
    let endpoints: Vec<_> = eps
        .iter()
        .map(|e| json!({"addresses": [e], "conditions": {"ready": true}, "nodeName": "n"}))
        .collect();
    let slice = json!({"addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}], "endpoints": endpoints});
    ServiceRules::from_api(&svc, &[&slice], "n").expect("rules")
}

fn eps(i: usize, round: usize) -> Vec<String> {
    (0..3)
        .map(|k| {
            format!(
                "10.42.{}.{}",
                (i * 3 + k + round) / 250,
                1 + (i * 3 + k + round) % 250
            )
        })
        .collect()
}

/// kube-proxy's iptables mode for the same Services: per Service a
/// KUBE-SVC chain with probability rules, per endpoint a KUBE-SEP chain.
fn iptables(all: &[ServiceRules]) -> String {
    let mut out = String::from(
        "*nat\n:KEELB-SERVICES - [0:0]\n:KEELB-NODEPORTS - [0:0]\n:KEELB-MARK-MASQ - [0:0]\n",
    );
    let mut rules = String::new();
    for (i, s) in all.iter().enumerate() {
        let svc = format!("KEELB-SVC-{i:06}");
        let _ = writeln!(out, ":{svc} - [0:0]");
        let p = &s.ports[0];
        let _ = writeln!(
            rules,
            "-A KEELB-SERVICES -d {}/32 -p tcp -m tcp --dport {} -j {svc}",
            s.cluster_ips[0], p.port
        );
        if let Some(np) = p.node_port {
            let _ = writeln!(
                rules,
                "-A KEELB-NODEPORTS -p tcp -m tcp --dport {np} -j {svc}"
            );
        }
        let n = p.endpoints.len();
        for (k, e) in p.endpoints.iter().enumerate() {
            let sep = format!("KEELB-SEP-{i:06}-{k}");
            let _ = writeln!(out, ":{sep} - [0:0]");
            let prob = if k + 1 == n {
                String::new()
            } else {
                #[allow(clippy::cast_precision_loss)]
                let p = 1.0 / (n - k) as f64;
                format!("-m statistic --mode random --probability {p:.11} ")
            };
            let _ = writeln!(rules, "-A {svc} {prob}-j {sep}");
            let _ = writeln!(rules, "-A {sep} -s {}/32 -j KEELB-MARK-MASQ", e.ip);
            let _ = writeln!(
                rules,
                "-A {sep} -p tcp -m tcp -j DNAT --to-destination {}:{}",
                e.ip, e.port
            );
        }
    }
    out.push_str(&rules);
    out.push_str("-A KEELB-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\nCOMMIT\n");
    out
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| ".".into()));
    let all: Vec<ServiceRules> = (0..n).map(|i| service(i, &eps(i, 0))).collect();
    let table = "keel-svc-bench";
    std::fs::write(dir.join("full.nft"), full_script(table, &all)).expect("write full.nft");
    let k = n / 2;
    let changed = service(k, &eps(k, 1));
    std::fs::write(
        dir.join("update.nft"),
        update_script(table, Some(&all[k]), Some(&changed)),
    )
    .expect("write update.nft");
    let back = update_script(table, Some(&changed), Some(&all[k]));
    std::fs::write(dir.join("update-back.nft"), back).expect("write update-back.nft");
    // A burst: 10 Services change at once, as one script (what the agent
    // applies for a coalesced burst) and its reverse.
    let (mut burst, mut burst_back) = (String::new(), String::new());
    for (j, old) in all.iter().enumerate().skip(k).take(10) {
        let c = service(j, &eps(j, 1));
        burst.push_str(&update_script(table, Some(old), Some(&c)));
        burst_back.push_str(&update_script(table, Some(&c), Some(old)));
    }
    std::fs::write(dir.join("burst.nft"), burst).expect("write burst.nft");
    std::fs::write(dir.join("burst-back.nft"), burst_back).expect("write burst-back.nft");
    let mut after = all.clone();
    after[k] = changed;
    std::fs::write(dir.join("iptables.rules"), iptables(&all)).expect("write iptables.rules");
    std::fs::write(dir.join("iptables-after.rules"), iptables(&after))
        .expect("write iptables-after.rules");
}
