//! `keel rename`, `keel top`, `keel pause` and `keel unpause`.

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
    let old = c.config(&id).map(|cfg| cfg.name).unwrap_or_default();
    c.rename(&id, a.new_name.trim_start_matches('/'))
        .map_err(hinted)
        .with_context(|| format!("renaming {}", a.container))?;
    if let Ok(cfg) = c.config(&id) {
        keel_runtime::events::container(root, &cfg, "rename", &[("oldName", format!("/{old}"))]);
    }
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

#[derive(Debug, Args)]
pub struct PauseArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// The cgroup file that freezes container `id` and the values that mean
/// frozen and thawed (cgroup v2's `cgroup.freeze`, v1's freezer).
fn freezer(id: &str) -> (std::path::PathBuf, &'static str, &'static str) {
    let cg = keel_runtime::stats::Cgroup::of_container(id);
    let v2 = cg.dir("freezer").join("cgroup.freeze");
    if v2.exists() {
        (v2, "1", "0")
    } else {
        (cg.dir("freezer").join("freezer.state"), "FROZEN", "THAWED")
    }
}

/// Whether container `id`'s processes are frozen (`keel pause`).
pub(crate) fn is_paused(id: &str) -> bool {
    let (file, frozen, _) = freezer(id);
    std::fs::read_to_string(file).is_ok_and(|s| s.trim() == frozen)
}

/// Thaws a paused container so that a signal reaches it (docker's stop,
/// kill and rm -f work on paused containers).
pub(crate) fn thaw(id: &str) {
    if is_paused(id) {
        let (file, _, thawed) = freezer(id);
        let _ = std::fs::write(file, thawed);
    }
}

/// docker's `pause` (`unpause` with `freeze` false): freezes every process
/// of running containers through the cgroup freezer.
pub fn pause(root: &Path, a: &PauseArgs, freeze: bool) -> anyhow::Result<ExitCode> {
    let c = open(root)?;
    super::each(&a.containers, |n| {
        let id = resolve(&c, n)?;
        pause_one(root, &c, n, &id, freeze)
    })
}

/// Pauses (or unpauses) container `id`, called `n` in messages, with
/// docker's refusals; `keel compose pause` shares it.
pub(crate) fn pause_one(
    root: &Path,
    c: &keel_runtime::Containers,
    n: &str,
    id: &str,
    freeze: bool,
) -> anyhow::Result<()> {
    if !engine::is_active(c, id) {
        bail!("container {n} is not running");
    }
    let paused = is_paused(id);
    if freeze && paused {
        bail!("container {n} is already paused");
    }
    if !freeze && !paused {
        bail!("container {n} is not paused");
    }
    set_frozen(id, freeze)?;
    if let Ok(cfg) = c.config(id) {
        let action = if freeze { "pause" } else { "unpause" };
        keel_runtime::events::container(root, &cfg, action, &[]);
    }
    Ok(())
}

/// Freezes (or thaws) container `id`'s processes.
pub(crate) fn set_frozen(id: &str, freeze: bool) -> anyhow::Result<()> {
    let (file, frozen, thawed) = freezer(id);
    std::fs::write(&file, if freeze { frozen } else { thawed })
        .with_context(|| format!("writing {}", file.display()))
}
