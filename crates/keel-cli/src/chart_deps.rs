//! `keel chart dependency update|build`: Helm's dependency manager
//! (`pkg/downloader/manager.go`, `internal/resolver`). Versions are
//! resolved from the added repositories' cached indexes, from repositories
//! named only by URL, from `oci://` tags and `file://` directories; the
//! archives land in `charts/` and Chart.lock records them with Helm's digest,
//! so `helm dependency build` accepts keel's lock and the other way round.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Args;
use keel_chart::chart::Dependency;
use keel_chart::deps::{Lock, hash_req, lock_yaml, parse_lock};
use serde_json::Value as J;

use crate::chart_oci::SourceFlags;

/// Flags of `dependency update` and `build`.
#[derive(Debug, Args)]
pub struct DepArgs {
    /// Chart directory.
    #[arg(default_value = ".")]
    pub chart: PathBuf,
    /// Do not refresh the local repository cache.
    #[arg(long = "skip-refresh")]
    pub skip_refresh: bool,
    #[command(flatten)]
    pub source: SourceFlags,
}

/// Where the index of a dependency's repository comes from.
enum RepoOf {
    /// An added repository, by its name.
    Named(String),
    /// A repository named only by its URL (Helm's "unmanaged" ones).
    Url,
}

fn load_dir(dir: &Path) -> anyhow::Result<keel_chart::Chart> {
    let meta = std::fs::metadata(dir).map_err(|e| {
        anyhow::anyhow!(
            "could not find {}: stat {}: {}",
            dir.display(),
            dir.display(),
            io_text(&e)
        )
    })?;
    if !meta.is_dir() {
        bail!("only unpacked charts can be updated");
    }
    keel_chart::load(dir).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Go's text for the common I/O errors (Rust's adds "(os error N)").
fn io_text(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Helm's `resolveRepoNames`: `@NAME`/`alias:NAME` become the repository's
/// URL; a URL matches an added repository or stands for itself.
fn repo_names(
    deps: &mut [Dependency],
    list: &[J],
    dir: &Path,
) -> anyhow::Result<BTreeMap<String, RepoOf>> {
    let mut out = BTreeMap::new();
    let mut missing = Vec::new();
    for d in deps.iter_mut() {
        let r = d.repository.clone();
        if r.is_empty() || r.starts_with("oci://") {
            continue;
        }
        if let Some(p) = r.strip_prefix("file://") {
            let path = dir.join(p);
            if !path.exists() {
                bail!("directory {} not found", path.display());
            }
            continue;
        }
        let alias = r.strip_prefix('@').or_else(|| r.strip_prefix("alias:"));
        let found = list.iter().find(|e| {
            let name = e["name"].as_str().unwrap_or_default();
            let url = e["url"].as_str().unwrap_or_default();
            alias.map_or_else(|| same_url(url, &r), |a| a == name)
        });
        if let Some(e) = found {
            if alias.is_some() {
                d.repository = e["url"].as_str().unwrap_or_default().to_string();
            }
            out.insert(
                d.name.clone(),
                RepoOf::Named(e["name"].as_str().unwrap_or_default().to_string()),
            );
        } else if r.contains("://") {
            out.insert(d.name.clone(), RepoOf::Url);
        } else {
            missing.push(r);
        }
    }
    if !missing.is_empty() {
        let mut msg = format!(
            "no repository definition for {}. Please add them via 'helm repo add'",
            missing.join(", ")
        );
        if missing
            .iter()
            .any(|r| !r.contains("//") && !r.starts_with('@') && !r.starts_with("alias:"))
        {
            msg.push_str("\nNote that repositories must be URLs or aliases. For example, to refer to the \"example\"\nrepository, use \"https://charts.example.com/\" or \"@example\" instead of\n\"example\". Don't forget to add the repo, too ('helm repo add').");
        }
        bail!(msg);
    }
    Ok(out)
}

fn fetch_index(url: &str, f: &SourceFlags) -> anyhow::Result<J> {
    let client = keel_infra::http::HttpClient {
        skip_verify: f.reg.insecure_skip_tls_verify,
        ..Default::default()
    };
    let index_url = format!("{}/index.yaml", url.trim_end_matches('/'));
    let (status, body) = client
        .request("GET", &index_url, &[], "")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if status != 200 {
        bail!("failed to fetch {index_url} : {status}");
    }
    serde_yaml_ng::from_slice(&body)
        .with_context(|| format!("{index_url}: not a chart repository index"))
}

/// Refreshes the indexes: those of repositories named only by URL (kept
/// in memory), then every added one, with Helm's lines.
fn refresh(
    deps: &[Dependency],
    names: &BTreeMap<String, RepoOf>,
    list: &[J],
    f: &SourceFlags,
    out: &mut String,
) -> anyhow::Result<BTreeMap<String, J>> {
    let mut unmanaged = BTreeMap::new();
    let urls: Vec<&str> = deps
        .iter()
        .filter(|d| matches!(names.get(&d.name), Some(RepoOf::Url)))
        .map(|d| d.repository.as_str())
        .collect();
    if !urls.is_empty() {
        out.push_str("Getting updates for unmanaged Helm repositories...\n");
        for u in urls {
            let idx = fetch_index(u, f).with_context(|| {
                format!("...Unable to get an update from the {u:?} chart repository")
            })?;
            let _ = writeln!(
                out,
                "...Successfully got an update from the {u:?} chart repository"
            );
            unmanaged.insert(u.to_string(), idx);
        }
    }
    if !list.is_empty() {
        out.push_str("Hang tight while we grab the latest from your chart repositories...\n");
        for e in list {
            let n = e["name"].as_str().unwrap_or_default();
            crate::chart_repo::download_index(e, &f.paths.cache()).with_context(|| {
                format!("...Unable to get an update from the {n:?} chart repository")
            })?;
            let _ = writeln!(
                out,
                "...Successfully got an update from the {n:?} chart repository"
            );
        }
        out.push_str("Update Complete. ⎈Happy Helming!⎈\n");
    }
    Ok(unmanaged)
}

fn cached_index(name: &str, f: &SourceFlags) -> anyhow::Result<J> {
    let p = f.paths.cache().join(format!("{name}-index.yaml"));
    let text = std::fs::read_to_string(&p).map_err(|e| {
        anyhow::anyhow!(
            "no cached repository for {name} found. (try 'helm repo update'): open {}: {}",
            p.display(),
            io_text(&e)
        )
    })?;
    serde_yaml_ng::from_str(&text)
        .with_context(|| format!("{}: not a chart repository index", p.display()))
}

fn constraint_ok(constraint: &str, version: &str) -> Result<bool, String> {
    keel_chart::semver_matches(constraint, version)
}

/// Helm's `Resolver.Resolve`: each dependency locked to one version.
fn resolve(
    dir: &Path,
    deps: &[Dependency],
    names: &BTreeMap<String, RepoOf>,
    unmanaged: &BTreeMap<String, J>,
    f: &SourceFlags,
) -> anyhow::Result<Vec<Dependency>> {
    let mut locked = Vec::new();
    let mut missing = Vec::new();
    for d in deps {
        if let Err(e) = constraint_ok(&d.version, "0.0.0") {
            bail!(
                "dependency {:?} has an invalid version/constraint format: {e}",
                d.name
            );
        }
        let lock = |v: &str| Dependency {
            name: d.name.clone(),
            repository: d.repository.clone(),
            version: v.to_string(),
            ..Dependency::default()
        };
        let miss = || {
            format!(
                "{:?} (repository {:?}, version {:?})",
                d.name, d.repository, d.version
            )
        };
        if d.repository.is_empty() {
            locked.push(lock(&d.version));
            continue;
        }
        if let Some(p) = d.repository.strip_prefix("file://") {
            let c = keel_chart::load(&dir.join(p)).map_err(|e| anyhow::anyhow!("{e}"))?;
            if constraint_ok(&d.version, &c.metadata.version).unwrap_or(false) {
                locked.push(lock(&c.metadata.version));
            } else {
                missing.push(miss());
            }
            continue;
        }
        let versions: Vec<String> = if d.repository.starts_with("oci://") {
            if crate::chart_repo::version_key(&d.version).is_some() {
                vec![d.version.clone()]
            } else {
                crate::chart_oci::oci_tags(&format!("{}/{}", d.repository, d.name), f)?
            }
        } else {
            let index = match names.get(&d.name) {
                Some(RepoOf::Named(n)) => cached_index(n, f)?,
                _ => unmanaged.get(&d.repository).cloned().unwrap_or(J::Null),
            };
            let Some(list) = index["entries"][&d.name].as_array() else {
                bail!("{} chart not found in repo {}", d.name, d.repository);
            };
            let mut list: Vec<&J> = list
                .iter()
                .filter(|v| v["urls"].as_array().is_some_and(|u| !u.is_empty()))
                .collect();
            list.sort_by(|a, b| crate::chart_repo::cmp_versions(b, a));
            list.iter()
                .filter_map(|v| v["version"].as_str().map(str::to_string))
                .collect()
        };
        match versions.iter().find(|v| {
            crate::chart_repo::version_key(v).is_some()
                && constraint_ok(&d.version, v).unwrap_or(false)
        }) {
            Some(v) => locked.push(lock(v)),
            None => missing.push(miss()),
        }
    }
    if !missing.is_empty() {
        bail!(
            "can't get a valid version for {} subchart(s): {}. Make sure a matching chart version exists in the repo, or change the version constraint in Chart.yaml",
            missing.len(),
            missing.join(", ")
        );
    }
    Ok(locked)
}

/// Helm's `downloadAll` and `safeMoveDeps`: every locked archive into a
/// temporary folder beside charts/, then moved in, stale ones deleted.
fn download_all(
    dir: &Path,
    locked: &[Dependency],
    f: &SourceFlags,
    out: &mut String,
) -> anyhow::Result<()> {
    let dest = dir.join("charts");
    if dest.exists() && !dest.is_dir() {
        bail!("{:?} is not a directory", dest.display().to_string());
    }
    std::fs::create_dir_all(&dest).with_context(|| format!("create {}", dest.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!("tmpcharts-{}", std::process::id()))
        .tempdir_in(dir)
        .with_context(|| format!("create a temporary folder in {}", dir.display()))?;
    let _ = writeln!(out, "Saving {} charts", locked.len());
    let mut local = Vec::new();
    let mut fetched = std::collections::BTreeSet::new();
    for d in locked {
        if d.repository.is_empty() {
            let _ = writeln!(
                out,
                "Dependency {} did not declare a repository. Assuming it exists in the charts directory",
                d.name
            );
            let p = dest.join(&d.name);
            let c = keel_chart::load(&p)
                .map_err(|e| anyhow::anyhow!("unable to load chart '{}': {e}", p.display()))?;
            if !constraint_ok(&d.version, &c.metadata.version).unwrap_or(false) {
                bail!(
                    "dependency {} at version {} does not satisfy the constraint {}",
                    d.name,
                    c.metadata.version,
                    d.version
                );
            }
            local.push(d.name.clone());
            continue;
        }
        if let Some(p) = d.repository.strip_prefix("file://") {
            keel_chart::package(&dir.join(p), tmp.path()).map_err(|e| anyhow::anyhow!("{e}"))?;
            continue;
        }
        // Helm keys downloads by chart URL: the same repository, name and version
        if !fetched.insert((d.repository.clone(), d.name.clone(), d.version.clone())) {
            let _ = writeln!(
                out,
                "Already downloaded {} from repo {}",
                d.name, d.repository
            );
            continue;
        }
        let _ = writeln!(out, "Downloading {} from repo {}", d.name, d.repository);
        let got = if d.repository.starts_with("oci://") {
            crate::chart_oci::fetch(
                &format!(
                    "{}/{}:{}",
                    d.repository.trim_end_matches('/'),
                    d.name,
                    d.version
                ),
                None,
                f,
            )?
        } else {
            // the chart's URL comes from the repository's index, fetched afresh
            let flags = SourceFlags {
                repo: Some(d.repository.clone()),
                ..f.clone()
            };
            crate::chart_oci::fetch(&d.name, Some(&d.version), &flags)
                .with_context(|| format!("could not download {} from {}", d.name, d.repository))?
        };
        let p = tmp.path().join(&got.file_name);
        std::fs::write(&p, &got.data).with_context(|| format!("write {}", p.display()))?;
    }
    let mut fresh = Vec::new();
    for e in std::fs::read_dir(tmp.path())?.filter_map(Result::ok) {
        let name = e.file_name();
        std::fs::rename(e.path(), dest.join(&name))
            .with_context(|| format!("move {} into {}", e.path().display(), dest.display()))?;
        fresh.push(name);
    }
    out.push_str("Deleting outdated charts\n");
    for e in std::fs::read_dir(&dest)?.filter_map(Result::ok) {
        let p = e.path();
        if p.is_dir() || fresh.contains(&e.file_name()) {
            continue;
        }
        match keel_chart::load(&p) {
            Ok(c) if local.contains(&c.metadata.name) => {}
            Ok(_) => std::fs::remove_file(&p).with_context(|| format!("remove {}", p.display()))?,
            Err(e) => {
                let _ = writeln!(
                    out,
                    "Could not verify {} for deletion: {e} (Skipping)",
                    p.display()
                );
            }
        }
    }
    Ok(())
}

fn repo_list(f: &SourceFlags) -> anyhow::Result<Vec<J>> {
    Ok(
        crate::chart_repo::read_list(&f.paths.config())?["repositories"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
    )
}

fn read_lock(dir: &Path) -> anyhow::Result<Option<Lock>> {
    let p = dir.join("Chart.lock");
    match std::fs::read_to_string(&p) {
        Ok(t) => parse_lock(&t)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("read {}", p.display())),
    }
}

/// `helm dependency update`; prints Helm's progress lines as it goes.
pub fn update(a: &DepArgs) -> anyhow::Result<()> {
    let c = load_dir(&a.chart)?;
    let mut req = c.metadata.dependencies.clone();
    if req.is_empty() {
        return Ok(());
    }
    let list = repo_list(&a.source)?;
    let names = repo_names(&mut req, &list, &a.chart)?;
    let mut out = String::new();
    let result = (|| {
        let unmanaged = if a.skip_refresh {
            BTreeMap::new()
        } else {
            refresh(&req, &names, &list, &a.source, &mut out)?
        };
        let locked = resolve(&a.chart, &req, &names, &unmanaged, &a.source)?;
        download_all(&a.chart, &locked, &a.source, &mut out)?;
        anyhow::Ok(locked)
    })();
    print!("{out}");
    let locked = result?;
    let digest = hash_req(&req, &locked);
    if read_lock(&a.chart)?.is_some_and(|l| l.digest == digest) {
        return Ok(());
    }
    let lock = Lock {
        generated: chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        digest,
        dependencies: locked,
    };
    let p = a.chart.join("Chart.lock");
    if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
        bail!(
            "the Chart.lock file is a symlink to {:?}",
            std::fs::read_link(&p)
                .unwrap_or_default()
                .display()
                .to_string()
        );
    }
    std::fs::write(&p, lock_yaml(&lock)).with_context(|| format!("write {}", p.display()))
}

/// `helm dependency build`: the versions Chart.lock names, refused when the
/// lock no longer matches Chart.yaml; without a lock it is an update.
pub fn build(a: &DepArgs) -> anyhow::Result<()> {
    let c = load_dir(&a.chart)?;
    let Some(lock) = read_lock(&a.chart)? else {
        return update(a);
    };
    let mut req = c.metadata.dependencies.clone();
    let list = repo_list(&a.source)?;
    let names = repo_names(&mut req, &list, &a.chart)?;
    if hash_req(&req, &lock.dependencies) != lock.digest {
        return Err(anyhow::Error::new(crate::Hint::new(
            "run `keel chart dependency update` to lock the new requirements",
        ))
        .context("the lock file (Chart.lock) is out of sync with the dependencies file (Chart.yaml). Please update the dependencies"));
    }
    let missing: Vec<&str> = lock
        .dependencies
        .iter()
        .filter(|d| {
            !d.repository.is_empty()
                && !d.repository.starts_with("file://")
                && !d.repository.starts_with("oci://")
                && !list
                    .iter()
                    .any(|e| same_url(e["url"].as_str().unwrap_or_default(), &d.repository))
        })
        .map(|d| d.repository.as_str())
        .collect();
    if !missing.is_empty() {
        bail!("no repository definition for {}", missing.join(", "));
    }
    let mut out = String::new();
    let result = (|| {
        if !a.skip_refresh {
            // only the added repositories: a lock names no unmanaged ones
            let none = BTreeMap::new();
            refresh(&[], &none, &list, &a.source, &mut out)?;
        }
        download_all(&a.chart, &lock.dependencies, &a.source, &mut out)
    })();
    print!("{out}");
    drop(names);
    result
}
