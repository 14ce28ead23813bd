//! Container and volume commands: run, create, start, stop, kill, restart, rm,
//! ps, logs, exec, wait, inspect (containers), port, stats, cp, volume …, and the
//! hidden `__monitor` that supervises one container.
//!
//! One file per job: [`flags`] (clap), [`parse`] (flag values → the
//! runtime's `CreateOptions`), [`run`] (lifecycle: create/run/start/stop/
//! kill/restart/rm and the monitor), [`ps`], [`logs`], [`exec`] (exec,
//! wait), [`inspect`] (inspect, port), [`stats`], [`cp`], [`fsops`] (diff,
//! export, commit), [`manage`] (rename, top, pause), [`update`], [`volume`]. The
//! network driver is keel-runtime's own (`keel_runtime::network::attacher`).

mod attach;
mod cp;
mod exec;
mod flags;
mod fsops;
mod inspect;
mod logs;
mod manage;
mod parse;
mod ps;
mod run;
mod stats;
mod update;
mod volume;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use keel_runtime::network::{NetworkAttacher, NoNetworks};
use keel_runtime::{Containers, RuntimeError, ids};

use crate::Hint;

pub use attach::{AttachArgs, attach};
pub use cp::cp;
pub use exec::{exec, wait};
pub use flags::{
    ContainersArgs, CpArgs, CreateFlags, ExecArgs, KillArgs, LogsArgs, PortArgs, ProcessFlags,
    PsArgs, RmArgs, RunArgs, StartArgs, StatsArgs, StopArgs, VolumeCommand,
};
pub use fsops::{CommitArgs, DiffArgs, ExportArgs, commit, diff, export};
pub use inspect::{inspect_any, port};
pub use logs::logs_cmd;
pub use manage::{PauseArgs, RenameArgs, TopArgs, pause, rename, top};
pub(crate) use manage::{is_paused, pause_one, thaw};
pub(crate) use parse::{log_attrs, log_options};
pub use ps::ps;
pub(crate) use ps::{command_text, du, ports_text, status_text};
pub use run::{
    create, kill, monitor, prune_stopped, restart, rm, run, start, stop, usage_exit_code,
};
pub(crate) use run::{start_attached, start_one};
pub use stats::stats_cmd;
pub use update::{UpdateArgs, update};
pub use volume::volume;

pub(crate) fn open(root: &Path) -> anyhow::Result<Containers> {
    Containers::open(root).with_context(|| format!("opening containers under {}", root.display()))
}

/// The network driver for the containers under `root`: keel-net's bridges
/// (see `keel_runtime::network::attacher`), or none that says why.
pub(crate) fn network_attacher(root: &Path) -> Box<dyn NetworkAttacher> {
    match Containers::open(root) {
        Ok(c) => keel_runtime::network::attacher(&c),
        Err(e) => Box::new(NoNetworks {
            reason: keel_runtime::error_chain(&e),
        }),
    }
}

/// A runtime error for the user, with its hint (see [`crate::hints`]).
pub(crate) fn hinted(e: RuntimeError) -> anyhow::Error {
    crate::hints::runtime(e)
}

fn resolve(c: &Containers, name: &str) -> anyhow::Result<String> {
    c.resolve(name).map_err(hinted)
}

/// Runs `f` for each named container; like Docker, reports failures and goes on.
fn each(names: &[String], f: impl FnMut(&str) -> anyhow::Result<()>) -> anyhow::Result<ExitCode> {
    each_forced(names, false, f)
}

/// Whether `e` says the object is not there.
pub(crate) fn is_not_found(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<RuntimeError>(),
            Some(RuntimeError::NotFound(_) | RuntimeError::NoSuchVolume(_))
        ) || matches!(
            c.downcast_ref::<keel_oci::OciError>(),
            Some(keel_oci::OciError::ImageNotFound(_))
        )
    })
}

/// [`each`]; with `force` (`rm -f`, `volume rm -f`), a missing object is
/// reported on stderr but, as with docker, is no failure.
fn each_forced(
    names: &[String],
    force: bool,
    mut f: impl FnMut(&str) -> anyhow::Result<()>,
) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    for n in names {
        match f(n) {
            Ok(()) => println!("{n}"),
            Err(e) => {
                eprintln!("{}", crate::render_error(&e));
                failed |= !(force && is_not_found(&e));
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn exit_code(c: i32) -> ExitCode {
    ExitCode::from(u8::try_from(c.clamp(0, 255)).unwrap_or(1))
}

/// `keel rmi` refuses images that containers use, with Docker's message —
/// unless the name is one of several tags of the image: like docker, that
/// only untags it, which takes nothing from the container.
pub fn check_image_unused(root: &Path, names: &[String], force: bool) -> anyhow::Result<()> {
    if force {
        return Ok(());
    }
    let store = keel_oci::ImageStore::open(root)?;
    let c = open(root)?;
    for n in names {
        let Ok(img) = store.resolve(n) else { continue };
        let tags = store
            .resolve_manifest(n)
            .and_then(|md| store.tags_of(&md))
            .unwrap_or_default();
        let is_tag = keel_oci::Reference::parse(n).is_ok_and(|r| {
            r.digest().is_none() && tags.iter().any(|t| t.to_string() == r.to_string())
        });
        if is_tag && tags.len() > 1 {
            continue;
        }
        let iid = img.id().to_string();
        for id in c.ids().map_err(hinted)? {
            if c.config(&id).is_ok_and(|cfg| cfg.image_id == iid) {
                return Err(anyhow::Error::new(Hint::new(format!(
                    "remove the container first: keel rm {}",
                    ids::short(&id)
                )))
                .context(format!(
                    "conflict: unable to remove repository reference \"{n}\" (must force) - container {} is using its referenced image {}",
                    ids::short(&id),
                    &iid.trim_start_matches("sha256:")[..12]
                )));
            }
        }
    }
    Ok(())
}
