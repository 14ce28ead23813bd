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
    /// Bytes received and sent on the container's own network namespace
    /// (every interface but `lo`; zero on the host's network).
    pub net_rx: u64,
    pub net_tx: u64,
    /// Bytes read from and written to block devices (blkio `io_service_bytes`).
    pub block_read: u64,
    pub block_write: u64,
}

/// Sums `/proc/net/dev`'s receive and transmit byte columns, `lo` excluded.
pub fn parse_net_dev(text: &str) -> (u64, u64) {
    let mut rx = 0u64;
    let mut tx = 0u64;
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let cols: Vec<u64> = rest
            .split_whitespace()
            .map(|c| c.parse().unwrap_or(0))
            .collect();
        if cols.len() >= 9 {
            rx = rx.saturating_add(cols[0]);
            tx = tx.saturating_add(cols[8]);
        }
    }
    (rx, tx)
}

/// Sums the `Read` and `Write` lines of a v1 `blkio.*io_service_bytes` file.
pub fn parse_blkio_bytes(text: &str) -> (u64, u64) {
    let mut read = 0u64;
    let mut write = 0u64;
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(_dev), Some(op), Some(v)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let v: u64 = v.parse().unwrap_or(0);
        match op {
            "Read" => read = read.saturating_add(v),
            "Write" => write = write.saturating_add(v),
            _ => {}
        }
    }
    (read, write)
}

/// Network bytes of the namespace the cgroup's first process lives in.
fn net_io(id: &str) -> (u64, u64) {
    let Some(pid) = fs::read_to_string(cgroup_dir("memory", id).join("cgroup.procs"))
        .ok()
        .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<u32>().ok()))
    else {
        return (0, 0);
    };
    let ns = fs::read_link(format!("/proc/{pid}/ns/net")).ok();
    // `--network host`: the host's counters are not the container's.
    if ns.is_none() || ns == fs::read_link("/proc/self/ns/net").ok() {
        return (0, 0);
    }
    fs::read_to_string(format!("/proc/{pid}/net/dev")).map_or((0, 0), |t| parse_net_dev(&t))
}

fn block_io(id: &str) -> (u64, u64) {
    let dir = cgroup_dir("blkio", id);
    // The recursive throttle file counts every device, whatever the scheduler.
    [
        "blkio.throttle.io_service_bytes_recursive",
        "blkio.io_service_bytes_recursive",
    ]
    .iter()
    .find_map(|f| fs::read_to_string(dir.join(f)).ok())
    .map_or((0, 0), |t| parse_blkio_bytes(&t))
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
    let (net_rx, net_tx) = net_io(id);
    let (block_read, block_write) = block_io(id);
    Some(Sample {
        memory_usage: usage.saturating_sub(inactive),
        memory_limit: limit,
        cpu_ns: read_u64(cgroup_dir("cpuacct", id).join("cpuacct.usage")).unwrap_or(0),
        pids: read_u64(cgroup_dir("pids", id).join("pids.current")).unwrap_or(0),
        net_rx,
        net_tx,
        block_read,
        block_write,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_net_dev_without_lo() {
        let t = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0:    2048      20    0    0    0     0          0         0      512       5    0    0    0     0       0          0
  eth1:       2       1    0    0    0     0          0         0        3       1    0    0    0     0       0          0
";
        assert_eq!(parse_net_dev(t), (2050, 515));
        assert_eq!(parse_net_dev("garbage"), (0, 0));
    }

    #[test]
    fn parses_blkio_service_bytes() {
        let t =
            "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:16 Read 1\n8:16 Write 2\nTotal 12291\n";
        assert_eq!(parse_blkio_bytes(t), (4097, 8194));
        assert_eq!(parse_blkio_bytes("Total 0\n"), (0, 0));
    }
}
