//! Image commands: `images`, `image …`, `tag`, `rmi`, `history`, `save`, `load`,
//! `import`, `pull`, `push`, `login`, `logout`, `system prune`.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use keel_oci::registry::{self, RegistryOptions};
use keel_oci::{ImageStore, Reference, RemoveEvent};
use serde_json::json;

use crate::Hint;
use crate::hints::oci as hinted;
use crate::output::{Format, ago, human_size, print_structured, table};
use crate::progress::CliProgress;

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only show image IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Show all images (intermediate images too).
    #[arg(short, long)]
    pub all: bool,
    /// Show digests.
    #[arg(long)]
    pub digests: bool,
    /// Don't truncate IDs.
    #[arg(long)]
    pub no_trunc: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Format,
    /// Go template, `table TEMPLATE` or `json` (docker's --format).
    #[arg(long)]
    pub format: Option<String>,
    /// Filter: `dangling=true|false`, `reference=PATTERN`, `label=KEY[=VALUE]`.
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Only images of this repository (`busybox`, `localhost:5000/app:1`,
    /// or a pattern such as `'repo/*'`).
    pub repository: Option<String>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Output format (inspect prints JSON by default, like docker).
    #[arg(short, long, value_enum, default_value = "json")]
    pub output: Format,
    /// Go template run on each object (docker's -f/--format).
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    /// Only objects of this type: container or image.
    #[arg(long = "type", value_parser = ["container", "image"])]
    pub kind: Option<String>,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TagArgs {
    pub source: String,
    pub target: String,
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Remove the image even when several tags point at it.
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Don't truncate output.
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show image IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Sizes and dates in human-readable form.
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set)]
    pub human: bool,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Format,
    pub image: String,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Write to this file instead of stdout.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read from this file instead of stdin.
    #[arg(short, long)]
    pub input: Option<PathBuf>,
    /// Print only the loaded image names.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Apply a Dockerfile instruction to the image (CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE).
    #[arg(short, long = "change")]
    pub changes: Vec<String>,
    /// A tarball (plain, gzip, zstd), a directory, or `-` for stdin.
    pub source: String,
    /// Name for the image.
    pub reference: Option<String>,
}

#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Use plain HTTP for this registry (HOST:PORT); loopback registries always are.
    #[arg(
        long = "insecure-registry",
        env = "KEEL_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub insecure: Vec<String>,
    /// Credentials USER:PASSWORD (overrides `keel login`).
    #[arg(long)]
    pub creds: Option<String>,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Print only the image name at the end.
    #[arg(short, long)]
    pub quiet: bool,
    pub image: String,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[arg(short, long)]
    pub quiet: bool,
    /// The local image.
    pub image: String,
    /// Where to push it (default: the image's own name).
    pub destination: Option<String>,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    #[arg(short, long)]
    pub username: Option<String>,
    #[arg(short, long)]
    pub password: Option<String>,
    /// Read the password from stdin.
    #[arg(long)]
    pub password_stdin: bool,
    #[arg(
        long = "insecure-registry",
        env = "KEEL_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub insecure: Vec<String>,
    pub server: String,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    pub server: String,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove all unused images, not just dangling ones.
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List images.
    #[command(alias = "list", name = "ls")]
    Ls(ImagesArgs),
    /// Show details of images.
    Inspect(InspectArgs),
    /// Remove images.
    Rm(RmiArgs),
    /// Create a tag TARGET that refers to SOURCE.
    Tag(TagArgs),
    /// Show the history of an image.
    History(HistoryArgs),
    /// Save images to a tar archive.
    Save(SaveArgs),
    /// Load images from a tar archive.
    Load(LoadArgs),
    /// Import a root filesystem as an image.
    Import(ImportArgs),
    /// Pull an image from a registry.
    Pull(PullArgs),
    /// Push an image to a registry.
    Push(PushArgs),
    /// Remove unused images.
    Prune(PruneArgs),
    /// Import Debian's busybox-static as an image (the offline base image).
    SeedBusybox(SeedArgs),
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// Name for the image.
    #[arg(default_value = "busybox:latest")]
    pub name: String,
}

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Remove unused data (stopped containers, unused networks, dangling images, unreferenced blobs and snapshots).
    Prune(PruneArgs),
    /// Display system-wide information.
    Info(crate::system::FormatArgs),
    /// Show disk usage: images, containers, local volumes.
    Df(crate::system::FormatArgs),
}

fn open_store(root: &Path) -> anyhow::Result<ImageStore> {
    ImageStore::open(root)
        .with_context(|| format!("opening the image store under {}", root.display()))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn registry_options(root: &Path, a: &RegistryArgs) -> anyhow::Result<RegistryOptions> {
    let credentials = match &a.creds {
        Some(c) => {
            let (u, p) = c.split_once(':').context("--creds must be USER:PASSWORD")?;
            Some((u.to_string(), p.to_string()))
        }
        None => None,
    };
    Ok(RegistryOptions {
        insecure: a.insecure.clone(),
        credentials,
        root: Some(root.to_path_buf()),
    })
}

/// One line of `keel images`: an image under one of its tags.
struct Row {
    repo: String,
    tag: String,
    digest: String,
    s: keel_oci::ImageSummary,
}

/// docker's `reference` filter and `images PATTERN`: Go's `path.Match` of
/// the pattern against the familiar name, or name:tag when it has a tag.
fn reference_matches(pattern: &str, repo: &str, tag: &str) -> anyhow::Result<bool> {
    let p = glob::Pattern::new(pattern)
        .with_context(|| format!("invalid reference pattern {pattern:?}"))?;
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    let subject = if pattern.contains(':') {
        format!("{repo}:{tag}")
    } else {
        repo.to_string()
    };
    Ok(p.matches_with(&subject, opts))
}

/// The image filters of `images -f`, checked before anything is listed.
struct ImageFilters {
    dangling: Option<bool>,
    references: Vec<String>,
    labels: Vec<String>,
}

impl ImageFilters {
    fn parse(filters: &[String]) -> anyhow::Result<Self> {
        let mut out = ImageFilters {
            dangling: None,
            references: Vec::new(),
            labels: Vec::new(),
        };
        for f in filters {
            let (k, v) = f
                .split_once('=')
                .with_context(|| format!("bad format of filter (expected name=value): {f}"))?;
            match k {
                "dangling" => {
                    out.dangling = Some(match v.to_ascii_lowercase().as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => bail!("invalid filter 'dangling={v}'"),
                    });
                }
                "reference" => out.references.push(v.to_string()),
                "label" => out.labels.push(v.to_string()),
                _ => bail!("invalid filter '{k}'"),
            }
        }
        Ok(out)
    }

    fn keep(&self, repo: &str, tag: &str, labels: &serde_json::Value) -> anyhow::Result<bool> {
        let dangling = repo == "<none>";
        if self.dangling.is_some_and(|d| d != dangling) {
            return Ok(false);
        }
        for r in &self.references {
            if dangling || !reference_matches(r, repo, tag)? {
                return Ok(false);
            }
        }
        for l in &self.labels {
            let ok = match l.split_once('=') {
                Some((k, v)) => labels.get(k).and_then(serde_json::Value::as_str) == Some(v),
                None => labels.get(l).is_some(),
            };
            if !ok {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

pub fn images(root: &Path, a: ImagesArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(root)?;
    let template = crate::template::Template::from_flag(a.format.as_deref())?
        .map(|t| t.headers(&[("ID", "IMAGE ID")]));
    let mut filters = ImageFilters::parse(&a.filter)?;
    let pattern = a
        .repository
        .as_deref()
        .filter(|r| r.contains(['*', '?', '[']));
    if let Some(p) = pattern {
        filters.references.push(p.to_string());
    }
    let filter = match a.repository.as_deref().filter(|_| pattern.is_none()) {
        Some(r) => Some(Reference::parse_named(r).map_err(hinted)?),
        None => None,
    };
    let mut list = store.list().map_err(hinted)?;
    list.sort_by(|x, y| y.created.cmp(&x.created).then(x.id.cmp(&y.id)));
    let mut rows: Vec<Row> = Vec::new();
    for s in &list {
        // Docker shows the digest the row's repository knows the image by.
        let digest_in = |name: Option<&str>| {
            s.repo_digests
                .iter()
                .filter_map(|d| d.rsplit_once('@'))
                .find(|(n, _)| name.is_none_or(|want| *n == want))
                .map_or_else(|| "<none>".to_string(), |(_, d)| d.to_string())
        };
        if s.tags.is_empty() {
            let digest = digest_in(None);
            if filter.is_none() {
                rows.push(Row {
                    repo: "<none>".into(),
                    tag: "<none>".into(),
                    digest,
                    s: s.clone(),
                });
            }
            continue;
        }
        for t in &s.tags {
            if let Some(f) = &filter
                && (f.name() != t.name() || f.tag().is_some_and(|ft| Some(ft) != t.tag()))
            {
                continue;
            }
            let digest = digest_in(Some(&t.name()));
            rows.push(Row {
                repo: t.familiar_name(),
                tag: t.tag().unwrap_or("<none>").to_string(),
                digest,
                s: s.clone(),
            });
        }
    }
    if !a.filter.is_empty() || pattern.is_some() {
        let mut kept = Vec::new();
        for r in rows {
            let labels = if filters.labels.is_empty() {
                serde_json::Value::Null
            } else {
                store
                    .resolve(&r.s.id.to_string())
                    .ok()
                    .and_then(|i| i.config_json().pointer("/config/Labels").cloned())
                    .unwrap_or_default()
            };
            if filters.keep(&r.repo, &r.tag, &labels)? {
                kept.push(r);
            }
        }
        rows = kept;
    }
    if let Some(t) = template {
        // The fields of docker's image formatter (`images --format json`).
        let v: Vec<_> = rows
            .iter()
            .map(|r| {
                let id = if a.no_trunc {
                    r.s.id.to_string()
                } else {
                    r.s.id.short().to_string()
                };
                let size = human_size(r.s.size);
                json!({
                    "Containers": "N/A", "CreatedAt": r.s.created.clone().unwrap_or_default(),
                    "CreatedSince": ago(r.s.created.as_deref()), "Digest": r.digest, "ID": id,
                    "Repository": r.repo, "SharedSize": "N/A", "Size": size, "Tag": r.tag,
                    "UniqueSize": "N/A", "VirtualSize": size,
                })
            })
            .collect();
        t.print(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    if a.output != Format::Table {
        let v: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "Repository": r.repo, "Tag": r.tag, "Id": r.s.id, "Digest": r.digest,
                    "Created": r.s.created, "Size": r.s.size,
                    "RepoTags": r.s.tags.iter().map(Reference::familiar).collect::<Vec<_>>(),
                    "RepoDigests": r.s.repo_digests,
                })
            })
            .collect();
        print_structured(&v, a.output)?;
        return Ok(ExitCode::SUCCESS);
    }
    let id = |s: &keel_oci::ImageSummary| {
        if a.no_trunc {
            s.id.to_string()
        } else {
            s.id.short().to_string()
        }
    };
    if a.quiet {
        let mut seen = std::collections::BTreeSet::new();
        for r in &rows {
            if seen.insert(r.s.id.clone()) {
                println!("{}", id(&r.s));
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut header = vec!["REPOSITORY", "TAG"];
    if a.digests {
        header.push("DIGEST");
    }
    header.extend(["IMAGE ID", "CREATED", "SIZE"]);
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut c = vec![r.repo.clone(), r.tag.clone()];
            if a.digests {
                c.push(r.digest.clone());
            }
            c.extend([id(&r.s), ago(r.s.created.as_deref()), human_size(r.s.size)]);
            c
        })
        .collect();
    print!("{}", table(&header, &cells));
    Ok(ExitCode::SUCCESS)
}

pub fn inspect(root: &Path, a: InspectArgs) -> anyhow::Result<ExitCode> {
    let template = crate::template::Template::from_flag(a.format.as_deref())?;
    let out = inspect_objects(root, &a.images)?;
    match template {
        Some(t) => t.print(&out)?,
        None => print_structured(&out, a.output)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// docker-shaped inspect objects of images.
pub fn inspect_objects(root: &Path, names: &[String]) -> anyhow::Result<Vec<serde_json::Value>> {
    let store = open_store(root)?;
    let mut out = Vec::new();
    for name in names {
        let img = store.resolve(name).map_err(hinted)?;
        let tags = store.tags_of(&img.manifest_digest).map_err(hinted)?;
        let digests = store
            .repo_digests_of(&img.manifest_digest)
            .map_err(hinted)?;
        let cfg = img.config_json();
        out.push(json!({
            "Id": img.id(),
            "RepoTags": tags.iter().map(Reference::familiar).collect::<Vec<_>>(),
            "RepoDigests": digests.iter().map(|d| Reference::parse(d).map_or_else(|_| d.clone(), |r| r.familiar())).collect::<Vec<_>>(),
            "Parent": "",
            "Comment": cfg.pointer("/history/0/comment").cloned().unwrap_or(json!("")),
            "Created": cfg.get("created").cloned().unwrap_or(json!(null)),
            "Author": cfg.get("author").cloned().unwrap_or(json!("")),
            "Config": cfg.get("config").cloned().unwrap_or(json!({})),
            "Architecture": cfg.get("architecture").cloned().unwrap_or(json!("")),
            "Os": cfg.get("os").cloned().unwrap_or(json!("")),
            "Size": img.size(),
            "RootFS": {"Type": "layers", "Layers": cfg.pointer("/rootfs/diff_ids").cloned().unwrap_or(json!([]))},
            "Manifest": img.manifest_digest,
            "History": cfg.get("history").cloned().unwrap_or(json!([])),
        }));
    }
    Ok(out)
}

pub fn tag(root: &Path, a: TagArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(root)?;
    let target = Reference::parse(&a.target).map_err(hinted)?;
    store.tag(&a.source, &target).map_err(hinted)?;
    if let Ok(img) = store.resolve(&a.source) {
        keel_runtime::events::image(root, "tag", &img.id().to_string(), &target.familiar());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn rmi(root: &Path, a: RmiArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(root)?;
    let mut failed = false;
    for name in &a.images {
        let iid = store.resolve(name).map(|i| i.id().to_string()).ok();
        match store.remove(name, a.force) {
            Ok(events) => {
                for e in events {
                    match e {
                        RemoveEvent::Untagged(t) => {
                            println!("Untagged: {t}");
                            if let Some(id) = &iid {
                                keel_runtime::events::image(root, "untag", id, &t);
                            }
                        }
                        RemoveEvent::Deleted(d) => {
                            println!("Deleted: {d}");
                            keel_runtime::events::image(
                                root,
                                "delete",
                                &d.to_string(),
                                &d.to_string(),
                            );
                        }
                    }
                }
            }
            Err(e) => {
                // Like docker: report each failure and go on with the rest;
                // with -f a missing image is no failure.
                let missing = matches!(e, keel_oci::OciError::ImageNotFound(_));
                eprintln!("{}", crate::render_error(&hinted(e)));
                failed |= !(a.force && missing);
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub fn history(root: &Path, a: HistoryArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(root)?;
    let img = store.resolve(&a.image).map_err(hinted)?;
    let cfg = img.config_json();
    let hist = cfg
        .get("history")
        .and_then(|h| h.as_array())
        .cloned()
        .unwrap_or_default();
    let layers = img.manifest.layers();
    // Pair each non-empty history entry with the next layer, as docker does.
    let mut li = 0;
    let mut rows = Vec::new();
    for h in &hist {
        let empty = h
            .get("empty_layer")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
        let size = if empty {
            0
        } else {
            let s = layers.get(li).map_or(0, oci_spec::image::Descriptor::size);
            li += 1;
            s
        };
        rows.push((h.clone(), size));
    }
    rows.reverse();
    if a.output != Format::Table {
        let v: Vec<_> = rows
            .iter()
            .enumerate()
            .map(|(i, (h, size))| {
                json!({
                    "Id": if i == 0 { img.id().to_string() } else { "<missing>".into() },
                    "Created": h.get("created"), "CreatedBy": h.get("created_by"),
                    "Size": size, "Comment": h.get("comment"),
                })
            })
            .collect();
        print_structured(&v, a.output)?;
        return Ok(ExitCode::SUCCESS);
    }
    let id = if a.no_trunc {
        img.id().to_string()
    } else {
        img.id().short().to_string()
    };
    if a.quiet {
        for (i, _) in rows.iter().enumerate() {
            println!("{}", if i == 0 { id.as_str() } else { "<missing>" });
        }
        return Ok(ExitCode::SUCCESS);
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .enumerate()
        .map(|(i, (h, size))| {
            let s = |k: &str| h.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
            let mut by = s("created_by");
            if !a.no_trunc && by.chars().count() > 45 {
                by = by.chars().take(44).collect::<String>() + "…";
            }
            vec![
                if i == 0 {
                    id.clone()
                } else {
                    "<missing>".into()
                },
                if a.human {
                    ago(Some(&s("created")))
                } else {
                    s("created")
                },
                by,
                if a.human {
                    human_size(*size)
                } else {
                    size.to_string()
                },
                s("comment"),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
            &cells
        )
    );
    Ok(ExitCode::SUCCESS)
}

pub fn save(root: &Path, a: SaveArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(root)?;
    if let Some(path) = &a.output {
        // Written beside the target and renamed: a failed save leaves no half file.
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut tmp = tempfile::Builder::new()
            .prefix(".keel-save-")
            .tempfile_in(dir)
            .with_context(|| format!("creating a file in {}", dir.display()))?;
        {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
            keel_oci::archive::save(&store, &a.images, &mut w).map_err(hinted)?;
            w.flush().context("writing the archive")?;
        }
        tmp.as_file().sync_all().context("writing the archive")?;
        // tempfile creates 0600; an archive is meant to be shared, like docker's.
        std::fs::set_permissions(
            tmp.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .context("writing the archive")?;
        tmp.persist(path)
            .map_err(|e| e.error)
            .with_context(|| format!("writing {}", path.display()))?;
    } else {
        if std::io::stdout().is_terminal() {
            return Err(anyhow::Error::new(Hint::new(
                "use -o FILE or redirect stdout",
            )))
            .context("refusing to write an archive to a terminal");
        }
        let stdout = std::io::stdout();
        let mut w = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
        keel_oci::archive::save(&store, &a.images, &mut w).map_err(hinted)?;
        w.flush().context("writing the archive")?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn load(root: &Path, a: LoadArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(root)?;
    let input: Box<dyn Read> = if let Some(p) = &a.input {
        Box::new(std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?)
    } else {
        if std::io::stdin().is_terminal() {
            return Err(anyhow::Error::new(Hint::new(
                "use -i FILE or pipe an archive in",
            )))
            .context("requested load from stdin, but stdin is a terminal");
        }
        Box::new(std::io::stdin())
    };
    let what = a
        .input
        .as_ref()
        .map_or_else(|| "stdin".to_string(), |p| p.display().to_string());
    let loaded = keel_oci::archive::load(&store, input)
        .map_err(hinted)
        .with_context(|| format!("loading {what}"))?;
    for l in loaded {
        if l.tags.is_empty() {
            println!("Loaded image ID: {}", l.id);
            keel_runtime::events::image(root, "load", &l.id.to_string(), &l.id.to_string());
        }
        for t in l.tags {
            println!("Loaded image: {}", t.familiar());
            keel_runtime::events::image(root, "load", &l.id.to_string(), &t.familiar());
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn import(root: &Path, a: ImportArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(root)?;
    let name = match &a.reference {
        Some(r) => Some(Reference::parse(r).map_err(hinted)?),
        None => None,
    };
    let src = Path::new(&a.source);
    let imported = if a.source == "-" {
        keel_oci::import::import_tar(&store, std::io::stdin(), "-", name.as_ref(), &a.changes)
    } else if src.is_dir() {
        keel_oci::import::import_dir(&store, src, name.as_ref(), &a.changes)
    } else {
        keel_oci::import::import_file(&store, src, name.as_ref(), &a.changes)
    }
    .map_err(hinted)
    .with_context(|| format!("importing {}", a.source))?;
    println!("{}", imported.id);
    Ok(ExitCode::SUCCESS)
}

/// `run/create --pull` and `build --pull`: `always` pulls, `missing`
/// (docker's default) pulls an image the store lacks, `never` uses the
/// store only. `announce`: say so before pulling a missing image, as
/// `docker run` does.
pub(crate) fn pull_for_run(
    root: &Path,
    image: &str,
    policy: &str,
    announce: bool,
) -> anyhow::Result<()> {
    let store = open_store(root)?;
    let present = store.resolve(image).is_ok();
    if policy == "never" || (policy == "missing" && present) {
        return Ok(());
    }
    let r = Reference::parse(image).map_err(hinted)?;
    if !present && announce {
        eprintln!("Unable to find image '{}' locally", r.familiar());
    }
    let opts = RegistryOptions {
        insecure: std::env::var("KEEL_INSECURE_REGISTRIES")
            .map(|v| v.split(',').map(str::to_string).collect())
            .unwrap_or_default(),
        credentials: None,
        root: Some(root.to_path_buf()),
    };
    let progress = CliProgress::new("Pulling");
    runtime()?
        .block_on(registry::pull(&store, &r, &opts, &progress))
        .map_err(hinted)
        .with_context(|| format!("pulling {}", r.familiar()))?;
    keel_runtime::events::image(root, "pull", &r.familiar(), &r.familiar_name());
    Ok(())
}

pub fn pull(root: &Path, a: PullArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(root)?;
    let r = Reference::parse(&a.image).map_err(hinted)?;
    let opts = registry_options(root, &a.registry)?;
    if !a.quiet {
        if Reference::parse_named(&a.image).is_ok_and(|n| n.tag().is_none() && n.digest().is_none())
        {
            eprintln!("Using default tag: latest");
        }
        eprintln!(
            "{}: Pulling from {}",
            r.tag().map_or_else(
                || r.digest().map(ToString::to_string).unwrap_or_default(),
                str::to_string
            ),
            r.familiar_name()
        );
    }
    let progress = CliProgress::new("Pulling");
    let res = runtime()?
        .block_on(registry::pull(&store, &r, &opts, &progress))
        .map_err(hinted)
        .with_context(|| format!("pulling {}", r.familiar()))?;
    keel_runtime::events::image(root, "pull", &r.familiar(), &r.familiar_name());
    if !a.quiet {
        eprintln!("Digest: {}", res.repo_digest);
        eprintln!("Status: Downloaded image for {}", r.familiar());
    }
    println!("{r}");
    Ok(ExitCode::SUCCESS)
}

pub fn push(root: &Path, a: PushArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(root)?;
    let target = Reference::parse(a.destination.as_deref().unwrap_or(&a.image)).map_err(hinted)?;
    if target.digest().is_some() {
        bail!("cannot push to a digest reference {target}");
    }
    let opts = registry_options(root, &a.registry)?;
    if !a.quiet {
        eprintln!("The push refers to repository [{}]", target.name());
    }
    let progress = CliProgress::new("Pushing");
    let md = runtime()?
        .block_on(registry::push(&store, &a.image, &target, &opts, &progress))
        .map_err(hinted)
        .with_context(|| format!("pushing {}", target.familiar()))?;
    let size = store.blobs().size(&md).unwrap_or(0);
    println!(
        "{}: digest: {md} size: {size}",
        target.tag().unwrap_or("latest")
    );
    Ok(ExitCode::SUCCESS)
}

pub fn login(root: &Path, a: LoginArgs) -> anyhow::Result<ExitCode> {
    let user = a
        .username
        .clone()
        .context("a username is required (-u USER)")?;
    let password = if a.password_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the password from stdin")?;
        s.trim_end_matches(['\n', '\r']).to_string()
    } else {
        a.password
            .clone()
            .context("a password is required (-p or --password-stdin)")?
    };
    let opts = RegistryOptions {
        insecure: a.insecure.clone(),
        credentials: None,
        root: Some(root.to_path_buf()),
    };
    runtime()?
        .block_on(registry::check_login(&a.server, &user, &password, &opts))
        .map_err(hinted)
        .with_context(|| format!("logging in to {}", a.server))?;
    registry::store_credentials(root, &a.server, &user, &password).map_err(hinted)?;
    println!("Login Succeeded");
    Ok(ExitCode::SUCCESS)
}

pub fn logout(root: &Path, a: LogoutArgs) -> anyhow::Result<ExitCode> {
    if registry::remove_credentials(root, &a.server).map_err(hinted)? {
        println!("Removing login credentials for {}", a.server);
    } else {
        println!("Not logged in to {}", a.server);
    }
    Ok(ExitCode::SUCCESS)
}

fn confirm(force: bool, warning: &str) -> anyhow::Result<()> {
    if force {
        return Ok(());
    }
    // Like docker (and `network prune`), the answer may come from a pipe.
    eprint!("{warning}\nAre you sure you want to continue? [y/N] ");
    let mut s = String::new();
    if std::io::stdin().read_line(&mut s)? == 0 {
        // No answer (stdin at its end): the error gets its own line.
        eprintln!();
    }
    if !matches!(s.trim(), "y" | "Y" | "yes") {
        return Err(anyhow::Error::new(Hint::new(
            "answer y, or pass -f to prune without a prompt",
        )))
        .context("prune cancelled");
    }
    Ok(())
}

pub fn image_prune(root: &Path, a: PruneArgs) -> anyhow::Result<ExitCode> {
    confirm(
        a.force,
        if a.all {
            "WARNING! This will remove all images without at least one container associated to them."
        } else {
            "WARNING! This will remove all dangling images."
        },
    )?;
    let bytes = prune_images(root, a.all)?;
    println!("Total reclaimed space: {}", human_size(bytes));
    Ok(ExitCode::SUCCESS)
}

/// Prunes images (printing docker's "Deleted Images:" section); returns the bytes freed.
fn prune_images(root: &Path, all: bool) -> anyhow::Result<u64> {
    let store = open_store(root)?;
    let r = store.prune(all).map_err(hinted)?;
    if !r.images_deleted.is_empty() {
        println!("Deleted Images:");
        for d in &r.images_deleted {
            println!("deleted: {d}");
        }
        println!();
    }
    Ok(r.bytes_freed)
}

/// `keel container prune`: every container that is not running.
pub fn container_prune(root: &Path, a: PruneArgs) -> anyhow::Result<ExitCode> {
    confirm(a.force, "WARNING! This will remove all stopped containers.")?;
    let bytes = prune_containers(root)?;
    println!("Total reclaimed space: {}", human_size(bytes));
    Ok(ExitCode::SUCCESS)
}

fn prune_containers(root: &Path) -> anyhow::Result<u64> {
    let (ids, bytes) = crate::container::prune_stopped(root)?;
    if !ids.is_empty() {
        println!("Deleted Containers:");
        for id in &ids {
            println!("{id}");
        }
        println!();
    }
    Ok(bytes)
}

/// `keel system prune`: docker's order — stopped containers, then the
/// networks they no longer hold, then images (with `-a` every unused one).
pub fn system_prune(root: &Path, a: PruneArgs) -> anyhow::Result<ExitCode> {
    confirm(
        a.force,
        if a.all {
            "WARNING! This will remove:\n  - all stopped containers\n  - all networks not used by at least one container\n  - all images without at least one container associated to them\n  - unreferenced blobs and snapshots"
        } else {
            "WARNING! This will remove:\n  - all stopped containers\n  - all networks not used by at least one container\n  - all dangling images\n  - unreferenced blobs and snapshots"
        },
    )?;
    let mut bytes = prune_containers(root)?;
    let nets = crate::network::prune_unused(root)?;
    if !nets.is_empty() {
        println!("Deleted Networks:");
        for n in &nets {
            println!("{n}");
        }
        println!();
    }
    bytes += prune_images(root, a.all)?;
    println!("Total reclaimed space: {}", human_size(bytes));
    Ok(ExitCode::SUCCESS)
}

pub fn image_command(root: &Path, c: ImageCommand) -> anyhow::Result<ExitCode> {
    match c {
        ImageCommand::Ls(a) => images(root, a),
        ImageCommand::Inspect(a) => inspect(root, a),
        ImageCommand::Rm(a) => rmi(root, a),
        ImageCommand::Tag(a) => tag(root, a),
        ImageCommand::History(a) => history(root, a),
        ImageCommand::Save(a) => save(root, a),
        ImageCommand::Load(a) => load(root, a),
        ImageCommand::Import(a) => import(root, a),
        ImageCommand::Pull(a) => pull(root, a),
        ImageCommand::Push(a) => push(root, a),
        ImageCommand::Prune(a) => image_prune(root, a),
        ImageCommand::SeedBusybox(a) => seed_busybox(root, a),
    }
}

pub fn seed_busybox(root: &Path, a: SeedArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(root)?;
    let name = Reference::parse(&a.name).map_err(hinted)?;
    let mut tmp = tempfile::Builder::new()
        .prefix("busybox-")
        .tempfile_in(store.blobs().tmp_dir())
        .context("creating a temp file")?;
    keel_oci::busybox::build_rootfs_tar(std::io::BufWriter::new(tmp.as_file_mut())).map_err(
        |e| {
            let hint = e.hint();
            let err = anyhow::Error::new(e);
            match hint {
                Some(h) => err.context(Hint::new(h)),
                None => err,
            }
            .context("building the busybox root filesystem")
        },
    )?;
    let f = std::fs::File::open(tmp.path()).context("reading the busybox layer")?;
    // The same default command as the busybox image on Docker Hub.
    let imported = keel_oci::import::import_tar(
        &store,
        f,
        "busybox-static",
        Some(&name),
        &[r#"CMD ["sh"]"#.to_string()],
    )
    .map_err(hinted)?;
    println!("{}", imported.id);
    Ok(ExitCode::SUCCESS)
}
