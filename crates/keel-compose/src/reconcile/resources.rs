//! Resource limits and the keys keel cannot apply, from normalized service values.

use crate::model::Service;
use std::collections::BTreeMap;

/// Resource limits of a container, from the service-level keys and
/// `deploy.resources.limits` (which wins, as in docker compose).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resources {
    /// Bytes.
    pub memory: Option<i64>,
    /// Memory plus swap in bytes, -1 unlimited.
    pub memory_swap: Option<i64>,
    /// CPUs in billionths.
    pub nano_cpus: Option<i64>,
    pub pids_limit: Option<i64>,
    /// /dev/shm in bytes.
    pub shm_size: Option<i64>,
    /// `(name, soft, hard)`.
    pub ulimits: Vec<(String, i64, i64)>,
    pub sysctls: BTreeMap<String, String>,
}

/// Service keys keel cannot apply: `up` warns instead of ignoring them silently.
pub const UNSUPPORTED_KEYS: &[&str] = &[
    "blkio_config",
    "cgroup",
    "cgroup_parent",
    "cpu_count",
    "cpu_percent",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpu_shares",
    "cpuset",
    "credential_spec",
    "device_cgroup_rules",
    "devices",
    "domainname",
    "gpus",
    "group_add",
    "ipc",
    "isolation",
    "mem_reservation",
    "mem_swappiness",
    "oom_kill_disable",
    "oom_score_adj",
    "pid",
    "post_start",
    "pre_stop",
    "privileged",
    "runtime",
    "security_opt",
    "storage_opt",
    "userns_mode",
    "uts",
    "volumes_from",
];

/// An integer from a normalized value: a number, digits, or a byte size (`64m`).
pub(super) fn int_of(v: &serde_yaml_ng::Value) -> Option<i64> {
    match v {
        serde_yaml_ng::Value::Number(n) => n.as_i64(),
        serde_yaml_ng::Value::String(s) => s
            .trim()
            .parse()
            .ok()
            .or_else(|| crate::normalize::parse_bytes(s)),
        _ => None,
    }
}

pub(super) fn float_of(v: &serde_yaml_ng::Value) -> Option<f64> {
    match v {
        serde_yaml_ng::Value::Number(n) => n.as_f64(),
        serde_yaml_ng::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub(super) fn text_of(v: &serde_yaml_ng::Value) -> String {
    match v {
        serde_yaml_ng::Value::String(s) => s.clone(),
        serde_yaml_ng::Value::Number(n) => n.to_string(),
        serde_yaml_ng::Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

impl Resources {
    /// The limits a service asks for; `invalid` explains a value that is no number.
    pub(super) fn of(svc: &Service) -> std::result::Result<Self, String> {
        let bad = |key: &str, v: &serde_yaml_ng::Value| format!("invalid {key} {:?}", text_of(v));
        let int = |key: &str,
                   v: &Option<serde_yaml_ng::Value>|
         -> std::result::Result<Option<i64>, String> {
            v.as_ref()
                .map(|v| int_of(v).ok_or_else(|| bad(key, v)))
                .transpose()
        };
        let cpus = |key: &str,
                    v: Option<&serde_yaml_ng::Value>|
         -> std::result::Result<Option<i64>, String> {
            v.map(|v| {
                float_of(v)
                    .filter(|c| *c >= 0.0)
                    .map(|c| (c * 1e9).round() as i64)
                    .ok_or_else(|| bad(key, v))
            })
            .transpose()
        };
        let mut r = Resources {
            memory: int("mem_limit", &svc.mem_limit)?,
            memory_swap: int("memswap_limit", &svc.memswap_limit)?,
            nano_cpus: cpus("cpus", svc.cpus.as_ref())?,
            pids_limit: int("pids_limit", &svc.pids_limit)?,
            shm_size: int("shm_size", &svc.shm_size)?,
            ulimits: Vec::new(),
            sysctls: svc
                .sysctls
                .iter()
                .map(|(k, v)| (k.clone(), v.as_ref().map(text_of).unwrap_or_default()))
                .collect(),
        };
        let limits = svc
            .deploy
            .as_ref()
            .and_then(|d| d.resources.as_ref())
            .and_then(|r| r.get("limits"));
        if let Some(l) = limits {
            if let Some(m) = int("deploy.resources.limits.memory", &l.get("memory").cloned())? {
                r.memory = Some(m);
            }
            if let Some(c) = cpus("deploy.resources.limits.cpus", l.get("cpus"))? {
                r.nano_cpus = Some(c);
            }
            if let Some(p) = int("deploy.resources.limits.pids", &l.get("pids").cloned())? {
                r.pids_limit = Some(p);
            }
        }
        // 0 and -1 mean "no limit" to docker.
        r.pids_limit = r.pids_limit.filter(|p| *p > 0);
        r.nano_cpus = r.nano_cpus.filter(|c| *c > 0);
        for (name, v) in &svc.ulimits {
            let (soft, hard) = match v {
                serde_yaml_ng::Value::Mapping(_) => {
                    let get = |k: &str| v.get(k).and_then(int_of);
                    match (get("soft"), get("hard")) {
                        (Some(s), Some(h)) => (s, h),
                        _ => return Err(format!("ulimits.{name} needs soft and hard")),
                    }
                }
                other => {
                    let n = int_of(other).ok_or_else(|| bad(&format!("ulimits.{name}"), other))?;
                    (n, n)
                }
            };
            r.ulimits.push((name.clone(), soft, hard));
        }
        Ok(r)
    }
}
