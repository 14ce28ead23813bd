//! `keel chart install|upgrade|rollback|uninstall`: releases as Helm 4
//! makes them. Records are Helm's own Secrets (keel-chart's `release`
//! module), so `helm` and `keel chart` see and roll back each other's
//! releases. Objects go in with server-side apply, field manager `helm`
//! (Helm 4's default; client-side for releases Helm 3 made: `chart_csa`),
//! carrying Helm's ownership label and annotations (`chart_apply`); an
//! upgrade or rollback deletes what the new manifest drops unless it says
//! `helm.sh/resource-policy: keep`. Hooks run by weight with their delete
//! policies, as Helm's `execHook`; `--wait` is `chart_wait`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use keel_chart::release::{self, Hook, Info, Release, status};
use serde_json::Value as J;

use crate::chart::ValuesFlags;
use crate::chart_apply::{UpdateOpts, create_objects, delete_objects, keeps, update_objects};
use crate::chart_owner::{adoptions, owned};
use crate::kube::Kube;

/// Flags every release command takes (Helm's global ones).
#[derive(Debug, Args, Clone, Default)]
pub struct KubeFlags {
    /// Namespace of the release (default: the context's, else `default`).
    #[arg(short = 'n', long = "namespace")]
    pub namespace: Option<String>,
    /// Path to the kubeconfig file.
    #[arg(long = "kubeconfig")]
    pub kubeconfig: Option<String>,
    /// Name of the kubeconfig context to use.
    #[arg(long = "kube-context")]
    pub kube_context: Option<String>,
}

/// Flags that install, upgrade and rollback share.
#[derive(Debug, Args, Clone, Default)]
pub struct ApplyFlags {
    /// Time to wait for any individual Kubernetes operation (like Jobs for hooks).
    #[arg(long = "timeout", default_value = "5m0s")]
    pub timeout: String,
    /// Wait until all resources are ready (or the timeout passes).
    #[arg(
        long = "wait",
        num_args = 0..=1,
        default_missing_value = "watcher",
        require_equals = true,
        value_parser = parse_wait
    )]
    pub wait: Option<String>,
    /// Also wait for Jobs to complete.
    #[arg(long = "wait-for-jobs")]
    pub wait_for_jobs: bool,
    /// Prevent hooks from running.
    #[arg(long = "no-hooks")]
    pub no_hooks: bool,
    /// Simulate: `client` (or no value) renders only, `server` also reads the cluster.
    #[arg(long = "dry-run", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub dry_run: Option<String>,
    /// Output format: table, json or yaml.
    #[arg(short = 'o', long = "output", default_value = "table")]
    pub output: String,
    /// Custom description of the release.
    #[arg(long = "description")]
    pub description: Option<String>,
    /// Force resource updates: conflicts with other field managers are overwritten.
    #[arg(long = "force-conflicts")]
    pub force_conflicts: bool,
    /// Force resource updates by replacement (client-side apply only).
    #[arg(long = "force-replace")]
    pub force_replace: bool,
    /// Deprecated: use --force-replace.
    #[arg(long = "force", hide = true)]
    pub force: bool,
    /// `true`, `false` or `auto`: apply server-side; `auto` (upgrade, rollback)
    /// follows the previous release, install takes `auto` as `true`. A value
    /// only with `=`, as pflag takes it: `--server-side NAME` leaves NAME.
    #[arg(
        long = "server-side",
        default_value = "auto",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = ["true", "false", "auto"]
    )]
    pub server_side: String,
}

/// `keel chart install [NAME] CHART`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Release name (leave it out with --generate-name or --name-template).
    #[arg(value_name = "NAME", required = true)]
    pub first: String,
    /// Chart (directory or .tgz).
    #[arg(value_name = "CHART")]
    pub second: Option<String>,
    /// Generate the release name: the chart's name and the time.
    #[arg(short = 'g', long = "generate-name")]
    pub generate_name: bool,
    /// Name the release with a Go template (sprig functions, as Helm).
    #[arg(long = "name-template")]
    pub name_template: Option<String>,
    /// Take over objects that exist without Helm's ownership marks (or another release's).
    #[arg(long = "take-ownership")]
    pub take_ownership: bool,
    /// With --dry-run: print Secrets as a `# HIDDEN` line instead of their data.
    #[arg(long = "hide-secret")]
    pub hide_secret: bool,
    /// Do not validate values against the chart's values.schema.json.
    #[arg(long = "skip-schema-validation")]
    pub skip_schema_validation: bool,
    /// Check that the chart's dependencies are in charts/ before installing.
    #[arg(long = "dependency-update")]
    pub dependency_update: bool,
    #[command(flatten)]
    pub kube: KubeFlags,
    #[command(flatten)]
    pub values: ValuesFlags,
    #[command(flatten)]
    pub apply: ApplyFlags,
    /// Create the release namespace if it is missing.
    #[arg(long = "create-namespace")]
    pub create_namespace: bool,
    /// Chart version constraint (checked against a local chart's version).
    #[arg(long = "version")]
    pub version: Option<String>,
    #[command(flatten)]
    pub source: crate::chart_oci::SourceFlags,
    /// On failure, uninstall the release.
    #[arg(long = "rollback-on-failure")]
    pub rollback_on_failure: bool,
    /// Deprecated: use --rollback-on-failure.
    #[arg(long = "atomic", hide = true)]
    pub atomic: bool,
    /// Re-use the name of an uninstalled or failed release.
    #[arg(long = "replace")]
    pub replace: bool,
    /// Leave out the CRDs in crds/.
    #[arg(long = "skip-crds")]
    pub skip_crds: bool,
}

/// `keel chart upgrade NAME CHART`.
#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// Release name.
    pub name: String,
    /// Chart (directory or .tgz).
    pub chart: String,
    /// Take over objects that exist without Helm's ownership marks (or another release's).
    #[arg(long = "take-ownership")]
    pub take_ownership: bool,
    /// Do not validate values against the chart's values.schema.json.
    #[arg(long = "skip-schema-validation")]
    pub skip_schema_validation: bool,
    /// Check that the chart's dependencies are in charts/ before upgrading.
    #[arg(long = "dependency-update")]
    pub dependency_update: bool,
    #[command(flatten)]
    pub kube: KubeFlags,
    #[command(flatten)]
    pub values: ValuesFlags,
    #[command(flatten)]
    pub apply: ApplyFlags,
    /// Install the release if it does not exist.
    #[arg(short = 'i', long = "install")]
    pub install: bool,
    /// With --install: create the release namespace if it is missing.
    #[arg(long = "create-namespace")]
    pub create_namespace: bool,
    /// Chart version constraint.
    #[arg(long = "version")]
    pub version: Option<String>,
    #[command(flatten)]
    pub source: crate::chart_oci::SourceFlags,
    /// On failure, roll back to the last successful release.
    #[arg(long = "rollback-on-failure")]
    pub rollback_on_failure: bool,
    /// Deprecated: use --rollback-on-failure.
    #[arg(long = "atomic", hide = true)]
    pub atomic: bool,
    /// Merge the last release's values with the new ones (chart values from the last release).
    #[arg(long = "reuse-values")]
    pub reuse_values: bool,
    /// Reset values to the chart's built-ins.
    #[arg(long = "reset-values")]
    pub reset_values: bool,
    /// Reset to the new chart's values, then merge the last release's values.
    #[arg(long = "reset-then-reuse-values")]
    pub reset_then_reuse_values: bool,
    /// Limit the number of revisions kept (0: no limit).
    #[arg(long = "history-max", default_value_t = 10, env = "HELM_MAX_HISTORY")]
    pub history_max: usize,
    /// Leave out the CRDs in crds/ (only with --install).
    #[arg(long = "skip-crds")]
    pub skip_crds: bool,
}

/// `keel chart rollback NAME [REVISION]`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    pub name: String,
    /// Revision to roll back to (default: the previous one).
    pub revision: Option<i64>,
    #[command(flatten)]
    pub kube: KubeFlags,
    #[command(flatten)]
    pub apply: ApplyFlags,
    /// Limit the number of revisions kept (0: no limit).
    #[arg(long = "history-max", default_value_t = 10, env = "HELM_MAX_HISTORY")]
    pub history_max: usize,
}

/// `keel chart uninstall NAME...`.
#[derive(Debug, Args)]
pub struct UninstallArgs {
    #[arg(required = true)]
    pub names: Vec<String>,
    #[command(flatten)]
    pub kube: KubeFlags,
    /// Mark the release uninstalled but keep its history.
    #[arg(long = "keep-history")]
    pub keep_history: bool,
    /// Prevent hooks from running.
    #[arg(long = "no-hooks")]
    pub no_hooks: bool,
    /// Simulate an uninstall.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    /// Treat "release not found" as a success.
    #[arg(long = "ignore-not-found")]
    pub ignore_not_found: bool,
    /// Custom description.
    #[arg(long = "description")]
    pub description: Option<String>,
    /// Time to wait for any individual Kubernetes operation.
    #[arg(long = "timeout", default_value = "5m0s")]
    pub timeout: String,
    /// Wait until the deleted objects are gone (or the timeout passes).
    #[arg(
        long = "wait",
        num_args = 0..=1,
        default_missing_value = "watcher",
        require_equals = true,
        value_parser = parse_wait
    )]
    pub wait: Option<String>,
}

/// Helm's `--wait` strategies (`watcher`, `legacy`, `hookOnly`), and the
/// booleans it still takes.
fn parse_wait(s: &str) -> Result<String, String> {
    match s {
        "watcher" | "legacy" | "hookOnly" => Ok(s.to_string()),
        // [`check_flags`] warns, in the order of the flags given
        "true" => Ok("watcher".into()),
        "false" => Ok("hookOnly".into()),
        _ => Err(format!(
            "invalid wait input {}. Valid inputs are watcher, hookOnly, and legacy",
            keel_go::quote(s)
        )),
    }
}

/// Whether a `--wait` strategy waits for readiness (`hookOnly`, the
/// default, waits for hooks only).
fn waits(strategy: Option<&str>) -> bool {
    matches!(strategy, Some("watcher" | "legacy"))
}

/// Helm's install and upgrade: rolling back on failure waits for readiness
/// (the watcher) unless `--wait` chose another way.
fn rollback_waits(f: &ApplyFlags, rollback_on_failure: bool) -> ApplyFlags {
    let mut f = f.clone();
    if rollback_on_failure && !waits(f.wait.as_deref()) {
        f.wait = Some("watcher".into());
    }
    f
}

/// The instant release records are stamped with: `SOURCE_DATE_EPOCH` (the
/// reproducible-builds convention, seconds since 1970) when set, so that CI
/// and Helm's own test table get the same records on every run; else now.
fn clock() -> chrono::DateTime<chrono::Utc> {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .unwrap_or_else(chrono::Utc::now)
}

/// Now ([`clock`]), as Go's `time.Now()` marshals in UTC (RFC 3339,
/// trailing zeros of the fraction dropped).
pub fn now() -> String {
    let t = clock().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    match t.split_once('.') {
        Some((head, frac)) => {
            let digits = frac.trim_end_matches('Z').trim_end_matches('0');
            if digits.is_empty() {
                format!("{head}Z")
            } else {
                format!("{head}.{digits}Z")
            }
        }
        None => t,
    }
}

/// Go's `time.ParseDuration` for the forms Helm's `--timeout` takes.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let bad = || anyhow::anyhow!("time: invalid duration {s:?}");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * unit;
        rest = &rest[u..];
    }
    Ok(Duration::from_secs_f64(total))
}

/// What Helm's flag parsing does before a command runs: its warning for
/// `--wait=true|false`, pflag's notice for each deprecated flag given
/// (`--force`, `--atomic`, in the order given, on stderr), then cobra's
/// mutually exclusive flag groups. Both go by the
/// flags given, whatever their value (`--force=false` too), as pflag's
/// `Changed`.
fn check_flags() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).take_while(|a| a != "--").collect();
    let flags: Vec<(&str, &str)> = args
        .iter()
        .filter_map(|a| a.strip_prefix("--"))
        .map(|f| f.split_once('=').unwrap_or((f, "")))
        .collect();
    // Helm's --wait logs as it parses, before pflag's notices come out
    for (_, value) in flags.iter().filter(|(n, _)| *n == "wait") {
        let instead = match *value {
            "true" => "watcher",
            "false" => "hookOnly",
            _ => continue,
        };
        crate::chart::slog(
            "WARN",
            &format!(
                "--wait={value} is deprecated (boolean value) and can be replaced with --wait={instead}"
            ),
            &[],
        );
    }
    for (name, _) in &flags {
        match *name {
            "force" => eprintln!("Flag --force has been deprecated, use --force-replace instead"),
            "atomic" => {
                eprintln!("Flag --atomic has been deprecated, use --rollback-on-failure instead");
            }
            _ => {}
        }
    }
    let given: Vec<&str> = flags.iter().map(|(n, _)| *n).collect();
    let has = |n: &str| given.contains(&n);
    for group in ["force-replace", "force"] {
        if has(group) && has("force-conflicts") {
            let mut both = [group, "force-conflicts"];
            both.sort_unstable();
            bail!(
                "if any flags in the group [{group} force-conflicts] are set none of the others can be; [{}] were all set",
                both.join(" ")
            );
        }
    }
    Ok(())
}

/// The cluster and the release namespace, and the command's choices that
/// reach deep into rendering and applying.
pub struct Ctx {
    pub kube: Kube,
    pub ns: String,
    pub opts: ReleaseOpts,
}

/// Install and upgrade options Helm passes down to rendering and applying.
#[derive(Debug, Clone, Copy, Default)]
#[allow(clippy::struct_excessive_bools)]
pub struct ReleaseOpts {
    /// `--take-ownership`: adopt objects whatever their ownership marks say.
    pub take_ownership: bool,
    /// `--skip-schema-validation`.
    pub skip_schema: bool,
    /// `--hide-secret` (dry runs only): Secrets print as a `# HIDDEN` line.
    pub hide_secret: bool,
}

impl Ctx {
    pub fn new(f: &KubeFlags) -> anyhow::Result<Ctx> {
        let kube = Kube::connect(f.kubeconfig.as_deref(), f.kube_context.as_deref())?;
        let ns = f
            .namespace
            .clone()
            .or_else(|| {
                std::env::var("HELM_NAMESPACE")
                    .ok()
                    .filter(|v| !v.is_empty())
            })
            .or_else(|| kube.context_namespace().map(str::to_string))
            .unwrap_or_else(|| "default".into());
        Ok(Ctx {
            kube,
            ns,
            opts: ReleaseOpts::default(),
        })
    }

    fn secrets(ns: &str) -> String {
        format!("/api/v1/namespaces/{ns}/secrets")
    }

    /// Every record of `name`, oldest first.
    pub fn history(&self, name: &str) -> anyhow::Result<Vec<Release>> {
        let items = self
            .kube
            .list(&Self::secrets(&self.ns), &format!("owner=helm,name={name}"))?;
        let mut out: Vec<Release> = items
            .iter()
            .filter(|s| s["type"] == release::SECRET_TYPE)
            .filter_map(|s| Release::from_secret(s).ok())
            .collect();
        out.sort_by_key(|r| r.version);
        Ok(out)
    }

    /// Every record in the namespace (`all`: in every namespace).
    pub fn all(&self, all_namespaces: bool) -> anyhow::Result<Vec<Release>> {
        let path = if all_namespaces {
            "/api/v1/secrets".to_string()
        } else {
            Self::secrets(&self.ns)
        };
        let items = self.kube.list(&path, "owner=helm")?;
        Ok(items
            .iter()
            .filter(|s| s["type"] == release::SECRET_TYPE)
            .filter_map(|s| Release::from_secret(s).ok())
            .collect())
    }

    /// Stores a new record (`createdAt` stamped, as Helm's driver does).
    pub fn create(&self, rel: &Release) -> anyhow::Result<()> {
        let secret = rel.secret(("createdAt", clock().timestamp()));
        match self.kube.create(&Self::secrets(&rel.namespace), &secret)? {
            Ok(_) => Ok(()),
            Err(e) if e.code == 409 => bail!("release: already exists"),
            Err(e) => bail!("create: failed to create: {e}"),
        }
    }

    /// Rewrites a record (`modifiedAt` stamped; other labels kept).
    pub fn update(&self, rel: &Release) -> anyhow::Result<()> {
        let path = format!("{}/{}", Self::secrets(&rel.namespace), rel.key());
        let mut secret = rel.secret(("modifiedAt", clock().timestamp()));
        if let Some(old) = self.kube.get(&path)? {
            let mut labels = old["metadata"]["labels"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            for (k, v) in secret["metadata"]["labels"]
                .as_object()
                .cloned()
                .unwrap_or_default()
            {
                labels.insert(k, v);
            }
            secret["metadata"]["labels"] = J::Object(labels);
            self.kube
                .update(&path, &secret)
                .context("update: failed to update")?;
            Ok(())
        } else {
            self.create(rel)
        }
    }

    fn delete_record(&self, rel: &Release) -> anyhow::Result<()> {
        self.kube
            .delete(&format!("{}/{}", Self::secrets(&rel.namespace), rel.key()))?;
        Ok(())
    }
}

/// The documents of a manifest, parsed (empty ones left out).
pub fn objects(manifest: &str) -> anyhow::Result<Vec<J>> {
    let mut out = Vec::new();
    for d in keel_chart::render::split_manifests(manifest) {
        let v: J = serde_yaml_ng::from_str(&d).context("unable to build kubernetes objects")?;
        if v.is_object() && v["kind"].is_string() {
            out.push(v);
        }
    }
    Ok(out)
}

/// `Kind/namespace/name` as identity across manifests.
pub(crate) fn identity(o: &J, ns: &str) -> String {
    let group = o["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .rsplit_once('/')
        .map_or("", |(g, _)| g);
    format!(
        "{group}/{}/{}/{}",
        o["kind"].as_str().unwrap_or_default(),
        o["metadata"]["namespace"].as_str().unwrap_or(ns),
        o["metadata"]["name"].as_str().unwrap_or_default()
    )
}

/// `Kind "name"` and, for namespaced objects, ` in namespace "ns"`.
fn describe(o: &J) -> String {
    let kind = o["kind"].as_str().unwrap_or_default();
    let name = o["metadata"]["name"].as_str().unwrap_or_default();
    match o["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{kind} \"{name}\" in namespace \"{ns}\""),
        None => format!("{kind} \"{name}\""),
    }
}

/// `uninstall --wait`: until every deleted (not kept) object is gone.
fn wait_deleted(ctx: &Ctx, objs: &[J], deadline: Instant) -> anyhow::Result<()> {
    for o in objs.iter().filter(|o| !keeps(o)) {
        let Ok((path, _)) = ctx.kube.object_path(o, &ctx.ns) else {
            continue;
        };
        while ctx.kube.get(&path)?.is_some() {
            if Instant::now() > deadline {
                bail!("timed out waiting for {path} to be deleted");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

fn delete_and_wait(ctx: &Ctx, path: &str, deadline: Instant) -> anyhow::Result<()> {
    if ctx.kube.delete(path)? {
        while ctx.kube.get(path)?.is_some() {
            if Instant::now() > deadline {
                bail!("timed out waiting for the hook resource to be deleted");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

/// Helm's `execHook`: the release's hooks for `event`, by weight then name;
/// each created, waited for, deleted as its policies say.
pub fn run_hooks(
    ctx: &Ctx,
    rel: &mut Release,
    event: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let mut order: Vec<usize> = (0..rel.hooks.len())
        .filter(|&i| rel.hooks[i].events.iter().any(|e| e == event))
        .collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&rel.hooks[a], &rel.hooks[b]);
        x.weight.cmp(&y.weight).then_with(|| x.name.cmp(&y.name))
    });
    let deadline = Instant::now() + timeout;
    let ssa = rel.apply_method == "ssa";
    let mut done: Vec<(usize, String)> = Vec::new();
    for i in order {
        let h: &mut Hook = &mut rel.hooks[i];
        if h.delete_policies.is_empty() {
            h.delete_policies.push("before-hook-creation".into());
        }
        let obj = objects(&h.manifest)?.into_iter().next().with_context(|| {
            format!(
                "unable to build kubernetes object for {event} hook {}",
                h.path
            )
        })?;
        let (path, obj) = owned(&ctx.kube, &obj, &rel.name, &rel.namespace)?;
        if h.delete_policies
            .iter()
            .any(|p| p == "before-hook-creation")
        {
            delete_and_wait(ctx, &path, deadline)?;
        }
        h.last_run.started_at = Some(now());
        h.last_run.phase = "Running".into();
        // Helm 4 creates delete hooks server-side whatever the release's method
        let made = if ssa || event.ends_with("-delete") {
            ctx.kube.apply(&path, &obj, "helm", false).map(|_| ())
        } else {
            crate::chart_csa::create(&ctx.kube, &path, &obj).and_then(|made| {
                if made {
                    Ok(())
                } else {
                    bail!("{} already exists", describe(&obj))
                }
            })
        };
        if let Err(e) = made {
            // Helm: named as the hook's, and nothing deleted by policy
            h.last_run.completed_at = Some(now());
            h.last_run.phase = "Failed".into();
            bail!("warning: Hook {event} {} failed: {e:#}", h.path);
        }
        let res = crate::chart_wait::wait_hook(ctx, &path, &obj, deadline);
        h.last_run.completed_at = Some(now());
        if let Err(e) = res {
            h.last_run.phase = "Failed".into();
            if h.delete_policies.iter().any(|p| p == "hook-failed") {
                let _ = ctx.kube.delete(&path);
            }
            for (j, p) in &done {
                if rel.hooks[*j]
                    .delete_policies
                    .iter()
                    .any(|x| x == "hook-succeeded")
                {
                    let _ = ctx.kube.delete(p);
                }
            }
            return Err(e);
        }
        h.last_run.phase = "Succeeded".into();
        done.push((i, path));
    }
    for (j, p) in done.iter().rev() {
        if rel.hooks[*j]
            .delete_policies
            .iter()
            .any(|x| x == "hook-succeeded")
        {
            ctx.kube.delete(p)?;
        }
    }
    Ok(())
}

/// Where [`perform`] failed: Helm's rollback records each differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Hooks,
    Apply,
    Wait,
}

/// Helm's sequence once the pending record is stored: `pre-EVENT` hooks,
/// apply `target` (adopting `adopted`, deleting what `current` had and
/// `target` dropped), wait, `post-EVENT` hooks; errors worded as Helm words
/// them for each action, with the stage that failed.
#[allow(clippy::too_many_arguments)]
fn perform(
    ctx: &Ctx,
    rel: &mut Release,
    current: &[J],
    adopted: &[J],
    target: &[J],
    f: &ApplyFlags,
    event: &str,
    from_csa: bool,
) -> Result<(), (Stage, anyhow::Error)> {
    let timeout = parse_duration(&f.timeout).map_err(|e| (Stage::Hooks, e))?;
    let hooks = |rel: &mut Release, phase: &str| -> Result<(), (Stage, anyhow::Error)> {
        if f.no_hooks {
            return Ok(());
        }
        run_hooks(ctx, rel, &format!("{phase}-{event}"), timeout).map_err(|e| {
            let e = match event {
                "install" => anyhow::anyhow!("failed {phase}-install: {e:#}"),
                "upgrade" => anyhow::anyhow!("{phase}-upgrade hooks failed: {e:#}"),
                _ => e,
            };
            (Stage::Hooks, e)
        })
    };
    hooks(rel, "pre")?;
    let name = rel.name.clone();
    let ssa = rel.apply_method == "ssa";
    let how = UpdateOpts {
        ssa,
        force_conflicts: f.force_conflicts,
        force_replace: f.force_replace || f.force,
        // Helm 4 adopts custom resources with a three-way merge client-side
        three_way_unstructured: event == "install" && ctx.opts.take_ownership && !ssa,
        // Helm moves helm's client-side field ownership to its apply entry
        // when an upgrade leaves client-side apply, on every server-side
        // rollback, and for what an install adopts
        migrate: ssa && (from_csa || event != "upgrade"),
    };
    if event == "install" && adopted.is_empty() {
        // Helm's `Create`: its options unchecked, conflicts never forced
        let how = UpdateOpts {
            force_conflicts: false,
            ..how
        };
        create_objects(ctx, &name, target, how)
    } else {
        update_objects(ctx, &name, current, adopted, target, how)
    }
    .map_err(|e| (Stage::Apply, e))?;
    if waits(f.wait.as_deref()) {
        crate::chart_wait::wait(ctx, target, timeout, f.wait_for_jobs)
            .map_err(|e| (Stage::Wait, e))?;
    }
    hooks(rel, "post")
}

/// Marks every deployed record of `history` superseded.
fn supersede(ctx: &Ctx, history: &[Release]) -> anyhow::Result<()> {
    for r in history.iter().filter(|r| r.info.status == status::DEPLOYED) {
        let mut r = r.clone();
        r.info.status = status::SUPERSEDED.into();
        ctx.update(&r)?;
    }
    Ok(())
}

/// Renders `chart` for a release and fills the release's chart, manifest,
/// hooks and notes.
fn render_into(
    ctx: &Ctx,
    rel: &mut Release,
    chart: &keel_chart::Chart,
    user: &keel_chart::Table,
    is_upgrade: bool,
) -> anyhow::Result<keel_chart::Rendered> {
    let opts = keel_chart::TemplateOptions {
        release_name: rel.name.clone(),
        namespace: rel.namespace.clone(),
        is_upgrade,
        revision: rel.version,
        skip_schema_validation: ctx.opts.skip_schema,
        ..keel_chart::TemplateOptions::default()
    };
    let rendered = keel_chart::render(chart, user, &opts).map_err(crate::chart::one_line)?;
    rel.chart = release::chart_json(chart);
    rel.manifest = if ctx.opts.hide_secret {
        // Helm hides them in the dry run's record, which is only printed
        let mut shown = rendered.clone();
        for m in &mut shown.manifests {
            if m.kind == "Secret" {
                m.content = "# HIDDEN: The Secret output has been suppressed".into();
            }
        }
        release::manifest_text(&shown)
    } else {
        release::manifest_text(&rendered)
    };
    rel.hooks = rendered.hooks.iter().map(release::hook_of).collect();
    rel.info.notes = rendered.notes.clone().unwrap_or_default();
    rel.config = user.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
    Ok(rendered)
}

/// Helm's `CheckDependencies`: every Chart.yaml dependency has a chart in charts/.
fn check_dependencies(chart: &keel_chart::Chart) -> anyhow::Result<()> {
    let missing: Vec<&str> = chart
        .metadata
        .dependencies
        .iter()
        .filter(|d| !chart.dependencies.iter().any(|c| c.metadata.name == d.name))
        .map(|d| d.name.as_str())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(anyhow::Error::new(crate::Hint::new(
        "`keel chart dependency build` (or helm's) fetches them into charts/",
    ))
    .context(format!(
        "an error occurred while checking for chart dependencies. You may need to run 'helm dependency build' to fetch missing dependencies: found in Chart.yaml, but missing in charts/ directory: {}",
        missing.join(", ")
    )))
}

fn load_chart(
    path: &str,
    version: Option<&str>,
    source: &crate::chart_oci::SourceFlags,
) -> anyhow::Result<keel_chart::Chart> {
    if crate::chart_oci::is_remote(path, source) {
        let got = crate::chart_oci::fetch(path, version, source)?;
        return keel_chart::load_archive(&got.file_name, &got.data)
            .map_err(|e| anyhow::anyhow!("{e}"));
    }
    let chart = keel_chart::load(Path::new(path)).map_err(|e| {
        anyhow::Error::new(crate::Hint::new(
            "pass a chart directory or .tgz; `keel chart create NAME` makes one",
        ))
        .context(e.to_string())
    })?;
    if let Some(v) = version
        && !v.is_empty()
        && v != chart.metadata.version
    {
        bail!(
            "chart \"{}\" version \"{}\" does not match --version {v}",
            chart.metadata.name,
            chart.metadata.version
        );
    }
    Ok(chart)
}

fn ensure_namespace(ctx: &Ctx) -> anyhow::Result<()> {
    let ns =
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ctx.ns}});
    match ctx.kube.create("/api/v1/namespaces", &ns)? {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// [`is_dry`] without its deprecation warning.
fn is_dry_quiet(d: Option<&String>) -> bool {
    matches!(d.map(String::as_str), Some("client" | "server" | "true"))
}

fn is_dry(d: Option<&String>) -> bool {
    if d.is_some_and(|d| d == "true") {
        // Helm 4 logs this through slog's text handler
        crate::chart::slog(
            "WARN",
            "--dry-run is deprecated and should be replaced with '--dry-run=client'",
            &[],
        );
    }
    matches!(d.map(String::as_str), Some("client" | "server" | "true"))
}

/// Helm's `NameAndChart`: `NAME CHART`, or `CHART` with a name from
/// --name-template or --generate-name.
fn install_name_and_chart(a: &InstallArgs) -> anyhow::Result<(String, String)> {
    if let Some(chart) = &a.second {
        if a.generate_name {
            bail!("cannot set --generate-name and also specify a name");
        }
        if a.name_template.is_some() {
            bail!("cannot set --name-template and also specify a name");
        }
        return Ok((a.first.clone(), chart.clone()));
    }
    if let Some(t) = &a.name_template {
        return Ok((name_from_template(t)?, a.first.clone()));
    }
    if !a.generate_name {
        return Err(
            anyhow::Error::new(crate::Hint::new("pass NAME CHART, or --generate-name"))
                .context("must either provide a name or specify --generate-name"),
        );
    }
    // Helm: the chart's base name without .tgz, then the unix time
    let base = Path::new(&a.first)
        .file_name()
        .map(|n| n.to_string_lossy().trim_end_matches(".tgz").to_string())
        .unwrap_or_default();
    let base: String = base.chars().take(53 - 11).collect();
    Ok((format!("{base}-{}", clock().timestamp()), a.first.clone()))
}

/// Helm's `TemplateName`: the template run with sprig's functions and no data.
pub fn name_from_template(t: &str) -> anyhow::Result<String> {
    let mut set = keel_gotmpl::Templates::new();
    set.parse("name-template", t)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    set.execute("name-template", &keel_gotmpl::Value::Nil)
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// `keel chart install`.
pub fn install(a: &InstallArgs) -> anyhow::Result<()> {
    check_flags()?;
    let (name, chart_path) = install_name_and_chart(a)?;
    let (name, chart_path) = (&name, &chart_path);
    if a.hide_secret && !is_dry_quiet(a.apply.dry_run.as_ref()) {
        let why = "hiding Kubernetes secrets requires a dry-run mode";
        crate::chart::slog("ERROR", why, &[]);
        bail!("INSTALLATION FAILED: {why}");
    }
    let mut ctx = Ctx::new(&a.kube)?;
    ctx.opts = ReleaseOpts {
        take_ownership: a.take_ownership,
        skip_schema: a.skip_schema_validation,
        hide_secret: a.hide_secret,
    };
    // context, not a new error, so that the load error's hint stays found
    let chart =
        load_chart(chart_path, a.version.as_deref(), &a.source).context("INSTALLATION FAILED")?;
    check_dependencies(&chart)?;
    let user = keel_chart::user_values(&a.values.options())?;
    let rel = do_install(
        &ctx,
        name,
        &chart,
        &user,
        &a.apply,
        a.create_namespace,
        a.replace,
        a.skip_crds,
        a.rollback_on_failure || a.atomic,
    )
    .map_err(|e| anyhow::anyhow!("INSTALLATION FAILED: {e:#}"))?;
    print_release(&rel, &a.apply.output)
}

#[allow(clippy::too_many_arguments, clippy::fn_params_excessive_bools)]
fn do_install(
    ctx: &Ctx,
    name: &str,
    chart: &keel_chart::Chart,
    user: &keel_chart::Table,
    f: &ApplyFlags,
    create_namespace: bool,
    replace: bool,
    skip_crds: bool,
    rollback_on_failure: bool,
) -> anyhow::Result<Release> {
    let f = &rollback_waits(f, rollback_on_failure);
    // a bad --timeout is refused before anything is recorded
    parse_duration(&f.timeout)?;
    let dry = is_dry(f.dry_run.as_ref());
    let history = if dry && f.dry_run.as_deref() != Some("server") {
        Vec::new()
    } else {
        ctx.history(name)?
    };
    if let Some(last) = history.last()
        && !(replace
            && (last.info.status == status::UNINSTALLED || last.info.status == status::FAILED))
    {
        let why = "cannot reuse a name that is still in use";
        crate::chart::slog("ERROR", "release name check failed", &[("error", why)]);
        bail!("release name check failed: {why}");
    }
    let t = now();
    let mut rel = Release {
        name: name.to_string(),
        namespace: ctx.ns.clone(),
        version: history.last().map_or(1, |r| r.version + 1),
        info: Info {
            first_deployed: Some(t.clone()),
            last_deployed: Some(t),
            status: status::PENDING_INSTALL.into(),
            description: "Initial install underway".into(),
            ..Info::default()
        },
        // install's --server-side is a boolean, true unless said false
        apply_method: crate::chart_csa::method(f.server_side != "false").into(),
        ..Release::default()
    };
    let rendered = render_into(ctx, &mut rel, chart, user, false)?;
    if dry {
        if f.dry_run.as_deref() == Some("server") && !skip_crds && !rendered.crds.is_empty() {
            crate::chart::slog(
                "WARN",
                "This chart or one of its subcharts contains CRDs. Rendering may fail or contain inaccuracies.",
                &[],
            );
        }
        rel.info.description = "Dry run complete".into();
        rel.info.status = status::PENDING_INSTALL.into();
        return Ok(rel);
    }
    if create_namespace {
        ensure_namespace(ctx)?;
    }
    if !skip_crds && !rendered.crds.is_empty() {
        for (src, content) in &rendered.crds {
            for o in objects(content).with_context(|| format!("failed to install CRD {src}"))? {
                let (path, _) = ctx.kube.object_path(&o, &ctx.ns)?;
                let col = path.rsplit_once('/').map_or(path.as_str(), |(c, _)| c);
                match ctx.kube.create(col, &o)? {
                    Ok(_) => {}
                    Err(e) if e.code == 409 => {}
                    Err(e) => bail!("failed to install CRD {src}: {e}"),
                }
            }
        }
        ctx.kube.rediscover();
    }
    let target = objects(&rel.manifest)?;
    // what is live already is adopted (updated, not created)
    let adopted = adoptions(ctx, name, &[], &target, "install")?;
    ctx.create(&rel)?;
    let res =
        perform(ctx, &mut rel, &[], &adopted, &target, f, "install", false).map_err(|(_, e)| e);
    if let Err(e) = res {
        rel.info.status = status::FAILED.into();
        rel.info.description = format!("Release \"{name}\" failed: {e:#}");
        ctx.update(&rel)?;
        if rollback_on_failure {
            let objs = objects(&rel.manifest).unwrap_or_default();
            let _ = delete_objects(ctx, &objs);
            for r in ctx.history(name)? {
                let _ = ctx.delete_record(&r);
            }
            bail!(
                "release {name} failed, and has been uninstalled due to rollback-on-failure being set: {e:#}"
            );
        }
        return Err(e);
    }
    rel.info.status = status::DEPLOYED.into();
    rel.info.description = f
        .description
        .clone()
        .unwrap_or_else(|| "Install complete".into());
    ctx.update(&rel)?;
    Ok(rel)
}

/// The values an upgrade uses, as Helm's `reuseValues` decides.
fn upgrade_values(
    a: &UpgradeArgs,
    new: keel_chart::Table,
    current: &Release,
    chart: &mut keel_chart::Chart,
) -> keel_chart::Table {
    let old: keel_chart::Table = current
        .config
        .iter()
        .map(|(k, v)| (k.clone(), keel_gotmpl_value(v)))
        .collect();
    if a.reset_values {
        return new;
    }
    if a.reuse_values {
        // the chart's own values are the last release's
        if let Some(v) = current.chart.get("values").filter(|v| v.is_object()) {
            chart.values = keel_gotmpl_value(v);
        }
        return keel_chart::values::merge_maps(&old, &new);
    }
    if a.reset_then_reuse_values {
        return keel_chart::values::merge_maps(&old, &new);
    }
    if new.is_empty() && !old.is_empty() {
        return old;
    }
    new
}

fn keel_gotmpl_value(v: &J) -> keel_chart::GoValue {
    keel_chart::GoValue::from_json(v, true)
}

/// `keel chart upgrade`.
pub fn upgrade(a: &UpgradeArgs) -> anyhow::Result<()> {
    check_flags()?;
    let (name, chart_path) = (&a.name, &a.chart);
    let mut ctx = Ctx::new(&a.kube)?;
    ctx.opts = ReleaseOpts {
        take_ownership: a.take_ownership,
        skip_schema: a.skip_schema_validation,
        hide_secret: false,
    };
    let mut chart = load_chart(chart_path, a.version.as_deref(), &a.source)?;
    check_dependencies(&chart)?;
    let user = keel_chart::user_values(&a.values.options())?;
    let history = ctx.history(name)?;
    let live = history.iter().any(|r| r.info.status != status::UNINSTALLED);
    if !live {
        if a.install {
            // Helm says so before it installs (the message precedes a failure's).
            if a.apply.output == "table" {
                println!("Release {name:?} does not exist. Installing it now.");
            }
            let rel = do_install(
                &ctx,
                name,
                &chart,
                &user,
                &a.apply,
                a.create_namespace,
                // Helm's isReleaseUninstalled: install over the kept history
                history
                    .last()
                    .is_some_and(|r| r.info.status == status::UNINSTALLED),
                a.skip_crds,
                a.rollback_on_failure || a.atomic,
            )
            .map_err(|e| anyhow::anyhow!("INSTALLATION FAILED: {e:#}"))?;
            return print_release(&rel, &a.apply.output);
        }
        bail!("UPGRADE FAILED: \"{name}\" has no deployed releases");
    }
    let rel = do_upgrade(&ctx, a, name, &mut chart, user, &history)
        .map_err(|e| anyhow::anyhow!("UPGRADE FAILED: {e:#}"))?;
    if a.apply.output == "table" {
        println!("Release {name:?} has been upgraded. Happy Helming!");
    }
    print_release(&rel, &a.apply.output)
}

fn do_upgrade(
    ctx: &Ctx,
    a: &UpgradeArgs,
    name: &str,
    chart: &mut keel_chart::Chart,
    user: keel_chart::Table,
    history: &[Release],
) -> anyhow::Result<Release> {
    let f = &rollback_waits(&a.apply, a.rollback_on_failure || a.atomic);
    // a bad --timeout is refused before anything is recorded
    parse_duration(&f.timeout)?;
    let last = history.last().context("no releases")?;
    if last.info.status.starts_with("pending-") {
        bail!("another operation (install/upgrade/rollback) is in progress");
    }
    let current = history
        .iter()
        .rev()
        .find(|r| r.info.status == status::DEPLOYED)
        .unwrap_or(last)
        .clone();
    let values = upgrade_values(a, user, &current, chart);
    let mut rel = Release {
        name: name.to_string(),
        namespace: ctx.ns.clone(),
        version: last.version + 1,
        info: Info {
            first_deployed: current.info.first_deployed.clone(),
            last_deployed: Some(now()),
            status: status::PENDING_UPGRADE.into(),
            description: "Preparing upgrade".into(),
            ..Info::default()
        },
        apply_method: crate::chart_csa::method(crate::chart_csa::server_side(
            &f.server_side,
            &last.apply_method,
        )?)
        .into(),
        ..Release::default()
    };
    render_into(ctx, &mut rel, chart, &values, true)?;
    let cur_objs = objects(&current.manifest)?;
    let target = objects(&rel.manifest)?;
    // as Helm, before the dry run returns and before anything is recorded
    let adopted = adoptions(ctx, name, &cur_objs, &target, "update")?;
    if is_dry(f.dry_run.as_ref()) {
        rel.info.description = "Dry run complete".into();
        return Ok(rel);
    }
    let mut history = history.to_vec();
    make_room(ctx, &mut history, a.history_max)?;
    ctx.create(&rel)?;
    let res = perform(
        ctx,
        &mut rel,
        &cur_objs,
        &adopted,
        &target,
        f,
        "upgrade",
        current.apply_method != "ssa",
    );
    if let Err((_, e)) = res {
        crate::chart::slog(
            "WARN",
            "upgrade failed",
            &[("name", name), ("error", &format!("{e:#}"))],
        );
        rel.info.status = status::FAILED.into();
        rel.info.description = format!("Upgrade \"{name}\" failed: {e:#}");
        ctx.update(&rel)?;
        if a.rollback_on_failure || a.atomic {
            let to = ctx
                .history(name)?
                .into_iter()
                .rev()
                .find(|r| r.info.status == status::DEPLOYED || r.info.status == status::SUPERSEDED)
                .map(|r| r.version);
            if let Some(to) = to {
                let rb = ApplyFlags {
                    description: None,
                    ..f.clone()
                };
                do_rollback(ctx, name, Some(to), &rb, a.history_max)
                    .map_err(|e2| anyhow::anyhow!("an error occurred while rolling back the release. original upgrade error: {e:#}: {e2:#}"))?;
                bail!(
                    "release {name} failed, and has been rolled back due to rollback-on-failure being set: {e:#}"
                );
            }
        }
        return Err(e);
    }
    supersede(ctx, &history)?;
    rel.info.status = status::DEPLOYED.into();
    rel.info.description = f
        .description
        .clone()
        .unwrap_or_else(|| "Upgrade complete".into());
    ctx.update(&rel)?;
    Ok(rel)
}

/// Helm's `removeLeastRecent` as its storage runs it before it records a
/// new revision (`--history-max`, 0: no limit): the oldest records but the
/// last deployed one go, whatever their status, until `max - 1` are left.
/// `history` loses what went.
fn make_room(ctx: &Ctx, history: &mut Vec<Release>, max: usize) -> anyhow::Result<()> {
    if max == 0 || history.len() < max {
        return Ok(());
    }
    let last_deployed = history
        .iter()
        .rev()
        .find(|r| r.info.status == status::DEPLOYED)
        .map(|r| r.version);
    let mut gone = Vec::new();
    for r in history.iter() {
        if history.len() - gone.len() == max - 1 {
            break;
        }
        if Some(r.version) != last_deployed {
            gone.push(r.version);
        }
    }
    for r in history.iter().filter(|r| gone.contains(&r.version)) {
        ctx.delete_record(r)?;
    }
    history.retain(|r| !gone.contains(&r.version));
    Ok(())
}

/// `keel chart rollback`.
pub fn rollback(a: &RollbackArgs) -> anyhow::Result<()> {
    check_flags()?;
    let ctx = Ctx::new(&a.kube)?;
    do_rollback(
        &ctx,
        &a.name,
        a.revision.filter(|&r| r > 0),
        &a.apply,
        a.history_max,
    )?;
    println!("Rollback was a success! Happy Helming!");
    Ok(())
}

fn do_rollback(
    ctx: &Ctx,
    name: &str,
    to: Option<i64>,
    f: &ApplyFlags,
    history_max: usize,
) -> anyhow::Result<Release> {
    // a bad --timeout is refused before anything is recorded
    parse_duration(&f.timeout)?;
    let history = ctx.history(name)?;
    let current = history.last().context("release: not found")?.clone();
    let to = to.unwrap_or(current.version - 1);
    if to < 1 {
        bail!("release has no {to} version");
    }
    let target = history
        .iter()
        .find(|r| r.version == to)
        .with_context(|| format!("release has no {to} version"))?
        .clone();
    let mut rel = Release {
        name: name.to_string(),
        namespace: current.namespace.clone(),
        chart: target.chart.clone(),
        config: target.config.clone(),
        info: Info {
            first_deployed: current.info.first_deployed.clone(),
            last_deployed: Some(now()),
            status: status::PENDING_ROLLBACK.into(),
            notes: target.info.notes.clone(),
            description: format!("Rollback to {to}"),
            ..Info::default()
        },
        version: current.version + 1,
        manifest: target.manifest.clone(),
        hooks: target.hooks.clone(),
        // Helm's rollback follows the method of the revision it goes back to
        apply_method: crate::chart_csa::method(crate::chart_csa::server_side(
            &f.server_side,
            &target.apply_method,
        )?)
        .into(),
    };
    if is_dry(f.dry_run.as_ref()) {
        return Ok(rel);
    }
    let cur_objs = objects(&current.manifest)?;
    let objs = objects(&rel.manifest)?;
    let mut history = history;
    make_room(ctx, &mut history, history_max)?;
    ctx.create(&rel)?;
    let res = perform(ctx, &mut rel, &cur_objs, &[], &objs, f, "rollback", true);
    // Helm's record of the current revision fails quietly when the pruning took it
    let kept = history.iter().any(|r| r.version == current.version);
    match res {
        Ok(()) => {}
        // a failed hook leaves the records as they are (pending-rollback), as in Helm
        Err((Stage::Hooks, e)) => return Err(e),
        Err((Stage::Apply, e)) => {
            let msg = format!("Rollback \"{name}\" failed: {e:#}");
            crate::chart::slog("WARN", &msg, &[]);
            if kept {
                let mut cur = current.clone();
                cur.info.status = status::SUPERSEDED.into();
                ctx.update(&cur)?;
            }
            rel.info.status = status::FAILED.into();
            rel.info.description = msg;
            ctx.update(&rel)?;
            return Err(e);
        }
        Err((Stage::Wait, e)) => {
            rel.info.status = status::FAILED.into();
            rel.info.description = format!("Release \"{name}\" failed: {e:#}");
            if kept {
                ctx.update(&current)?;
            }
            ctx.update(&rel)?;
            bail!("release {name} failed: {e:#}");
        }
    }
    supersede(ctx, &history)?;
    rel.info.status = status::DEPLOYED.into();
    ctx.update(&rel)?;
    Ok(rel)
}

/// `keel chart uninstall`.
pub fn uninstall(a: &UninstallArgs) -> anyhow::Result<()> {
    check_flags()?;
    let ctx = Ctx::new(&a.kube)?;
    let timeout = parse_duration(&a.timeout)?;
    for name in &a.names {
        let history = ctx.history(name)?;
        let Some(last) = history.last() else {
            if a.ignore_not_found {
                continue;
            }
            bail!("uninstall: Release not loaded: {name}: release: not found");
        };
        let mut rel = last.clone();
        if a.dry_run {
            println!("release \"{name}\" uninstalled");
            continue;
        }
        if rel.info.status == status::UNINSTALLED {
            if !a.keep_history {
                for r in &history {
                    ctx.delete_record(r)?;
                }
                println!("release \"{name}\" uninstalled");
                continue;
            }
            bail!("The release named \"{name}\" is already deleted");
        }
        rel.info.status = status::UNINSTALLING.into();
        rel.info.deleted = Some(now());
        rel.info.description = "Deletion in progress (or silently failed)".into();
        ctx.update(&rel)?;
        if !a.no_hooks {
            run_hooks(&ctx, &mut rel, "pre-delete", timeout)?;
        }
        let objs = objects(&rel.manifest)?;
        let kept = delete_objects(&ctx, &objs)?;
        if waits(a.wait.as_deref()) {
            wait_deleted(&ctx, &objs, Instant::now() + timeout)?;
        }
        if !a.no_hooks {
            run_hooks(&ctx, &mut rel, "post-delete", timeout)?;
        }
        rel.info.status = status::UNINSTALLED.into();
        rel.info.description = a
            .description
            .clone()
            .unwrap_or_else(|| "Uninstallation complete".into());
        if a.keep_history {
            ctx.update(&rel)?;
        } else {
            for r in ctx.history(name)? {
                ctx.delete_record(&r)?;
            }
        }
        if !kept.is_empty() {
            println!(
                "These resources were kept due to the resource policy:\n{}\n",
                kept.join("\n")
            );
        }
        println!("release \"{name}\" uninstalled");
    }
    Ok(())
}

/// `keel chart test NAME`.
#[derive(Debug, Args)]
pub struct TestArgs {
    pub name: String,
    #[command(flatten)]
    pub kube: KubeFlags,
    /// Time to wait for any individual Kubernetes operation (like the test pods).
    #[arg(long = "timeout", default_value = "5m0s")]
    pub timeout: String,
    /// Run only tests `name=NAME`, or all but `!name=NAME` (may repeat).
    #[arg(long = "filter")]
    pub filter: Vec<String>,
    /// Output format: table, json or yaml.
    #[arg(short = 'o', long = "output", default_value = "table")]
    pub output: String,
}

/// `keel chart test`: the release's `test` hooks run as Helm's
/// `ReleaseTesting` runs them; the record keeps their last run; the status
/// (without notes) is printed even when a test fails.
pub fn test(a: &TestArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(&a.kube)?;
    let timeout = parse_duration(&a.timeout)?;
    let mut rel = ctx.history(&a.name)?.pop().context("release: not found")?;
    let include: Vec<&str> = a
        .filter
        .iter()
        .filter_map(|f| f.strip_prefix("name="))
        .collect();
    let exclude: Vec<&str> = a
        .filter
        .iter()
        .filter_map(|f| {
            f.strip_prefix('!')
                .map(str::trim_start)
                .and_then(|r| r.strip_prefix("name="))
        })
        .collect();
    let skip = |h: &Hook| {
        exclude.contains(&h.name.as_str())
            || (!include.is_empty() && !include.contains(&h.name.as_str()))
    };
    let (skipped, run): (Vec<Hook>, Vec<Hook>) = rel.hooks.drain(..).partition(|h| skip(h));
    rel.hooks = run;
    let res = run_hooks(&ctx, &mut rel, "test", timeout);
    let mut hooks = skipped;
    hooks.append(&mut rel.hooks);
    rel.hooks = hooks;
    ctx.update(&rel)?;
    let mut shown = rel.clone();
    shown.info.notes.clear();
    print_release(&shown, &a.output)?;
    res
}

/// Prints a release as install/upgrade/status do: the status text, or the
/// record as JSON/YAML.
pub fn print_release(rel: &Release, output: &str) -> anyhow::Result<()> {
    crate::chart_show::print_status(rel, output, false)
}
