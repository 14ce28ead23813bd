//! The Node object and its heartbeats: registration with what the machine
//! has, the Lease in `kube-node-lease` renewed every 2 s (keel's default
//! grace is 8 s), and the Ready condition's heartbeat every 10 s.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::AgentError;

/// The kubelet version keel reports (the API it follows).
pub const KUBELET_VERSION: &str = "v1.33.0-keel";

/// The address this machine reaches the server from: the source address
/// of a route to it (no packet is sent).
pub fn node_ip(server: &str) -> String {
    let Ok((host, port)) = crate::join::host_port(server) else {
        return "127.0.0.1".into();
    };
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect((host.as_str(), port))?;
            s.local_addr()
        })
        .map_or_else(|_| "127.0.0.1".into(), |a| a.ip().to_string())
}

fn meminfo_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn read_trim(p: &str) -> String {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| "Linux".into())
}

pub(crate) fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn now_micro() -> String {
    let t = k8s_openapi::jiff::Timestamp::now();
    format!(
        "{}.{:06}Z",
        t.strftime("%Y-%m-%dT%H:%M:%S"),
        t.subsec_nanosecond() / 1000
    )
}

fn conditions(now: &str) -> Value {
    let c = |t: &str, s: &str, reason: &str, msg: &str| {
        json!({"type": t, "status": s, "reason": reason, "message": msg,
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    json!([
        c(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available"
        ),
        c(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure"
        ),
        c(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available"
        ),
        c(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status"
        ),
    ])
}

/// The Node as this machine describes it.
pub fn node_object(name: &str, ip: &str) -> Value {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let mem = format!("{}Ki", meminfo_kib());
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    let capacity = json!({"cpu": cpus.to_string(), "memory": mem, "pods": "110"});
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": arch,
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": arch,
            },
            "annotations": {crate::AGENT_NODE: "true"},
        },
        "spec": {},
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": conditions(&now_rfc3339()),
            "addresses": [
                {"type": "InternalIP", "address": ip},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {
                "machineID": read_trim("/etc/machine-id"),
                "systemUUID": read_trim("/sys/class/dmi/id/product_uuid"),
                "bootID": read_trim("/proc/sys/kernel/random/boot_id"),
                "kernelVersion": read_trim("/proc/sys/kernel/osrelease"),
                "osImage": os_image(),
                "containerRuntimeVersion": format!("keel://{}", env!("CARGO_PKG_VERSION")),
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": arch,
            },
        },
    })
}

/// Creates the Node, or brings an existing one up to date.
pub async fn register(client: &kube::Client, name: &str, ip: &str) -> Result<(), AgentError> {
    let api: Api<Node> = Api::all(client.clone());
    let obj = node_object(name, ip);
    let node: Node =
        serde_json::from_value(obj.clone()).map_err(|e| AgentError::Other(e.to_string()))?;
    match api.create(&PostParams::default(), &node).await {
        Ok(_) => return Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    let meta = json!({"metadata": {"labels": obj["metadata"]["labels"], "annotations": obj["metadata"]["annotations"]}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&meta))
        .await?;
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": obj["status"]})),
    )
    .await?;
    Ok(())
}

/// Waits for the node IPAM controller to give the node its podCIDR.
pub async fn await_pod_cidr(client: &kube::Client, name: &str) -> Result<String, AgentError> {
    let api: Api<Node> = Api::all(client.clone());
    let mut warned = false;
    loop {
        let n = match api.get(name).await {
            Ok(n) => n,
            // The server restarting under a starting agent: wait for it, as
            // the kubelet does, instead of exiting.
            Err(e) if !matches!(e, kube::Error::Api(_)) => {
                tracing::warn!(node = name, error = %e, "server unreachable; retrying");
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(c) = n.spec.and_then(|s| s.pod_cidr).filter(|c| !c.is_empty()) {
            return Ok(c);
        }
        if !warned {
            tracing::info!(
                node = name,
                "waiting for a podCIDR (keel server --cluster-cidr)"
            );
            warned = true;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Renews the Lease every 2 s and the Ready heartbeat every 10 s, forever.
pub async fn heartbeat(client: kube::Client, name: String) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let nodes: Api<Node> = Api::all(client);
    let mut tick = 0u32;
    loop {
        if let Err(e) = renew(&leases, &name).await {
            tracing::warn!(node = name, error = %e, "lease not renewed");
        }
        if tick.is_multiple_of(5) {
            let now = now_rfc3339();
            let patch = json!({"status": {"conditions": conditions(&now)}});
            if let Err(e) = nodes
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
            {
                tracing::warn!(node = name, error = %e, "node status not updated");
            }
        }
        tick = tick.wrapping_add(1);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn renew(leases: &Api<Lease>, name: &str) -> Result<(), kube::Error> {
    let now = now_micro();
    let patch =
        json!({"spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now}});
    match leases
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            let lease: Lease = serde_json::from_value(json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": name, "namespace": "kube-node-lease"},
                "spec": patch["spec"],
            }))
            .map_err(kube::Error::SerdeError)?;
            leases
                .create(&PostParams::default(), &lease)
                .await
                .map(|_| ())
        }
        Err(e) => Err(e),
    }
}
