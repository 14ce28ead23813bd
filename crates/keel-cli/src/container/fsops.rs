//! A container's filesystem as docker shows it: `keel diff` (what changed
//! against the image, from the overlay's upper directory), `keel export`
//! (the root filesystem as a tar, volumes left out) and `keel commit` (the
//! changes as a new layer on the image: a new image).

use std::io::Write as _;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use keel_runtime::Containers;

use super::{hinted, open, resolve};

#[derive(Debug, Args)]
pub struct DiffArgs {
    pub container: String,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Write to a file instead of stdout.
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    pub container: String,
}

#[derive(Debug, Args)]
pub struct CommitArgs {
    /// Author (e.g. "John Hannibal Smith <hannibal@a-team.com>").
    #[arg(short = 'a', long = "author", default_value = "")]
    pub author: String,
    /// Apply a Dockerfile instruction to the image (CMD, ENTRYPOINT, ENV, ...).
    #[arg(short = 'c', long = "change")]
    pub changes: Vec<String>,
    /// Commit message.
    #[arg(short = 'm', long = "message", default_value = "")]
    pub message: String,
    /// Pause the container during commit (the default).
    #[arg(short = 'p', long = "pause", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub pause: bool,
    pub container: String,
    /// REPOSITORY[:TAG] for the new image.
    pub repository: Option<String>,
}

/// Whether `m` is an overlayfs whiteout (a 0:0 character device).
fn is_whiteout(m: &std::fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

/// Whether `rel` exists in the image below the container: the topmost
/// layer holding it or a whiteout for it decides.
fn in_image(lowerdirs: &[PathBuf], rel: &Path) -> bool {
    for dir in lowerdirs.iter().rev() {
        if let Ok(m) = std::fs::symlink_metadata(dir.join(rel)) {
            return !is_whiteout(&m);
        }
    }
    false
}

/// Calls `f` for every entry under `dir` (path relative to `dir`, its
/// metadata, links not followed), a directory's entries in name order
/// before any of theirs; directories are entered when `f` returns true.
fn walk_sorted(
    dir: &Path,
    mut f: impl FnMut(&Path, &std::fs::Metadata) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let here = dir.join(&rel);
        let mut names: Vec<_> = std::fs::read_dir(&here)
            .with_context(|| format!("reading {}", here.display()))?
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        names.sort();
        // Children come after their directory: pushed in reverse.
        let mut below = Vec::new();
        for n in names {
            let r = rel.join(&n);
            let m = std::fs::symlink_metadata(dir.join(&r))?;
            if f(&r, &m)? && m.is_dir() {
                below.push(r);
            }
        }
        stack.extend(below.into_iter().rev());
    }
    Ok(())
}

/// docker's changes (`A`, `C`, `D`) under `upper`, in path order.
fn changes(upper: &Path, lowerdirs: &[PathBuf]) -> anyhow::Result<Vec<(char, String)>> {
    let mut out = Vec::new();
    walk_sorted(upper, |r, m| {
        if keel_oci::import::MOUNTED_OVER
            .iter()
            .any(|e| Path::new(e) == r)
        {
            return Ok(false);
        }
        let shown = format!("/{}", r.display());
        let kind = if is_whiteout(m) {
            'D'
        } else if in_image(lowerdirs, r) {
            'C'
        } else {
            'A'
        };
        out.push((kind, shown));
        Ok(true)
    })?;
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

pub fn diff(root: &Path, a: &DiffArgs) -> anyhow::Result<ExitCode> {
    let c = open(root)?;
    let id = resolve(&c, &a.container)?;
    let cfg = c.config(&id).map_err(hinted)?;
    let upper = c.dir(&id).join("upper");
    let mut out = std::io::stdout().lock();
    if upper.is_dir() {
        for (kind, path) in changes(&upper, &cfg.lowerdirs)? {
            writeln!(out, "{kind} {path}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `f` on the container's merged root (its overlay without the
/// volumes and binds mounted over it inside the container), mounting the
/// overlay for the time of `f` if it is not mounted.
fn with_rootfs<T>(
    c: &Containers,
    id: &str,
    f: impl FnOnce(&Path) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let cfg = c.config(id).map_err(hinted)?;
    let merged = c.rootfs(id);
    let mounted_here = !keel_runtime::rootfs::is_mounted(&merged);
    if mounted_here {
        keel_runtime::rootfs::mount_overlay(&c.dir(id), &cfg.lowerdirs, false).map_err(hinted)?;
    }
    let r = f(&merged);
    if mounted_here {
        keel_runtime::rootfs::unmount_if_mounted(&merged).map_err(hinted)?;
    }
    r
}

/// Appends everything under `dir` to `b` with paths relative to it, in
/// name order, links kept as links.
fn append_tree<W: std::io::Write>(b: &mut tar::Builder<W>, dir: &Path) -> anyhow::Result<()> {
    walk_sorted(dir, |r, _| {
        let full = dir.join(r);
        b.append_path_with_name(&full, r)
            .with_context(|| format!("adding {}", full.display()))?;
        Ok(true)
    })
}

pub fn export(root: &Path, a: &ExportArgs) -> anyhow::Result<ExitCode> {
    let c = open(root)?;
    let id = resolve(&c, &a.container)?;
    if a.output.is_none() && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        let e = anyhow::Error::new(crate::Hint::new(
            "redirect the output (`> file.tar`) or pass -o FILE",
        ))
        .context("cowardly refusing to save to a terminal");
        return Err(e);
    }
    with_rootfs(&c, &id, |merged| {
        if let Some(p) = &a.output {
            // Written next to the target and renamed: no half-written file on failure.
            let dir = p
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let mut tmp = tempfile::Builder::new()
                .prefix(".keel-export-")
                .tempfile_in(dir)
                .with_context(|| format!("creating a file in {}", dir.display()))?;
            {
                let mut b = tar::Builder::new(std::io::BufWriter::new(tmp.as_file_mut()));
                b.follow_symlinks(false);
                append_tree(&mut b, merged)?;
                b.into_inner()?.flush()?;
            }
            tmp.persist(p)
                .map_err(|e| e.error)
                .with_context(|| format!("writing {}", p.display()))?;
        } else {
            let mut b = tar::Builder::new(std::io::BufWriter::new(std::io::stdout().lock()));
            b.follow_symlinks(false);
            append_tree(&mut b, merged)?;
            b.into_inner()?.flush()?;
        }
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn commit(root: &Path, a: &CommitArgs) -> anyhow::Result<ExitCode> {
    let c = open(root)?;
    let id = resolve(&c, &a.container)?;
    let cfg = c.config(&id).map_err(hinted)?;
    let name = a
        .repository
        .as_deref()
        .map(keel_oci::Reference::parse)
        .transpose()
        .map_err(crate::hints::oci)?;
    let store = keel_oci::ImageStore::open(root)
        .map_err(crate::hints::oci)
        .context("opening the image store")?;
    let base = store
        .resolve(&cfg.image_id)
        .map_err(crate::hints::oci)
        .with_context(|| format!("the image of {} ({})", a.container, cfg.image))?;
    // What the container runs with becomes the image's defaults, as docker commits them.
    let mut config = base
        .config_json()
        .get("config")
        .and_then(serde_json::Value::as_object)
        .cloned()
        .unwrap_or_default();
    let set =
        |config: &mut serde_json::Map<String, serde_json::Value>, k: &str, v: serde_json::Value| {
            config.insert(k.to_string(), v);
        };
    set(&mut config, "Env", serde_json::json!(cfg.env));
    set(&mut config, "Cmd", serde_json::json!(cfg.cmd));
    set(
        &mut config,
        "Entrypoint",
        if cfg.entrypoint.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::json!(cfg.entrypoint)
        },
    );
    set(
        &mut config,
        "WorkingDir",
        serde_json::json!(cfg.working_dir),
    );
    set(&mut config, "User", serde_json::json!(cfg.user));
    set(&mut config, "Labels", serde_json::json!(cfg.labels));
    set(&mut config, "Hostname", serde_json::json!(cfg.hostname));
    if !cfg.exposed_ports.is_empty() {
        let ports: serde_json::Map<_, _> = cfg
            .exposed_ports
            .iter()
            .map(|p| (p.clone(), serde_json::json!({})))
            .collect();
        set(
            &mut config,
            "ExposedPorts",
            serde_json::Value::Object(ports),
        );
    }
    let opts = keel_oci::import::CommitOptions {
        config,
        changes: a.changes.clone(),
        comment: a.message.clone(),
        author: a.author.clone(),
        created_by: std::iter::once(cfg.path.clone())
            .chain(cfg.args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" "),
    };
    let upper = c.dir(&id).join("upper");
    // Frozen while the layer is read, so it is one moment's state (docker's -p).
    let running = keel_runtime::engine::is_active(&c, &id);
    let freeze = a.pause && running && !super::is_paused(&id);
    if freeze {
        super::manage::set_frozen(&id, true)?;
    }
    let made = keel_oci::import::commit_dir(&store, &base, &upper, name.as_ref(), &opts);
    if freeze {
        super::manage::set_frozen(&id, false)?;
    }
    let made = made
        .map_err(crate::hints::oci)
        .with_context(|| format!("committing {}", a.container))?;
    println!("{}", made.id);
    Ok(ExitCode::SUCCESS)
}
