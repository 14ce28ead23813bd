//! `keel chart …`: Helm charts (template, create, lint, package) and
//! releases (install, upgrade, rollback, uninstall, list, history, status,
//! get, test) and `show`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::fmt::Write as _;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use keel_chart::{TemplateOptions, ValueOptions};

use crate::Hint;

/// `keel chart` arguments.
#[derive(Debug, Args)]
pub struct ChartArgs {
    #[command(subcommand)]
    pub command: ChartCommand,
}

/// Values flags shared by template and lint (Helm's names).
#[derive(Debug, Args, Clone, Default)]
pub struct ValuesFlags {
    /// Values file (YAML); may repeat, later files win.
    #[arg(short = 'f', long = "values")]
    pub values: Vec<PathBuf>,
    /// Set values: a.b[0].c=x,list={a,b}
    #[arg(long = "set")]
    pub set: Vec<String>,
    /// Set values as strings.
    #[arg(long = "set-string")]
    pub set_string: Vec<String>,
    /// Set values from files: key=path.
    #[arg(long = "set-file")]
    pub set_file: Vec<String>,
    /// Set JSON values: key=<json>[,key=<json>].
    #[arg(long = "set-json")]
    pub set_json: Vec<String>,
    /// Set a literal string value: key=value (the whole rest of the argument).
    #[arg(long = "set-literal")]
    pub set_literal: Vec<String>,
}

impl ValuesFlags {
    pub fn options(&self) -> ValueOptions {
        ValueOptions {
            files: self.values.clone(),
            json: self.set_json.clone(),
            set: self.set.clone(),
            string: self.set_string.clone(),
            file: self.set_file.clone(),
            literal: self.set_literal.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ChartCommand {
    /// Render chart templates locally and print the manifests (like `helm template`).
    Template {
        /// Release name, then chart (directory or .tgz); with one argument it is the chart.
        #[arg(num_args = 1..=2, required = true)]
        args: Vec<String>,
        #[command(flatten)]
        values: ValuesFlags,
        /// Namespace for .Release.Namespace.
        #[arg(short = 'n', long = "namespace", default_value = "default")]
        namespace: String,
        /// Only print manifests rendered from these templates (path or glob).
        #[arg(short = 's', long = "show-only")]
        show_only: Vec<String>,
        /// Include CRDs from crds/ in the output.
        #[arg(long = "include-crds")]
        include_crds: bool,
        /// Leave out test hooks.
        #[arg(long = "skip-tests")]
        skip_tests: bool,
        /// Kubernetes version for .Capabilities (default v1.35.0, as Helm 4.1.4).
        #[arg(long = "kube-version")]
        kube_version: Option<String>,
        /// Extra API versions for .Capabilities.APIVersions (comma-separated or repeated).
        #[arg(short = 'a', long = "api-versions", value_delimiter = ',')]
        api_versions: Vec<String>,
        /// Render as an upgrade (.Release.IsUpgrade).
        #[arg(long = "is-upgrade")]
        is_upgrade: bool,
        /// Name the release with a Go template (sprig functions), when no NAME is given.
        #[arg(long = "name-template")]
        name_template: Option<String>,
        /// Do not validate values against the chart's values.schema.json.
        #[arg(long = "skip-schema-validation")]
        skip_schema_validation: bool,
    },
    /// Create a new chart with the files `helm create` makes.
    Create {
        /// Chart directory to create (its last component is the chart name).
        name: PathBuf,
    },
    /// Check a chart for problems.
    Lint {
        /// Chart directories or archives.
        #[arg(default_value = ".")]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        values: ValuesFlags,
        /// Fail on warnings too.
        #[arg(long = "strict")]
        strict: bool,
        /// Namespace the templates are rendered for.
        #[arg(short = 'n', long = "namespace", default_value = "default")]
        namespace: String,
        /// Kubernetes version for capabilities and deprecation checks.
        #[arg(long = "kube-version")]
        kube_version: Option<String>,
    },
    /// Install a chart as a release (stored as Helm stores it).
    Install(Box<crate::chart_release::InstallArgs>),
    /// Upgrade a release to a new chart or values.
    Upgrade(Box<crate::chart_release::UpgradeArgs>),
    /// Roll a release back to an earlier revision.
    Rollback(Box<crate::chart_release::RollbackArgs>),
    /// Uninstall releases.
    #[command(aliases = ["un", "delete", "del"])]
    Uninstall(Box<crate::chart_release::UninstallArgs>),
    /// List releases.
    #[command(alias = "ls")]
    List(Box<crate::chart_show::ListArgs>),
    /// The revisions of a release.
    #[command(alias = "hist")]
    History(Box<crate::chart_show::HistoryArgs>),
    /// Run the tests of a release (its `helm.sh/hook: test` hooks).
    Test(Box<crate::chart_release::TestArgs>),
    /// The status of a release.
    Status(Box<crate::chart_show::StatusArgs>),
    /// Details of a release: values, manifest, notes, hooks, all.
    #[command(subcommand)]
    Get(Box<crate::chart_show::GetCommand>),
    /// A chart's dependencies.
    #[command(subcommand, alias = "dep")]
    Dependency(DependencyCommand),
    /// Show a chart's information: chart, values, readme, crds, all.
    Show {
        /// What to show.
        #[arg(value_parser = ["chart", "values", "readme", "crds", "all"])]
        what: String,
        /// Chart directory or archive.
        chart: PathBuf,
    },
    /// Chart repositories: add, list, update, remove, index (Helm's files).
    #[command(subcommand)]
    Repo(crate::chart_repo::RepoCommand),
    /// Search the charts of the added repositories.
    #[command(subcommand)]
    Search(SearchCommand),
    /// Download a chart from a repository or an OCI registry.
    Pull(Box<crate::chart_oci::PullArgs>),
    /// Upload a chart archive to an OCI registry.
    Push(Box<crate::chart_oci::PushArgs>),
    /// Log in to or out of OCI registries.
    #[command(subcommand)]
    Registry(crate::chart_oci::RegistryCommand),
    /// Package a chart directory into NAME-VERSION.tgz.
    Package {
        /// Chart directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Where to write the archive.
        #[arg(short = 'd', long = "destination", default_value = ".")]
        destination: PathBuf,
    },
}

/// `keel chart search …`.
#[derive(Debug, Subcommand)]
pub enum SearchCommand {
    /// Search the added repositories' indexes (as `helm search repo`).
    Repo(crate::chart_repo::SearchRepoArgs),
}

/// `keel chart dependency …`.
#[derive(Debug, Subcommand)]
pub enum DependencyCommand {
    /// Resolve Chart.yaml's dependencies, download them into charts/ and write Chart.lock.
    #[command(alias = "up")]
    Update(crate::chart_deps::DepArgs),
    /// Download the versions Chart.lock names into charts/.
    Build(crate::chart_deps::DepArgs),
    /// List the dependencies of a chart and whether charts/ holds them.
    #[command(alias = "ls")]
    List {
        /// Chart directory.
        #[arg(default_value = ".")]
        chart: PathBuf,
        /// Maximum column width of the table.
        #[arg(long = "max-col-width", default_value_t = 80)]
        max_col_width: usize,
    },
}

/// pflag's boolean flags under `keel chart`: `--x` alone means true, and
/// `--x=true|false` (any `strconv.ParseBool` spelling) is taken too; a
/// value only ever follows `=`, so `--x NAME` leaves NAME a positional.
/// Applied to every `SetTrue` flag of the `chart` tree, so new ones follow.
pub fn go_bool_flags(cmd: clap::Command) -> clap::Command {
    fn walk(mut c: clap::Command) -> clap::Command {
        let ids: Vec<clap::Id> = c
            .get_arguments()
            .filter(|a| matches!(a.get_action(), clap::ArgAction::SetTrue))
            .map(|a| a.get_id().clone())
            .collect();
        for id in ids {
            let again = id.clone();
            c = c.mut_arg(id, |a| {
                // given again, the last value wins
                a.overrides_with(again)
                    .action(clap::ArgAction::Set)
                    .num_args(0..=1)
                    .require_equals(true)
                    .default_missing_value("true")
                    .default_value("false")
                    .value_name("true|false")
                    .hide_default_value(true)
                    .value_parser(parse_go_bool)
            });
        }
        let subs: Vec<String> = c
            .get_subcommands()
            .map(|s| s.get_name().to_string())
            .collect();
        for s in subs {
            c = c.mut_subcommand(s, walk);
        }
        c
    }
    cmd.mut_subcommand("chart", walk)
}

/// Go's `strconv.ParseBool`, as pflag parses a boolean flag's value.
fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!(
            "strconv.ParseBool: parsing {}: invalid syntax",
            keel_go::quote(s)
        )),
    }
}

/// A line of Helm 4's log on stderr (Go's slog text handler, no time).
pub fn slog(level: &str, msg: &str, attrs: &[(&str, &str)]) {
    eprintln!("{}", keel_go::slog::text_line(level, msg, attrs));
}

/// Helm logs its release-name check's failure before returning it.
pub fn log_name_check(e: &keel_chart::ChartError) {
    if let keel_chart::ChartError::ReleaseName(_) = e {
        let t = e.to_string();
        let why = t.strip_prefix("release name check failed: ").unwrap_or(&t);
        slog("ERROR", "release name check failed", &[("error", why)]);
    }
}

/// Helm's multi-line messages (a template error per line, indented) as the
/// one line keel prints: each line trimmed, joined with a space.
pub fn one_line(e: keel_chart::ChartError) -> anyhow::Error {
    log_name_check(&e);
    let text = e.to_string();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    anyhow::anyhow!(lines.join(" "))
}

pub fn run(args: ChartArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ChartCommand::Template {
            args,
            values,
            namespace,
            show_only,
            include_crds,
            skip_tests,
            kube_version,
            api_versions,
            is_upgrade,
            name_template,
            skip_schema_validation,
        } => {
            let (release, chart_path) = match args.as_slice() {
                [c] => match &name_template {
                    Some(t) => (crate::chart_release::name_from_template(t)?, c.clone()),
                    None => ("release-name".to_string(), c.clone()),
                },
                [r, c] => (r.clone(), c.clone()),
                _ => anyhow::bail!("expected RELEASE CHART"),
            };
            let chart = keel_chart::load(Path::new(&chart_path)).map_err(|e| {
                // The hint is the root so that render_error finds it by downcasting.
                anyhow::Error::new(Hint::new(
                    "pass a chart directory or .tgz; `keel chart create NAME` makes one",
                ))
                .context(e.to_string())
            })?;
            // Helm's own messages say what failed (`failed to parse FILE: …`,
            // `execution error at (…)`); no context is added so they read as Helm's.
            let user = keel_chart::user_values(&values.options())?;
            let opts = TemplateOptions {
                release_name: release,
                namespace,
                kube_version,
                api_versions,
                include_crds,
                skip_tests,
                show_only,
                is_upgrade,
                revision: 1,
                skip_schema_validation,
            };
            let rendered = keel_chart::render(&chart, &user, &opts).map_err(one_line)?;
            // Helm 4 logs these through slog's text handler, which quotes
            // a message with spaces as strconv.Quote does
            for w in &rendered.warnings {
                slog("INFO", w, &[]);
            }
            let text = keel_chart::template_text(&rendered, &opts).map_err(one_line)?;
            // bytes, not text: a template may copy a binary file through
            std::io::Write::write_all(&mut std::io::stdout().lock(), &keel_chart::go_bytes(&text))
                .context("write manifests")?;
            Ok(ExitCode::SUCCESS)
        }
        ChartCommand::Create { name } => {
            let chart_name = name
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .context("chart name is empty")?;
            let parent = name
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let dir = keel_chart::create::create(parent, &chart_name)?;
            eprintln!("Creating {}", dir.display());
            Ok(ExitCode::SUCCESS)
        }
        ChartCommand::Lint {
            paths,
            values,
            strict,
            namespace,
            kube_version,
        } => {
            if let Some(v) = &kube_version
                && let Err(e) = keel_chart::render::parse_kube_version(v)
            {
                anyhow::bail!("invalid kube version '{v}': {}", one_line(e));
            }
            let user = keel_chart::user_values(&values.options()).context("read values")?;
            let mut failed = 0;
            let mut out = String::new();
            for p in &paths {
                let report = keel_chart::lint(p, &user, &namespace, kube_version.as_deref());
                // Helm logs these (stderr) while it renders, before it prints findings
                for l in &report.log {
                    eprintln!("{l}");
                }
                let _ = writeln!(out, "==> Linting {}", p.display());
                for m in &report.messages {
                    let _ = writeln!(out, "[{}] {}: {}", m.severity, m.path, m.text);
                }
                if report
                    .messages
                    .iter()
                    .any(|m| m.severity == "ERROR" || (strict && m.severity == "WARNING"))
                {
                    failed += 1;
                }
                out.push('\n');
            }
            print!("{out}");
            let summary = format!("{} chart(s) linted, {failed} chart(s) failed", paths.len());
            if failed > 0 {
                anyhow::bail!(summary);
            }
            println!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
        ChartCommand::Install(a) => crate::chart_release::install(&a).map(|()| ExitCode::SUCCESS),
        ChartCommand::Upgrade(a) => crate::chart_release::upgrade(&a).map(|()| ExitCode::SUCCESS),
        ChartCommand::Rollback(a) => crate::chart_release::rollback(&a).map(|()| ExitCode::SUCCESS),
        ChartCommand::Uninstall(a) => {
            crate::chart_release::uninstall(&a).map(|()| ExitCode::SUCCESS)
        }
        ChartCommand::List(a) => crate::chart_show::list(&a).map(|()| ExitCode::SUCCESS),
        ChartCommand::History(a) => crate::chart_show::history(&a).map(|()| ExitCode::SUCCESS),
        ChartCommand::Test(a) => crate::chart_release::test(&a).map(|()| ExitCode::SUCCESS),
        ChartCommand::Status(a) => crate::chart_show::status_cmd(&a).map(|()| ExitCode::SUCCESS),
        ChartCommand::Get(c) => crate::chart_show::get(&c).map(|()| ExitCode::SUCCESS),
        ChartCommand::Dependency(DependencyCommand::Update(a)) => {
            crate::chart_deps::update(&a).map(|()| ExitCode::SUCCESS)
        }
        ChartCommand::Dependency(DependencyCommand::Build(a)) => {
            crate::chart_deps::build(&a).map(|()| ExitCode::SUCCESS)
        }
        ChartCommand::Dependency(DependencyCommand::List {
            chart,
            max_col_width,
        }) => {
            print!("{}", dependency_list(&chart, max_col_width)?);
            Ok(ExitCode::SUCCESS)
        }
        ChartCommand::Show { what, chart } => {
            let c = keel_chart::load(&chart).map_err(one_line)?;
            let text = show(&c, &what)?;
            std::io::Write::write_all(&mut std::io::stdout().lock(), &text)
                .context("write chart information")?;
            Ok(ExitCode::SUCCESS)
        }
        ChartCommand::Repo(c) => crate::chart_repo::run(&c).map(|()| ExitCode::SUCCESS),
        ChartCommand::Search(SearchCommand::Repo(a)) => {
            crate::chart_repo::search(&a).map(|()| ExitCode::SUCCESS)
        }
        ChartCommand::Pull(a) => crate::chart_oci::pull(&a).map(|()| ExitCode::SUCCESS),
        ChartCommand::Push(a) => crate::chart_oci::push(&a).map(|()| ExitCode::SUCCESS),
        ChartCommand::Registry(c) => crate::chart_oci::registry(&c).map(|()| ExitCode::SUCCESS),
        ChartCommand::Package { paths, destination } => {
            for p in &paths {
                let out = keel_chart::package(p, &destination)
                    .with_context(|| format!("package {}", p.display()))?;
                println!(
                    "Successfully packaged chart and saved it to: {}",
                    out.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `helm show WHAT`: Chart.yaml as Helm marshals its metadata, values.yaml
/// verbatim, the README, the CRDs of the chart and its subcharts.
fn show(c: &keel_chart::Chart, what: &str) -> anyhow::Result<Vec<u8>> {
    let all = what == "all";
    let mut out = Vec::new();
    if what == "chart" || all {
        let meta = serde_json::to_value(&c.metadata)?;
        out.extend(keel_chart::json_to_yaml(&meta).into_bytes());
        out.push(b'\n');
    }
    if what == "values" || all {
        if all {
            out.extend(b"---\n");
        }
        if let Some(v) = &c.raw_values {
            out.extend(v);
            out.push(b'\n');
        }
    }
    if what == "readme" || all {
        let names = ["readme.md", "readme.txt", "readme"];
        if let Some(f) = c
            .files
            .iter()
            .find(|f| names.iter().any(|n| f.name.eq_ignore_ascii_case(n)))
        {
            if all {
                out.extend(b"---\n");
            }
            out.extend(&f.data);
            out.push(b'\n');
        }
    }
    if what == "crds" || all {
        fn crds<'a>(c: &'a keel_chart::Chart, acc: &mut Vec<&'a keel_chart::ChartFile>) {
            acc.extend(c.crds.iter());
            for d in &c.dependencies {
                crds(d, acc);
            }
        }
        let mut list = Vec::new();
        crds(c, &mut list);
        for f in list {
            if !f.data.starts_with(b"---") {
                out.extend(b"---\n");
            }
            out.extend(&f.data);
            out.push(b'\n');
        }
    }
    Ok(out)
}

/// Helm's `dependencyStatus` for one Chart.yaml dependency.
fn dependency_status(
    dir: &Path,
    dep: &keel_chart::chart::Dependency,
    parent: &keel_chart::Chart,
) -> String {
    let version_ok = |v: &str| -> Option<&'static str> {
        if v == dep.version {
            return None;
        }
        match keel_chart::semver_matches(&dep.version, v) {
            Err(_) => Some("invalid version"),
            Ok(false) => Some("wrong version"),
            Ok(true) => None,
        }
    };
    let stat = |archive: &Path| -> &'static str {
        match keel_chart::load(archive) {
            Err(_) => "corrupt",
            Ok(c) if c.metadata.name != dep.name => "misnamed",
            Ok(c) => version_ok(&c.metadata.version).unwrap_or("ok"),
        }
    };
    let prefix = format!("{}-", dep.name);
    let mut archives: Vec<PathBuf> = std::fs::read_dir(dir.join("charts"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let n = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            n.starts_with(&prefix) && p.extension().is_some_and(|x| x == "tgz")
        })
        .collect();
    archives.sort();
    let strict = regex::Regex::new(
        r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$",
    )
    .expect("static regex");
    if archives.len() > 1 {
        let found: Vec<&PathBuf> = archives
            .iter()
            .filter(|a| {
                let n = a
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                strict.is_match(n.trim_end_matches(".tgz").trim_start_matches(&prefix))
            })
            .collect();
        match found.len() {
            1 => return stat(found[0]).to_string(),
            0 => {}
            _ => return "too many matches".into(),
        }
    } else if let Some(a) = archives.first() {
        return stat(a).to_string();
    }
    let Some(sub) = parent
        .dependencies
        .iter()
        .rev()
        .find(|c| c.metadata.name == dep.name)
    else {
        return "missing".into();
    };
    version_ok(&sub.metadata.version)
        .unwrap_or("unpacked")
        .to_string()
}

/// `helm dependency list`: the table, a blank line, then warnings for
/// charts in charts/ that Chart.yaml does not name.
fn dependency_list(dir: &Path, width: usize) -> anyhow::Result<String> {
    let c = keel_chart::load(dir).map_err(one_line)?;
    if c.metadata.dependencies.is_empty() {
        return Ok(format!(
            "WARNING: no dependencies at {}\n",
            dir.join("charts").display()
        ));
    }
    let cell = |s: &str| crate::chart_show::truncate(s, width);
    let mut rows = vec![
        ["NAME", "VERSION", "REPOSITORY", "STATUS"]
            .map(String::from)
            .to_vec(),
    ];
    for d in &c.metadata.dependencies {
        rows.push(vec![
            cell(&d.name),
            cell(&d.version),
            cell(&d.repository),
            cell(&dependency_status(dir, d, &c)),
        ]);
    }
    // uitable's text, Fprintln's newline, then Fprintln's blank line
    let mut out = crate::chart_show::table(&rows);
    out.push('\n');
    let mut extra: Vec<PathBuf> = std::fs::read_dir(dir.join("charts"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir() || p.extension().is_some_and(|x| x == "tgz"))
        .collect();
    extra.sort();
    for f in extra {
        match keel_chart::load(&f) {
            Err(_) => {
                let _ = writeln!(
                    out,
                    "WARNING: {:?} is not a chart.",
                    f.display().to_string()
                );
            }
            Ok(sub)
                if !c
                    .metadata
                    .dependencies
                    .iter()
                    .any(|d| d.name == sub.metadata.name) =>
            {
                let _ = writeln!(
                    out,
                    "WARNING: {:?} is not in Chart.yaml.",
                    f.display().to_string()
                );
            }
            Ok(_) => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::ChartCommand;
    use crate::Command;

    fn chart(line: &str) -> Result<ChartCommand, clap::Error> {
        let argv = line.split(' ').map(std::ffi::OsString::from).collect();
        match crate::parse(argv)?.command {
            Command::Chart(a) => Ok(a.command),
            other => panic!("not a chart command: {other:?}"),
        }
    }

    fn upgrade(line: &str) -> crate::chart_release::UpgradeArgs {
        match chart(line).unwrap() {
            ChartCommand::Upgrade(a) => *a,
            other => panic!("not an upgrade: {other:?}"),
        }
    }

    #[test]
    fn bool_flags_take_an_explicit_value_as_pflag_does() {
        let a = upgrade("keel chart upgrade r c --force=false --install --atomic=true");
        assert!(!a.apply.force && a.install && a.atomic && !a.reuse_values);
        let a = upgrade("keel chart upgrade r c --force=T --install=0 --wait-for-jobs=1");
        assert!(a.apply.force && !a.install && a.apply.wait_for_jobs);
        // a value only after `=`: the next word stays a positional
        let a = upgrade("keel chart upgrade --force r c");
        assert!(a.apply.force);
        assert_eq!((a.name.as_str(), a.chart.as_str()), ("r", "c"));
        // --server-side takes a value only after `=` too (pflag's NoOptDefVal)
        let a = upgrade("keel chart upgrade --server-side r c");
        assert_eq!(a.apply.server_side, "true");
        assert_eq!((a.name.as_str(), a.chart.as_str()), ("r", "c"));
        let a = upgrade("keel chart upgrade r c --server-side=false");
        assert_eq!(a.apply.server_side, "false");
        // short flags still cluster
        let a = upgrade("keel chart upgrade -i r c");
        assert!(a.install);
        match chart("keel chart list -aA").unwrap() {
            ChartCommand::List(l) => assert!(l.all && l.all_namespaces),
            other => panic!("not a list: {other:?}"),
        }
        match chart("keel chart template r c --include-crds=false --skip-tests").unwrap() {
            ChartCommand::Template {
                include_crds,
                skip_tests,
                ..
            } => assert!(!include_crds && skip_tests),
            other => panic!("not a template: {other:?}"),
        }
        // pflag: the last one given wins
        let a = upgrade(
            "keel chart upgrade r c --install -i=false --install=true --force=true --force=false",
        );
        assert!(a.install && !a.apply.force);
        let e = chart("keel chart upgrade r c --install=x").unwrap_err();
        assert!(
            e.to_string()
                .contains("strconv.ParseBool: parsing \"x\": invalid syntax"),
            "{e}"
        );
    }
}
