//! Where charts come from besides local files, as Helm finds them:
//! `keel chart push|pull` and `keel chart registry login|logout` for OCI
//! registries (`oci://`), and the chart references `install`, `upgrade` and
//! `pull` accept: `oci://HOST/PATH/NAME[:TAG]`, `REPO/NAME` from an added
//! repository's cached index, `--repo URL` and plain `http(s)://` archives.
//! Registry credentials live in Helm's own `registry/config.json`, so a
//! `helm registry login` serves keel and the other way round.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use clap::{Args, Subcommand};
use keel_chart::oci as layout;
use keel_oci::registry::RegistryOptions;
use serde_json::{Value as J, json};

use crate::chart_repo::RepoPaths;

/// Flags naming where a remote chart is and how to reach it (Helm's names).
#[derive(Debug, Args, Clone, Default)]
pub struct SourceFlags {
    /// Chart repository URL to look the chart up in.
    #[arg(long = "repo")]
    pub repo: Option<String>,
    #[command(flatten)]
    pub reg: RegistryFlags,
    #[command(flatten)]
    pub paths: RepoPaths,
}

/// How to reach a registry or repository: credentials, transport, Helm's
/// registry config (what pull, install and push share).
#[derive(Debug, Args, Clone, Default)]
pub struct RegistryFlags {
    /// Chart repository or registry username.
    #[arg(long = "username")]
    pub username: Option<String>,
    /// Chart repository or registry password.
    #[arg(long = "password")]
    pub password: Option<String>,
    /// Use plain HTTP for the registry (loopback registries always are).
    #[arg(long = "plain-http")]
    pub plain_http: bool,
    /// Skip TLS certificate checks of the repository or registry.
    #[arg(long = "insecure-skip-tls-verify")]
    pub insecure_skip_tls_verify: bool,
    /// Path to the registry config file.
    #[arg(long = "registry-config")]
    pub registry_config: Option<PathBuf>,
}

impl RegistryFlags {
    /// The options for `host`: credentials from the flags, Helm's registry
    /// config, then Docker's and podman's files.
    fn options(&self, host: &str) -> anyhow::Result<RegistryOptions> {
        let creds = credentials(
            host,
            self.registry_config.as_deref(),
            self.username.as_ref(),
            self.password.as_ref(),
        )?;
        Ok(options(host, self.plain_http, creds))
    }
}

/// `keel chart registry …`.
#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Log in to a registry (credentials kept where Helm keeps them).
    Login {
        host: String,
        #[arg(short = 'u', long = "username")]
        username: Option<String>,
        #[arg(short = 'p', long = "password")]
        password: Option<String>,
        /// Read the password from stdin.
        #[arg(long = "password-stdin")]
        password_stdin: bool,
        /// Use plain HTTP (loopback registries always are).
        #[arg(long = "plain-http")]
        plain_http: bool,
        /// Allow TLS registries without verified certificates.
        #[arg(long = "insecure")]
        insecure: bool,
        /// Path to the registry config file.
        #[arg(long = "registry-config")]
        registry_config: Option<PathBuf>,
    },
    /// Forget the credentials of a registry.
    Logout {
        host: String,
        /// Path to the registry config file.
        #[arg(long = "registry-config")]
        registry_config: Option<PathBuf>,
    },
}

/// `keel chart pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// `oci://…`, `REPO/NAME`, an archive URL, or NAME with --repo.
    #[arg(required = true)]
    pub charts: Vec<String>,
    /// Version constraint (the newest when absent).
    #[arg(long = "version")]
    pub version: Option<String>,
    /// Unpack the chart after downloading it.
    #[arg(long = "untar")]
    pub untar: bool,
    /// With --untar: the directory to unpack into.
    #[arg(long = "untardir", default_value = ".")]
    pub untardir: PathBuf,
    /// Where to write the archive.
    #[arg(short = 'd', long = "destination", default_value = ".")]
    pub destination: PathBuf,
    #[command(flatten)]
    pub source: SourceFlags,
}

/// `keel chart push CHART.tgz oci://HOST/PATH`.
#[derive(Debug, Args)]
pub struct PushArgs {
    pub chart: PathBuf,
    pub remote: String,
    #[command(flatten)]
    pub reg: RegistryFlags,
}

/// A chart fetched from elsewhere: the archive and the file name Helm gives it.
pub struct Fetched {
    pub file_name: String,
    pub data: Vec<u8>,
}

/// Helm's registry config: `--registry-config`, `$HELM_REGISTRY_CONFIG`,
/// else `registry/config.json` in Helm's config home.
fn registry_config(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(p) = env("HELM_REGISTRY_CONFIG") {
        return PathBuf::from(p);
    }
    let home = env("HELM_CONFIG_HOME").map_or_else(
        || {
            env("XDG_CONFIG_HOME")
                .map_or_else(
                    || PathBuf::from(env("HOME").unwrap_or_default()).join(".config"),
                    PathBuf::from,
                )
                .join("helm")
        },
        PathBuf::from,
    );
    home.join("registry/config.json")
}

fn read_config(path: &Path) -> anyhow::Result<J> {
    match std::fs::read(path) {
        Ok(b) if b.iter().all(u8::is_ascii_whitespace) => Ok(json!({"auths": {}})),
        Ok(b) => serde_json::from_slice(&b)
            .with_context(|| format!("{}: not a registry config file", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(json!({"auths": {}})),
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

/// Writes the config as Go's `json.MarshalIndent(…, "", "\t")` (mode 0600:
/// it holds passwords), through a temporary file so it is never half-written.
fn write_config(path: &Path, v: &J) -> anyhow::Result<()> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(
        &mut out,
        serde_json::ser::PrettyFormatter::with_indent(b"\t"),
    );
    serde::Serialize::serialize(v, &mut ser)?;
    crate::chart_repo::write_private(path, &out)
}

/// Credentials for `host`: explicit flags, Helm's registry config, then
/// Docker's and podman's files.
fn credentials(
    host: &str,
    config: Option<&Path>,
    user: Option<&String>,
    pass: Option<&String>,
) -> anyhow::Result<Option<(String, String)>> {
    if let (Some(u), Some(p)) = (user, pass) {
        return Ok(Some((u.clone(), p.clone())));
    }
    let cfg = read_config(&registry_config(config))?;
    if let Some(a) = cfg["auths"][host]["auth"].as_str() {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(a.trim())
            .context("registry config: an auth entry is not base64")?;
        let s = String::from_utf8_lossy(&raw);
        if let Some((u, p)) = s.split_once(':') {
            return Ok(Some((u.to_string(), p.to_string())));
        }
    }
    Ok(keel_oci::registry::stored_credentials(None, host))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn options(host: &str, plain: bool, creds: Option<(String, String)>) -> RegistryOptions {
    RegistryOptions {
        insecure: if plain {
            vec![host.to_string()]
        } else {
            vec![]
        },
        credentials: creds,
        root: None,
    }
}

/// The registry's own words for a failure (the chain of causes, one line).
fn oci_err(e: keel_oci::OciError) -> anyhow::Error {
    let mut parts = vec![e.to_string()];
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        parts.push(s.to_string());
        src = s.source();
    }
    anyhow::anyhow!(parts.join(": "))
}

pub fn registry(c: &RegistryCommand) -> anyhow::Result<()> {
    match c {
        RegistryCommand::Login {
            host,
            username,
            password,
            password_stdin,
            plain_http,
            insecure: _,
            registry_config: cfg,
        } => {
            let user = username
                .clone()
                .context("a username is required (-u USER)")?;
            let pass = if *password_stdin {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .context("reading the password from stdin")?;
                s.trim_end_matches(['\n', '\r']).to_string()
            } else {
                if password.is_some() {
                    eprintln!(
                        "level=WARN msg=\"using --password via the CLI is insecure. Use --password-stdin\""
                    );
                }
                password
                    .clone()
                    .context("a password is required (-p or --password-stdin)")?
            };
            let opts = options(host, *plain_http, None);
            runtime()?
                .block_on(keel_oci::registry::check_login(host, &user, &pass, &opts))
                .map_err(oci_err)
                .with_context(|| format!("authenticating to {host:?}"))?;
            let path = registry_config(cfg.as_deref());
            let mut v = read_config(&path)?;
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            if !v["auths"].is_object() {
                v["auths"] = json!({});
            }
            v["auths"][host] = json!({"auth": token});
            write_config(&path, &v)?;
            println!("Login Succeeded");
        }
        RegistryCommand::Logout {
            host,
            registry_config: cfg,
        } => {
            let path = registry_config(cfg.as_deref());
            let mut v = read_config(&path)?;
            let removed = v["auths"]
                .as_object_mut()
                .and_then(|m| m.remove(host))
                .is_some();
            if !removed {
                bail!("not logged in to {host}");
            }
            write_config(&path, &v)?;
            eprintln!("Removing login credentials for {host}");
        }
    }
    Ok(())
}

/// `helm push`: the archive's layout from keel-chart, the bytes through keel-oci.
pub fn push(a: &PushArgs) -> anyhow::Result<()> {
    let Some(base) = a.remote.strip_prefix("oci://") else {
        bail!("scheme prefix missing from remote (e.g. \"oci://\")");
    };
    let meta =
        std::fs::metadata(&a.chart).with_context(|| format!("stat {}", a.chart.display()))?;
    if meta.is_dir() {
        return Err(anyhow::Error::new(crate::Hint::new(
            "package it first: `keel chart package DIR`",
        ))
        .context("cannot push directory, must provide chart archive (.tgz)"));
    }
    let data = std::fs::read(&a.chart).with_context(|| format!("read {}", a.chart.display()))?;
    let prov = std::fs::read(format!("{}.prov", a.chart.display())).ok();
    // Helm: "created" is when the archive was last written, in RFC 3339
    let created = meta.modified().map_or_else(
        |_| crate::chart_release::now(),
        |t| {
            chrono::DateTime::<chrono::Local>::from(t)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        },
    );
    let packed =
        layout::pack(&data, prov.as_deref(), &created).map_err(|e| anyhow::anyhow!("{e}"))?;
    let shown = format!(
        "{}/{}:{}",
        base.trim_end_matches('/'),
        packed.metadata.name,
        packed.tag
    );
    let target = keel_oci::Reference::parse(&shown).map_err(oci_err)?;
    let opts = a.reg.options(target.registry())?;
    let blobs: Vec<&[u8]> = packed.blobs.iter().map(Vec::as_slice).collect();
    let digest = runtime()?
        .block_on(keel_oci::artifact::push(
            &target,
            &blobs,
            &packed.manifest,
            layout::MANIFEST_MEDIA_TYPE,
            &opts,
        ))
        .map_err(oci_err)?;
    eprintln!("Pushed: {shown}\nDigest: {digest}");
    underscore_note(&shown, &packed.tag);
    Ok(())
}

/// Helm's note when a tag stands for a version with `+`.
fn underscore_note(shown: &str, tag: &str) {
    if tag.contains('_') {
        eprintln!(
            "{shown} contains an underscore.\n\nOCI artifact references (e.g. tags) do not support the plus sign (+). To support\nstoring semantic versions, Helm adopts the convention of changing plus (+) to\nan underscore (_) in chart version tags when pushing to a registry and back to\na plus (+) when pulling from a registry."
        );
    }
}

/// Whether `chart` names something to fetch rather than a local path.
pub fn is_remote(chart: &str, f: &SourceFlags) -> bool {
    if f.repo.is_some() || chart.starts_with("oci://") {
        return true;
    }
    if chart.starts_with("http://") || chart.starts_with("https://") {
        return true;
    }
    !Path::new(chart).exists()
        && !chart.starts_with('.')
        && !chart.starts_with('/')
        && chart.contains('/')
}

/// Helm's `ValidateReference` + `Tags`: the tag to pull for `version`.
fn oci_tag(
    rt: &tokio::runtime::Runtime,
    base: &keel_oci::Reference,
    ref_tag: Option<&str>,
    version: Option<&str>,
    opts: &RegistryOptions,
    shown: &str,
) -> anyhow::Result<String> {
    let version = version.filter(|v| !v.is_empty());
    let ref_tag = ref_tag.map(|t| t.replace('_', "+"));
    let want = match (version, &ref_tag) {
        (Some(v), Some(t)) if v != t => {
            bail!("chart reference and version mismatch: {v} is not {t}")
        }
        (Some(v), _) => v.to_string(),
        (None, Some(t)) => t.clone(),
        (None, None) => String::new(),
    };
    if !want.is_empty() && crate::chart_repo::version_key(&want).is_some() {
        return Ok(want);
    }
    let tags = sorted_tags(
        rt.block_on(keel_oci::artifact::tags(base, opts))
            .map_err(oci_err)?,
    );
    if tags.is_empty() {
        bail!("unable to locate any tags in provided repository: {shown}");
    }
    let constraint = if want.is_empty() { "*" } else { want.as_str() };
    for t in &tags {
        if keel_chart::semver_matches(constraint, t).map_err(|e| anyhow::anyhow!("{e}"))? {
            return Ok(t.clone());
        }
    }
    bail!("could not locate a version matching provided version string {want}")
}

/// The semantic-version tags of `oci://HOST/PATH/NAME`, newest first (as Helm's `Tags`).
pub fn oci_tags(reference: &str, f: &SourceFlags) -> anyhow::Result<Vec<String>> {
    let base =
        keel_oci::Reference::parse(reference.trim_start_matches("oci://")).map_err(oci_err)?;
    let opts = f.reg.options(base.registry())?;
    let tags = runtime()?
        .block_on(keel_oci::artifact::tags(&base, &opts))
        .map_err(oci_err)
        .with_context(|| format!("could not retrieve list of tags for repository {reference}"))?;
    Ok(sorted_tags(tags))
}

fn sorted_tags(tags: Vec<String>) -> Vec<String> {
    let strict = regex::Regex::new(
        r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$",
    )
    .expect("static regex");
    let mut tags: Vec<String> = tags
        .into_iter()
        .map(|t| t.replace('_', "+"))
        .filter(|t| strict.is_match(t))
        .collect();
    tags.sort_by(|a, b| {
        crate::chart_repo::cmp_versions(&json!({ "version": b }), &json!({ "version": a }))
    });
    tags
}

/// Pulls a chart from `oci://…`; prints Helm's `Pulled:`/`Digest:` lines.
fn fetch_oci(reference: &str, version: Option<&str>, f: &SourceFlags) -> anyhow::Result<Fetched> {
    let raw = reference.trim_start_matches("oci://");
    let (raw, digest) = raw
        .rsplit_once('@')
        .map_or((raw, None), |(r, d)| (r, Some(d)));
    let (name_part, tag) = match raw.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, Some(t)),
        _ => (raw, None),
    };
    let base = keel_oci::Reference::parse(name_part).map_err(oci_err)?;
    let opts = f.reg.options(base.registry())?;
    let rt = runtime()?;
    let target = match digest {
        Some(d) => base.with_digest(keel_oci::Digest::parse(d).map_err(oci_err)?),
        None => {
            base.with_tag(&oci_tag(&rt, &base, tag, version, &opts, reference)?.replace('+', "_"))
        }
    };
    let art = rt
        .block_on(keel_oci::artifact::pull(
            &target,
            &[layout::MANIFEST_MEDIA_TYPE, layout::INDEX_MEDIA_TYPE],
            &[
                layout::CHART_LAYER_MEDIA_TYPE,
                layout::LEGACY_CHART_LAYER_MEDIA_TYPE,
                layout::PROV_LAYER_MEDIA_TYPE,
            ],
            &opts,
        ))
        .map_err(oci_err)?;
    let data = layout::chart_layer(&art.config_media_type, &art.layers)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let shown = target.to_string();
    eprintln!("Pulled: {shown}\nDigest: {}", art.digest);
    underscore_note(&shown, target.tag().unwrap_or_default());
    let repo_name = base.repository().rsplit('/').next().unwrap_or_default();
    let file_name = match target.tag() {
        Some(t) => format!("{repo_name}-{}.tgz", t.replace('_', "+")),
        None => format!("{repo_name}-{}.tgz", art.digest),
    };
    Ok(Fetched { file_name, data })
}

fn http_client(skip: bool, auth: Option<(String, String)>) -> keel_infra::http::HttpClient {
    keel_infra::http::HttpClient {
        skip_verify: skip,
        basic: auth,
        ..Default::default()
    }
}

fn http_get(client: &keel_infra::http::HttpClient, url: &str) -> anyhow::Result<Vec<u8>> {
    let (status, body) = client
        .request("GET", url, &[], "")
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("failed to fetch {url}"))?;
    if status != 200 {
        bail!("failed to fetch {url} : {status} {}", reason(status));
    }
    Ok(body)
}

fn reason(status: u16) -> &'static str {
    match status {
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "",
    }
}

/// Helm's `IndexFile.Get`: an exact version first, then the newest entry
/// the constraint admits (`*`, which leaves out pre-releases, when none).
pub fn index_get<'a>(index: &'a J, name: &str, version: Option<&str>) -> Result<&'a J, String> {
    let Some(list) = index["entries"][name].as_array() else {
        return Err("no chart name found".into());
    };
    if list.is_empty() {
        return Err("no chart version found".into());
    }
    let version = version.unwrap_or_default();
    let mut sorted: Vec<&J> = list.iter().collect();
    sorted.sort_by(|a, b| crate::chart_repo::cmp_versions(b, a));
    if !version.is_empty()
        && let Some(v) = sorted.iter().find(|v| v["version"] == version)
    {
        return Ok(v);
    }
    let constraint = if version.is_empty() { "*" } else { version };
    for v in sorted {
        let ver = v["version"].as_str().unwrap_or_default();
        if crate::chart_repo::version_key(ver).is_none() {
            continue;
        }
        if keel_chart::semver_matches(constraint, ver)? {
            return Ok(v);
        }
    }
    Err(format!("no chart version found for {name}-{version}"))
}

/// Helm's `ResolveReferenceURL`: a chart URL relative to its repository.
fn resolve_url(repo: &str, url: &str) -> String {
    if url.contains("://") {
        return url.to_string();
    }
    format!(
        "{}/{}",
        repo.trim_end_matches('/'),
        url.trim_start_matches('/')
    )
}

fn file_name_of(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    path.rsplit('/').next().unwrap_or(path).to_string()
}

/// Fetches a chart archive as Helm's `ChartDownloader` would.
pub fn fetch(chart: &str, version: Option<&str>, f: &SourceFlags) -> anyhow::Result<Fetched> {
    let version = version.filter(|v| !v.is_empty());
    if chart.starts_with("oci://") {
        return fetch_oci(chart, version, f);
    }
    let auth = f.reg.username.clone().zip(f.reg.password.clone());
    if let Some(repo) = &f.repo {
        if repo.starts_with("oci://") {
            return fetch_oci(
                &format!("{}/{chart}", repo.trim_end_matches('/')),
                version,
                f,
            );
        }
        let client = http_client(f.reg.insecure_skip_tls_verify, auth.clone());
        let index_url = format!("{}/index.yaml", repo.trim_end_matches('/'));
        let body = http_get(&client, &index_url).map_err(|e| {
            anyhow::anyhow!(
                "looks like {repo:?} is not a valid chart repository or cannot be reached: {e:#}"
            )
        })?;
        let index: J = serde_yaml_ng::from_slice(&body)
            .with_context(|| format!("{index_url}: not a chart repository index"))?;
        let cv = index_get(&index, chart, version).map_err(|e| {
            anyhow::anyhow!(
                "chart {chart:?} version {:?} not found in {repo} repository: {e}",
                version.unwrap_or_default()
            )
        })?;
        let url = resolve_url(
            repo,
            cv["urls"][0]
                .as_str()
                .context("chart has no downloadable URLs")?,
        );
        let data = http_get(&client, &url)?;
        return Ok(Fetched {
            file_name: file_name_of(&url),
            data,
        });
    }
    if chart.starts_with("http://") || chart.starts_with("https://") {
        let client = http_client(f.reg.insecure_skip_tls_verify, auth);
        let data = http_get(&client, chart)?;
        return Ok(Fetched {
            file_name: file_name_of(chart),
            data,
        });
    }
    let Some((repo_name, name)) = chart.split_once('/') else {
        bail!("non-absolute URLs should be in form of repo_name/path_to_chart, got: {chart}");
    };
    let list = crate::chart_repo::read_list(&f.paths.config())?;
    let Some(entry) = list["repositories"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["name"] == repo_name)
    else {
        return Err(anyhow::Error::new(crate::Hint::new(
            "add it with `keel chart repo add NAME URL`",
        ))
        .context(format!("repo {repo_name} not found")));
    };
    let repo_url = entry["url"].as_str().unwrap_or_default();
    let idx_path = f.paths.cache().join(format!("{repo_name}-index.yaml"));
    let text = std::fs::read_to_string(&idx_path).map_err(|e| {
        anyhow::anyhow!(
            "no cached repo found. (try 'helm repo update'): open {}: {e}",
            idx_path.display()
        )
    })?;
    let index: J = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("{}: not a chart repository index", idx_path.display()))?;
    let cv = index_get(&index, name, version).map_err(|e| {
        anyhow::anyhow!(
            "chart {name:?} matching {} not found in {repo_name} index. (try 'helm repo update'): {e}",
            version.unwrap_or_default()
        )
    })?;
    let Some(first) = cv["urls"][0].as_str() else {
        bail!("chart {chart:?} has no downloadable URLs");
    };
    let url = resolve_url(repo_url, first);
    let user = entry["username"].as_str().unwrap_or_default();
    let pass = entry["password"].as_str().unwrap_or_default();
    let auth = auth.or_else(|| {
        (!user.is_empty() && !pass.is_empty()).then(|| (user.to_string(), pass.to_string()))
    });
    let skip = f.reg.insecure_skip_tls_verify
        || entry["insecure_skip_tls_verify"].as_bool().unwrap_or(false);
    let data = http_get(&http_client(skip, auth), &url)?;
    Ok(Fetched {
        file_name: file_name_of(&url),
        data,
    })
}

/// `helm pull`.
pub fn pull(a: &PullArgs) -> anyhow::Result<()> {
    for chart in &a.charts {
        let got = fetch(chart, a.version.as_deref(), &a.source)?;
        // a bad archive is refused before anything is written
        keel_chart::load_archive(&got.file_name, &got.data).map_err(|e| anyhow::anyhow!("{e}"))?;
        if !a.untar {
            let dest = a.destination.join(&got.file_name);
            let tmp = a.destination.join(format!(".{}.tmp", got.file_name));
            std::fs::write(&tmp, &got.data).with_context(|| format!("write {}", tmp.display()))?;
            std::fs::rename(&tmp, &dest).with_context(|| format!("write {}", dest.display()))?;
            continue;
        }
        let ud = if a.untardir.is_absolute() {
            a.untardir.clone()
        } else {
            a.destination.join(&a.untardir)
        };
        // Helm checks (and makes) a directory named after the reference's last part
        let last = chart.rsplit('/').next().unwrap_or(chart);
        let check = if ud == Path::new(".") || ud == Path::new("./.") {
            PathBuf::from(last)
        } else {
            ud.join(last)
        };
        if check.exists() {
            bail!(
                "failed to untar: a file or directory with the name {} already exists",
                check.display()
            );
        }
        std::fs::create_dir_all(&check)
            .with_context(|| format!("failed to untar (mkdir): {}", check.display()))?;
        keel_chart::expand(&got.data, &ud).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(())
}
