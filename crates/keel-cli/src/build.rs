//! `keel build` and `keel builder prune`: flags, progress printing, Ctrl-C.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use keel_build::{BuildError, BuildOptions, Event};
use keel_oci::{ImageStore, Reference};

use crate::Hint;
use crate::output::human_size;

/// The images a Dockerfile's stages start FROM (not `scratch`, not an
/// earlier stage), with `${ARG}`s of the global scope and `--build-arg`
/// substituted; names still holding a `$` are left to the build to report.
fn base_images(dockerfile: &str, build_args: &BTreeMap<String, String>) -> Vec<String> {
    let mut args = BTreeMap::new();
    let mut stages: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for line in dockerfile.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(first) = words.first() else { continue };
        if first.eq_ignore_ascii_case("ARG") && stages.is_empty() {
            for w in &words[1..] {
                let (k, v) = w.split_once('=').unwrap_or((w, ""));
                let v = build_args.get(k).map_or(v, String::as_str);
                // An empty one leaves the `$` for the build to report.
                if !v.is_empty() {
                    args.insert(k.to_string(), v.trim_matches('"').to_string());
                }
            }
        }
        if !first.eq_ignore_ascii_case("FROM") {
            continue;
        }
        let rest: Vec<&str> = words[1..]
            .iter()
            .copied()
            .filter(|w| !w.starts_with("--"))
            .collect();
        let Some(image) = rest.first() else { continue };
        let mut image = (*image).to_string();
        for (k, v) in &args {
            image = image
                .replace(&format!("${{{k}}}"), v)
                .replace(&format!("${k}"), v);
        }
        if let [_, as_kw, alias] = rest.as_slice()
            && as_kw.eq_ignore_ascii_case("AS")
        {
            stages.push(alias.to_ascii_lowercase());
        } else {
            stages.push(String::new());
        }
        if image.eq_ignore_ascii_case("scratch")
            || image.contains('$')
            || stages[..stages.len() - 1].contains(&image.to_ascii_lowercase())
            || out.contains(&image)
        {
            continue;
        }
        out.push(image);
    }
    out
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Name and optionally a tag (`name:tag`); may be repeated.
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile; `-` reads stdin).
    #[arg(short = 'f', long = "file")]
    pub file: Option<String>,
    /// Build up to this stage (name or index).
    #[arg(long)]
    pub target: Option<String>,
    /// Build-time variable `KEY=VALUE` (`KEY` alone takes it from the environment).
    #[arg(long = "build-arg")]
    pub build_arg: Vec<String>,
    /// Do not use the build cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Progress output: auto or plain (plain adds timestamps).
    #[arg(long, default_value = "auto", value_parser = ["auto", "plain", "tty", "quiet"])]
    pub progress: String,
    /// Print only the image ID.
    #[arg(short, long)]
    pub quiet: bool,
    /// Where the result goes: type=image (default), type=oci|docker,dest=FILE, type=local,dest=DIR.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// A secret for RUN --mount=type=secret: id=ID,src=FILE.
    #[arg(long)]
    pub secret: Vec<String>,
    /// Say why each step missed the cache.
    #[arg(long)]
    pub explain_cache: bool,
    /// Target platform (only the host's is supported).
    #[arg(long)]
    pub platform: Option<String>,
    /// Write the image ID to this file.
    #[arg(long)]
    pub iidfile: Option<PathBuf>,
    /// Set metadata for an image (`KEY=VALUE`); may be repeated.
    #[arg(long)]
    pub label: Vec<String>,
    /// Pull base images: `always` (also `--pull` alone, `true`), `missing`
    /// (the default, `false`: only those the store lacks), `never`.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "always",
          value_parser = ["always", "missing", "never", "true", "false"])]
    pub pull: Option<String>,
    /// The build context directory, or `-` for a Dockerfile on stdin.
    pub context: String,
}

#[derive(Debug, Subcommand)]
pub enum BuilderCommand {
    /// Remove the build cache.
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Also remove RUN --mount=type=cache directories.
    #[arg(short, long)]
    pub all: bool,
    /// Do not ask for confirmation (kept for docker compatibility; keel never asks).
    #[arg(short, long)]
    pub force: bool,
}

fn key_value(s: &str, what: &str) -> anyhow::Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => bail!("invalid {what} {s:?}: want KEY=VALUE"),
    }
}

/// `type=local,dest=out` → map.
fn options(s: &str, what: &str) -> anyhow::Result<BTreeMap<String, String>> {
    s.split(',').map(|kv| key_value(kv, what)).collect()
}

/// Blocks SIGINT/SIGTERM in this thread (inherited by the build threads) and
/// sets `cancel` when one arrives, so the build can stop its containers and
/// clean up instead of dying half-way.
pub(crate) fn cancel_on_signals(cancel: Arc<AtomicBool>) -> anyhow::Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGINT);
    mask.add(Signal::SIGTERM);
    mask.thread_block().context("blocking signals")?;
    std::thread::spawn(move || {
        if mask.wait().is_ok() {
            cancel.store(true, Ordering::Relaxed);
        }
    });
    Ok(())
}

fn build_error(e: BuildError) -> anyhow::Error {
    let hint = e.hint();
    let err = anyhow::Error::new(e);
    match hint {
        Some(h) => err.context(Hint::new(h)),
        None => err,
    }
}

pub fn build(root: &Path, a: BuildArgs) -> anyhow::Result<ExitCode> {
    if let Some(p) = &a.platform {
        let host = format!("linux/{}", keel_oci::archive::host_arch());
        if !p.starts_with(&host) {
            return Err(
                anyhow::Error::new(Hint::new(format!("this host builds {host} images")))
                    .context(format!("platform {p} is not supported")),
            );
        }
    }
    let mut tags = Vec::new();
    for t in &a.tags {
        tags.push(Reference::parse(t).with_context(|| format!("invalid tag {t:?}"))?);
    }
    let mut build_args = BTreeMap::new();
    for b in &a.build_arg {
        match b.split_once('=') {
            Some((k, v)) => build_args.insert(k.to_string(), v.to_string()),
            None => match std::env::var(b) {
                Ok(v) => build_args.insert(b.clone(), v),
                Err(_) => continue,
            },
        };
    }
    let mut secrets = BTreeMap::new();
    for s in &a.secret {
        let o = options(s, "--secret")?;
        let id = o
            .get("id")
            .cloned()
            .with_context(|| format!("--secret {s:?} needs id=…"))?;
        let src = o
            .get("src")
            .or_else(|| o.get("source"))
            .cloned()
            .with_context(|| format!("--secret {s:?} needs src=FILE"))?;
        secrets.insert(id, PathBuf::from(src));
    }
    let output = match &a.output {
        Some(o) => options(o, "--output")?,
        None => BTreeMap::from([("type".to_string(), "image".to_string())]),
    };
    let out_type = output.get("type").map_or("image", String::as_str);
    if !matches!(out_type, "image" | "oci" | "docker" | "local") {
        return Err(anyhow::Error::new(Hint::new(
            "use type=image, type=oci,dest=FILE, type=docker,dest=FILE or type=local,dest=DIR",
        ))
        .context(format!("unsupported output type {out_type:?}")));
    }
    let dest = output.get("dest").map(PathBuf::from);
    if out_type == "local" && dest.is_none() {
        bail!("--output type=local needs dest=DIR");
    }
    // Context and Dockerfile.
    let (context, dockerfile, dockerfile_name) = if a.context == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the Dockerfile from stdin")?;
        (None, s, "Dockerfile".to_string())
    } else {
        let ctx = PathBuf::from(&a.context);
        if !ctx.is_dir() {
            return Err(anyhow::Error::new(Hint::new(
                "the last argument is the build context: a directory, or - for a Dockerfile on stdin",
            ))
            .context(format!("build context {} is not a directory", ctx.display())));
        }
        let (path, name) = match a.file.as_deref() {
            Some("-") => (None, "Dockerfile".to_string()),
            Some(f) => (Some(PathBuf::from(f)), f.to_string()),
            None => (Some(ctx.join("Dockerfile")), "Dockerfile".to_string()),
        };
        let text = if let Some(p) = path {
            std::fs::read_to_string(&p)
                .map_err(|e| {
                    anyhow::Error::new(e).context(Hint::new(
                        "pass the Dockerfile with -f, or put one in the context directory",
                    ))
                })
                .with_context(|| format!("reading {}", p.display()))?
        } else {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the Dockerfile from stdin")?;
            s
        };
        (Some(ctx), text, name)
    };
    let policy = match a.pull.as_deref() {
        Some("always" | "true") => "always",
        Some("never") => "never",
        _ => "missing",
    };
    for base in base_images(&dockerfile, &build_args) {
        let pulled = crate::image::pull_for_run(root, &base, policy, false);
        if policy == "always" {
            pulled.with_context(|| format!("base image {base}"))?;
        }
        // `missing`: a base that could not be pulled is reported by the
        // build at its FROM line, with the hint to pull it (which shows
        // the registry's answer).
    }
    let labels: BTreeMap<String, String> = a
        .label
        .iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
            (k.to_string(), v.to_string())
        })
        .collect();
    let cancel = Arc::new(AtomicBool::new(false));
    cancel_on_signals(Arc::clone(&cancel))?;
    let opts = BuildOptions {
        root: root.to_path_buf(),
        exe: std::env::current_exe().context("locating the keel binary")?,
        context,
        dockerfile,
        dockerfile_name,
        target: a.target.clone(),
        build_args,
        no_cache: a.no_cache,
        secrets,
        explain_cache: a.explain_cache,
    };
    let plain = a.progress == "plain";
    let quiet = a.quiet || a.progress == "quiet";
    let started = Instant::now();
    let stderr = std::sync::Mutex::new(std::io::stderr());
    let progress = move |e: Event| {
        if quiet && !matches!(e, Event::Warning(_)) {
            return;
        }
        let t = started.elapsed().as_secs_f64();
        let line = match e {
            Event::Step {
                stage,
                step,
                total,
                text,
            } => {
                if plain {
                    format!("[{t:8.3}] [{stage} {step}/{total}] {text}")
                } else {
                    format!("[{stage}] STEP {step}/{total}: {text}")
                }
            }
            Event::Cached { stage, step } => {
                if plain {
                    format!("[{t:8.3}] [{stage} {step}] CACHED")
                } else {
                    format!("[{stage}] CACHED")
                }
            }
            Event::Explain {
                stage,
                step,
                reason,
            } => format!("[{stage} {step}] cache miss: {reason}"),
            Event::Output { stage, line } => {
                if plain {
                    format!("[{t:8.3}] [{stage}] | {line}")
                } else {
                    format!("[{stage}] | {line}")
                }
            }
            Event::Done {
                stage,
                step,
                seconds,
            } => {
                if plain {
                    format!("[{t:8.3}] [{stage} {step}] DONE {seconds:.3}s")
                } else {
                    return;
                }
            }
            Event::Warning(w) => format!("warning: {w}"),
        };
        let mut err = stderr.lock().expect("stderr lock");
        let _ = writeln!(err, "{line}");
    };
    let built = keel_build::build(&opts, &cancel, &progress).map_err(build_error)?;
    let store = ImageStore::open(root).context("opening the image store")?;
    let built = keel_build::relabel(&store, &built, &labels).map_err(build_error)?;
    let id = built.config_digest.to_string();
    if out_type == "local" {
        {
            let dest = dest.unwrap_or_default();
            keel_build::export_local(&store, &built, &dest)
                .map_err(build_error)
                .with_context(|| format!("writing the root filesystem to {}", dest.display()))?;
        }
    } else {
        {
            // Tags are set here, once, after every step succeeded.
            let manifest = keel_build::commit(&store, &built, &tags).map_err(build_error)?;
            if let Some(dest) = dest.filter(|_| out_type != "image") {
                let names = if tags.is_empty() {
                    vec![manifest.to_string()]
                } else {
                    tags.iter().map(ToString::to_string).collect()
                };
                let f = std::fs::File::create(&dest)
                    .with_context(|| format!("creating {}", dest.display()))?;
                let mut w = std::io::BufWriter::new(f);
                keel_oci::archive::save(&store, &names, &mut w)
                    .with_context(|| format!("writing {}", dest.display()))?;
                w.flush()
                    .with_context(|| format!("writing {}", dest.display()))?;
            }
            if !quiet {
                for t in &tags {
                    eprintln!("Successfully tagged {t}");
                }
            }
        }
    }
    if let Some(f) = &a.iidfile {
        std::fs::write(f, &id).with_context(|| format!("writing --iidfile {}", f.display()))?;
    }
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}

pub fn builder(root: &Path, c: BuilderCommand) -> anyhow::Result<ExitCode> {
    match c {
        BuilderCommand::Prune(a) => {
            let _ = a.force;
            let r = keel_build::prune(root, a.all).map_err(build_error)?;
            println!(
                "Deleted {} cache entries{}",
                r.cache_entries,
                if a.all {
                    format!(", {} cache mounts", r.cache_mounts)
                } else {
                    String::new()
                }
            );
            println!("Total reclaimed space: {}", human_size(r.bytes_freed));
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_images_skip_stages_scratch_and_unresolved_args() {
        let df = "ARG TAG=1.36\nARG REG\nFROM --platform=linux/amd64 busybox:${TAG} AS build\nRUN true\nFROM build\nFROM scratch\nFROM $REG/app\nfrom alpine as Other\nFROM other\nFROM busybox:${TAG}\n";
        let none = BTreeMap::new();
        assert_eq!(base_images(df, &none), ["busybox:1.36", "alpine"]);
        let args = [("TAG".to_string(), "2".to_string())].into();
        assert_eq!(base_images(df, &args), ["busybox:2", "alpine"]);
    }
}
