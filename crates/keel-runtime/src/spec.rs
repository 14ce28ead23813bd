//! OCI runtime spec generation with Docker's defaults: its capability set,
//! no-new-privileges, the default seccomp profile, masked and read-only /proc
//! paths, cgroup limits, and the /etc/hosts, /etc/hostname, /etc/resolv.conf binds.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde_json::{Value, json};

use crate::error::{Result, RuntimeError};
use crate::record::{ContainerConfig, MountKind};
use crate::seccomp;

/// Docker's default capability set.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability name the kernel knows (for `--cap-add ALL`).
pub const ALL_CAPS: &[&str] = &[
    "CAP_AUDIT_CONTROL",
    "CAP_AUDIT_READ",
    "CAP_AUDIT_WRITE",
    "CAP_BLOCK_SUSPEND",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_KILL",
    "CAP_LEASE",
    "CAP_LINUX_IMMUTABLE",
    "CAP_MAC_ADMIN",
    "CAP_MAC_OVERRIDE",
    "CAP_MKNOD",
    "CAP_NET_ADMIN",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_RAW",
    "CAP_PERFMON",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYSLOG",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_CHROOT",
    "CAP_SYS_MODULE",
    "CAP_SYS_NICE",
    "CAP_SYS_PACCT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_WAKE_ALARM",
];

/// Capability names by their kernel number (linux/capability.h).
const CAP_BY_NUMBER: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Every capability keel can grant (`--cap-add ALL`, `exec --privileged`):
/// [`ALL_CAPS`] within this process's bounding set. capset(2) refuses a
/// capability outside it, and keel inside a container (CI) may lack some;
/// podman trims the set the same way.
pub fn grantable_caps() -> Vec<String> {
    let bounding = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        });
    CAP_BY_NUMBER
        .iter()
        .enumerate()
        .filter(|(i, _)| bounding.is_none_or(|b| (b >> i) & 1 == 1))
        .map(|(_, n)| (*n).to_string())
        .collect()
}

/// Docker's masked /proc and /sys paths.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Normalizes `chown`, `CAP_CHOWN`, `cap_chown` to `CAP_CHOWN`.
pub fn cap_name(s: &str) -> String {
    let up = s.to_ascii_uppercase();
    if up == "ALL" || up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

/// The capability set after `--cap-add`/`--cap-drop` (Docker applies drops after adds, ALL first).
pub fn capabilities(add: &[String], drop: &[String]) -> Result<Vec<String>> {
    let known = |c: &str| ALL_CAPS.contains(&c);
    let mut caps: Vec<String> = DEFAULT_CAPS.iter().map(|s| (*s).to_string()).collect();
    for c in add.iter().map(|c| cap_name(c)) {
        if c == "ALL" {
            caps = grantable_caps();
        } else if !known(&c) {
            return Err(RuntimeError::InvalidOption {
                what: "capability",
                value: c,
                why: "unknown capability".to_string(),
            });
        } else if !caps.contains(&c) {
            caps.push(c);
        }
    }
    for c in drop.iter().map(|c| cap_name(c)) {
        if c == "ALL" {
            caps.clear();
        } else if !known(&c) {
            return Err(RuntimeError::InvalidOption {
                what: "capability",
                value: c,
                why: "unknown capability".to_string(),
            });
        } else {
            caps.retain(|x| *x != c);
        }
    }
    caps.sort();
    Ok(caps)
}

/// Where `--init` puts docker-init in the container, as Docker does.
pub const INIT_PATH: &str = "/sbin/docker-init";

/// Static tini builds that work in any image (Debian's tini package ships
/// `tini-static`; Docker installs it as `docker-init`).
const INIT_CANDIDATES: &[&str] = &[
    "/usr/bin/tini-static",
    "/usr/bin/docker-init",
    "/usr/libexec/docker/docker-init",
];

/// The host's static tini for `--init`.
pub fn init_binary() -> Result<&'static str> {
    INIT_CANDIDATES
        .iter()
        .copied()
        .find(|p| Path::new(p).is_file())
        .ok_or_else(|| RuntimeError::InvalidOption {
            what: "init",
            value: "docker-init".to_string(),
            why: format!(
                "no static tini found (looked for {}); install Debian's tini package",
                INIT_CANDIDATES.join(", ")
            ),
        })
}

/// Rlimit names the kernel knows, as `--ulimit` takes them.
pub const ULIMIT_NAMES: &[&str] = &[
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// Host paths the spec refers to.
#[derive(Debug, Clone)]
pub struct SpecPaths {
    /// The mounted overlay.
    pub rootfs: PathBuf,
    pub hosts: PathBuf,
    pub hostname: PathBuf,
    pub resolv_conf: PathBuf,
    /// `None`: share the host's network namespace.
    pub netns: Option<PathBuf>,
    /// `<root>/volumes`.
    pub volumes: PathBuf,
    /// `--ipc container:X`, `--pid container:X`: X's namespaces.
    pub ipc_ns: Option<PathBuf>,
    pub pid_ns: Option<PathBuf>,
}

fn devices() -> Value {
    let mut v = vec![json!({"allow": false, "access": "rwm"})];
    for (major, minor) in [
        (1, 3),
        (1, 5),
        (1, 7),
        (1, 8),
        (1, 9),
        (5, 0),
        (5, 1),
        (5, 2),
    ] {
        v.push(
            json!({"allow": true, "type": "c", "major": major, "minor": minor, "access": "rwm"}),
        );
    }
    v.push(json!({"allow": true, "type": "c", "major": 136, "access": "rwm"}));
    Value::Array(v)
}

/// Builds the runtime spec for `cfg`.
pub fn build(cfg: &ContainerConfig, paths: &SpecPaths) -> Result<Spec> {
    let x = &cfg.extra;
    let caps = if x.privileged {
        capabilities(&["ALL".to_string()], &cfg.cap_drop)?
    } else {
        capabilities(&cfg.cap_add, &cfg.cap_drop)?
    };
    // --privileged: /sys and the cgroups writable, as docker mounts them.
    let sys_ro = if x.privileged { "rw" } else { "ro" };
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", sys_ro]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", sys_ro]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", cfg.extra.shm_size.map_or_else(|| "size=65536k".to_string(), |b| format!("size={b}"))]}),
    ];
    if cfg.extra.init {
        let tini = init_binary()?;
        mounts.push(json!({"destination": INIT_PATH, "type": "bind", "source": tini, "options": ["rbind", "rprivate", "ro"]}));
    }
    for (dst, src) in [
        ("/etc/resolv.conf", &paths.resolv_conf),
        ("/etc/hostname", &paths.hostname),
        ("/etc/hosts", &paths.hosts),
    ] {
        mounts.push(json!({"destination": dst, "type": "bind", "source": src, "options": ["rbind", "rprivate"]}));
    }
    for m in &cfg.mounts {
        let ro = if m.read_only { "ro" } else { "rw" };
        mounts.push(match m.kind {
            MountKind::Bind => {
                json!({"destination": m.target, "type": "bind", "source": m.source, "options": ["rbind", "rprivate", ro]})
            }
            MountKind::Volume => {
                let src = paths.volumes.join(&m.source).join("_data");
                json!({"destination": m.target, "type": "bind", "source": src, "options": ["rbind", "rprivate", ro]})
            }
            MountKind::Tmpfs => {
                let mut opts = vec![
                    "nosuid".to_string(),
                    "nodev".to_string(),
                    "noexec".to_string(),
                ];
                opts.extend(m.options.iter().cloned());
                if m.read_only {
                    opts.push("ro".to_string());
                }
                json!({"destination": m.target, "type": "tmpfs", "source": "tmpfs", "options": opts})
            }
        });
    }
    let mut namespaces = vec![json!({"type": "uts"}), json!({"type": "mount"})];
    // --pid/--ipc host: the host's namespace (none of its own);
    // container:X: X's, whose path the monitor found.
    for (kind, mode, joined) in [
        ("pid", &x.pid, &paths.pid_ns),
        ("ipc", &x.ipc, &paths.ipc_ns),
    ] {
        match (mode.as_str(), joined) {
            ("host", _) => {}
            (_, Some(p)) => namespaces.push(json!({"type": kind, "path": p})),
            _ => namespaces.push(json!({"type": kind})),
        }
    }
    if let Some(ns) = &paths.netns {
        namespaces.push(json!({"type": "network", "path": ns}));
    }
    let mut nodes = crate::security::mapped_devices(&x.devices)?;
    let mut rules = devices();
    if x.privileged {
        nodes.extend(crate::security::host_devices(Path::new("/dev")));
        // Every device allowed, as docker's privileged cgroup rule.
        rules = json!([{"allow": true, "access": "rwm"}]);
    } else if let Value::Array(r) = &mut rules {
        r.extend(nodes.iter().map(|n| n.rule.clone()));
    }
    let linux_devices: Vec<Value> = nodes.into_iter().map(|n| n.device).collect();
    let mut resources = json!({ "devices": rules });
    if let Some(m) = cfg.memory {
        // Docker sets swap to twice the memory; the limit on memory+swap keeps an OOM an OOM.
        let swap = cfg.extra.memory_swap.unwrap_or(m.saturating_mul(2));
        resources["memory"] = json!({"limit": m, "swap": swap});
    }
    let mut cpu = serde_json::Map::new();
    if let Some(n) = cfg.nano_cpus {
        let period: i64 = 100_000;
        cpu.insert("quota".into(), json!(n * period / 1_000_000_000));
        cpu.insert("period".into(), json!(period));
    }
    if let Some(s) = cfg.extra.cpu_shares {
        cpu.insert("shares".into(), json!(s));
    }
    if let Some(c) = &cfg.extra.cpuset_cpus {
        cpu.insert("cpus".into(), json!(c));
    }
    if let Some(m) = &cfg.extra.cpuset_mems {
        cpu.insert("mems".into(), json!(m));
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    if let Some(p) = cfg.pids_limit {
        resources["pids"] = json!({"limit": p});
    }
    let seccomp = match x.seccomp.as_deref() {
        _ if x.privileged => Value::Null,
        Some("unconfined") => Value::Null,
        Some(profile) => crate::security::docker_profile(profile, &caps)?,
        None => serde_json::to_value(seccomp::default_profile(&caps)?).expect("seccomp serializes"),
    };
    let mut args = Vec::new();
    if cfg.extra.init {
        // Docker's `--init`: tini reaps zombies and forwards signals to the command.
        args.extend([INIT_PATH.to_string(), "--".to_string()]);
    }
    args.push(cfg.path.clone());
    args.extend(cfg.args.iter().cloned());
    let mut user = json!({"uid": cfg.uid, "gid": cfg.gid});
    if !cfg.additional_gids.is_empty() {
        user["additionalGids"] = json!(cfg.additional_gids);
    }
    // Docker's 1048576, capped at what we may grant: raising a hard limit needs CAP_SYS_RESOURCE.
    let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .map_or(1_048_576, |m| m.min(1_048_576));
    let mut rlimits = vec![json!({"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile})];
    for u in &cfg.extra.ulimits {
        let kind = format!("RLIMIT_{}", u.name.to_ascii_uppercase());
        rlimits.retain(|r| r["type"] != kind.as_str());
        // -1 is Docker's "unlimited".
        let v = |n: i64| u64::try_from(n).unwrap_or(u64::MAX);
        rlimits.push(json!({"type": kind, "hard": v(u.hard), "soft": v(u.soft)}));
    }
    let spec = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": cfg.tty,
            "user": user,
            "args": args,
            "env": cfg.env,
            "cwd": if cfg.working_dir.is_empty() { "/" } else { &cfg.working_dir },
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps,
            },
            "rlimits": rlimits,
            // Left out when off (the same to the OCI spec): libcontainer reads
            // an explicit `false` as set and loads seccomp too late.
            "noNewPrivileges": if x.no_new_privileges.unwrap_or(true) { json!(true) } else { Value::Null },
        },
        "root": {"path": paths.rootfs, "readonly": cfg.read_only},
        "hostname": cfg.hostname,
        "mounts": mounts,
        "linux": {
            "cgroupsPath": format!("/keel/{}", cfg.id),
            "namespaces": namespaces,
            "resources": resources,
            "seccomp": seccomp,
            "devices": linux_devices,
            "maskedPaths": if x.privileged { &[][..] } else { MASKED_PATHS },
            "readonlyPaths": if x.privileged { &[][..] } else { READONLY_PATHS },
            "sysctl": cfg.extra.sysctls,
        },
    });
    Ok(serde_json::from_value(spec).map_err(oci_spec::OciSpecError::SerDe)?)
}

/// Writes the spec as `<bundle>/config.json`.
pub fn write(spec: &Spec, bundle: &Path) -> Result<()> {
    let bytes = serde_json::to_vec(spec).expect("spec serializes");
    // Regenerated before every start and read only after: written in place,
    // neither durable nor atomic (a rename would cost a new inode each time).
    let path = bundle.join("config.json");
    std::fs::write(&path, bytes).map_err(|source| crate::RuntimeError::Write { path, source })
}

/// Merges image env and user env (user wins per key) and adds Docker's
/// PATH and HOSTNAME/HOME when missing.
pub fn merge_env(image: &[String], user: &[String], hostname: &str, home: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let key = |s: &str| s.split('=').next().unwrap_or("").to_string();
    for e in image.iter().chain(user) {
        let k = key(e);
        out.retain(|x| key(x) != k);
        out.push(e.clone());
    }
    if !out.iter().any(|e| key(e) == "PATH") {
        out.insert(
            0,
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        );
    }
    if !out.iter().any(|e| key(e) == "HOSTNAME") {
        out.push(format!("HOSTNAME={hostname}"));
    }
    if !out.iter().any(|e| key(e) == "HOME") {
        out.push(format!("HOME={}", if home.is_empty() { "/" } else { home }));
    }
    out
}

/// The strings of a JSON array (nothing for anything else).
pub(crate) fn json_strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_add_drop() {
        let c = capabilities(&["net_admin".into()], &["CAP_CHOWN".into()]).unwrap();
        assert!(c.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!c.contains(&"CAP_CHOWN".to_string()));
        assert!(c.contains(&"CAP_KILL".to_string()));
        assert!(capabilities(&[], &["ALL".into()]).unwrap().is_empty());
        assert!(capabilities(&["bogus".into()], &[]).is_err());
        let mut all = capabilities(&["ALL".into()], &[]).unwrap();
        let mut grantable = grantable_caps();
        all.sort();
        grantable.sort();
        assert_eq!(all, grantable);
    }

    #[test]
    fn grantable_caps_are_known_names() {
        let mut by_number = CAP_BY_NUMBER.to_vec();
        by_number.sort_unstable();
        let mut all = ALL_CAPS.to_vec();
        all.sort_unstable();
        assert_eq!(by_number, all);
        assert!(
            grantable_caps()
                .iter()
                .all(|c| ALL_CAPS.contains(&c.as_str()))
        );
    }

    #[test]
    fn env_merge() {
        let e = merge_env(
            &["PATH=/bin".into(), "A=1".into()],
            &["A=2".into(), "B=3".into()],
            "h",
            "/root",
        );
        assert_eq!(
            e,
            vec!["PATH=/bin", "A=2", "B=3", "HOSTNAME=h", "HOME=/root"]
        );
    }
}

/// A container configuration for unit tests elsewhere in the crate.
#[cfg(test)]
pub(crate) fn tests_config() -> ContainerConfig {
    spec_tests::config()
}

#[cfg(test)]
mod spec_tests {
    use super::*;
    use crate::record::{MountSpec, RestartPolicy};

    pub(super) fn config() -> ContainerConfig {
        ContainerConfig {
            id: "a".repeat(64),
            name: "t".into(),
            created: chrono::Utc::now(),
            image: "busybox".into(),
            image_id: String::new(),
            image_manifest: String::new(),
            lowerdirs: Vec::new(),
            path: "sh".into(),
            args: vec!["-c".into(), "true".into()],
            entrypoint: Vec::new(),
            cmd: Vec::new(),
            env: vec!["PATH=/bin".into()],
            working_dir: "/w".into(),
            user: "nobody".into(),
            uid: 65534,
            gid: 65534,
            additional_gids: vec![7],
            hostname: "h".into(),
            labels: std::collections::BTreeMap::new(),
            network: "none".into(),
            network_aliases: Vec::new(),
            ports: Vec::new(),
            publish_all: false,
            exposed_ports: Vec::new(),
            mounts: vec![MountSpec {
                kind: MountKind::Volume,
                source: "data".into(),
                target: "/data".into(),
                read_only: true,
                anonymous: false,
                options: Vec::new(),
            }],
            memory: Some(32 << 20),
            nano_cpus: Some(500_000_000),
            pids_limit: Some(10),
            read_only: true,
            cap_add: Vec::new(),
            cap_drop: vec!["NET_RAW".into()],
            restart: RestartPolicy::No,
            healthcheck: None,
            stop_signal: "SIGTERM".into(),
            stop_timeout: 10,
            runtime: "libcontainer".into(),
            auto_remove: false,
            interactive: false,
            tty: false,
            extra: crate::record::ExtraConfig::default(),
            networking: crate::record::NetworkConfig::default(),
        }
    }

    #[test]
    fn extras_in_the_spec() {
        let mut cfg = config();
        cfg.extra = crate::record::ExtraConfig {
            memory_swap: Some(48 << 20),
            shm_size: Some(1 << 20),
            ulimits: vec![
                crate::record::Ulimit {
                    name: "nofile".into(),
                    soft: 10,
                    hard: 20,
                },
                crate::record::Ulimit {
                    name: "core".into(),
                    soft: -1,
                    hard: -1,
                },
            ],
            sysctls: [("net.core.somaxconn".to_string(), "7".to_string())].into(),
            init: true,
            ..Default::default()
        };
        let paths = SpecPaths {
            rootfs: "/r".into(),
            hosts: "/c/hosts".into(),
            hostname: "/c/hostname".into(),
            resolv_conf: "/c/resolv.conf".into(),
            netns: None,
            volumes: "/v".into(),
            ipc_ns: None,
            pid_ns: None,
        };
        let v = serde_json::to_value(build(&cfg, &paths).unwrap()).unwrap();
        assert_eq!(
            v["process"]["args"],
            json!([INIT_PATH, "--", "sh", "-c", "true"])
        );
        let init = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == INIT_PATH)
            .unwrap();
        assert_eq!(init["source"], init_binary().unwrap());
        assert!(init["options"].as_array().unwrap().contains(&json!("ro")));
        let shm = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/dev/shm")
            .unwrap();
        assert!(
            shm["options"]
                .as_array()
                .unwrap()
                .contains(&json!("size=1048576"))
        );
        assert_eq!(v["linux"]["resources"]["memory"]["swap"], 48 << 20);
        assert_eq!(v["linux"]["sysctl"]["net.core.somaxconn"], "7");
        let rl = v["process"]["rlimits"].as_array().unwrap();
        assert_eq!(rl.len(), 2, "{rl:?}");
        assert!(rl.contains(&json!({"type": "RLIMIT_NOFILE", "soft": 10, "hard": 20})));
        assert!(rl.contains(&json!({"type": "RLIMIT_CORE", "soft": u64::MAX, "hard": u64::MAX})));
    }

    #[test]
    fn docker_defaults_and_limits_in_the_spec() {
        let paths = SpecPaths {
            rootfs: "/r".into(),
            hosts: "/c/hosts".into(),
            hostname: "/c/hostname".into(),
            resolv_conf: "/c/resolv.conf".into(),
            netns: Some("/run/netns/x".into()),
            volumes: "/v".into(),
            ipc_ns: None,
            pid_ns: None,
        };
        let v = serde_json::to_value(build(&config(), &paths).unwrap()).unwrap();
        assert_eq!(v["process"]["args"], json!(["sh", "-c", "true"]));
        assert_eq!(v["process"]["user"]["uid"], 65534);
        assert_eq!(v["process"]["user"]["additionalGids"], json!([7]));
        assert_eq!(v["process"]["cwd"], "/w");
        assert_eq!(v["process"]["noNewPrivileges"], true);
        let caps = v["process"]["capabilities"]["effective"]
            .as_array()
            .unwrap();
        assert_eq!(caps.len(), DEFAULT_CAPS.len() - 1);
        assert!(!caps.contains(&json!("CAP_NET_RAW")));
        assert_eq!(v["root"]["readonly"], true);
        assert_eq!(v["hostname"], "h");
        assert_eq!(
            v["linux"]["cgroupsPath"],
            format!("/keel/{}", "a".repeat(64))
        );
        assert_eq!(v["linux"]["resources"]["memory"]["limit"], 32 << 20);
        assert_eq!(v["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(v["linux"]["resources"]["pids"]["limit"], 10);
        assert_eq!(v["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        assert!(
            v["linux"]["maskedPaths"]
                .as_array()
                .unwrap()
                .contains(&json!("/proc/kcore"))
        );
        assert!(
            v["linux"]["readonlyPaths"]
                .as_array()
                .unwrap()
                .contains(&json!("/proc/sys"))
        );
        let ns = v["linux"]["namespaces"].as_array().unwrap();
        assert!(ns.contains(&json!({"type": "network", "path": "/run/netns/x"})));
        let mounts = v["mounts"].as_array().unwrap();
        let data = mounts.iter().find(|m| m["destination"] == "/data").unwrap();
        assert_eq!(data["source"], "/v/data/_data");
        assert!(data["options"].as_array().unwrap().contains(&json!("ro")));
        assert!(
            mounts
                .iter()
                .any(|m| m["destination"] == "/etc/hosts" && m["source"] == "/c/hosts")
        );
    }
}
