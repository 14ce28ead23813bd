//! A pod's /etc/resolv.conf by its `dnsPolicy`, as the kubelet writes it
//! (pkg/kubelet/network/dns): `ClusterFirst` asks the cluster DNS with the
//! namespace's search path and `ndots:5`, `Default` takes the node's
//! resolver, `None` only the pod's `dnsConfig`; `dnsConfig` is merged into
//! the others.

use std::fmt::Write;

use k8s_openapi::api::core::v1::PodSpec;

/// The kubelet's limits (Linux).
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;

/// Where the cluster's DNS is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDns {
    /// The nameserver pods get.
    pub server: String,
    /// The cluster domain (`cluster.local`).
    pub domain: String,
}

fn push_unique(list: &mut Vec<String>, v: &str) {
    if !v.is_empty() && !list.iter().any(|x| x == v) {
        list.push(v.to_string());
    }
}

/// The resolv.conf text of a pod in namespace `ns`; `host` is the node's
/// resolv.conf (already fit for a pod: no loopback nameservers).
pub fn resolv_conf(spec: &PodSpec, ns: &str, cluster: Option<&ClusterDns>, host: &str) -> String {
    let host_network = spec.host_network == Some(true);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let (mut servers, mut searches, mut options) = (Vec::new(), Vec::new(), Vec::<String>::new());
    let from_host = |servers: &mut Vec<String>,
                     searches: &mut Vec<String>,
                     options: &mut Vec<String>| {
        for line in host.lines() {
            let mut w = line.split_whitespace();
            match w.next() {
                Some("nameserver") => w.next().into_iter().for_each(|s| push_unique(servers, s)),
                Some("search" | "domain") => w.for_each(|s| push_unique(searches, s)),
                Some("options") => w.for_each(|s| push_unique(options, s)),
                _ => {}
            }
        }
    };
    let cluster_first = match policy {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_network,
        _ => false,
    };
    match (policy, cluster) {
        ("None", _) => {}
        (_, Some(c)) if cluster_first => {
            servers.push(c.server.clone());
            let d = c.domain.trim_end_matches('.');
            searches = vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.to_string()];
            let mut host_searches = Vec::new();
            from_host(&mut Vec::new(), &mut host_searches, &mut Vec::new());
            for s in host_searches {
                push_unique(&mut searches, &s);
            }
            options.push("ndots:5".into());
        }
        // Default, or ClusterFirst without a cluster DNS (the kubelet falls
        // back to the node's settings).
        _ => from_host(&mut servers, &mut searches, &mut options),
    }
    if let Some(cfg) = &spec.dns_config {
        for s in cfg.nameservers.iter().flatten() {
            push_unique(&mut servers, s);
        }
        for s in cfg.searches.iter().flatten() {
            push_unique(&mut searches, s);
        }
        for o in cfg.options.iter().flatten() {
            let Some(name) = o.name.as_deref() else {
                continue;
            };
            // The pod's option replaces one of the same name.
            options.retain(|x| x.split(':').next() != Some(name));
            options.push(
                o.value
                    .as_ref()
                    .map_or(name.to_string(), |v| format!("{name}:{v}")),
            );
        }
    }
    servers.truncate(MAX_NAMESERVERS);
    searches.truncate(MAX_SEARCHES);
    let mut out = String::new();
    for s in &servers {
        let _ = writeln!(out, "nameserver {s}");
    }
    if !searches.is_empty() {
        let _ = writeln!(out, "search {}", searches.join(" "));
    }
    if !options.is_empty() {
        let _ = writeln!(out, "options {}", options.join(" "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodDNSConfig, PodDNSConfigOption};

    const HOST: &str = "nameserver 192.168.1.1\nsearch corp.example\noptions edns0\n";

    fn cluster() -> ClusterDns {
        ClusterDns {
            server: "10.42.0.1".into(),
            domain: "cluster.local".into(),
        }
    }

    fn spec(policy: Option<&str>, host_network: bool) -> PodSpec {
        PodSpec {
            dns_policy: policy.map(str::to_string),
            host_network: Some(host_network),
            ..PodSpec::default()
        }
    }

    #[test]
    fn cluster_first_asks_the_cluster_with_the_namespace_search_path() {
        let want = "nameserver 10.42.0.1\nsearch web.svc.cluster.local svc.cluster.local cluster.local corp.example\noptions ndots:5\n";
        assert_eq!(
            resolv_conf(&spec(None, false), "web", Some(&cluster()), HOST),
            want
        );
        assert_eq!(
            resolv_conf(
                &spec(Some("ClusterFirst"), false),
                "web",
                Some(&cluster()),
                HOST
            ),
            want
        );
        assert_eq!(
            resolv_conf(
                &spec(Some("ClusterFirstWithHostNet"), true),
                "web",
                Some(&cluster()),
                HOST
            ),
            want
        );
    }

    #[test]
    fn default_and_host_network_take_the_nodes_resolver() {
        assert_eq!(
            resolv_conf(&spec(Some("Default"), false), "web", Some(&cluster()), HOST),
            HOST
        );
        // ClusterFirst on the host network is Default (the kubelet's rule).
        assert_eq!(
            resolv_conf(&spec(None, true), "web", Some(&cluster()), HOST),
            HOST
        );
        // No cluster DNS: the node's settings.
        assert_eq!(resolv_conf(&spec(None, false), "web", None, HOST), HOST);
    }

    #[test]
    fn none_takes_only_dns_config_which_merges_into_the_others() {
        let mut s = spec(Some("None"), false);
        s.dns_config = Some(PodDNSConfig {
            nameservers: Some(vec!["1.1.1.1".into()]),
            searches: Some(vec!["my.dns.search.suffix".into()]),
            options: Some(vec![
                PodDNSConfigOption {
                    name: Some("ndots".into()),
                    value: Some("2".into()),
                },
                PodDNSConfigOption {
                    name: Some("edns0".into()),
                    value: None,
                },
            ]),
        });
        assert_eq!(
            resolv_conf(&s, "web", Some(&cluster()), HOST),
            "nameserver 1.1.1.1\nsearch my.dns.search.suffix\noptions ndots:2 edns0\n"
        );
        s.dns_policy = None;
        assert_eq!(
            resolv_conf(&s, "web", Some(&cluster()), HOST),
            "nameserver 10.42.0.1\nnameserver 1.1.1.1\nsearch web.svc.cluster.local svc.cluster.local cluster.local corp.example my.dns.search.suffix\noptions ndots:2 edns0\n"
        );
    }
}
