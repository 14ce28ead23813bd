//! The pure parts of running a pod: resource quantities, how `command` and
//! `args` meet the image's entrypoint, `$(VAR)` expansion, downward-API field
//! paths, the hosts file Kubernetes writes, and the restart back-off.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

/// A quantity (`500m`, `2`, `128Mi`, `1G`, `1e3`) in its base unit, scaled by
/// `scale` (1000 for millicores); `None` when it does not parse.
pub fn quantity(q: &str, scale: f64) -> Option<f64> {
    let q = q.trim();
    let suffixes: [(&str, f64); 13] = [
        ("Ki", 1024.0),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("Ti", 1024f64.powi(4)),
        ("Pi", 1024f64.powi(5)),
        ("Ei", 1024f64.powi(6)),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    for (s, f) in suffixes {
        if let Some(n) = q.strip_suffix(s) {
            return n.parse::<f64>().ok().map(|v| v * f * scale);
        }
    }
    q.parse::<f64>().ok().map(|v| v * scale)
}

/// Memory limit in bytes.
pub fn memory_bytes(q: &str) -> Option<i64> {
    #[allow(clippy::cast_possible_truncation)]
    quantity(q, 1.0).map(|v| v.ceil() as i64)
}

/// CPU in nano-CPUs (Docker's `--cpus` unit).
pub fn nano_cpus(q: &str) -> Option<i64> {
    #[allow(clippy::cast_possible_truncation)]
    quantity(q, 1e9).map(|v| v.ceil() as i64)
}

/// Kubernetes' `command`/`args` over the image: `(entrypoint override,
/// command)` as keel-runtime's `CreateOptions` takes them. `command`
/// replaces the entrypoint and drops the image's Cmd; `args` alone replace
/// the Cmd.
pub fn entrypoint_and_cmd(command: &[String], args: &[String]) -> (Option<String>, Vec<String>) {
    match command.split_first() {
        Some((first, rest)) => (
            Some(first.clone()),
            rest.iter().chain(args).cloned().collect(),
        ),
        None => (None, args.to_vec()),
    }
}

/// `$(VAR)` references to `vars` expanded; `$$` escapes; unknown
/// references stay as written (Kubernetes' expansion).
pub fn expand(s: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(a) = after.strip_prefix('$') {
            out.push('$');
            rest = a;
        } else if let Some(a) = after.strip_prefix('(')
            && let Some(end) = a.find(')')
        {
            let name = &a[..end];
            if let Some(v) = vars.get(name) {
                out.push_str(v);
            } else {
                out.push_str("$(");
                out.push_str(name);
                out.push(')');
            }
            rest = &a[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A downward-API `fieldPath` of `pod`.
pub fn field_ref(pod: &Pod, path: &str, pod_ip: &str, host_ip: &str) -> Option<String> {
    let m = &pod.metadata;
    let s = pod.spec.as_ref();
    let keyed = |prefix: &str, map: Option<&BTreeMap<String, String>>| {
        let key = path
            .strip_prefix(prefix)?
            .strip_prefix("['")?
            .strip_suffix("']")?;
        Some(map?.get(key).cloned().unwrap_or_default())
    };
    let all = |map: Option<&BTreeMap<String, String>>| {
        map.map(|m| {
            m.iter().fold(String::new(), |mut acc, (k, v)| {
                let _ = writeln!(acc, "{k}=\"{}\"", v.replace('"', "\\\""));
                acc
            })
        })
        .unwrap_or_default()
    };
    Some(match path {
        "metadata.name" => m.name.clone()?,
        "metadata.namespace" => m.namespace.clone()?,
        "metadata.uid" => m.uid.clone()?,
        "metadata.labels" => all(m.labels.as_ref()),
        "metadata.annotations" => all(m.annotations.as_ref()),
        "spec.nodeName" => s?.node_name.clone()?,
        "spec.serviceAccountName" => s?.service_account_name.clone().unwrap_or_default(),
        "status.podIP" | "status.podIPs" => pod_ip.to_string(),
        "status.hostIP" | "status.hostIPs" => host_ip.to_string(),
        p if p.starts_with("metadata.labels[") => keyed("metadata.labels", m.labels.as_ref())?,
        p if p.starts_with("metadata.annotations[") => {
            keyed("metadata.annotations", m.annotations.as_ref())?
        }
        _ => return None,
    })
}

/// /etc/hosts as the kubelet writes it for a pod.
pub fn hosts_file(pod_ip: &str, hostname: &str, fqdn: Option<&str>) -> String {
    let mut s = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    match fqdn {
        Some(f) => {
            let _ = writeln!(s, "{pod_ip}\t{f}\t{hostname}");
        }
        None => {
            let _ = writeln!(s, "{pod_ip}\t{hostname}");
        }
    }
    s
}

/// The kubelet's crash back-off before restart number `restarts + 1`: none
/// for the first, then 10 s doubling up to 5 minutes.
pub fn backoff(restarts: u32) -> Duration {
    if restarts == 0 {
        return Duration::ZERO;
    }
    let secs = 10u64.saturating_mul(1 << (restarts - 1).min(5));
    Duration::from_secs(secs.min(300))
}

/// A container's name in keel: `k8s_<container>_<pod>_<namespace>_<uid>_<attempt>`
/// (the dockershim's scheme), cut to what keel accepts.
pub fn container_name(container: &str, pod: &str, ns: &str, uid: &str, attempt: u32) -> String {
    let uid8: String = uid
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect();
    format!("k8s_{container}_{pod}_{ns}_{uid8}_{attempt}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(nano_cpus("500m"), Some(500_000_000));
        assert_eq!(nano_cpus("2"), Some(2_000_000_000));
        assert_eq!(memory_bytes("128Mi"), Some(128 * 1024 * 1024));
        assert_eq!(memory_bytes("1G"), Some(1_000_000_000));
        assert_eq!(memory_bytes("1e3"), Some(1000));
        assert_eq!(memory_bytes("x"), None);
    }

    #[test]
    fn command_and_args() {
        let v = |s: &[&str]| s.iter().map(|x| (*x).to_string()).collect::<Vec<_>>();
        assert_eq!(
            entrypoint_and_cmd(&v(&["httpd", "-f"]), &v(&["-p", "80"])),
            (Some("httpd".into()), v(&["-f", "-p", "80"]))
        );
        assert_eq!(entrypoint_and_cmd(&[], &v(&["a"])), (None, v(&["a"])));
        assert_eq!(entrypoint_and_cmd(&[], &[]), (None, vec![]));
    }

    #[test]
    fn expansion() {
        let vars: BTreeMap<String, String> = [("A".to_string(), "x".to_string())].into();
        assert_eq!(expand("$(A)-$(B)-$$(A)-$", &vars), "x-$(B)-$(A)-$");
    }

    #[test]
    fn back_off() {
        assert_eq!(backoff(0), Duration::ZERO);
        assert_eq!(backoff(1), Duration::from_secs(10));
        assert_eq!(backoff(3), Duration::from_secs(40));
        assert_eq!(backoff(30), Duration::from_mins(5));
    }

    #[test]
    fn hosts() {
        let h = hosts_file("10.42.0.2", "web", None);
        assert!(h.starts_with("# Kubernetes-managed hosts file.\n"));
        assert!(h.ends_with("10.42.0.2\tweb\n"));
    }
}
