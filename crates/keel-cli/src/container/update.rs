//! `keel update`: new resource limits and restart policy for containers
//! (`keel_runtime::update` records them and writes the running container's
//! cgroup files).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use keel_runtime::RestartPolicy;
use keel_runtime::update::Update;

use super::parse::parse_bytes;
use super::{hinted, open, resolve};

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Number of CPUs.
    #[arg(long)]
    pub cpus: Option<f64>,
    /// CPU shares (relative weight).
    #[arg(short = 'c', long)]
    pub cpu_shares: Option<u64>,
    /// CPUs in which to allow execution (0-3, 0,1).
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes in which to allow execution (0-3, 0,1).
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Memory limit.
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap.
    #[arg(long)]
    pub memory_swap: Option<String>,
    /// Tune container pids limit (-1 for unlimited).
    #[arg(long, allow_negative_numbers = true)]
    pub pids_limit: Option<i64>,
    /// Restart policy to apply when a container exits.
    #[arg(long)]
    pub restart: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

fn update_of(a: &UpdateArgs) -> anyhow::Result<Update> {
    let u = Update {
        nano_cpus: match a.cpus {
            Some(c) if c < 0.0 => bail!("invalid --cpus {c}: must not be negative"),
            Some(c) => Some((c * 1e9) as i64),
            None => None,
        },
        cpu_shares: a.cpu_shares,
        cpuset_cpus: a.cpuset_cpus.clone(),
        cpuset_mems: a.cpuset_mems.clone(),
        memory: a.memory.as_deref().map(parse_bytes).transpose()?,
        memory_swap: match a.memory_swap.as_deref() {
            Some("-1") => Some(-1),
            other => other.map(parse_bytes).transpose()?,
        },
        pids_limit: a.pids_limit,
        restart: a
            .restart
            .as_deref()
            .map(RestartPolicy::parse)
            .transpose()
            .map_err(hinted)?,
    };
    if u == Update::default() {
        // docker: "you must provide one or more flags when using this command".
        bail!("you must provide one or more flags when using this command");
    }
    Ok(u)
}

/// docker's `update`: each container's name as given on success.
pub fn update(root: &Path, a: &UpdateArgs) -> anyhow::Result<ExitCode> {
    let u = update_of(a)?;
    let c = open(root)?;
    super::each(&a.containers, |n| {
        let id = resolve(&c, n)?;
        let cfg = keel_runtime::update::update(&c, &id, &u)
            .map_err(hinted)
            .with_context(|| format!("cannot update container {n}"))?;
        keel_runtime::events::container(root, &cfg, "update", &[]);
        Ok(())
    })
}
