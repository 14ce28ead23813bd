//! `keel rename` and `keel top`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use keel_runtime::engine;

use super::{hinted, open, resolve};

#[derive(Debug, Args)]
pub struct RenameArgs {
    pub container: String,
    pub new_name: String,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    pub container: String,
    /// Options for ps (default: -ef), as docker passes them on.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_options: Vec<String>,
}

pub fn rename(root: &Path, a: &RenameArgs) -> anyhow::Result<ExitCode> {
    let c = open(root)?;
    let id = resolve(&c, &a.container)?;
    c.rename(&id, a.new_name.trim_start_matches('/'))
        .map_err(hinted)
        .with_context(|| format!("renaming {}", a.container))?;
    Ok(ExitCode::SUCCESS)
}

/// The processes of container `id`: its cgroup's members.
fn container_pids(id: &str) -> Vec<u32> {
    let cg = keel_runtime::stats::Cgroup::of_container(id);
    std::fs::read_to_string(cg.dir("pids").join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// docker's `top`: the host's `ps` (with the given options, `-ef` by
/// default), keeping the header and the container's processes, found by
/// the PID column.
pub fn top(root: &Path, a: &TopArgs) -> anyhow::Result<ExitCode> {
    let c = open(root)?;
    let id = resolve(&c, &a.container)?;
    if !engine::is_active(&c, &id) {
        bail!("container {} is not running", a.container);
    }
    let pids = container_pids(&id);
    let opts: Vec<String> = if a.ps_options.is_empty() {
        vec!["-ef".into()]
    } else {
        a.ps_options.clone()
    };
    let out = std::process::Command::new("ps")
        .args(&opts)
        .output()
        .context("running ps")?;
    if !out.status.success() {
        bail!(
            "ps {}: {}",
            opts.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let Some(col) = header.split_whitespace().position(|h| h == "PID") else {
        bail!("couldn't find PID field in ps output");
    };
    println!("{header}");
    for l in lines {
        if l.split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<u32>().ok())
            .is_some_and(|p| pids.contains(&p))
        {
            println!("{l}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
