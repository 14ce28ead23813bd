//! Parsers of container flag values (sizes, durations, volumes, mounts,
//! networks) and the runtime's `CreateOptions` built from the flags.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use keel_runtime::engine::CreateOptions;
use keel_runtime::volume::NOCOPY;
use keel_runtime::{HealthConfig, MountKind, MountSpec, PortSpec, RestartPolicy, ids};

use super::flags::CreateFlags;
use super::hinted;

/// `512`, `64k`, `64m`, `1g`, `1GiB` (docker's `RAMInBytes`: binary units),
/// surrounding blanks ignored.
pub fn parse_bytes(s: &str) -> anyhow::Result<i64> {
    let t = s.trim();
    match keel_go::ram_in_bytes(t) {
        Ok(n) if n >= 0 => Ok(n),
        // go-units' overflow comes out negative.
        Ok(_) => bail!("invalid size {s:?}: too large"),
        Err(keel_go::SizeError::Invalid(_)) if t.starts_with('-') => {
            bail!("invalid size {s:?}: must not be negative")
        }
        Err(_) => {
            bail!("invalid size {s:?}: expected a number with an optional k, m, g suffix")
        }
    }
}

/// A Go duration (`500ms`, `30s`, `1m30s`, `1h`, `0`; docker reads the
/// `--health-*` flags with `time.ParseDuration`) → whole milliseconds.
pub fn parse_duration_ms(s: &str) -> anyhow::Result<u64> {
    let bad = || anyhow::anyhow!("invalid duration {s:?}: expected e.g. 500ms, 30s, 1m30s");
    let ns = keel_go::parse_duration(s.trim()).map_err(|_| bad())?;
    u64::try_from(ns / 1_000_000).map_err(|_| bad())
}

pub(super) fn kv(s: &str) -> (String, String) {
    match s.split_once('=') {
        Some((k, v)) => (k.to_string(), v.to_string()),
        None => (s.to_string(), String::new()),
    }
}

/// `-v` forms: `/path` (anonymous volume), `NAME:/path[:opts]`, `/host:/path[:opts]`.
pub fn parse_volume(s: &str) -> anyhow::Result<MountSpec> {
    let parts: Vec<&str> = s.split(':').collect();
    let bad = |why: &str| anyhow::anyhow!("invalid volume specification {s:?}: {why}");
    let (src, dst, opts) = match parts.as_slice() {
        [d] => ("", *d, ""),
        [a, b] => (*a, *b, ""),
        [a, b, o] => (*a, *b, *o),
        _ => return Err(bad("expected [SOURCE:]TARGET[:OPTIONS]")),
    };
    if dst.is_empty() || !dst.starts_with('/') {
        return Err(bad("the container path must be absolute"));
    }
    let mut read_only = false;
    let mut nocopy = false;
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => read_only = true,
            "nocopy" => nocopy = true,
            // `cached`/`delegated`/`consistent` are no-ops on Linux docker too.
            "rw" | "z" | "Z" | "rprivate" | "private" | "rshared" | "shared" | "rslave"
            | "slave" | "cached" | "delegated" | "consistent" => {}
            _ => return Err(bad(&format!("unknown option {o:?}"))),
        }
    }
    let options = if nocopy {
        vec![NOCOPY.to_string()]
    } else {
        Vec::new()
    };
    if src.is_empty() {
        if parts.len() > 1 {
            return Err(bad("empty source"));
        }
        return Ok(MountSpec {
            kind: MountKind::Volume,
            source: ids::new_id(),
            target: dst.to_string(),
            read_only,
            anonymous: true,
            options,
        });
    }
    if src.starts_with('/') || src.starts_with('.') {
        // docker ≥ 23 reads `.`, `./x` and `../x` as host paths relative to
        // the current directory (a volume name cannot start with a dot).
        let host = if src.starts_with('/') {
            std::path::PathBuf::from(src)
        } else {
            std::env::current_dir()
                .context("reading the current directory")?
                .join(src)
        };
        let host = clean_path(&host);
        // Like docker's -v, a missing source is created as a directory; an
        // existing one (a file too: `-v ./nginx.conf:/etc/nginx/nginx.conf`)
        // is bound as it is.
        if std::fs::symlink_metadata(&host).is_err() {
            std::fs::create_dir_all(&host)
                .with_context(|| format!("creating host directory {}", host.display()))?;
        }
        return Ok(MountSpec {
            kind: MountKind::Bind,
            source: host.to_string_lossy().into_owned(),
            target: dst.to_string(),
            read_only,
            anonymous: false,
            options: Vec::new(),
        });
    }
    if !ids::valid_name(src) {
        return Err(bad(
            "the source must be an absolute host path or a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)",
        ));
    }
    Ok(MountSpec {
        kind: MountKind::Volume,
        source: src.to_string(),
        target: dst.to_string(),
        read_only,
        anonymous: false,
        options,
    })
}

/// `a/./b/../c` → `a/c`, lexically, as docker's `filepath.Abs` cleans.
fn clean_path(p: &std::path::Path) -> std::path::PathBuf {
    use std::path::Component;
    let mut out = std::path::PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `--mount type=…,source=…,target=…[,readonly][,tmpfs-size=…][,tmpfs-mode=…]`.
pub fn parse_mount(s: &str) -> anyhow::Result<MountSpec> {
    let bad = |why: &str| anyhow::anyhow!("invalid mount specification {s:?}: {why}");
    let mut kind = MountKind::Volume;
    let (mut src, mut dst, mut ro, mut opts) = (String::new(), String::new(), false, Vec::new());
    for field in s.split(',') {
        let (k, v) = kv(field);
        match k.as_str() {
            "type" => {
                kind = match v.as_str() {
                    "bind" => MountKind::Bind,
                    "volume" => MountKind::Volume,
                    "tmpfs" => MountKind::Tmpfs,
                    _ => return Err(bad("type must be bind, volume or tmpfs")),
                };
            }
            "source" | "src" => src = v,
            "target" | "destination" | "dst" => dst = v,
            "readonly" | "ro" => ro = v.is_empty() || v == "true" || v == "1",
            "tmpfs-size" => opts.push(format!("size={}", parse_bytes(&v)?)),
            "tmpfs-mode" => opts.push(format!("mode={v}")),
            "volume-nocopy" if v.is_empty() || v == "true" || v == "1" => {
                opts.push(NOCOPY.to_string());
            }
            "bind-propagation" | "consistency" | "volume-nocopy" => {}
            _ => return Err(bad(&format!("unknown field {k:?}"))),
        }
    }
    if dst.is_empty() {
        return Err(bad("target is required"));
    }
    let anonymous = kind == MountKind::Volume && src.is_empty();
    if anonymous {
        src = ids::new_id();
    }
    if kind == MountKind::Bind && src.is_empty() {
        return Err(bad("source is required for bind mounts"));
    }
    Ok(MountSpec {
        kind,
        source: src,
        target: dst,
        read_only: ro,
        anonymous,
        options: opts,
    })
}

fn parse_tmpfs(s: &str) -> anyhow::Result<MountSpec> {
    let (dst, opts) = s.split_once(':').unwrap_or((s, ""));
    Ok(MountSpec {
        kind: MountKind::Tmpfs,
        source: String::new(),
        target: dst.to_string(),
        read_only: false,
        anonymous: false,
        options: opts
            .split(',')
            .filter(|o| !o.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

/// `--label-file` lines (blank and `#` lines skipped) then `-l`, later wins.
fn labels(f: &CreateFlags) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for file in &f.label_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading label file {}", file.display()))?;
        for line in text.lines().map(str::trim) {
            if !line.is_empty() && !line.starts_with('#') {
                out.insert(kv(line).0, kv(line).1);
            }
        }
    }
    out.extend(f.label.iter().map(|l| kv(l)));
    Ok(out)
}

/// `--platform` and `--userns`: keel runs this host's platform in the
/// host's user namespace, and says so instead of ignoring the flag.
fn check_platform_and_userns(f: &CreateFlags) -> anyhow::Result<()> {
    if let Some(p) = &f.platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            a => a,
        };
        let mut parts = p.split('/');
        let (os, a) = (parts.next().unwrap_or(""), parts.next().unwrap_or(arch));
        if os != "linux" || a != arch {
            return Err(anyhow::Error::new(crate::Hint::new(format!(
                "keel runs linux/{arch} images only (no emulation); drop --platform or use linux/{arch}"
            )))
            .context(format!("platform {p:?} is not this host's")));
        }
    }
    if let Some(u) = f
        .userns
        .as_deref()
        .filter(|u| !u.is_empty() && *u != "host")
    {
        return Err(anyhow::Error::new(crate::Hint::new(
            "keel runs containers in the host's user namespace: use --userns host or leave it out",
        ))
        .context(format!("--userns {u:?} is not supported")));
    }
    Ok(())
}

pub(super) fn create_options(f: &CreateFlags) -> anyhow::Result<CreateOptions> {
    check_platform_and_userns(f)?;
    let mut env = Vec::new();
    for file in &f.env_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading env file {}", file.display()))?;
        for line in text.lines() {
            let l = line.trim_start();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            env.extend(expand_env(l)?);
        }
    }
    for e in &f.process.env {
        env.extend(expand_env(e)?);
    }
    check_arg_lengths(&env, &f.command, &f.ulimit)?;
    let log_attrs = log_attrs(&f.log_opt, &f.label, &env);
    let (log_max_size, log_max_file) = log_options(f.log_driver.as_deref(), &f.log_opt)?;
    if f.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        // docker sets TERM for a terminal; the container's own env wins.
        env.insert(0, "TERM=xterm".to_string());
    }
    let mut mounts = Vec::new();
    for v in &f.volume {
        mounts.push(parse_volume(v)?);
    }
    for m in &f.mount {
        mounts.push(parse_mount(m)?);
    }
    for t in &f.tmpfs {
        mounts.push(parse_tmpfs(t)?);
    }
    let mut ports = Vec::new();
    for p in &f.publish {
        ports.extend(PortSpec::parse(p).map_err(hinted)?);
    }
    // Zero fields and an empty test inherit the image's HEALTHCHECK (engine::merge_healthcheck).
    let healthcheck = if f.no_healthcheck {
        Some(HealthConfig {
            test: vec!["NONE".to_string()],
            interval_ms: 0,
            timeout_ms: 0,
            retries: 0,
            start_period_ms: 0,
        })
    } else {
        let ms = |v: &Option<String>| v.as_deref().map_or(Ok(0), parse_duration_ms);
        Some(HealthConfig {
            test: f
                .health_cmd
                .as_ref()
                .map(|c| vec!["CMD-SHELL".to_string(), c.clone()])
                .unwrap_or_default(),
            interval_ms: ms(&f.health_interval)?,
            timeout_ms: ms(&f.health_timeout)?,
            retries: f.health_retries.unwrap_or(0),
            start_period_ms: ms(&f.health_start_period)?,
        })
    };
    let mut networks = f
        .network
        .iter()
        .map(|n| parse_network_flag(n))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut primary = if networks.is_empty() {
        keel_runtime::EndpointConfig {
            network: "bridge".to_string(),
            ..keel_runtime::EndpointConfig::default()
        }
    } else {
        networks.remove(0)
    };
    primary.aliases.extend(f.network_alias.iter().cloned());
    if f.ip.is_some() {
        primary.ip.clone_from(&f.ip);
    }
    let security = security_opts(&f.security_opt)?;
    let cpus = match f.cpus {
        Some(c) if c <= 0.0 => bail!("invalid --cpus {c}: must be positive"),
        Some(c) => Some((c * 1e9) as i64),
        None => None,
    };
    Ok(CreateOptions {
        image: f.image.clone(),
        name: f.process.name.clone(),
        command: f.command.clone(),
        entrypoint: f.process.entrypoint.clone(),
        env,
        working_dir: f.process.workdir.clone(),
        user: f.process.user.clone(),
        hostname: f.hostname.clone(),
        labels: labels(f)?,
        network: primary.network,
        network_aliases: primary.aliases,
        networking: keel_runtime::NetworkConfig {
            ip: primary.ip,
            extra_networks: networks,
            extra_hosts: f.add_host.clone(),
            dns: f.dns.clone(),
            dns_search: f.dns_search.clone(),
            dns_options: f.dns_option.clone(),
        },
        ports,
        publish_all: f.publish_all,
        expose: f.expose.clone(),
        group_add: f.group_add.clone(),
        volumes_from: f.volumes_from.clone(),
        mounts,
        memory: f.memory.as_deref().map(parse_bytes).transpose()?,
        nano_cpus: cpus,
        pids_limit: f.pids_limit.filter(|p| *p > 0),
        read_only: f.read_only,
        cap_add: f.cap_add.clone(),
        cap_drop: f.cap_drop.clone(),
        restart: {
            let r = RestartPolicy::parse(&f.restart).map_err(hinted)?;
            // docker refuses the pair: a removed container cannot restart.
            if f.rm && r != RestartPolicy::No {
                bail!("Conflicting options: --restart and --rm");
            }
            r
        },
        healthcheck,
        stop_signal: f.stop_signal.clone(),
        stop_timeout: f.stop_timeout,
        runtime: f.runtime.clone().unwrap_or_default(),
        auto_remove: f.rm,
        interactive: f.interactive,
        tty: f.tty,
        extra: keel_runtime::record::ExtraConfig {
            memory_swap: match f.memory_swap.as_deref() {
                Some("-1") => Some(-1),
                other => other.map(parse_bytes).transpose()?,
            },
            shm_size: f.shm_size.as_deref().map(parse_bytes).transpose()?,
            ulimits: f.ulimit.clone(),
            sysctls: f.sysctl.iter().map(|l| kv(l)).collect(),
            init: f.init,
            log_max_size,
            log_max_file,
            log_attrs,
            cpu_shares: f.cpu_shares.filter(|s| *s > 0),
            cpuset_cpus: f.cpuset_cpus.clone(),
            cpuset_mems: f.cpuset_mems.clone(),
            privileged: f.privileged,
            devices: f.device.clone(),
            seccomp: security.seccomp,
            no_new_privileges: security.no_new_privileges,
            security_opt: f.security_opt.clone(),
            ipc: namespace_mode(
                "--ipc",
                f.ipc.as_deref(),
                &["private", "shareable", "none", "host"],
            )?,
            pid: namespace_mode("--pid", f.pid.as_deref(), &["host"])?,
        },
    })
}

/// What `--security-opt` set.
#[derive(Default)]
struct SecurityOpts {
    seccomp: Option<String>,
    no_new_privileges: Option<bool>,
}

/// docker's `--security-opt` (`KEY=VALUE`, or the old `KEY:VALUE`). keel
/// applies no `AppArmor` or `SELinux` policy, so of those only
/// `apparmor=unconfined` and `label=disable` are accepted.
fn security_opts(opts: &[String]) -> anyhow::Result<SecurityOpts> {
    let mut out = SecurityOpts::default();
    for o in opts {
        let (k, v) = o
            .split_once('=')
            .or_else(|| o.split_once(':'))
            .unwrap_or((o.as_str(), ""));
        match (k, v) {
            ("no-new-privileges", "" | "true") => out.no_new_privileges = Some(true),
            ("no-new-privileges", "false") => out.no_new_privileges = Some(false),
            ("seccomp", "unconfined") => out.seccomp = Some("unconfined".to_string()),
            ("seccomp", path) if !path.is_empty() => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("opening seccomp profile ({path}) failed"))?;
                out.seccomp = Some(text);
            }
            ("apparmor", "unconfined") | ("label", "disable") => {}
            ("apparmor" | "label", _) => {
                return Err(anyhow::Error::new(crate::Hint::new(
                    "keel applies no AppArmor or SELinux policy: use apparmor=unconfined or label=disable",
                )))
                .context(format!("unsupported --security-opt {o:?}"));
            }
            _ => bail!("Invalid --security-opt: {o:?}"),
        }
    }
    Ok(out)
}

/// `--ipc`/`--pid`: one of `plain`, or `container:NAME`.
fn namespace_mode(flag: &str, v: Option<&str>, plain: &[&str]) -> anyhow::Result<String> {
    match v {
        None | Some("") => Ok(String::new()),
        Some(m) if plain.contains(&m) => Ok(m.to_string()),
        Some(m) if m.strip_prefix("container:").is_some_and(|c| !c.is_empty()) => Ok(m.to_string()),
        Some(m) => bail!(
            "invalid {flag} mode {m:?}: expected {} or container:NAME",
            plain.join(", ")
        ),
    }
}

/// `--network NAME` or Docker's long form `name=NAME[,alias=A]...[,ip=IP]`.
fn parse_network_flag(s: &str) -> anyhow::Result<keel_runtime::EndpointConfig> {
    let mut ep = keel_runtime::EndpointConfig::default();
    if !s.starts_with("name=") {
        ep.network = s.to_string();
        return Ok(ep);
    }
    for field in s.split(',') {
        match kv(field) {
            (k, v) if k == "name" => ep.network = v,
            (k, v) if k == "alias" => ep.aliases.push(v),
            (k, v) if k == "ip" => ep.ip = Some(v),
            (k, _) => bail!(
                "invalid --network {s:?}: unknown field {k:?} (keel takes name, alias and ip)"
            ),
        }
    }
    if ep.network.is_empty() {
        bail!("invalid --network {s:?}: name is required");
    }
    Ok(ep)
}

/// docker's json-file `--log-opt labels=A,B` and `env=X,Y`: those labels
/// and variables of the container (the ones it has), which `logs --details`
/// shows before each line.
pub(crate) fn log_attrs(
    opts: &[String],
    labels: &[String],
    env: &[String],
) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    for o in opts {
        let (k, v) = kv(o);
        let source = match k.as_str() {
            "labels" => labels,
            "env" => env,
            _ => continue,
        };
        for want in v.split(',').filter(|w| !w.is_empty()) {
            for item in source {
                let (ik, iv) = kv(item);
                if ik == want {
                    out.insert(ik, iv);
                }
            }
        }
    }
    out
}

/// `KEY` alone takes the value from keel's own environment, like Docker.
/// `--log-driver json-file` (the one keel writes) and its `--log-opt
/// max-size=SIZE`, `max-file=N`; docker's default keeps every line.
pub(crate) fn log_options(
    driver: Option<&str>,
    opts: &[String],
) -> anyhow::Result<(Option<u64>, Option<u32>)> {
    if let Some(d) = driver.filter(|d| *d != "json-file") {
        bail!("log driver {d:?} is not supported: keel writes json-file logs");
    }
    let (mut size, mut files) = (None, None);
    for o in opts {
        match kv(o) {
            (k, v) if k == "max-size" => {
                size = Some(u64::try_from(parse_bytes(&v)?).unwrap_or(0)).filter(|n| *n > 0);
            }
            (k, v) if k == "max-file" => {
                files = Some(v.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    anyhow::anyhow!("invalid max-file {v:?}: expected a positive number")
                })?);
            }
            // The attributes of `logs --details`, see [`log_attrs`].
            (k, _) if k == "labels" || k == "env" => {}
            (k, _) => bail!(
                "unknown log opt {k:?} for the json-file driver (max-size, max-file, labels, env)"
            ),
        }
    }
    if files.is_some_and(|n| n > 1) && size.is_none() {
        bail!("max-file can only be used with max-size");
    }
    Ok((size, files))
}

/// Linux's `MAX_ARG_STRLEN` (32 pages of 4 KiB): execve(2) fails with E2BIG
/// for a longer variable or argument, inside the container where nobody
/// would see why; caught here with the name of the culprit.
const MAX_ARG_STRLEN: usize = 32 * 4096;

/// What execve(2) takes in all, arguments and environment together: a
/// quarter of the stack limit (the container's `--ulimit stack`, else
/// keel's own), at most 6 MiB (3/4 of the kernel's `_STK_LIM`), at least 128 KiB.
fn arg_max(ulimits: &[keel_runtime::record::Ulimit]) -> u64 {
    let stack = ulimits
        .iter()
        .find(|u| u.name == "stack")
        .and_then(|u| u64::try_from(u.soft).ok())
        .or_else(|| {
            std::fs::read_to_string("/proc/self/limits")
                .ok()
                .and_then(|t| {
                    t.lines()
                        .find(|l| l.starts_with("Max stack size"))
                        .and_then(|l| l.split_whitespace().nth(3))
                        .and_then(|v| v.parse().ok())
                })
        });
    stack
        .map_or(6 << 20, |s| (s / 4).min(6 << 20))
        .max(128 << 10)
}

fn check_arg_lengths(
    env: &[String],
    command: &[String],
    ulimits: &[keel_runtime::record::Ulimit],
) -> anyhow::Result<()> {
    // Strings with their NUL, and a pointer each (the kernel counts both).
    let total: u64 = env
        .iter()
        .chain(command)
        .map(|s| s.len() as u64 + 1 + 8)
        .sum();
    let max = arg_max(ulimits);
    if total > max {
        return Err(anyhow::Error::new(crate::Hint::new(
            "pass large data in a file (-v or keel cp) instead of the environment",
        ))
        .context(format!(
            "the environment and command add up to {total} bytes: argument list too long (E2BIG); execve takes at most {max} here (a quarter of the stack limit)"
        )));
    }
    for e in env {
        if e.len() + 1 > MAX_ARG_STRLEN {
            let name = e.split('=').next().unwrap_or("");
            return Err(anyhow::Error::new(crate::Hint::new(
                "pass large data in a file (-v or keel cp) instead of the environment",
            ))
            .context(format!(
                "environment variable {name} is {} bytes: argument list too long (E2BIG); Linux takes at most {} bytes per variable",
                e.len(),
                MAX_ARG_STRLEN - 1
            )));
        }
    }
    for (i, a) in command.iter().enumerate() {
        if a.len() + 1 > MAX_ARG_STRLEN {
            bail!(
                "argument {} of the command is {} bytes: argument list too long (E2BIG); Linux takes at most {} bytes per argument",
                i + 1,
                a.len(),
                MAX_ARG_STRLEN - 1
            );
        }
    }
    Ok(())
}

/// `-e VAR=value` as is; `-e VAR` takes the host's value and, like docker,
/// is left out when the host has none; `-e =x` is refused.
pub(super) fn expand_env(e: &str) -> anyhow::Result<Option<String>> {
    if e.starts_with('=') || e.is_empty() {
        bail!("invalid environment variable: {e}");
    }
    if e.contains('=') {
        Ok(Some(e.to_string()))
    } else {
        Ok(std::env::var(e).ok().map(|v| format!("{e}={v}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::cp::container_path;
    use crate::container::logs::parse_since;
    use proptest::prelude::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_bytes("64m").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("1g").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("512").unwrap(), 512);
        assert_eq!(parse_bytes("1.5k").unwrap(), 1536);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("-1m").is_err());
        assert_eq!(parse_duration_ms("200ms").unwrap(), 200);
        assert_eq!(parse_duration_ms("1m30s").unwrap(), 90_000);
        assert!(parse_duration_ms("30").is_err());
        assert!(parse_duration_ms("3x").is_err());
    }

    /// Regression: `--health-*` refused `0`, `ns` and `us`, which docker
    /// (time.ParseDuration) accepts, and sizes refused docker's `512MiB`.
    #[test]
    fn durations_and_sizes_like_docker() {
        assert_eq!(parse_duration_ms("0").unwrap(), 0);
        assert_eq!(parse_duration_ms("1000000ns").unwrap(), 1);
        assert_eq!(parse_duration_ms("2500us").unwrap(), 2);
        assert_eq!(parse_duration_ms("1.5s").unwrap(), 1500);
        assert!(parse_duration_ms("-1s").is_err());
        assert_eq!(parse_bytes("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1p").unwrap(), 1 << 50);
        assert!(parse_bytes("1e30").is_err());
    }

    #[test]
    fn volume_and_mount_specs() {
        let v = parse_volume("data:/data:ro").unwrap();
        assert_eq!(
            (v.kind, v.source.as_str(), v.target.as_str(), v.read_only),
            (MountKind::Volume, "data", "/data", true)
        );
        let a = parse_volume("/scratch").unwrap();
        assert!(a.anonymous && a.source.len() == 64);
        assert!(parse_volume("a:b:c:d").is_err());
        assert!(parse_volume("data:relative").is_err());
        assert!(parse_volume("data:/x:bogus").is_err());
        assert!(parse_volume("bad name:/x").is_err());
        let m = parse_mount("type=tmpfs,target=/t,tmpfs-size=1m").unwrap();
        assert_eq!(m.kind, MountKind::Tmpfs);
        assert_eq!(m.options, vec![format!("size={}", 1 << 20)]);
        let b = parse_mount("type=bind,src=/tmp,dst=/h,readonly").unwrap();
        assert!(b.read_only && b.source == "/tmp");
        assert!(parse_mount("type=bind,target=/x").is_err());
        assert!(parse_mount("type=nfs,target=/x").is_err());
        assert!(parse_mount("source=x").is_err());
        assert_eq!(
            container_path("c1:/etc/passwd"),
            Some(("c1", "/etc/passwd"))
        );
        assert_eq!(container_path("/tmp/a:b"), None);
    }

    proptest! {
        #[test]
        fn flag_parsers_never_panic(s in ".{0,40}") {
            let _ = parse_bytes(&s);
            let _ = parse_duration_ms(&s);
            let _ = parse_mount(&s);
            let _ = parse_since(&s);
            let _ = container_path(&s);
        }
    }
}
