//! Resource usage read from a container's cgroup, on cgroup v1 (one
//! hierarchy per controller: `memory`, `cpuacct`, `pids`, `blkio`) and v2
//! (one unified directory: `memory.current`, `memory.stat`, `memory.events`,
//! `cpu.stat`, `io.stat`, `pids.current`). The numbers `keel stats` shows,
//! OOM detection uses and the cluster's metrics and autoscaler read.
//!
//! [`Cgroup`] names one cgroup on a host layout ([`Layout`], detected with
//! libcgroups); [`Cgroup::usage`] reads a [`Usage`]. The file parsers are
//! pure functions on the files' text, so both layouts are tested on
//! recorded files. Missing files read as zero: a controller that is not
//! enabled (or a v2 kernel without `memory.stat`'s newer keys) must not hide
//! the rest.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Where cgroup file systems are mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// How the host's cgroups are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One hierarchy per controller (legacy, or hybrid with an empty v2 mount
    /// beside them: resources are controlled through v1 there).
    V1,
    /// The unified hierarchy (Debian 12's default).
    V2,
}

impl Layout {
    /// The host's layout (libcgroups' detection, read once per process).
    pub fn host() -> Layout {
        static LAYOUT: OnceLock<Layout> = OnceLock::new();
        *LAYOUT.get_or_init(|| {
            match libcgroups::common::get_cgroup_setup_with_root(Path::new(CGROUP_ROOT)) {
                Ok(libcgroups::common::CgroupSetup::Unified) => Layout::V2,
                _ => Layout::V1,
            }
        })
    }
}

/// One cgroup: `rel` (like `keel/<id>`) under `root` in `layout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    pub layout: Layout,
    pub root: PathBuf,
    pub rel: PathBuf,
}

/// What a cgroup has used, in the units the kernel counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Memory in use without the inactive page cache (Docker's figure:
    /// usage − `inactive_file`, `total_inactive_file` on v1).
    pub memory: u64,
    /// The memory limit; `None` when unlimited.
    pub memory_limit: Option<u64>,
    /// Cumulative CPU time in nanoseconds.
    pub cpu_ns: u64,
    pub pids: u64,
    /// Bytes read from and written to block devices.
    pub block_read: u64,
    pub block_write: u64,
    /// How often the kernel's OOM killer killed a process of the cgroup.
    pub oom_kills: u64,
}

/// The cgroup path keel gives container `id` (the spec's `cgroupsPath`).
pub fn container_cgroup(id: &str) -> PathBuf {
    Path::new("keel").join(id)
}

impl Cgroup {
    /// Container `id`'s cgroup on this host.
    pub fn of_container(id: &str) -> Cgroup {
        Cgroup {
            layout: Layout::host(),
            root: PathBuf::from(CGROUP_ROOT),
            rel: container_cgroup(id),
        }
    }

    /// The directory holding `controller`'s files (v2: the one directory).
    pub fn dir(&self, controller: &str) -> PathBuf {
        match self.layout {
            Layout::V1 => self.root.join(controller).join(&self.rel),
            Layout::V2 => self.root.join(&self.rel),
        }
    }

    fn read(&self, controller: &str, file: &str) -> Option<String> {
        fs::read_to_string(self.dir(controller).join(file)).ok()
    }

    /// Whether the cgroup exists (the container runs or its cgroup is left).
    pub fn exists(&self) -> bool {
        self.dir("memory").is_dir()
    }

    /// The current usage; `None` when the cgroup does not exist.
    pub fn usage(&self) -> Option<Usage> {
        match self.layout {
            Layout::V1 => self.usage_v1(),
            Layout::V2 => self.usage_v2(),
        }
    }

    fn usage_v1(&self) -> Option<Usage> {
        let usage = parse_u64(&self.read("memory", "memory.usage_in_bytes")?)?;
        let stat = self.read("memory", "memory.stat").unwrap_or_default();
        let inactive = keyed(&stat, "total_inactive_file").unwrap_or(0);
        // v1 reports "no limit" as a huge page-aligned number.
        let limit = self
            .read("memory", "memory.limit_in_bytes")
            .and_then(|s| parse_u64(&s))
            .filter(|&l| l < V1_UNLIMITED);
        let (block_read, block_write) = [
            // The recursive throttle file counts every device, whatever the scheduler.
            "blkio.throttle.io_service_bytes_recursive",
            "blkio.io_service_bytes_recursive",
        ]
        .iter()
        .find_map(|f| self.read("blkio", f))
        .map_or((0, 0), |t| parse_blkio_bytes(&t));
        Some(Usage {
            memory: usage.saturating_sub(inactive),
            memory_limit: limit,
            cpu_ns: self
                .read("cpuacct", "cpuacct.usage")
                .and_then(|s| parse_u64(&s))
                .unwrap_or(0),
            pids: self.pids(),
            block_read,
            block_write,
            oom_kills: self.oom_kills(),
        })
    }

    fn usage_v2(&self) -> Option<Usage> {
        let usage = parse_u64(&self.read("memory", "memory.current")?)?;
        let stat = self.read("memory", "memory.stat").unwrap_or_default();
        let inactive = keyed(&stat, "inactive_file").unwrap_or(0);
        let (block_read, block_write) = self
            .read("io", "io.stat")
            .map_or((0, 0), |t| parse_io_stat(&t));
        Some(Usage {
            memory: usage.saturating_sub(inactive),
            memory_limit: self
                .read("memory", "memory.max")
                .and_then(|s| parse_u64(&s)),
            cpu_ns: self
                .read("cpu", "cpu.stat")
                .and_then(|s| keyed(&s, "usage_usec"))
                .map_or(0, |us| us.saturating_mul(1000)),
            pids: self.pids(),
            block_read,
            block_write,
            oom_kills: self.oom_kills(),
        })
    }

    fn pids(&self) -> u64 {
        self.read("pids", "pids.current")
            .and_then(|s| parse_u64(&s))
            .unwrap_or(0)
    }

    /// How often the OOM killer fired in the cgroup (v1 `memory.oom_control`,
    /// v2 `memory.events`, both `oom_kill`); 0 without a cgroup.
    pub fn oom_kills(&self) -> u64 {
        let file = match self.layout {
            Layout::V1 => "memory.oom_control",
            Layout::V2 => "memory.events",
        };
        self.read("memory", file)
            .and_then(|s| keyed(&s, "oom_kill"))
            .unwrap_or(0)
    }

    /// The first process in the cgroup, if any.
    pub fn first_pid(&self) -> Option<u32> {
        self.read("memory", "cgroup.procs")?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }
}

/// What v1's `memory.limit_in_bytes` holds without a limit is
/// `PAGE_COUNTER_MAX` pages (just below 2⁶³); anything that large is "none".
const V1_UNLIMITED: u64 = 1 << 62;

/// A single-number file (`max` is `None`).
pub fn parse_u64(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// The value of `key` in a flat keyed file (`key value` per line:
/// `memory.stat`, `memory.events`, `cpu.stat`, v1's `memory.oom_control`).
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

/// One sample for `keel stats`: a cgroup's [`Usage`] and the container's
/// network counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sample {
    /// Memory in use without the page cache, like Docker (usage − `inactive_file`).
    pub memory_usage: u64,
    /// The limit, or the host's memory when there is none (as Docker shows).
    pub memory_limit: u64,
    /// Cumulative CPU time in nanoseconds.
    pub cpu_ns: u64,
    pub pids: u64,
    /// Bytes received and sent on the container's own network namespace
    /// (every interface but `lo`; zero on the host's network).
    pub net_rx: u64,
    pub net_tx: u64,
    /// Bytes read from and written to block devices.
    pub block_read: u64,
    pub block_write: u64,
}

impl Sample {
    /// `usage` as `keel stats` shows it, with `host_memory` as the limit
    /// when the cgroup has none (or a larger one).
    pub fn new(usage: &Usage, host_memory: u64, net: (u64, u64)) -> Sample {
        Sample {
            memory_usage: usage.memory,
            memory_limit: usage
                .memory_limit
                .map_or(host_memory, |l| l.min(host_memory)),
            cpu_ns: usage.cpu_ns,
            pids: usage.pids,
            net_rx: net.0,
            net_tx: net.1,
            block_read: usage.block_read,
            block_write: usage.block_write,
        }
    }
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

/// Sums `rbytes` and `wbytes` over the devices of a v2 `io.stat`
/// (`MAJ:MIN rbytes=… wbytes=… rios=… …` per line).
pub fn parse_io_stat(text: &str) -> (u64, u64) {
    let mut read = 0u64;
    let mut write = 0u64;
    for field in text.lines().flat_map(|l| l.split_whitespace().skip(1)) {
        let Some((k, v)) = field.split_once('=') else {
            continue;
        };
        let v: u64 = v.parse().unwrap_or(0);
        match k {
            "rbytes" => read = read.saturating_add(v),
            "wbytes" => write = write.saturating_add(v),
            _ => {}
        }
    }
    (read, write)
}

/// The host's memory (`MemTotal`), the limit shown for unlimited containers.
pub fn host_memory() -> u64 {
    fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(u64::MAX, |k| k * 1024)
}

/// Network bytes of the namespace process `pid` lives in; zero when that is
/// this process's namespace (`--network host`: the host's counters are not
/// the container's).
fn net_io(pid: u32) -> (u64, u64) {
    let ns = fs::read_link(format!("/proc/{pid}/ns/net")).ok();
    if ns.is_none() || ns == fs::read_link("/proc/self/ns/net").ok() {
        return (0, 0);
    }
    fs::read_to_string(format!("/proc/{pid}/net/dev")).map_or((0, 0), |t| parse_net_dev(&t))
}

/// Container `id`'s usage now; `None` when it has no cgroup (not running).
pub fn sample(id: &str) -> Option<Sample> {
    let cg = Cgroup::of_container(id);
    let usage = cg.usage()?;
    let net = cg.first_pid().map_or((0, 0), net_io);
    Some(Sample::new(&usage, host_memory(), net))
}

/// How many times the kernel's OOM killer fired in container `id`'s cgroup.
pub fn oom_kills(id: &str) -> u64 {
    Cgroup::of_container(id).oom_kills()
}

/// Every keel cgroup directory of container `id` that exists (for cleanup checks).
pub fn leftover_cgroups(id: &str) -> Vec<PathBuf> {
    let root = Path::new(CGROUP_ROOT);
    let unified = std::iter::once(root.join(container_cgroup(id)));
    let per_controller = fs::read_dir(root)
        .into_iter()
        .flatten()
        .filter_map(std::result::Result::ok)
        .map(|e| e.path().join(container_cgroup(id)));
    unified
        .chain(per_controller)
        .filter(|p| p.is_dir())
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

    /// Writes `files` (recorded from a container's cgroup) under a temporary
    /// root at `rel`, per controller for v1.
    fn recorded(layout: Layout, files: &[(&str, &str, &str)]) -> (tempfile::TempDir, Cgroup) {
        let tmp = tempfile::tempdir().unwrap();
        let cg = Cgroup {
            layout,
            root: tmp.path().to_path_buf(),
            rel: container_cgroup("c0ffee"),
        };
        for (controller, name, text) in files {
            let d = cg.dir(controller);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join(name), text).unwrap();
        }
        (tmp, cg)
    }

    // v2 files as the kernel writes them (Documentation/admin-guide/cgroup-v2.rst;
    // Debian 12's 6.1 adds nothing keel reads): a container that wrote 8 MiB
    // under `--memory 64m` after one OOM kill. `cpu.stat` without the cpu
    // controller (this host's hybrid v2 mount, kernel 6.18) has only the
    // first four keys, recorded here in V2_CPU_STAT_BASIC.
    const V2_MEMORY_STAT: &str = "anon 1523712\nfile 9199616\nkernel 503808\nkernel_stack 49152\npagetables 94208\nsec_pagetables 0\npercpu 480\nsock 0\nvmalloc 8192\nshmem 0\nzswap 0\nzswapped 0\nfile_mapped 1085440\nfile_dirty 0\nfile_writeback 0\nswapcached 0\nanon_thp 0\nfile_thp 0\nshmem_thp 0\ninactive_anon 1486848\nactive_anon 36864\ninactive_file 8699904\nactive_file 499712\nunevictable 0\nslab_reclaimable 159600\nslab_unreclaimable 137712\nslab 297312\nworkingset_refault_anon 0\nworkingset_refault_file 0\nworkingset_activate_anon 0\nworkingset_activate_file 0\nworkingset_restore_anon 0\nworkingset_restore_file 0\nworkingset_nodereclaim 0\npgscan 0\npgsteal 0\npgscan_kswapd 0\npgscan_direct 0\npgsteal_kswapd 0\npgsteal_direct 0\npgfault 4510\npgmajfault 11\npgrefill 0\npgactivate 9\npgdeactivate 0\npglazyfree 0\npglazyfreed 0\nthp_fault_alloc 0\nthp_collapse_alloc 0\n";
    const V2_MEMORY_EVENTS: &str = "low 0\nhigh 0\nmax 131\noom 1\noom_kill 1\noom_group_kill 0\n";
    const V2_CPU_STAT: &str = "usage_usec 48213\nuser_usec 9871\nsystem_usec 38342\ncore_sched.force_idle_usec 0\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\nnr_bursts 0\nburst_usec 0\n";
    const V2_CPU_STAT_BASIC: &str =
        "usage_usec 16833\nuser_usec 16833\nsystem_usec 0\nnice_usec 0\n";
    const V2_IO_STAT: &str = "254:0 rbytes=1208320 wbytes=8388608 rios=41 wios=9 dbytes=0 dios=0\n8:0 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n";

    #[test]
    fn reads_cgroup_v2_files() {
        let (_tmp, cg) = recorded(
            Layout::V2,
            &[
                ("memory", "memory.current", "11292672\n"),
                ("memory", "memory.max", "67108864\n"),
                ("memory", "memory.stat", V2_MEMORY_STAT),
                ("memory", "memory.events", V2_MEMORY_EVENTS),
                ("cpu", "cpu.stat", V2_CPU_STAT),
                ("io", "io.stat", V2_IO_STAT),
                ("pids", "pids.current", "3\n"),
                ("memory", "cgroup.procs", "4242\n4250\n"),
            ],
        );
        // Every controller's files sit in the one directory.
        assert_eq!(cg.dir("memory"), cg.dir("pids"));
        assert_eq!(
            cg.usage(),
            Some(Usage {
                memory: 11_292_672 - 8_699_904,
                memory_limit: Some(67_108_864),
                cpu_ns: 48_213_000,
                pids: 3,
                block_read: 1_208_320 + 4096,
                block_write: 8_388_608,
                oom_kills: 1,
            })
        );
        assert_eq!(cg.oom_kills(), 1);
        assert_eq!(cg.first_pid(), Some(4242));
        let s = Sample::new(&cg.usage().unwrap(), 1 << 33, (10, 20));
        assert_eq!(
            (s.memory_usage, s.memory_limit, s.net_rx, s.net_tx),
            (2_592_768, 67_108_864, 10, 20)
        );
    }

    #[test]
    fn cgroup_v2_without_limit_or_optional_controllers() {
        // `max` is no limit; io and pids controllers not enabled for the
        // subtree: their files are absent and read as zero.
        let (_tmp, cg) = recorded(
            Layout::V2,
            &[
                ("memory", "memory.current", "4096\n"),
                ("memory", "memory.max", "max\n"),
                (
                    "memory",
                    "memory.events",
                    "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n",
                ),
                ("cpu", "cpu.stat", V2_CPU_STAT_BASIC),
            ],
        );
        let u = cg.usage().unwrap();
        assert_eq!(
            (u.memory, u.memory_limit, u.cpu_ns, u.pids, u.oom_kills),
            (4096, None, 16_833_000, 0, 0)
        );
        assert_eq!(Sample::new(&u, 1 << 30, (0, 0)).memory_limit, 1 << 30);
        // No cgroup: no usage, no OOM kills.
        let gone = Cgroup {
            rel: container_cgroup("gone"),
            ..cg
        };
        assert_eq!((gone.usage(), gone.oom_kills()), (None, 0));
    }

    #[test]
    fn reads_cgroup_v1_files() {
        let (_tmp, cg) = recorded(
            Layout::V1,
            &[
                ("memory", "memory.usage_in_bytes", "10485760\n"),
                ("memory", "memory.limit_in_bytes", "9223372036854771712\n"),
                (
                    "memory",
                    "memory.stat",
                    "cache 8192\nrss 4096\ninactive_file 1\ntotal_inactive_file 2097152\n",
                ),
                (
                    "memory",
                    "memory.oom_control",
                    "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
                ),
                ("cpuacct", "cpuacct.usage", "123456789\n"),
                ("pids", "pids.current", "5\n"),
                (
                    "blkio",
                    "blkio.throttle.io_service_bytes_recursive",
                    "8:0 Read 512\n8:0 Write 1024\nTotal 1536\n",
                ),
            ],
        );
        assert_ne!(cg.dir("memory"), cg.dir("pids"));
        assert_eq!(
            cg.usage(),
            Some(Usage {
                memory: 10_485_760 - 2_097_152,
                memory_limit: None,
                cpu_ns: 123_456_789,
                pids: 5,
                block_read: 512,
                block_write: 1024,
                oom_kills: 2,
            })
        );
    }

    #[test]
    fn keyed_files_match_whole_keys() {
        // `oom` must not match `oom_kill` nor the other way round.
        assert_eq!(keyed(V2_MEMORY_EVENTS, "oom_kill"), Some(1));
        assert_eq!(
            keyed("oom_kill_disable 1\noom_kill 0\n", "oom_kill"),
            Some(0)
        );
        assert_eq!(keyed("file_mapped 5\n", "file"), None);
        assert_eq!(parse_io_stat("8:0\n\ngarbage rbytes=x\n"), (0, 0));
    }
}
