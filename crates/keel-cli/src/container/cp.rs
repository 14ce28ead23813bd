//! `keel cp`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
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
        // -L from the container: what a linked source points at, copied
        // under the link's own name (docker's rule).
        let followed = if a.follow_link && !to_container {
            keel_runtime::copy::resolve_link(&inside, cpath).map_err(hinted)?
        } else {
            cpath.to_string()
        };
        if host == "-" {
            // docker's tar streams go through a scratch directory, so the
            // container side is still copied by `keel_runtime::copy` alone.
            let scratch = tempfile::Builder::new().prefix("keel-cp-").tempdir()?;
            let scratch_dir = scratch.path().to_string_lossy().into_owned();
            return if to_container {
                // The tar crate skips entries that would land outside `s`.
                tar::Archive::new(std::io::stdin().lock())
                    .unpack(scratch.path())
                    .context("reading the tar archive on stdin")?;
                copy(&host_tree, &format!("{scratch_dir}/."), &inside, cpath).map_err(hinted)
            } else {
                let name = Path::new(cpath.trim_end_matches('/'))
                    .file_name()
                    .map_or_else(|| "root".into(), |n| n.to_string_lossy().into_owned());
                copy(
                    &inside,
                    &followed,
                    &host_tree,
                    &format!("{scratch_dir}/{name}"),
                )
                .map_err(hinted)?;
                let mut b = tar::Builder::new(std::io::stdout().lock());
                b.follow_symlinks(false);
                let p = scratch.path().join(&name);
                if std::fs::symlink_metadata(&p)?.is_dir() {
                    b.append_dir_all(&name, &p)?;
                } else {
                    b.append_path_with_name(&p, &name)?;
                }
                b.into_inner()?.flush()?;
                Ok(())
            };
        }
        // -L: a linked source is copied as what it points at, under the
        // link's own name (docker's rule), through a scratch copy.
        let scratch = tempfile::Builder::new().prefix("keel-cp-").tempdir()?;
        let host = if a.follow_link
            && to_container
            && std::fs::symlink_metadata(&host).is_ok_and(|m| m.file_type().is_symlink())
        {
            let target =
                std::fs::canonicalize(&host).with_context(|| format!("following {host}"))?;
            let name = Path::new(&host)
                .file_name()
                .context("the source names no file")?;
            let dst = scratch.path().join(name);
            if target.is_dir() {
                copy(
                    &host_tree,
                    &target.to_string_lossy(),
                    &host_tree,
                    &dst.to_string_lossy(),
                )
                .map_err(hinted)?;
            } else {
                std::fs::copy(&target, &dst).with_context(|| format!("copying {host}"))?;
            }
            dst.to_string_lossy().into_owned()
        } else {
            host.clone()
        };
        let r = if to_container {
            copy(&host_tree, &host, &inside, cpath)
        } else if followed != cpath {
            let name = Path::new(cpath.trim_end_matches('/'))
                .file_name()
                .context("the source names no file")?;
            let staged = scratch.path().join(name).to_string_lossy().into_owned();
            copy(&inside, &followed, &host_tree, &staged)
                .and_then(|()| copy(&host_tree, &staged, &host_tree, &host))
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
