//! `keel chart repo add|list|update|remove|index` and `keel chart search
//! repo`: chart repositories in Helm's own files, so `helm` and `keel chart`
//! share them: the list in `repositories.yaml` (`$HELM_REPOSITORY_CONFIG`,
//! else `$HELM_CONFIG_HOME`, else `~/.config/helm`), each repository's
//! `index.yaml` cached as `NAME-index.yaml` with `NAME-charts.txt` beside it
//! (`$HELM_REPOSITORY_CACHE`, else `$HELM_CACHE_HOME/repository`, else
//! `~/.cache/helm/repository`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use serde_json::{Value as J, json};
use sha2::Digest as _;

/// Where the repository list and cache are (Helm's global flags).
#[derive(Debug, Args, Clone, Default)]
pub struct RepoPaths {
    /// Path to repositories.yaml.
    #[arg(long = "repository-config")]
    pub repository_config: Option<PathBuf>,
    /// Path to the folder of cached repository indexes.
    #[arg(long = "repository-cache")]
    pub repository_cache: Option<PathBuf>,
}

impl RepoPaths {
    fn home_dir(xdg: &str, fallback: &str) -> PathBuf {
        std::env::var_os(xdg).filter(|v| !v.is_empty()).map_or_else(
            || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(fallback),
            PathBuf::from,
        )
    }

    pub fn config(&self) -> PathBuf {
        self.repository_config.clone().unwrap_or_else(|| {
            std::env::var_os("HELM_REPOSITORY_CONFIG")
                .filter(|v| !v.is_empty())
                .map_or_else(
                    || {
                        std::env::var_os("HELM_CONFIG_HOME")
                            .filter(|v| !v.is_empty())
                            .map_or_else(
                                || Self::home_dir("XDG_CONFIG_HOME", ".config").join("helm"),
                                PathBuf::from,
                            )
                            .join("repositories.yaml")
                    },
                    PathBuf::from,
                )
        })
    }

    pub fn cache(&self) -> PathBuf {
        self.repository_cache.clone().unwrap_or_else(|| {
            std::env::var_os("HELM_REPOSITORY_CACHE")
                .filter(|v| !v.is_empty())
                .map_or_else(
                    || {
                        std::env::var_os("HELM_CACHE_HOME")
                            .filter(|v| !v.is_empty())
                            .map_or_else(
                                || Self::home_dir("XDG_CACHE_HOME", ".cache").join("helm"),
                                PathBuf::from,
                            )
                            .join("repository")
                    },
                    PathBuf::from,
                )
        })
    }
}

/// `keel chart repo …`.
#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// Add a chart repository (its index.yaml is fetched and cached).
    Add {
        name: String,
        url: String,
        #[command(flatten)]
        paths: RepoPaths,
        /// Chart repository username.
        #[arg(long = "username")]
        username: Option<String>,
        /// Chart repository password.
        #[arg(long = "password")]
        password: Option<String>,
        /// Replace (overwrite) the repo if it already exists.
        #[arg(long = "force-update")]
        force_update: bool,
        /// Skip TLS certificate checks for the repository.
        #[arg(long = "insecure-skip-tls-verify")]
        insecure_skip_tls_verify: bool,
        /// Verify certificates of HTTPS servers with this CA bundle.
        #[arg(long = "ca-file")]
        ca_file: Option<String>,
        /// Send credentials to all domains (charts served elsewhere too).
        #[arg(long = "pass-credentials")]
        pass_credentials: bool,
    },
    /// List chart repositories.
    #[command(alias = "ls")]
    List {
        #[command(flatten)]
        paths: RepoPaths,
        /// Output format: table, json or yaml.
        #[arg(short = 'o', long = "output", default_value = "table")]
        output: String,
        /// Don't print headers in the table.
        #[arg(long = "no-headers")]
        no_headers: bool,
    },
    /// Fetch the latest index of chart repositories (all, or those named).
    #[command(alias = "up")]
    Update {
        names: Vec<String>,
        #[command(flatten)]
        paths: RepoPaths,
    },
    /// Remove chart repositories.
    #[command(alias = "rm")]
    Remove {
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        paths: RepoPaths,
    },
    /// Write index.yaml for the chart archives of a folder.
    Index {
        dir: PathBuf,
        /// URL of the chart repository (the archives' URLs start with it).
        #[arg(long = "url", default_value = "")]
        url: String,
        /// Merge the generated index into this index.
        #[arg(long = "merge")]
        merge: Option<PathBuf>,
    },
}

/// `keel chart search repo KEYWORD`.
#[derive(Debug, Args)]
pub struct SearchRepoArgs {
    /// Text in the chart's name, description or keywords (all charts without).
    pub keyword: Option<String>,
    #[command(flatten)]
    pub paths: RepoPaths,
    /// Use the keyword as a regular expression.
    #[arg(short = 'r', long = "regexp")]
    pub regexp: bool,
    /// Show development versions (with a pre-release) too.
    #[arg(long = "devel")]
    pub devel: bool,
    /// Show every version, not only the newest.
    #[arg(short = 'l', long = "versions")]
    pub versions: bool,
    /// A semantic version constraint, e.g. ">= 0.1, < 0.2".
    #[arg(long = "version")]
    pub version: Option<String>,
    /// Maximum column width of the table.
    #[arg(long = "max-col-width", default_value_t = 50)]
    pub max_col_width: usize,
    /// Output format: table, json or yaml.
    #[arg(short = 'o', long = "output", default_value = "table")]
    pub output: String,
    /// Fail when nothing matches.
    #[arg(long = "fail-on-no-result")]
    pub fail_on_no_result: bool,
}

/// Helm's `repo.Entry`, field for field.
fn entry(name: &str, url: &str, user: &str, pass: &str, ca: &str, skip: bool, all: bool) -> J {
    json!({
        "name": name, "url": url, "username": user, "password": pass,
        "certFile": "", "keyFile": "", "caFile": ca,
        "insecure_skip_tls_verify": skip, "pass_credentials_all": all,
    })
}

pub(crate) fn read_list(path: &Path) -> anyhow::Result<J> {
    match std::fs::read_to_string(path) {
        Ok(t) => {
            let v: J = serde_yaml_ng::from_str(&t)
                .with_context(|| format!("{}: not a repositories file", path.display()))?;
            Ok(if v.is_object() {
                v
            } else {
                json!({"apiVersion": "", "generated": "0001-01-01T00:00:00Z", "repositories": []})
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(
            json!({"apiVersion": "", "generated": crate::chart_release::now(), "repositories": []}),
        ),
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

/// Writes repositories.yaml as Helm does (sorted keys, mode 0600: it holds passwords).
fn write_file_list(path: &Path, v: &J) -> anyhow::Result<()> {
    write_private(path, keel_chart::json_to_yaml(v).as_bytes())
}

/// Writes a file only its owner reads (mode 0600: repository lists and
/// registry configs hold passwords), through a temporary file beside it so
/// that it is never half-written.
pub(crate) fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).with_context(|| format!("create {}", p.display()))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("write {}", tmp.display()))?;
    std::io::Write::write_all(&mut f, data)?;
    std::fs::rename(&tmp, path).with_context(|| format!("write {}", path.display()))
}

fn repos(list: &J) -> Vec<J> {
    list["repositories"].as_array().cloned().unwrap_or_default()
}

/// Fetches `URL/index.yaml` of a repository entry, checks it is an index,
/// and caches it (with the chart names) as Helm does.
pub(crate) fn download_index(e: &J, cache: &Path) -> anyhow::Result<()> {
    let name = e["name"].as_str().unwrap_or_default();
    let url = e["url"].as_str().unwrap_or_default().trim_end_matches('/');
    let mut client = keel_infra::http::HttpClient {
        skip_verify: e["insecure_skip_tls_verify"].as_bool().unwrap_or(false),
        ..Default::default()
    };
    let user = e["username"].as_str().unwrap_or_default();
    if !user.is_empty() {
        client.basic = Some((
            user.to_string(),
            e["password"].as_str().unwrap_or_default().to_string(),
        ));
    }
    if let Some(ca) = e["caFile"].as_str().filter(|c| !c.is_empty()) {
        client.ca_pem = Some(std::fs::read_to_string(ca).with_context(|| format!("read {ca}"))?);
    }
    let index_url = format!("{url}/index.yaml");
    let (status, body) = client.request("GET", &index_url, &[], "").map_err(|err| {
        anyhow::anyhow!(
            "looks like \"{url}\" is not a valid chart repository or cannot be reached: {err}"
        )
    })?;
    if status != 200 {
        bail!(
            "looks like \"{url}\" is not a valid chart repository or cannot be reached: failed to fetch {index_url} : {status}"
        );
    }
    let index: J = serde_yaml_ng::from_slice(&body).map_err(|err| {
        anyhow::anyhow!(
            "looks like \"{url}\" is not a valid chart repository or cannot be reached: {err}"
        )
    })?;
    if index["apiVersion"].as_str().unwrap_or_default().is_empty() {
        bail!(
            "looks like \"{url}\" is not a valid chart repository or cannot be reached: no API version specified"
        );
    }
    std::fs::create_dir_all(cache).with_context(|| format!("create {}", cache.display()))?;
    let mut names: Vec<&String> = index["entries"]
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    names.sort();
    let charts = names.iter().fold(String::new(), |mut s, n| {
        let _ = writeln!(s, "{n}");
        s
    });
    std::fs::write(cache.join(format!("{name}-charts.txt")), charts)?;
    std::fs::write(cache.join(format!("{name}-index.yaml")), &body)?;
    Ok(())
}

pub fn run(c: &RepoCommand) -> anyhow::Result<()> {
    match c {
        RepoCommand::Add {
            name,
            url,
            paths,
            username,
            password,
            force_update,
            insecure_skip_tls_verify,
            ca_file,
            pass_credentials,
        } => {
            if name.contains('/') {
                bail!(
                    "repository name ({name}) contains '/', please specify a different name without '/'"
                );
            }
            let path = paths.config();
            let mut list = read_list(&path)?;
            let e = entry(
                name,
                url,
                username.as_deref().unwrap_or_default(),
                password.as_deref().unwrap_or_default(),
                ca_file.as_deref().unwrap_or_default(),
                *insecure_skip_tls_verify,
                *pass_credentials,
            );
            let mut all = repos(&list);
            if let Some(old) = all.iter().find(|r| r["name"] == name.as_str())
                && !force_update
            {
                if *old == e {
                    println!("{name:?} already exists with the same configuration, skipping");
                    return Ok(());
                }
                bail!("repository name ({name}) already exists, please specify a different name");
            }
            download_index(&e, &paths.cache())?;
            all.retain(|r| r["name"] != name.as_str());
            all.push(e);
            list["repositories"] = J::Array(all);
            write_file_list(&path, &list)?;
            println!("{name:?} has been added to your repositories");
        }
        RepoCommand::List {
            paths,
            output,
            no_headers,
        } => {
            let all = repos(&read_list(&paths.config())?);
            if all.is_empty() && output == "table" {
                eprintln!("no repositories to show");
                return Ok(());
            }
            let rows: Vec<(String, String)> = all
                .iter()
                .map(|r| {
                    (
                        r["name"].as_str().unwrap_or_default().to_string(),
                        r["url"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            match output.as_str() {
                "table" => {
                    let mut t = Vec::new();
                    if !no_headers {
                        t.push(vec!["NAME".to_string(), "URL".to_string()]);
                    }
                    t.extend(rows.into_iter().map(|(n, u)| vec![n, u]));
                    print!("{}", crate::chart_show::table(&t));
                }
                o => {
                    let v: Vec<J> = rows
                        .into_iter()
                        .map(|(n, u)| json!({"name": n, "url": u}))
                        .collect();
                    print!("{}", crate::chart_show::encode(&v, o)?);
                }
            }
        }
        RepoCommand::Update { names, paths } => {
            let all = repos(&read_list(&paths.config())?);
            if all.is_empty() {
                bail!("no repositories found. You must add one before updating");
            }
            for n in names {
                if !all.iter().any(|r| r["name"] == n.as_str()) {
                    bail!("no repositories found matching '{n}'.  Nothing will be updated");
                }
            }
            println!("Hang tight while we grab the latest from your chart repositories...");
            let mut failed = Vec::new();
            for r in all
                .iter()
                .filter(|r| names.is_empty() || names.iter().any(|n| r["name"] == n.as_str()))
            {
                let (n, u) = (
                    r["name"].as_str().unwrap_or_default(),
                    r["url"].as_str().unwrap_or_default(),
                );
                match download_index(r, &paths.cache()) {
                    Ok(()) => {
                        println!("...Successfully got an update from the {n:?} chart repository");
                    }
                    Err(e) => {
                        println!(
                            "...Unable to get an update from the {n:?} chart repository ({u}):\n\t{e:#}"
                        );
                        failed.push(u.to_string());
                    }
                }
            }
            if !failed.is_empty() {
                bail!("failed to update the following repositories: {failed:?}");
            }
            println!("Update Complete. ⎈Happy Helming!⎈");
        }
        RepoCommand::Remove { names, paths } => {
            let path = paths.config();
            let mut list = read_list(&path)?;
            for n in names {
                let mut all = repos(&list);
                let before = all.len();
                all.retain(|r| r["name"] != n.as_str());
                if all.len() == before {
                    bail!("no repo named {n:?} found");
                }
                list["repositories"] = J::Array(all);
                write_file_list(&path, &list)?;
                for f in [format!("{n}-index.yaml"), format!("{n}-charts.txt")] {
                    let _ = std::fs::remove_file(paths.cache().join(f));
                }
                println!("{n:?} has been removed from your repositories");
            }
        }
        RepoCommand::Index { dir, url, merge } => index(dir, url, merge.as_deref())?,
    }
    Ok(())
}

/// `helm repo index`: every chart archive in `dir` and one folder down,
/// newest version first per chart, `digest` the archive's SHA-256.
fn index(dir: &Path, url: &str, merge: Option<&Path>) -> anyhow::Result<()> {
    let mut archives = Vec::new();
    for d in std::iter::once(dir.to_path_buf()).chain(
        std::fs::read_dir(dir)
            .with_context(|| format!("read {}", dir.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir()),
    ) {
        for e in std::fs::read_dir(&d)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
        {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "tgz") {
                archives.push(p);
            }
        }
    }
    archives.sort();
    let mut entries: BTreeMap<String, Vec<J>> = BTreeMap::new();
    let now = crate::chart_release::now();
    for a in &archives {
        let data = std::fs::read(a).with_context(|| format!("read {}", a.display()))?;
        let chart = keel_chart::load(a).map_err(|e| anyhow::anyhow!("{e}"))?;
        let rel = a
            .strip_prefix(dir)
            .unwrap_or(a)
            .to_string_lossy()
            .into_owned();
        let link = if url.is_empty() {
            rel
        } else {
            format!("{}/{rel}", url.trim_end_matches('/'))
        };
        let mut v = serde_json::to_value(&chart.metadata)?;
        v["urls"] = json!([link]);
        v["created"] = json!(now);
        v["digest"] = json!(hex(&sha2::Sha256::digest(&data)));
        entries
            .entry(chart.metadata.name.clone())
            .or_default()
            .push(v);
    }
    let out = dir.join("index.yaml");
    if let Some(m) = merge {
        // Helm's Merge: versions the new index lacks come from the old one
        if let Ok(text) = std::fs::read_to_string(m) {
            let old: J = serde_yaml_ng::from_str(&text)
                .with_context(|| format!("{}: not a repository index", m.display()))?;
            for (name, vers) in old["entries"].as_object().into_iter().flatten() {
                let cur = entries.entry(name.clone()).or_default();
                for v in vers.as_array().into_iter().flatten() {
                    if !cur.iter().any(|c| c["version"] == v["version"]) {
                        cur.push(v.clone());
                    }
                }
            }
        }
    }
    for vers in entries.values_mut() {
        vers.sort_by(|a, b| cmp_versions(b, a));
    }
    let index = json!({"apiVersion": "v1", "entries": entries, "generated": now});
    std::fs::write(&out, keel_chart::json_to_yaml(&index))
        .with_context(|| format!("write {}", out.display()))?;
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

/// A semantic version's precedence key (`SemVer` 2.0 §11): the numbers, then
/// a release above any of its pre-releases, pre-release fields numeric
/// below alphanumeric. None for what is not a version (a leading `v` and
/// missing minor/patch are accepted, as Masterminds' parser does).
/// `(is alphanumeric, number, text)` of one pre-release field.
type PreField = (bool, u64, String);

pub(crate) fn version_key(v: &str) -> Option<(Vec<u64>, Vec<PreField>)> {
    let v = v.trim().trim_start_matches('v');
    let v = v.split('+').next()?;
    let (core, pre) = v.split_once('-').map_or((v, None), |(c, p)| (c, Some(p)));
    let mut nums: Vec<u64> = core
        .split('.')
        .map(|n| n.parse().ok())
        .collect::<Option<_>>()?;
    if nums.is_empty() || nums.len() > 3 {
        return None;
    }
    nums.resize(3, 0);
    let pre = pre.map_or_else(Vec::new, |p| {
        p.split('.')
            .map(|f| match f.parse::<u64>() {
                Ok(n) => (false, n, String::new()),
                Err(_) => (true, 0, f.to_string()),
            })
            .collect()
    });
    Some((nums, pre))
}

/// Orders index entries by semantic version (invalid ones last, as Helm).
pub(crate) fn cmp_versions(a: &J, b: &J) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let k = |v: &J| version_key(v["version"].as_str().unwrap_or_default());
    match (k(a), k(b)) {
        (Some((na, pa)), Some((nb, pb))) => {
            na.cmp(&nb)
                .then_with(|| match (pa.is_empty(), pb.is_empty()) {
                    (true, true) => Ordering::Equal,
                    (true, false) => Ordering::Greater,
                    (false, true) => Ordering::Less,
                    (false, false) => pa.cmp(&pb),
                })
        }
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (None, None) => Ordering::Equal,
    }
}

/// One row of `helm search repo`.
#[derive(serde::Serialize)]
struct Found {
    name: String,
    version: String,
    app_version: String,
    description: String,
}

/// `helm search repo`.
pub fn search(a: &SearchRepoArgs) -> anyhow::Result<()> {
    let list = read_list(&a.paths.config())?;
    if repos(&list).is_empty() {
        return Err(anyhow::Error::new(crate::Hint::new(
            "add one with `keel chart repo add NAME URL`",
        ))
        .context("no repositories configured"));
    }
    let mut found: Vec<(usize, Found)> = Vec::new();
    let re = match (&a.keyword, a.regexp) {
        (Some(k), true) => Some(
            regex::Regex::new(k).with_context(|| format!("invalid regular expression {k:?}"))?,
        ),
        _ => None,
    };
    let constraint = a.version.clone().unwrap_or_else(|| {
        if a.devel {
            ">0.0.0-0".into()
        } else {
            ">0.0.0".into()
        }
    });
    for r in repos(&list) {
        let rname = r["name"].as_str().unwrap_or_default();
        let path = a.paths.cache().join(format!("{rname}-index.yaml"));
        let Ok(text) = std::fs::read_to_string(&path) else {
            eprintln!(
                "WARNING: Repo {rname:?} is corrupt or missing. Try 'keel chart repo update'."
            );
            continue;
        };
        let index: J = serde_yaml_ng::from_str(&text).unwrap_or(J::Null);
        for (chart, vers) in index["entries"].as_object().into_iter().flatten() {
            let name = format!("{rname}/{chart}");
            // every version is indexed (Helm always has a constraint to pick with)
            for v in vers.as_array().into_iter().flatten() {
                // Helm's indstr: chart, repo/chart, description, keywords,
                // split by \v; the score is the field the match starts in
                let line = format!(
                    "{chart}\u{b}{name}\u{b}{}\u{b}{}",
                    v["description"].as_str().unwrap_or_default(),
                    v["keywords"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(J::as_str)
                        .collect::<Vec<_>>()
                        .join(" ")
                );
                let at = match (&a.keyword, &re) {
                    (None, _) => Some(0),
                    (Some(_), Some(re)) => re.find(&line).map(|m| m.start()),
                    (Some(k), None) => line.to_lowercase().find(&k.to_lowercase()),
                };
                let Some(at) = at else { continue };
                let score = if a.keyword.is_none() {
                    0
                } else {
                    line.char_indices()
                        .filter(|&(i, c)| c == '\u{b}' && i < at)
                        .count()
                };
                found.push((
                    score,
                    Found {
                        name: name.clone(),
                        version: v["version"].as_str().unwrap_or_default().to_string(),
                        app_version: v["appVersion"].as_str().unwrap_or_default().to_string(),
                        description: v["description"].as_str().unwrap_or_default().to_string(),
                    },
                ));
            }
        }
    }
    // Helm's SortScore: score, then name, then the newer version first
    found.sort_by(|(sa, x), (sb, y)| {
        sa.cmp(sb).then(x.name.cmp(&y.name)).then_with(|| {
            cmp_versions(
                &json!({"version": y.version}),
                &json!({"version": x.version}),
            )
        })
    });
    // Helm's applyConstraint: with one result per chart unless --versions
    let mut seen = std::collections::BTreeSet::new();
    let found: Vec<Found> = found
        .into_iter()
        .map(|(_, f)| f)
        .filter(|f| {
            if !a.versions && seen.contains(&f.name) {
                return false;
            }
            let ok = keel_chart::semver_matches(&constraint, &f.version).unwrap_or(false);
            if ok {
                seen.insert(f.name.clone());
            }
            ok
        })
        .collect();
    if found.is_empty() {
        if a.fail_on_no_result {
            bail!("no results found");
        }
        if a.output == "table" {
            println!("No results found");
            return Ok(());
        }
    }
    if a.output != "table" {
        print!("{}", crate::chart_show::encode(&found, &a.output)?);
        return Ok(());
    }
    let cell = |s: &str| crate::chart_show::truncate(s, a.max_col_width);
    let mut rows = vec![
        ["NAME", "CHART VERSION", "APP VERSION", "DESCRIPTION"]
            .map(String::from)
            .to_vec(),
    ];
    for f in &found {
        rows.push(vec![
            cell(&f.name),
            cell(&f.version),
            cell(&f.app_version),
            cell(&f.description),
        ]);
    }
    print!("{}", crate::chart_show::table(&rows));
    Ok(())
}
