//! `keel compose rm`, `pause`, `unpause`, `cp`, `images`, `scale` and
//! `wait`: docker compose's commands that act on the service containers a
//! project already has, through the container commands and the reconciler.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use keel_compose::reconcile::{Container, DownOptions, Engine, Event, UpOptions};
use serde_json::json;

use super::ComposeArgs;
use super::engine::KeelEngine;
use super::ops::{print_event, selected, spec_or_labels, with_reconciler};
use crate::output::{ago, human_size};

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Don't ask to confirm removal.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Stop the containers, if required, before removing.
    #[arg(short = 's', long)]
    pub stop: bool,
    /// Remove any anonymous volumes attached to containers.
    #[arg(short = 'v', long)]
    pub volumes: bool,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PauseArgs {
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CpArgs {
    /// Index of the container if the service has several replicas (default:
    /// every replica when copying to the service, the first when copying from it).
    #[arg(long, default_value_t = 0)]
    pub index: u32,
    /// Include one-off (`run`) containers.
    #[arg(long)]
    pub all: bool,
    /// Always follow a symbolic link given as the source.
    #[arg(short = 'L', long = "follow-link")]
    pub follow_link: bool,
    /// `SERVICE:SRC_PATH` or a host path.
    pub src: String,
    /// `SERVICE:DEST_PATH` or a host path.
    pub dest: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum ImagesFormat {
    #[default]
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only display IDs.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: ImagesFormat,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// Don't start linked services.
    #[arg(long)]
    pub no_deps: bool,
    /// SERVICE=REPLICAS.
    #[arg(required = true, value_parser = super::parse_scale)]
    pub scale: Vec<(String, u32)>,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Take the project down when the containers have stopped.
    #[arg(long)]
    pub down_project: bool,
    #[arg(required = true)]
    pub services: Vec<String>,
}

fn sorted(mut cs: Vec<Container>) -> Vec<Container> {
    cs.sort_by(|a, b| a.service.cmp(&b.service).then(a.number.cmp(&b.number)));
    cs
}

/// The service containers (not one-offs) of `services`, all when empty.
fn service_containers(
    e: &KeelEngine,
    args: &ComposeArgs,
    services: &[String],
) -> anyhow::Result<Vec<Container>> {
    let p = spec_or_labels(args, services, e)?;
    Ok(sorted(
        selected(e, &p, services)?
            .into_iter()
            .filter(|c| !c.oneoff)
            .collect(),
    ))
}

/// compose's piped prompt: the answer is read from stdin, `y`/`yes`/`true`/`1` confirm.
fn confirm(msg: &str) -> anyhow::Result<bool> {
    print!("{msg} [y/N] ");
    std::io::stdout()
        .flush()
        .context("cannot write to stdout")?;
    let mut s = String::new();
    if std::io::stdin().read_line(&mut s)? == 0 {
        println!();
    }
    Ok(matches!(
        s.trim().to_ascii_lowercase().as_str(),
        "y" | "yes" | "true" | "1"
    ))
}

/// docker compose's `rm`: removes the stopped service containers (after
/// stopping them with -s), asking first unless -f.
pub fn rm(root: &Path, args: &ComposeArgs, a: &RmArgs) -> anyhow::Result<ExitCode> {
    let e = KeelEngine::open(root)?;
    if a.stop {
        let p = spec_or_labels(args, &a.services, &e)?;
        with_reconciler(&p, &e, |r| r.stop(&a.services, None))?;
    }
    let stopped: Vec<Container> = service_containers(&e, args, &a.services)?
        .into_iter()
        .filter(|c| !c.running())
        .collect();
    if stopped.is_empty() {
        eprintln!("No stopped containers");
        return Ok(ExitCode::SUCCESS);
    }
    let names: Vec<&str> = stopped.iter().map(|c| c.name.as_str()).collect();
    let msg = format!("Going to remove {}", names.join(", "));
    if a.force {
        println!("{msg}");
    } else if !confirm(&msg)? {
        return Ok(ExitCode::SUCCESS);
    }
    for c in &stopped {
        print_event(progress(&c.name, "Removing"));
        e.remove(&c.id, a.volumes)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("removing {}", c.name))?;
        print_event(progress(&c.name, "Removed"));
    }
    Ok(ExitCode::SUCCESS)
}

fn progress(name: &str, status: &'static str) -> Event {
    Event::Progress {
        kind: "Container",
        name: name.into(),
        status,
    }
}

/// docker compose's `pause` (`unpause` with `freeze` false): every running
/// container of the services.
pub fn pause(
    root: &Path,
    args: &ComposeArgs,
    a: &PauseArgs,
    freeze: bool,
) -> anyhow::Result<ExitCode> {
    let e = KeelEngine::open(root)?;
    for c in service_containers(&e, args, &a.services)?
        .into_iter()
        .filter(Container::running)
    {
        crate::container::pause_one(root, e.store(), &c.name, &c.id, freeze)?;
        print_event(progress(
            &c.name,
            if freeze { "Paused" } else { "Unpaused" },
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// `SERVICE:PATH` (a host path has a slash before any colon, or none).
fn service_path(s: &str) -> Option<(&str, &str)> {
    let (svc, p) = s.split_once(':')?;
    (!svc.is_empty() && !svc.contains('/')).then_some((svc, p))
}

/// docker compose's `cp`: from the first (or `--index`) container of a
/// service, or to every (or the `--index`) container of it.
pub fn cp(root: &Path, args: &ComposeArgs, a: &CpArgs) -> anyhow::Result<ExitCode> {
    let (to_service, service, path) = match (service_path(&a.src), service_path(&a.dest)) {
        (Some(_), Some(_)) => bail!("copying between services is not supported"),
        (Some((s, p)), None) => (false, s, p),
        (None, Some((s, p))) => (true, s, p),
        (None, None) => bail!("unknown copy direction"),
    };
    let e = KeelEngine::open(root)?;
    let p = spec_or_labels(args, &[service.to_string()], &e)?;
    let mut cs = sorted(
        selected(&e, &p, &[service.to_string()])?
            .into_iter()
            .filter(|c| a.all || !c.oneoff)
            .collect(),
    );
    if a.index > 0 {
        cs.retain(|c| !c.oneoff && c.number == a.index);
        if cs.is_empty() {
            bail!("service {service:?} is not running container #{}", a.index);
        }
    } else if cs.is_empty() {
        bail!("no container found for service {service:?}");
    } else if !to_service {
        cs.truncate(1);
    }
    for c in cs {
        let at = format!("{}:{path}", c.id);
        let (src, dest) = if to_service {
            (a.src.clone(), at)
        } else {
            (at, a.dest.clone())
        };
        print_event(progress(&c.name, "Copying"));
        let code = crate::container::cp(
            root,
            crate::container::CpArgs {
                follow_link: a.follow_link,
                src,
                dest,
            },
        )?;
        if code != ExitCode::SUCCESS {
            return Ok(code);
        }
        print_event(progress(&c.name, "Copied"));
    }
    Ok(ExitCode::SUCCESS)
}

/// docker compose's `images`: the image of every container of the project
/// (stopped and one-off ones too), by container name.
pub fn images(root: &Path, args: &ComposeArgs, a: &ImagesArgs) -> anyhow::Result<ExitCode> {
    let e = KeelEngine::open(root)?;
    let p = spec_or_labels(args, &a.services, &e)?;
    let mut cs = selected(&e, &p, &a.services)?;
    cs.sort_by(|x, y| x.name.cmp(&y.name));
    let store = keel_oci::ImageStore::open(root)?;
    let mut rows = Vec::new();
    let mut objs = Vec::new();
    let mut ids = Vec::new();
    for c in &cs {
        let img = store
            .resolve(&c.image_id)
            .with_context(|| format!("image of {}", c.name))?;
        let id = img.id().to_string();
        let hex = id.strip_prefix("sha256:").unwrap_or(&id).to_string();
        // An image named by ID has no repository or tag (reference.ParseDockerRef).
        let (repo, tag) = match keel_oci::Reference::parse(&c.image) {
            Ok(r) if !c.image.starts_with("sha256:") && c.image != hex => {
                (r.familiar_name(), r.tag().unwrap_or("latest").to_string())
            }
            _ => (String::new(), String::new()),
        };
        let cfg = img.config_json();
        let field = |k: &str| cfg.get(k).and_then(|v| v.as_str()).unwrap_or_default();
        let mut platform = format!("{}/{}", field("os"), field("architecture"));
        if !field("variant").is_empty() {
            platform = format!("{platform}/{}", field("variant"));
        }
        let created = field("created");
        let size = img.size();
        if !ids.contains(&hex) {
            ids.push(hex.clone());
        }
        let mut o = json!({
            "ID": id, "ContainerName": c.name, "Repository": repo, "Tag": tag,
            "Platform": platform, "Size": size,
        });
        if !created.is_empty() {
            o["Created"] = json!(created);
        }
        objs.push(o);
        let none = |s: &str| {
            if s.is_empty() {
                "<none>".to_string()
            } else {
                s.to_string()
            }
        };
        rows.push(vec![
            c.name.clone(),
            none(&repo),
            none(&tag),
            platform,
            hex.chars().take(12).collect(),
            human_size(size),
            ago((!created.is_empty()).then_some(created)),
        ]);
    }
    if a.quiet {
        for id in ids {
            println!("{id}");
        }
    } else if a.format == ImagesFormat::Json {
        println!("{}", serde_json::Value::Array(objs));
    } else {
        let mut text = [
            "CONTAINER",
            "REPOSITORY",
            "TAG",
            "PLATFORM",
            "IMAGE ID",
            "SIZE",
            "CREATED",
        ]
        .join("\t");
        text.push('\n');
        for r in rows {
            text.push_str(&r.join("\t"));
            text.push('\n');
        }
        print!("{}", crate::template::tabwriter_min(&text, 20));
    }
    Ok(ExitCode::SUCCESS)
}

/// docker compose's `scale SERVICE=N...`: `up -d` of those services with
/// that many replicas each.
pub fn scale(root: &Path, args: &ComposeArgs, a: &ScaleArgs) -> anyhow::Result<ExitCode> {
    let services: Vec<String> = a.scale.iter().map(|(s, _)| s.clone()).collect();
    let project = super::load(args, &services)?;
    let p = keel_compose::reconcile::ProjectSpec::from_project(&project)?;
    let e = KeelEngine::open(root)?;
    let opts = UpOptions {
        services,
        scale: a.scale.iter().cloned().collect(),
        no_deps: a.no_deps,
        ..UpOptions::default()
    };
    with_reconciler(&p, &e, |r| r.up(&opts))?;
    Ok(ExitCode::SUCCESS)
}

/// docker compose's `wait`: blocks until every running container of the
/// services has stopped, printing each as it does, and exits with the
/// status of the last one (compose's code waits for all of them, though its
/// help says "the first"); `--down-project` then takes the project down.
pub fn wait(root: &Path, args: &ComposeArgs, a: &WaitArgs) -> anyhow::Result<ExitCode> {
    let e = KeelEngine::open(root)?;
    let p = spec_or_labels(args, &a.services, &e)?;
    let mut waiting: Vec<Container> = selected(&e, &p, &a.services)?
        .into_iter()
        .filter(Container::running)
        .collect();
    if waiting.is_empty() {
        bail!("no containers for project {:?}", p.model.name);
    }
    let mut code = 0;
    while !waiting.is_empty() {
        waiting.retain(|c| match e.container(&c.id) {
            Ok(now) if now.running() => true,
            now => {
                // A container removed meanwhile (--rm) counts as exited 0.
                code = now.map_or(0, |n| n.exit_code);
                println!(
                    "container {:?} exited with status code {code}",
                    c.id.as_str()
                );
                false
            }
        });
        if !waiting.is_empty() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    if a.down_project {
        let o = DownOptions {
            remove_orphans: true,
            ..DownOptions::default()
        };
        with_reconciler(&p, &e, |r| r.down(&o))?;
    }
    Ok(ExitCode::from(
        u8::try_from(code.clamp(0, 255)).unwrap_or(1),
    ))
}
