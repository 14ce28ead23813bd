//! `keel cp`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use keel_runtime::Status;
use keel_runtime::engine::{self};

use super::flags::CpArgs;
use super::{hinted, open, resolve};

/// Splits `CONTAINER:PATH`; host paths have no colon before the first slash.
pub(super) fn container_path(s: &str) -> Option<(&str, &str)> {
    let (c, p) = s.split_once(':')?;
    if c.is_empty() || c.contains('/') {
        return None;
    }
    Some((c, p))
}

/// Copies between the host and a container's root with `docker cp`'s rules;
/// `keel_runtime::copy` keeps every container path inside the container.
pub fn cp(root: &Path, a: CpArgs) -> anyhow::Result<ExitCode> {
    let c = open(root)?;
    let (to_container, ctr, cpath, host) = match (container_path(&a.src), container_path(&a.dest)) {
        (Some((ctr, p)), None) => (false, ctr, p, a.dest.clone()),
        (None, Some((ctr, p))) => (true, ctr, p, a.src.clone()),
        _ => bail!(
            "copying between containers is not supported; exactly one of SRC and DEST must be CONTAINER:PATH"
        ),
    };
    let id = resolve(&c, ctr)?;
    let cfg = c.config(&id).map_err(hinted)?;
    let st = c.state(&id).map_err(hinted)?;
    let running = engine::effective_status(&c, &id) == Status::Running;
    let mut mounted_here = false;
    let root_dir = if running {
        PathBuf::from(format!("/proc/{}/root", st.pid))
    } else {
        let merged = c.rootfs(&id);
        if !keel_runtime::rootfs::is_mounted(&merged) {
            keel_runtime::rootfs::mount_overlay(&c.dir(&id), &cfg.lowerdirs, false)
                .map_err(hinted)?;
            mounted_here = true;
        }
        merged
    };
    let result = (|| -> anyhow::Result<()> {
        use keel_runtime::copy::{Tree, copy};
        let inside = Tree::container(&root_dir).map_err(hinted)?;
        let host_tree = Tree::host().map_err(hinted)?;
        let r = if to_container {
            copy(&host_tree, &host, &inside, cpath)
        } else {
            copy(&inside, cpath, &host_tree, &host)
        };
        r.map_err(hinted)
    })();
    if mounted_here {
        let _ = keel_runtime::rootfs::unmount_if_mounted(&c.rootfs(&id));
    }
    result?;
    Ok(ExitCode::SUCCESS)
}
