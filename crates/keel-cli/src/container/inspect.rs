//! `keel inspect` of containers and `keel port`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;
use chrono::{DateTime, Utc};
use keel_runtime::engine::{self};
use keel_runtime::{ContainerConfig, ContainerState, Containers, MountKind, RestartPolicy, Status};
use serde_json::{Value, json};

use crate::output::{Format, print_structured};

use super::flags::PortArgs;
use super::{hinted, open, resolve};

/// docker's `HostConfig.PortBindings`: what was asked for, by container port.
fn port_bindings(ports: &[keel_runtime::PortSpec]) -> Value {
    let mut out = serde_json::Map::new();
    for p in ports {
        let e = out
            .entry(format!("{}/{}", p.container_port, p.protocol))
            .or_insert_with(|| json!([]));
        if let Some(a) = e.as_array_mut() {
            a.push(json!({"HostIp": p.host_ip.clone().unwrap_or_default(),
                "HostPort": if p.host_port == 0 { String::new() } else { p.host_port.to_string() }}));
        }
    }
    Value::Object(out)
}

/// Docker-shaped inspect object.
fn inspect_json(c: &Containers, id: &str) -> anyhow::Result<Value> {
    let cfg = c.config(id).map_err(hinted)?;
    let st = c.state(id).map_err(hinted)?;
    let status = engine::effective_status(c, id);
    let running = status == Status::Running;
    let ts = |t: Option<DateTime<Utc>>| {
        t.map_or_else(
            || "0001-01-01T00:00:00Z".to_string(),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        )
    };
    let mounts: Vec<Value> = cfg
        .mounts
        .iter()
        .map(|m| {
            let (ty, src) = match m.kind {
                MountKind::Bind => ("bind", m.source.clone()),
                MountKind::Volume => (
                    "volume",
                    c.root()
                        .join("volumes")
                        .join(&m.source)
                        .join("_data")
                        .display()
                        .to_string(),
                ),
                MountKind::Tmpfs => ("tmpfs", String::new()),
            };
            json!({"Type": ty, "Name": if m.kind == MountKind::Volume { m.source.clone() } else { String::new() },
                   "Source": src, "Destination": m.target, "RW": !m.read_only})
        })
        .collect();
    let mut ports = serde_json::Map::new();
    let bound = st
        .network
        .as_ref()
        .map_or_else(|| cfg.ports.clone(), |n| n.ports.clone());
    for p in &bound {
        let key = format!("{}/{}", p.container_port, p.protocol);
        let entry = ports.entry(key).or_insert_with(|| json!([]));
        if let Some(arr) = entry.as_array_mut() {
            arr.push(json!({"HostIp": p.host_ip.clone().unwrap_or_else(|| "0.0.0.0".into()), "HostPort": p.host_port.to_string()}));
        }
    }
    let health = st.health.as_ref().map(|h| {
        json!({"Status": h.status, "FailingStreak": h.failing_streak,
               "Log": h.log.iter().map(|p| json!({"Start": p.start, "End": p.end, "ExitCode": p.exit_code, "Output": p.output})).collect::<Vec<_>>()})
    });
    let mut state = json!({
        "Status": super::ps::shown_state(id, status), "Running": running, "Paused": running && super::is_paused(id),
        "Restarting": status == Status::Restarting, "OOMKilled": st.oom_killed, "Dead": false,
        "Pid": if running { st.pid } else { 0 }, "ExitCode": st.exit_code, "Error": st.error,
        "StartedAt": ts(st.started_at), "FinishedAt": ts(st.finished_at),
    });
    if let Some(h) = health {
        state["Health"] = h;
    }
    let net = st.network.clone().unwrap_or_default();
    let mut v = json!({
        "Id": cfg.id,
        "Created": cfg.created.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "Path": cfg.path,
        "Args": cfg.args,
        "State": state,
        "Image": cfg.image_id,
        "ResolvConfPath": c.dir(id).join("resolv.conf"),
        "HostnamePath": c.dir(id).join("hostname"),
        "HostsPath": c.dir(id).join("hosts"),
        "LogPath": c.log_path(id),
        "Name": format!("/{}", cfg.name),
        "RestartCount": st.restart_count,
        "Driver": "overlay2",
        "Platform": "linux",
        "HostConfig": {
            "NetworkMode": cfg.network,
            "PortBindings": port_bindings(&cfg.ports),
            "GroupAdd": cfg.additional_gids,
            "RestartPolicy": {"Name": cfg.restart.name(), "MaximumRetryCount": match cfg.restart { RestartPolicy::OnFailure { max } => max, _ => 0 }},
            "AutoRemove": cfg.auto_remove,
            "Runtime": cfg.runtime,
            "CapAdd": cfg.cap_add, "CapDrop": cfg.cap_drop,
            "ReadonlyRootfs": cfg.read_only,
            "Memory": cfg.memory.unwrap_or(0),
            "NanoCpus": cfg.nano_cpus.unwrap_or(0),
            "PidsLimit": cfg.pids_limit,
            "MemorySwap": cfg.extra.memory_swap.or(cfg.memory.map(|m| m * 2)).unwrap_or(0),
            "ShmSize": cfg.extra.shm_size.unwrap_or(64 << 20),
            "Ulimits": cfg.extra.ulimits.iter().map(|u| json!({"Name": u.name, "Soft": u.soft, "Hard": u.hard})).collect::<Vec<_>>(),
            "Sysctls": cfg.extra.sysctls,
            "Init": cfg.extra.init,
            "PortBindings": ports.clone(),
            "PublishAllPorts": cfg.publish_all,
        },
        "GraphDriver": {"Name": "overlay2", "Data": {
            "LowerDir": cfg.lowerdirs.iter().rev().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":"),
            "UpperDir": c.dir(id).join("upper"), "WorkDir": c.dir(id).join("work"), "MergedDir": c.rootfs(id)}},
        "Mounts": mounts,
        "Config": {
            "Hostname": cfg.hostname, "User": cfg.user, "Env": cfg.env,
            "Cmd": cfg.cmd, "Entrypoint": if cfg.entrypoint.is_empty() { Value::Null } else { json!(cfg.entrypoint) },
            "Image": cfg.image, "WorkingDir": cfg.working_dir, "Labels": cfg.labels,
            "ExposedPorts": cfg.exposed_ports.iter().map(|p| (p.clone(), json!({}))).collect::<serde_json::Map<_, _>>(),
            "StopSignal": cfg.stop_signal, "StopTimeout": cfg.stop_timeout,
            "OpenStdin": cfg.interactive, "Tty": cfg.tty,
            "Healthcheck": cfg.healthcheck.as_ref().map(|h| json!({"Test": h.test, "Interval": h.interval_ms * 1_000_000, "Timeout": h.timeout_ms * 1_000_000, "Retries": h.retries, "StartPeriod": h.start_period_ms * 1_000_000})),
        },
        "NetworkSettings": {
            "Ports": ports,
            "IPAddress": net.ip, "IPPrefixLen": net.prefix_len, "Gateway": net.gateway, "MacAddress": net.mac,
            "SandboxKey": if cfg.network == "host" { String::new() } else { c.netns_path(id).display().to_string() },
            "Networks": inspect_networks(&cfg, &st),
        },
    });
    // Kept apart: one json! that size exceeds the macro recursion limit.
    let x = &cfg.extra;
    for (k, val) in [
        ("CpuShares", json!(x.cpu_shares.unwrap_or(0))),
        ("CpusetCpus", json!(x.cpuset_cpus.clone().unwrap_or_default())),
        ("CpusetMems", json!(x.cpuset_mems.clone().unwrap_or_default())),
        ("Privileged", json!(x.privileged)),
        (
            "Devices",
            x.devices
                .iter()
                .map(|d| json!({"PathOnHost": d.host, "PathInContainer": d.container, "CgroupPermissions": d.permissions}))
                .collect(),
        ),
        ("SecurityOpt", json!(x.security_opt)),
        (
            "IpcMode",
            json!(if x.ipc.is_empty() { "private" } else { x.ipc.as_str() }),
        ),
        ("PidMode", json!(x.pid)),
    ] {
        v["HostConfig"][k] = val;
    }
    Ok(v)
}

/// `NetworkSettings.Networks` like Docker's: every network of the
/// container, with addresses while it is connected.
fn inspect_networks(cfg: &ContainerConfig, st: &ContainerState) -> Value {
    let mut out = serde_json::Map::new();
    if !matches!(
        keel_runtime::network::Mode::parse(&cfg.network),
        keel_runtime::network::Mode::Network(_) | keel_runtime::network::Mode::None
    ) {
        let mode = cfg.network.split(':').next().unwrap_or_default();
        out.insert(
            mode.to_string(),
            json!({"Aliases": Value::Null, "IPAddress": "", "Gateway": "", "MacAddress": ""}),
        );
        return Value::Object(out);
    }
    let wanted = std::iter::once((&cfg.network, &cfg.network_aliases, &cfg.networking.ip)).chain(
        cfg.networking
            .extra_networks
            .iter()
            .map(|e| (&e.network, &e.aliases, &e.ip)),
    );
    for (name, aliases, ip) in wanted {
        let live = st.endpoints.iter().find(|e| &e.network == name);
        out.insert(
            name.clone(),
            json!({
                "IPAMConfig": ip.as_ref().map(|ip| json!({"IPv4Address": ip})),
                "Aliases": aliases,
                "NetworkID": live.map(|e| e.network_id.clone()).unwrap_or_default(),
                "EndpointID": live.map(|e| e.endpoint_id.clone()).unwrap_or_default(),
                "Gateway": live.map(|e| e.gateway.clone()).unwrap_or_default(),
                "IPAddress": live.map(|e| e.ip.clone()).unwrap_or_default(),
                "IPPrefixLen": live.map_or(0, |e| e.prefix_len),
                "MacAddress": live.map(|e| e.mac.clone()).unwrap_or_default(),
                "InterfaceName": live.map(|e| e.ifname.clone()).unwrap_or_default(),
            }),
        );
    }
    // Connected live but not (or no longer) in the config, say mid-disconnect.
    for e in &st.endpoints {
        if !out.contains_key(&e.network) {
            out.insert(e.network.clone(), json!({"Aliases": e.aliases, "NetworkID": e.network_id, "EndpointID": e.endpoint_id, "Gateway": e.gateway, "IPAddress": e.ip, "IPPrefixLen": e.prefix_len, "MacAddress": e.mac, "InterfaceName": e.ifname}));
        }
    }
    Value::Object(out)
}

/// `keel inspect`: containers by name or ID first, then images.
pub fn inspect_any(root: &Path, a: crate::image::InspectArgs) -> anyhow::Result<ExitCode> {
    let template = crate::template::Template::from_flag(a.format.as_deref())?;
    let c = open(root)?;
    let mut found = Vec::new();
    let mut images = Vec::new();
    for n in &a.images {
        if a.kind.as_deref() == Some("image") {
            images.push(n.clone());
            continue;
        }
        match c.resolve(n) {
            Ok(id) => found.push(inspect_json(&c, &id)?),
            Err(e) if a.kind.is_some() => return Err(hinted(e)),
            Err(_) => images.push(n.clone()),
        }
    }
    if !images.is_empty() {
        found.extend(crate::image::inspect_objects(root, &images)?);
    }
    match template {
        Some(t) => t.print(&found)?,
        None => print_structured(
            &found,
            if a.output == Format::Table {
                Format::Json
            } else {
                a.output
            },
        )?,
    }
    Ok(ExitCode::SUCCESS)
}

pub fn port(root: &Path, a: PortArgs) -> anyhow::Result<ExitCode> {
    let c = open(root)?;
    let id = resolve(&c, &a.container)?;
    let cfg = c.config(&id).map_err(hinted)?;
    let st = c.state(&id).map_err(hinted)?;
    let ports = st.network.map_or(cfg.ports, |n| n.ports);
    let want = a.port.as_deref().map(|p| {
        let (n, proto) = p.split_once('/').unwrap_or((p, "tcp"));
        (n.to_string(), proto.to_string())
    });
    let mut any = false;
    for p in &ports {
        if let Some((n, proto)) = &want {
            if p.container_port.to_string() != *n || p.protocol != *proto {
                continue;
            }
            println!(
                "{}:{}",
                p.host_ip.as_deref().unwrap_or("0.0.0.0"),
                p.host_port
            );
        } else {
            println!(
                "{}/{} -> {}:{}",
                p.container_port,
                p.protocol,
                p.host_ip.as_deref().unwrap_or("0.0.0.0"),
                p.host_port
            );
        }
        any = true;
    }
    if !any && let Some(p) = &a.port {
        bail!("no public port '{p}' published for {}", a.container);
    }
    Ok(ExitCode::SUCCESS)
}
