//! `keel version` and `keel info` (`system info`): what docker prints
//! there, as docker-shaped objects that `--format` templates read.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use keel_runtime::Status;
use serde_json::{Value, json};

#[derive(Debug, Args)]
pub struct FormatArgs {
    /// Go template or `json` (docker's -f/--format).
    #[arg(short = 'f', long)]
    pub format: Option<String>,
}

fn os_release() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "Linux".into())
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// docker's `version` object: client and server are the same binary.
fn version_object(root: &Path) -> Value {
    let v = env!("CARGO_PKG_VERSION");
    let part = |name: &str| {
        json!({"Platform": {"Name": name}, "Version": v, "ApiVersion": "1.41", "Os": "linux",
               "Arch": go_arch(), "KernelVersion": kernel(), "GoVersion": "", "GitCommit": ""})
    };
    let mut client = part("keel");
    client["Context"] = json!("default");
    let mut server = part("keel");
    server["Root"] = json!(root.display().to_string());
    json!({"Client": client, "Server": server})
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub fn version(root: &Path, a: &FormatArgs) -> anyhow::Result<ExitCode> {
    if let Some(t) = crate::template::Template::from_flag(a.format.as_deref())? {
        t.print(&[version_object(root)])?;
    } else {
        println!("keel {}", env!("CARGO_PKG_VERSION"));
        println!("root: {}", root.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn info_object(root: &Path) -> anyhow::Result<Value> {
    let c = crate::container::open(root)?;
    let (mut running, mut stopped, mut total) = (0, 0, 0);
    for id in c.ids().map_err(crate::container::hinted)? {
        total += 1;
        match keel_runtime::engine::effective_status(&c, &id) {
            Status::Running | Status::Restarting => running += 1,
            _ => stopped += 1,
        }
    }
    let images = keel_oci::ImageStore::open(root)
        .and_then(|s| s.list())
        .map_or(0, |l| l.len());
    let mem_total: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |k| k * 1024);
    let cgroup2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    Ok(json!({
        "ID": "", "Containers": total, "ContainersRunning": running, "ContainersPaused": 0,
        "ContainersStopped": stopped, "Images": images, "Driver": "overlay2",
        "DockerRootDir": root.display().to_string(), "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs", "CgroupVersion": if cgroup2 { "2" } else { "1" },
        "KernelVersion": kernel(), "OperatingSystem": os_release(), "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "NCPU": std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        "MemTotal": mem_total, "Name": hostname(), "ServerVersion": env!("CARGO_PKG_VERSION"),
        "DefaultRuntime": "keel", "SecurityOptions": ["name=seccomp,profile=builtin"],
    }))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

pub fn info(root: &Path, a: &FormatArgs) -> anyhow::Result<ExitCode> {
    let o = info_object(root)?;
    if let Some(t) = crate::template::Template::from_flag(a.format.as_deref())? {
        t.print(&[o])?;
        return Ok(ExitCode::SUCCESS);
    }
    let s = |k: &str| match &o[k] {
        Value::String(x) => x.clone(),
        other => other.to_string(),
    };
    println!("Server:");
    for (label, key) in [
        ("Containers", "Containers"),
        (" Running", "ContainersRunning"),
        (" Paused", "ContainersPaused"),
        (" Stopped", "ContainersStopped"),
        ("Images", "Images"),
        ("Server Version", "ServerVersion"),
        ("Storage Driver", "Driver"),
        ("Logging Driver", "LoggingDriver"),
        ("Cgroup Driver", "CgroupDriver"),
        ("Cgroup Version", "CgroupVersion"),
        ("Default Runtime", "DefaultRuntime"),
        ("Kernel Version", "KernelVersion"),
        ("Operating System", "OperatingSystem"),
        ("OSType", "OSType"),
        ("Architecture", "Architecture"),
        ("CPUs", "NCPU"),
        ("Total Memory", "MemTotal"),
        ("Name", "Name"),
        ("Docker Root Dir", "DockerRootDir"),
    ] {
        let v = if key == "MemTotal" {
            keel_go::units::bytes_size(o[key].as_f64().unwrap_or(0.0))
        } else {
            s(key)
        };
        println!(" {label}: {v}");
    }
    Ok(ExitCode::SUCCESS)
}

fn size_pct(reclaimable: u64, total: u64) -> String {
    let pct = (reclaimable * 100).checked_div(total).unwrap_or(0);
    format!("{} ({pct}%)", crate::output::human_size(reclaimable))
}

/// docker's `system df`: images, containers and local volumes with what a
/// prune would free. (docker's build-cache row is left out: keel's cache
/// is sized by `keel builder prune`.)
pub fn df(root: &Path, a: &FormatArgs) -> anyhow::Result<ExitCode> {
    use std::collections::BTreeSet;
    let c = crate::container::open(root)?;
    let (mut used_images, mut used_volumes) = (BTreeSet::new(), BTreeSet::new());
    let (mut ctotal, mut crunning, mut csize, mut creclaim) = (0u64, 0u64, 0u64, 0u64);
    for id in c.ids().map_err(crate::container::hinted)? {
        let Ok(cfg) = c.config(&id) else { continue };
        used_images.insert(cfg.image_id.clone());
        for m in &cfg.mounts {
            if m.kind == keel_runtime::MountKind::Volume {
                used_volumes.insert(m.source.clone());
            }
        }
        let size = crate::container::du(&c.dir(&id).join("upper"));
        ctotal += 1;
        csize += size;
        if keel_runtime::engine::effective_status(&c, &id) == Status::Running {
            crunning += 1;
        } else {
            creclaim += size;
        }
    }
    let images = keel_oci::ImageStore::open(root)
        .and_then(|s| s.list())
        .unwrap_or_default();
    let (mut isize, mut ireclaim, mut iactive) = (0u64, 0u64, 0u64);
    for i in &images {
        isize += i.size;
        if used_images.contains(&i.id.to_string()) {
            iactive += 1;
        } else {
            ireclaim += i.size;
        }
    }
    let vols = keel_runtime::Volumes::open(root)
        .and_then(|v| v.list())
        .unwrap_or_default();
    let (mut vsize, mut vreclaim, mut vactive) = (0u64, 0u64, 0u64);
    for v in &vols {
        let size = crate::container::du(&v.mountpoint);
        vsize += size;
        if used_volumes.contains(&v.name) {
            vactive += 1;
        } else {
            vreclaim += size;
        }
    }
    let rows = [
        ("Images", images.len() as u64, iactive, isize, ireclaim),
        ("Containers", ctotal, crunning, csize, creclaim),
        ("Local Volumes", vols.len() as u64, vactive, vsize, vreclaim),
    ];
    let objs: Vec<Value> = rows
        .iter()
        .map(|(t, total, active, size, reclaim)| {
            json!({"Type": t, "TotalCount": total, "Active": active,
                   "Size": crate::output::human_size(*size), "Reclaimable": size_pct(*reclaim, *size)})
        })
        .collect();
    if let Some(t) = crate::template::Template::from_flag(a.format.as_deref())? {
        t.print(&objs)?;
        return Ok(ExitCode::SUCCESS);
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|(t, total, active, size, reclaim)| {
            vec![
                (*t).to_string(),
                total.to_string(),
                active.to_string(),
                crate::output::human_size(*size),
                size_pct(*reclaim, *size),
            ]
        })
        .collect();
    print!(
        "{}",
        crate::output::table(&["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], &cells)
    );
    Ok(ExitCode::SUCCESS)
}
