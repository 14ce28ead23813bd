//! `keel update`: changes a container's resource limits and restart policy
//! after create. The record is rewritten under the container's lock (the
//! next start builds its spec from it) and, while the container runs, the
//! new limits are written into its cgroup's files at once (v1: `cpu`,
//! `memory`, `pids`, `cpuset` hierarchies; v2: the unified directory), as
//! docker's daemon does through runc. The monitor reads the restart policy
//! from the record each time the container exits, so a new policy applies
//! to the next exit.

use std::path::Path;

use crate::error::{Result, RuntimeError};
use crate::record::{ContainerConfig, Containers, RestartPolicy};
use crate::stats::{Cgroup, Layout};

/// What `keel update` was asked to change (`None`: leave as is).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    pub nano_cpus: Option<i64>,
    pub cpu_shares: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub memory: Option<i64>,
    /// Memory plus swap; -1 is unlimited.
    pub memory_swap: Option<i64>,
    pub pids_limit: Option<i64>,
    pub restart: Option<RestartPolicy>,
}

/// The memory+swap limit in force: `--memory-swap` as given, else twice
/// `--memory` (docker's default, see `spec::build`), else none (0).
fn effective_swap(cfg: &ContainerConfig) -> i64 {
    match (cfg.extra.memory_swap, cfg.memory) {
        (Some(s), _) => s,
        (None, Some(m)) => m.saturating_mul(2),
        (None, None) => 0,
    }
}

/// Applies `u` to `cfg` with docker's checks (moby's `UpdateContainer`):
/// a memory limit above the memory+swap limit in force needs a new
/// `--memory-swap` too (also when none is set, as docker refuses it); a
/// restart policy cannot be given to an `--rm` container.
pub fn apply_to(cfg: &mut ContainerConfig, u: &Update) -> Result<()> {
    if let Some(m) = u.memory {
        if u.memory_swap.is_none() && m > effective_swap(cfg) {
            return Err(RuntimeError::ConflictingOptions(
                "Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time",
            ));
        }
        if let Some(s) = u.memory_swap
            && s != -1
            && s < m
        {
            return Err(RuntimeError::ConflictingOptions(
                "Minimum memoryswap limit should be larger than memory limit, see usage",
            ));
        }
    }
    if let Some(r) = &u.restart
        && cfg.auto_remove
        && *r != RestartPolicy::No
    {
        return Err(RuntimeError::ConflictingOptions(
            "Restart policy cannot be updated because AutoRemove is enabled for the container",
        ));
    }
    if let Some(m) = u.memory {
        // Keep the swap limit docker would keep: the old one stands unless
        // replaced (an implicit 2×memory is made explicit first).
        cfg.extra.memory_swap = Some(effective_swap(cfg));
        cfg.memory = Some(m);
    }
    if let Some(s) = u.memory_swap {
        cfg.extra.memory_swap = Some(s);
    }
    if let Some(n) = u.nano_cpus {
        cfg.nano_cpus = (n != 0).then_some(n);
    }
    if let Some(s) = u.cpu_shares {
        cfg.extra.cpu_shares = (s != 0).then_some(s);
    }
    if let Some(c) = &u.cpuset_cpus {
        cfg.extra.cpuset_cpus = Some(c.clone());
    }
    if let Some(c) = &u.cpuset_mems {
        cfg.extra.cpuset_mems = Some(c.clone());
    }
    if let Some(p) = u.pids_limit {
        // docker: 0 or -1 removes the limit.
        cfg.pids_limit = (p > 0).then_some(p);
    }
    if let Some(r) = &u.restart {
        cfg.restart = r.clone();
    }
    Ok(())
}

/// One cgroup file to write: controller, file name, value.
pub type CgroupWrite = (&'static str, &'static str, String);

/// The cgroup files that carry `cfg`'s limits on `layout`, for what `u`
/// changed, in an order the kernel accepts (v1 refuses a memory limit
/// above memory+swap, so the larger of the two goes first).
pub fn cgroup_writes(layout: Layout, cfg: &ContainerConfig, u: &Update) -> Vec<CgroupWrite> {
    let mut w = Vec::new();
    let period: i64 = 100_000;
    if u.nano_cpus.is_some() {
        let quota = cfg.nano_cpus.map(|n| n * period / 1_000_000_000);
        w.push(match layout {
            Layout::V1 => (
                "cpu",
                "cpu.cfs_quota_us",
                quota.map_or_else(|| "-1".to_string(), |q| q.to_string()),
            ),
            Layout::V2 => (
                "cpu",
                "cpu.max",
                format!(
                    "{} {period}",
                    quota.map_or_else(|| "max".to_string(), |q| q.to_string())
                ),
            ),
        });
    }
    if u.cpu_shares.is_some() {
        let shares = cfg.extra.cpu_shares.unwrap_or(1024);
        w.push(match layout {
            Layout::V1 => ("cpu", "cpu.shares", shares.to_string()),
            // runc's conversion of shares (2..262144) to weight (1..10000).
            Layout::V2 => (
                "cpu",
                "cpu.weight",
                (1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142).to_string(),
            ),
        });
    }
    if let Some(c) = &u.cpuset_cpus {
        w.push(("cpuset", "cpuset.cpus", c.clone()));
    }
    if let Some(m) = &u.cpuset_mems {
        w.push(("cpuset", "cpuset.mems", m.clone()));
    }
    if u.memory.is_some() || u.memory_swap.is_some() {
        let mem = cfg.memory.unwrap_or(-1);
        let swap = effective_swap(cfg);
        match layout {
            Layout::V1 => {
                let limit = ("memory", "memory.limit_in_bytes", mem.to_string());
                let memsw = (
                    "memory",
                    "memory.memsw.limit_in_bytes",
                    if swap == 0 { -1 } else { swap }.to_string(),
                );
                // Growing: memsw first (it must stay >= the limit); shrinking: the limit first.
                let old_limit = std::fs::read_to_string(
                    Cgroup::of_container(&cfg.id)
                        .dir("memory")
                        .join("memory.limit_in_bytes"),
                )
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .unwrap_or(i64::MAX);
                if mem >= 0 && mem < old_limit {
                    w.extend([limit, memsw]);
                } else {
                    w.extend([memsw, limit]);
                }
            }
            Layout::V2 => {
                let max = |v: i64| {
                    if v < 0 {
                        "max".to_string()
                    } else {
                        v.to_string()
                    }
                };
                w.push(("memory", "memory.max", max(mem)));
                let sw = if swap <= 0 || mem < 0 {
                    "max".to_string()
                } else {
                    (swap - mem).max(0).to_string()
                };
                w.push(("memory", "memory.swap.max", sw));
            }
        }
    }
    if u.pids_limit.is_some() {
        w.push((
            "pids",
            "pids.max",
            cfg.pids_limit
                .map_or_else(|| "max".to_string(), |p| p.to_string()),
        ));
    }
    w
}

/// Writes `writes` into `cg`'s files. A memsw file that does not exist
/// (swap accounting off) is skipped, as runc does.
pub fn write_cgroup(cg: &Cgroup, writes: &[CgroupWrite]) -> Result<()> {
    for (controller, file, value) in writes {
        let path = cg.dir(controller).join(file);
        if *file == "memory.memsw.limit_in_bytes" && !path.exists() {
            continue;
        }
        write_file(&path, value)?;
    }
    Ok(())
}

fn write_file(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(|source| RuntimeError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// `keel update` of container `id`: checks and records `u`, then, if the
/// container runs, writes the new limits into its cgroup.
pub fn update(containers: &Containers, id: &str, u: &Update) -> Result<ContainerConfig> {
    // Checked on a copy first: a refused update leaves the record alone.
    let mut probe = containers.config(id)?;
    apply_to(&mut probe, u)?;
    let st = containers.state(id)?;
    let running = crate::engine::is_active(containers, id);
    let cfg = containers.update_config(id, |c| {
        let _ = apply_to(c, u);
    })?;
    if running && st.pid > 0 {
        let cg = Cgroup::of_container(id);
        write_cgroup(&cg, &cgroup_writes(cg.layout, &cfg, u))?;
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ContainerConfig {
        ContainerConfig {
            id: "c1".into(),
            ..ContainerConfig::default()
        }
    }

    #[test]
    fn memory_without_swap_is_refused_as_docker_does() {
        let mut c = cfg();
        let u = Update {
            memory: Some(64 << 20),
            ..Update::default()
        };
        let e = apply_to(&mut c, &u).unwrap_err().to_string();
        assert!(e.contains("update the memoryswap at the same time"), "{e}");
        assert_eq!(c.memory, None);
        let u = Update {
            memory: Some(64 << 20),
            memory_swap: Some(128 << 20),
            ..Update::default()
        };
        apply_to(&mut c, &u).unwrap();
        assert_eq!(
            (c.memory, c.extra.memory_swap),
            (Some(64 << 20), Some(128 << 20))
        );
        // Below the swap limit now in force: no new swap needed.
        let u = Update {
            memory: Some(32 << 20),
            ..Update::default()
        };
        apply_to(&mut c, &u).unwrap();
        assert_eq!(
            (c.memory, c.extra.memory_swap),
            (Some(32 << 20), Some(128 << 20))
        );
        let u = Update {
            memory: Some(64 << 20),
            memory_swap: Some(32 << 20),
            ..Update::default()
        };
        assert!(apply_to(&mut c, &u).is_err());
    }

    #[test]
    fn restart_of_an_rm_container_is_refused() {
        let mut c = cfg();
        c.auto_remove = true;
        let u = Update {
            restart: Some(RestartPolicy::Always),
            ..Update::default()
        };
        assert!(apply_to(&mut c, &u).is_err());
        c.auto_remove = false;
        apply_to(&mut c, &u).unwrap();
        assert_eq!(c.restart, RestartPolicy::Always);
    }

    #[test]
    fn cgroup_files_for_each_layout() {
        let mut c = cfg();
        let u = Update {
            nano_cpus: Some(500_000_000),
            cpu_shares: Some(512),
            pids_limit: Some(50),
            memory: Some(64 << 20),
            memory_swap: Some(-1),
            ..Update::default()
        };
        apply_to(&mut c, &u).unwrap();
        let v1 = cgroup_writes(Layout::V1, &c, &u);
        let get =
            |w: &[CgroupWrite], f: &str| w.iter().find(|x| x.1 == f).map(|x| x.2.clone()).unwrap();
        assert_eq!(get(&v1, "cpu.cfs_quota_us"), "50000");
        assert_eq!(get(&v1, "cpu.shares"), "512");
        assert_eq!(get(&v1, "pids.max"), "50");
        assert_eq!(get(&v1, "memory.limit_in_bytes"), (64 << 20).to_string());
        assert_eq!(get(&v1, "memory.memsw.limit_in_bytes"), "-1");
        let v2 = cgroup_writes(Layout::V2, &c, &u);
        assert_eq!(get(&v2, "cpu.max"), "50000 100000");
        assert_eq!(get(&v2, "memory.swap.max"), "max");
        assert_eq!(get(&v2, "pids.max"), "50");
        // Only what was asked for is written.
        let only = Update {
            pids_limit: Some(0),
            ..Update::default()
        };
        apply_to(&mut c, &only).unwrap();
        assert_eq!(
            cgroup_writes(Layout::V1, &c, &only),
            vec![("pids", "pids.max", "max".to_string())]
        );
    }

    #[test]
    fn writes_land_in_the_controllers_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let cg = Cgroup {
            layout: Layout::V1,
            root: tmp.path().to_path_buf(),
            rel: "keel/c1".into(),
        };
        std::fs::create_dir_all(cg.dir("pids")).unwrap();
        write_cgroup(&cg, &[("pids", "pids.max", "7".into())]).unwrap();
        assert_eq!(
            std::fs::read_to_string(cg.dir("pids").join("pids.max")).unwrap(),
            "7"
        );
        // memsw without swap accounting: skipped, not an error.
        std::fs::create_dir_all(cg.dir("memory")).unwrap();
        write_cgroup(
            &cg,
            &[("memory", "memory.memsw.limit_in_bytes", "-1".into())],
        )
        .unwrap();
        assert!(write_cgroup(&cg, &[("cpu", "cpu.shares", "2".into())]).is_err());
    }
}
