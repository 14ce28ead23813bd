//! Resource usage read from the container's cgroups (v1 here, v2 if mounted so),
//! the numbers `keel stats` shows and the cluster's autoscaler will read.

use std::fs;
use std::path::PathBuf;

/// The cgroup directory of container `id` for a v1 controller.
pub fn cgroup_dir(controller: &str, id: &str) -> PathBuf {
    PathBuf::from("/sys/fs/cgroup")
        .join(controller)
        .join("keel")
        .join(id)
}

fn read_u64(p: PathBuf) -> Option<u64> {
    fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// One sample.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sample {
    /// Memory in use without the page cache, like Docker (usage − `inactive_file`).
    pub memory_usage: u64,
    pub memory_limit: u64,
    /// Cumulative CPU time in nanoseconds.
    pub cpu_ns: u64,
    pub pids: u64,
}

/// Reads the current usage; `None` when the container has no cgroup (not running).
pub fn sample(id: &str) -> Option<Sample> {
    let mem = cgroup_dir("memory", id);
    let usage = read_u64(mem.join("memory.usage_in_bytes"))?;
    let inactive = fs::read_to_string(mem.join("memory.stat"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("total_inactive_file "))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .unwrap_or(0);
    let host_mem = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(u64::MAX, |k| k * 1024);
    let limit = read_u64(mem.join("memory.limit_in_bytes")).map_or(host_mem, |l| l.min(host_mem));
    Some(Sample {
        memory_usage: usage.saturating_sub(inactive),
        memory_limit: limit,
        cpu_ns: read_u64(cgroup_dir("cpuacct", id).join("cpuacct.usage")).unwrap_or(0),
        pids: read_u64(cgroup_dir("pids", id).join("pids.current")).unwrap_or(0),
    })
}

/// How many times the kernel's OOM killer fired in the container's memory cgroup.
pub fn oom_kills(id: &str) -> u64 {
    fs::read_to_string(cgroup_dir("memory", id).join("memory.oom_control"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("oom_kill "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Every keel cgroup directory that exists (for cleanup checks).
pub fn leftover_cgroups(id: &str) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir("/sys/fs/cgroup") else {
        return Vec::new();
    };
    rd.filter_map(std::result::Result::ok)
        .map(|e| e.path().join("keel").join(id))
        .filter(|p| p.exists())
        .collect()
}
