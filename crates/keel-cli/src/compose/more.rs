//! `keel compose version`, `port`, `top` and `kill`: docker compose's
//! commands that act on a service's containers through the container
//! commands.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;

use super::ComposeArgs;
use super::engine::KeelEngine;
use super::ops::{selected, spec_or_labels};

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Only the version number.
    #[arg(long)]
    pub short: bool,
}

#[derive(Debug, Args)]
pub struct PortArgs {
    /// tcp or udp.
    #[arg(long, default_value = "tcp")]
    pub protocol: String,
    /// Index of the container if the service has several replicas.
    #[arg(long, default_value_t = 1)]
    pub index: u32,
    pub service: String,
    pub private_port: u16,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal to send.
    #[arg(short = 's', long, default_value = "SIGKILL")]
    pub signal: String,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    pub services: Vec<String>,
}

pub fn version(a: &VersionArgs) -> ExitCode {
    let v = env!("CARGO_PKG_VERSION");
    if a.short {
        println!("{v}");
    } else {
        println!("keel compose version {v}");
    }
    ExitCode::SUCCESS
}

/// The running containers of `services` (all when empty), by service and
/// number.
fn running(
    root: &Path,
    args: &ComposeArgs,
    services: &[String],
) -> anyhow::Result<Vec<keel_compose::reconcile::Container>> {
    let e = KeelEngine::open(root)?;
    let p = spec_or_labels(args, services, &e)?;
    let mut cs: Vec<_> = selected(&e, &p, services)?
        .into_iter()
        .filter(|c| !c.oneoff && c.status == "running")
        .collect();
    cs.sort_by(|a, b| a.service.cmp(&b.service).then(a.number.cmp(&b.number)));
    Ok(cs)
}

/// docker compose's `port`: the public address of a service's private port.
pub fn port(root: &Path, args: &ComposeArgs, a: &PortArgs) -> anyhow::Result<ExitCode> {
    let c = running(root, args, std::slice::from_ref(&a.service))?
        .into_iter()
        .find(|c| c.number == a.index)
        .ok_or_else(|| anyhow::anyhow!("service {:?} is not running", a.service))?;
    crate::container::port(
        root,
        crate::container::PortArgs {
            container: c.id,
            port: Some(format!("{}/{}", a.private_port, a.protocol)),
        },
    )
}

/// docker compose's `top`: each running container's name, then its processes.
pub fn top(root: &Path, args: &ComposeArgs, a: &TopArgs) -> anyhow::Result<ExitCode> {
    for (i, c) in running(root, args, &a.services)?.into_iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!("{}", c.name);
        crate::container::top(
            root,
            &crate::container::TopArgs {
                container: c.id,
                ps_options: Vec::new(),
            },
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// docker compose's `kill`: the signal to every running container of the services.
pub fn kill(root: &Path, args: &ComposeArgs, a: &KillArgs) -> anyhow::Result<ExitCode> {
    let ids: Vec<String> = running(root, args, &a.services)?
        .into_iter()
        .map(|c| c.id)
        .collect();
    if ids.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    // The container command prints each ID; compose's kill prints nothing.
    let c = crate::container::open(root)?;
    let sig = keel_runtime::engine::parse_signal(&a.signal).map_err(crate::container::hinted)?;
    for id in ids {
        keel_runtime::engine::kill(&c, &id, sig, true).map_err(crate::container::hinted)?;
    }
    Ok(ExitCode::SUCCESS)
}
