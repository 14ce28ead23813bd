//! What `--privileged`, `--device` and `--security-opt seccomp=PROFILE`
//! add to a spec: device nodes (the host's, read from /dev, with their
//! cgroup rules) and docker's seccomp profile format turned into the OCI
//! one (docker's `archMap` and conditional `includes`/`excludes` resolved
//! for this host and the container's capabilities).

use std::path::Path;

use serde_json::{Value, json};

use crate::error::{Result, RuntimeError};
use crate::record::DeviceMapping;

/// Devices every container gets from the runtime itself, and /dev
/// entries docker's `HostDevices` leaves out.
const SKIPPED: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/console",
    "/dev/ptmx",
    "/dev/pts",
    "/dev/shm",
    "/dev/mqueue",
];

/// One device node for the spec: `linux.devices[]` and its
/// `linux.resources.devices[]` rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub device: Value,
    pub rule: Value,
}

/// The node for host device `host` made at `container` with `perms`.
pub fn node(host: &Path, container: &str, perms: &str) -> Result<Node> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let bad = |why: String| RuntimeError::InvalidOption {
        what: "device",
        value: host.display().to_string(),
        why,
    };
    let m = std::fs::metadata(host).map_err(|e| bad(e.to_string()))?;
    let kind = if m.file_type().is_char_device() {
        "c"
    } else if m.file_type().is_block_device() {
        "b"
    } else {
        return Err(bad("not a device node".to_string()));
    };
    let rdev = m.rdev();
    let (major, minor) = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
    Ok(Node {
        device: json!({"path": container, "type": kind, "major": major, "minor": minor,
            "fileMode": m.mode() & 0o7777, "uid": m.uid(), "gid": m.gid()}),
        rule: json!({"allow": true, "type": kind, "major": major, "minor": minor, "access": perms}),
    })
}

/// Every device node under `dir` (recursively, symlinks not followed),
/// as `--privileged` gives them.
pub fn host_devices(dir: &Path) -> Vec<Node> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut entries: Vec<_> = rd.filter_map(std::result::Result::ok).collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for e in entries {
        let p = e.path();
        let Some(ps) = p.to_str() else { continue };
        if SKIPPED.contains(&ps) {
            continue;
        }
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            out.extend(host_devices(&p));
        } else if !ft.is_symlink()
            && let Ok(n) = node(&p, ps, "rwm")
        {
            out.push(n);
        }
    }
    out
}

/// The nodes of `--device` mappings; a directory maps every device under it.
pub fn mapped_devices(devices: &[DeviceMapping]) -> Result<Vec<Node>> {
    let mut out = Vec::new();
    for d in devices {
        let host = Path::new(&d.host);
        if host.is_dir() {
            for mut n in host_devices(host) {
                let path = n.device["path"].as_str().unwrap_or_default().to_string();
                let rel = path.strip_prefix(&d.host).unwrap_or(&path);
                n.device["path"] = json!(format!("{}{rel}", d.container.trim_end_matches('/')));
                n.rule["access"] = json!(d.permissions);
                out.push(n);
            }
        } else {
            out.push(node(host, &d.container, &d.permissions)?);
        }
    }
    Ok(out)
}

/// libseccomp's name of this host's architecture.
fn native_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "SCMP_ARCH_X86_64",
        "aarch64" => "SCMP_ARCH_AARCH64",
        "x86" => "SCMP_ARCH_X86",
        "arm" => "SCMP_ARCH_ARM",
        "riscv64" => "SCMP_ARCH_RISCV64",
        "s390x" => "SCMP_ARCH_S390X",
        "powerpc64" => "SCMP_ARCH_PPC64LE",
        other => other,
    }
}

fn strings(v: &Value) -> Vec<String> {
    crate::spec::json_strings(v)
}

/// Whether a docker `includes`/`excludes` condition holds for a container
/// with `caps` on this host (`minKernel` is taken as met: keel needs a
/// newer kernel than any profile names).
fn holds(cond: &Value, caps: &[String]) -> Option<bool> {
    let obj = cond.as_object().filter(|o| !o.is_empty())?;
    let arch_ok = obj
        .get("arches")
        .map(strings)
        .filter(|a| !a.is_empty())
        .is_none_or(|a| {
            let short = native_arch()
                .trim_start_matches("SCMP_ARCH_")
                .to_ascii_lowercase();
            a.iter()
                .any(|x| *x == short || x == native_arch() || (short == "x86_64" && x == "amd64"))
        });
    let caps_ok = obj
        .get("caps")
        .map(strings)
        .filter(|c| !c.is_empty())
        .is_none_or(|c| c.iter().all(|x| caps.contains(&crate::spec::cap_name(x))));
    Some(arch_ok && caps_ok)
}

/// docker's seccomp profile `text` as an OCI `linux.seccomp` for a
/// container with `caps`.
pub fn docker_profile(text: &str, caps: &[String]) -> Result<Value> {
    let bad = |why: String| RuntimeError::InvalidOption {
        what: "seccomp profile",
        value: String::new(),
        why,
    };
    let v: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let default = v
        .get("defaultAction")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("defaultAction is missing".to_string()))?;
    let mut arches = strings(v.get("architectures").unwrap_or(&Value::Null));
    if let Some(map) = v.get("archMap").and_then(Value::as_array) {
        for m in map {
            if m.get("architecture").and_then(Value::as_str) == Some(native_arch()) {
                arches.push(native_arch().to_string());
                arches.extend(strings(m.get("subArchitectures").unwrap_or(&Value::Null)));
            }
        }
    }
    let mut syscalls = Vec::new();
    for s in v
        .get("syscalls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if holds(s.get("includes").unwrap_or(&Value::Null), caps) == Some(false)
            || holds(s.get("excludes").unwrap_or(&Value::Null), caps) == Some(true)
        {
            continue;
        }
        let mut names = strings(s.get("names").unwrap_or(&Value::Null));
        if let Some(n) = s.get("name").and_then(Value::as_str) {
            names.push(n.to_string());
        }
        let action = s
            .get("action")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("a syscall rule has no action".to_string()))?;
        if names.is_empty() {
            continue;
        }
        let mut rule = json!({"names": names, "action": action});
        if let Some(e) = s.get("errnoRet") {
            rule["errnoRet"] = e.clone();
        }
        if let Some(a) = s
            .get("args")
            .filter(|a| a.as_array().is_some_and(|a| !a.is_empty()))
        {
            rule["args"] = a.clone();
        }
        syscalls.push(rule);
    }
    let mut out = json!({"defaultAction": default, "syscalls": syscalls});
    if !arches.is_empty() {
        out["architectures"] = json!(arches);
    }
    if let Some(e) = v.get("defaultErrnoRet") {
        out["defaultErrnoRet"] = e.clone();
    }
    // Checked here so that a bad profile fails `create`, not the start.
    serde_json::from_value::<oci_spec::runtime::LinuxSeccomp>(out.clone())
        .map_err(|e| bad(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_mappings_parse_as_docker_writes_them() {
        let d = DeviceMapping::parse("/dev/fuse").unwrap();
        assert_eq!(
            (d.container.as_str(), d.permissions.as_str()),
            ("/dev/fuse", "rwm")
        );
        let d = DeviceMapping::parse("/dev/zero:/dev/z:r").unwrap();
        assert_eq!(
            (d.container.as_str(), d.permissions.as_str()),
            ("/dev/z", "r")
        );
        let d = DeviceMapping::parse("/dev/zero:rw").unwrap();
        assert_eq!(
            (d.container.as_str(), d.permissions.as_str()),
            ("/dev/zero", "rw")
        );
        assert!(DeviceMapping::parse("/dev/zero:/dev/z:rx").is_err());
        assert!(DeviceMapping::parse("zero").is_err());
        assert!(DeviceMapping::parse("/a:/b:r:x").is_err());
    }

    #[test]
    fn nodes_of_host_devices() {
        let n = node(Path::new("/dev/null"), "/dev/n", "r").unwrap();
        assert_eq!(n.device["major"], 1);
        assert_eq!(n.device["minor"], 3);
        assert_eq!(n.device["path"], "/dev/n");
        assert_eq!(n.rule["access"], "r");
        assert!(node(Path::new("/etc/hostname"), "/x", "rwm").is_err());
        assert!(node(Path::new("/nonexistent"), "/x", "rwm").is_err());
        let all = host_devices(Path::new("/dev"));
        assert!(!all.iter().any(|n| n.device["path"] == "/dev/null"));
    }

    #[test]
    fn docker_profiles_become_oci_ones() {
        let p = r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
            "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
                        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": []}],
            "syscalls": [
              {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
              {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
              {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "excludes": {"caps": ["CAP_FOWNER"]}},
              {"name": "exit", "action": "SCMP_ACT_ALLOW", "args": []}
            ]}"#;
        let v = docker_profile(p, &["CAP_FOWNER".to_string()]).unwrap();
        let names: Vec<String> = v["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| strings(&s["names"]))
            .collect();
        assert_eq!(names, ["read", "write", "exit"]);
        assert_eq!(v["defaultErrnoRet"], 1);
        assert!(strings(&v["architectures"]).contains(&native_arch().to_string()));
        assert!(docker_profile("{}", &[]).is_err());
        assert!(docker_profile("not json", &[]).is_err());
        assert!(
            docker_profile(r#"{"defaultAction": "SCMP_ACT_BOGUS"}"#, &[]).is_err(),
            "an unknown action fails at create"
        );
    }
}
