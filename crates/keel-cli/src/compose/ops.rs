//! The compose commands that act on containers: up, down, ps, logs, build,
//! pull, push, exec, run, start, stop, restart, ls. Planning lives in
//! keel-compose's reconciler; this module loads the project, prints events
//! and streams logs.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::Context as _;
use keel_compose::reconcile::{
    BuildPolicy, Container, DownOptions, Engine, Event, LABEL_CONFIG_FILES, LABEL_PROJECT,
    ProjectSpec, ReconcileError, Reconciler, UpOptions,
};
use keel_runtime::{engine as rt, logs};
use serde_json::json;

use super::engine::KeelEngine;
use super::{
    ComposeArgs, DownArgs, ExecArgs, LogsArgs, LsArgs, PsArgs, PullArgs, PushArgs, Rmi, RunArgs,
    ServicesArgs, StopArgs, UpArgs,
};
use crate::Hint;
use crate::output::{Format, print_structured, table};

fn spec(args: &ComposeArgs, services: &[String]) -> anyhow::Result<ProjectSpec> {
    let project = super::load(args, services)?;
    Ok(ProjectSpec::from_project(&project)?)
}

/// The project from its files or, when there are none and `-p` names it,
/// from what carries its labels: docker compose runs `down`, `ps`, `logs`,
/// `stop`, `start` and `restart` on a project name alone.
pub(super) fn spec_or_labels(
    args: &ComposeArgs,
    services: &[String],
    e: &KeelEngine,
) -> anyhow::Result<ProjectSpec> {
    let err = match super::load(args, services) {
        Ok(p) => return Ok(ProjectSpec::from_project(&p)?),
        Err(err) => err,
    };
    let no_file = err.chain().any(|c| {
        matches!(
            c.downcast_ref::<keel_compose::Error>(),
            Some(keel_compose::Error::NoConfigFile { .. })
        )
    });
    let Some(name) = args
        .project_name
        .as_deref()
        .filter(|_| no_file && args.files.is_empty())
    else {
        return Err(err);
    };
    let containers = e.containers(name).map_err(anyhow::Error::msg)?;
    let networks = e.project_networks(name).map_err(anyhow::Error::msg)?;
    let volumes = e.project_volumes(name).map_err(anyhow::Error::msg)?;
    Ok(ProjectSpec::from_labels(
        name,
        &containers,
        &networks,
        &volumes,
    ))
}

/// Prints reconciler events on stderr the way docker compose does without a terminal.
pub(super) fn print_event(e: Event) {
    match e {
        Event::Progress { kind, name, status } => eprintln!(" {kind} {name}  {status}"),
        Event::Warning(w) => eprintln!("WARN[0000] {w}"),
    }
}

fn reconcile_error(e: ReconcileError) -> anyhow::Error {
    let hint = match &e {
        ReconcileError::Dependency { dependency, .. } => Some(format!(
            "`keel compose logs {dependency}` shows what it printed"
        )),
        ReconcileError::ExternalNetwork { name } => {
            Some(format!("create it with `keel network create {name}`"))
        }
        ReconcileError::ExternalVolume { name } => {
            Some(format!("create it with `keel volume create {name}`"))
        }
        ReconcileError::NoSuchService(_) => {
            Some("`keel compose config --services` lists the services".to_string())
        }
        // The engine's own hint (crate::hints), e.g. for a missing image.
        ReconcileError::Engine { source, .. } => source.hint().map(str::to_string),
        _ => None,
    };
    // The typed chain stays (the engine's cause under ReconcileError).
    let e = anyhow::Error::new(e);
    match hint {
        Some(h) => e.context(Hint::new(h)),
        None => e,
    }
}

pub(super) fn with_reconciler<T>(
    p: &ProjectSpec,
    e: &KeelEngine,
    f: impl FnOnce(&mut Reconciler<'_>) -> Result<T, ReconcileError>,
) -> anyhow::Result<T> {
    let mut events = print_event;
    let mut r = Reconciler {
        project: p,
        engine: e,
        events: &mut events,
    };
    f(&mut r).map_err(reconcile_error)
}

pub fn up(root: &Path, args: &ComposeArgs, a: &UpArgs) -> anyhow::Result<ExitCode> {
    let p = spec(args, &a.services)?;
    let e = KeelEngine::open(root)?;
    let opts = UpOptions {
        services: a.services.clone(),
        scale: a.scale.iter().cloned().collect(),
        force_recreate: a.force_recreate,
        no_recreate: a.no_recreate,
        build: if a.build {
            BuildPolicy::Always
        } else if a.no_build {
            BuildPolicy::Never
        } else {
            BuildPolicy::Missing
        },
        pull: a.pull.clone(),
        remove_orphans: a.remove_orphans,
        wait: a.wait,
        timeout: Duration::from_secs(a.wait_timeout),
        stop_timeout: a.timeout,
        start: true,
        no_deps: a.no_deps,
    };
    with_reconciler(&p, &e, |r| r.up(&opts))?;
    if a.detach || a.wait {
        return Ok(ExitCode::SUCCESS);
    }
    // Attached: like docker compose, to the named services only (all when
    // none is named) unless --attach-dependencies, until they stop.
    let attached = if a.services.is_empty() || a.attach_dependencies {
        p.order(&a.services).map_err(reconcile_error)?
    } else {
        a.services.clone()
    };
    let containers: Vec<Container> = e
        .containers(&p.model.name)
        .map_err(anyhow::Error::msg)?
        .into_iter()
        .filter(|c| !c.oneoff && attached.contains(&c.service))
        .collect();
    let abort = a.abort_on_container_exit || a.exit_code_from.is_some();
    let signals = Signals::new()?;
    let style = LogStyle {
        prefix: !a.no_log_prefix,
        colour: a.no_color.then_some(false),
    };
    let mut sources = sources(&e, &p.model.name, &containers, style);
    let names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
    println!("Attaching to {}", names.join(", "));
    let end = follow(&e, &mut sources, a.timestamps, true, abort, || {
        signals.pending()
    })?;
    match end {
        FollowEnd::AllExited => Ok(ExitCode::SUCCESS),
        FollowEnd::Interrupted => {
            eprintln!("Gracefully stopping... (press Ctrl+C again to force)");
            with_reconciler(&p, &e, |r| r.stop(&a.services, a.timeout))?;
            Ok(ExitCode::from(130))
        }
        FollowEnd::Exited(first) => {
            println!("Aborting on container exit...");
            with_reconciler(&p, &e, |r| r.stop(&a.services, a.timeout))?;
            // The exit code of --exit-code-from's service, else of the
            // container that exited first (docker compose's rule).
            let id = match &a.exit_code_from {
                Some(s) => containers
                    .iter()
                    .find(|c| &c.service == s)
                    .map_or_else(|| sources[first].id.clone(), |c| c.id.clone()),
                None => sources[first].id.clone(),
            };
            let code = e.store().state(&id).map_or(1, |st| st.exit_code);
            Ok(ExitCode::from(
                u8::try_from(code.clamp(0, 255)).unwrap_or(1),
            ))
        }
    }
}

pub fn down(root: &Path, args: &ComposeArgs, a: &DownArgs) -> anyhow::Result<ExitCode> {
    let e = KeelEngine::open(root)?;
    let p = spec_or_labels(args, &[], &e)?;
    if p.model.services.is_empty()
        && p.model.networks.is_empty()
        && e.containers(&p.model.name)
            .map_err(anyhow::Error::msg)?
            .is_empty()
    {
        print_event(Event::Warning(format!(
            "No resource found to remove for project {:?}.",
            p.model.name
        )));
    }
    let o = DownOptions {
        volumes: a.volumes,
        remove_orphans: a.remove_orphans,
        timeout: a.timeout,
        rmi: a.rmi.map(|r| matches!(r, Rmi::All)),
    };
    let images = with_reconciler(&p, &e, |r| {
        r.down(&o)?;
        Ok(o.rmi.map(|all| r.images_to_remove(all)).unwrap_or_default())
    })?;
    for image in images {
        if e.image_id(&image).map_err(anyhow::Error::msg)?.is_some() {
            e.keel(&["rmi".into(), image.clone()], "rmi")
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("removing image {image}"))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn selected(
    e: &KeelEngine,
    p: &ProjectSpec,
    services: &[String],
) -> anyhow::Result<Vec<Container>> {
    for s in services {
        if !p.model.services.contains_key(s) {
            return Err(reconcile_error(ReconcileError::NoSuchService(s.clone())));
        }
    }
    Ok(e.containers(&p.model.name)
        .map_err(anyhow::Error::msg)?
        .into_iter()
        .filter(|c| services.is_empty() || services.contains(&c.service))
        .collect())
}

pub fn ps(root: &Path, args: &ComposeArgs, a: &PsArgs) -> anyhow::Result<ExitCode> {
    let e = KeelEngine::open(root)?;
    let p = spec_or_labels(args, &a.service, &e)?;
    let mut rows = Vec::new();
    let mut objs = Vec::new();
    let mut services = Vec::new();
    for c in selected(&e, &p, &a.service)? {
        if !a.all && !c.running() {
            continue;
        }
        let (Ok(cfg), Ok(st)) = (e.store().config(&c.id), e.store().state(&c.id)) else {
            continue;
        };
        let status = rt::effective_status(e.store(), &c.id);
        let cmd = format!("\"{}\"", crate::container::command_text(&cfg));
        let created = crate::output::ago(Some(&cfg.created.to_rfc3339()));
        let st_text = crate::container::status_text(&st, status);
        let ports = crate::container::ports_text(&cfg, &st);
        if a.quiet {
            println!("{}", c.id);
            continue;
        }
        if !services.contains(&c.service) {
            services.push(c.service.clone());
        }
        objs.push(json!({
            "ID": c.id, "Name": c.name, "Names": c.name, "Image": cfg.image, "Command": cmd,
            "Project": p.model.name, "Service": c.service, "Created": cfg.created.timestamp(),
            "RunningFor": created, "State": status.as_str(), "Status": st_text,
            "Health": st.health.as_ref().map(|h| h.status.clone()).unwrap_or_default(),
            "ExitCode": st.exit_code, "Ports": ports, "Labels": cfg.labels,
        }));
        rows.push(vec![
            c.name.clone(),
            cfg.image.clone(),
            cmd,
            c.service.clone(),
            created,
            st_text,
            ports,
        ]);
    }
    if a.quiet {
        return Ok(ExitCode::SUCCESS);
    }
    if a.services {
        for s in services {
            println!("{s}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    match a.output {
        Format::Table => print!(
            "{}",
            table(
                &[
                    "NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS"
                ],
                &rows
            )
        ),
        // docker compose prints one JSON object per line.
        Format::Json => {
            for o in objs {
                println!("{o}");
            }
        }
        Format::Yaml => print_structured(&objs, Format::Yaml)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// docker compose's rainbow (cmd/formatter/colors.go): cyan, yellow, green,
/// magenta, blue, then the same five intense; one per container in turn.
const COLOURS: [&str; 10] = [
    "36", "33", "32", "35", "34", "36;1", "33;1", "32;1", "35;1", "34;1",
];

/// One container's log being printed.
struct Source {
    id: String,
    /// What docker compose calls the container in logs: `web-1`, or its
    /// `container_name`.
    name: String,
    prefix: String,
    colour: Option<&'static str>,
    path: PathBuf,
    offset: u64,
    pending: String,
    /// Whether its exit was announced (attached `up` only).
    exited: bool,
}

/// How log prefixes look.
#[derive(Debug, Clone, Copy)]
struct LogStyle {
    prefix: bool,
    /// `None`: colours when stdout is a terminal and `NO_COLOR` is unset.
    colour: Option<bool>,
}

/// `PROJECT-SERVICE-N` without the project, as docker compose names
/// containers in logs; a `container_name` stays as it is.
fn log_name(project: &str, c: &Container) -> String {
    let default = format!("{project}-{}-{}", c.service, c.number);
    if c.name == default {
        c.name[project.len() + 1..].to_string()
    } else {
        c.name.clone()
    }
}

fn sources(e: &KeelEngine, project: &str, cs: &[Container], style: LogStyle) -> Vec<Source> {
    let colour = style.colour.unwrap_or_else(|| {
        std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
    });
    let names: Vec<String> = cs.iter().map(|c| log_name(project, c)).collect();
    let width = names.iter().map(String::len).max().unwrap_or(0);
    cs.iter()
        .zip(names)
        .enumerate()
        .map(|(i, (c, name))| Source {
            id: c.id.clone(),
            prefix: if style.prefix {
                format!("{name:width$} | ")
            } else {
                String::new()
            },
            name,
            colour: colour.then_some(COLOURS[i % COLOURS.len()]),
            path: e.store().log_path(&c.id),
            offset: 0,
            pending: String::new(),
            exited: false,
        })
        .collect()
}

fn paint(colour: Option<&str>, s: &str) -> String {
    match colour {
        Some(c) if !s.is_empty() => format!("\x1b[{c}m{s}\x1b[0m"),
        _ => s.to_string(),
    }
}

fn print_entry(s: &Source, e: &logs::Entry, timestamps: bool) {
    let prefix = paint(s.colour, &s.prefix);
    let ts = if timestamps {
        format!(
            "{} ",
            e.time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
        )
    } else {
        String::new()
    };
    let text = e.log.strip_suffix('\n').unwrap_or(&e.log);
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{prefix}{ts}{text}");
    let _ = o.flush();
}

/// Prints what is new in every source until no container is running any
/// more (or `stop` says so: then returns true). `announce` prints docker
/// compose's `web-1 exited with code N` as containers stop (attached `up`).
/// Why following logs ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FollowEnd {
    /// Every followed container stopped.
    AllExited,
    /// `stop` said so (a signal).
    Interrupted,
    /// With `abort_on_exit`: this source's container exited.
    Exited(usize),
}

fn follow(
    e: &KeelEngine,
    sources: &mut [Source],
    timestamps: bool,
    announce: bool,
    abort_on_exit: bool,
    mut stop: impl FnMut() -> bool,
) -> anyhow::Result<FollowEnd> {
    loop {
        let mut any = false;
        for s in sources.iter_mut() {
            let len = std::fs::metadata(&s.path).map_or(0, |m| m.len());
            if len < s.offset {
                s.offset = 0; // rotated
            }
            if len <= s.offset {
                continue;
            }
            let Ok(mut f) = std::fs::File::open(&s.path) else {
                continue;
            };
            f.seek(SeekFrom::Start(s.offset))?;
            let mut buf = String::new();
            let n = f.read_to_string(&mut buf)?;
            s.offset += n as u64;
            s.pending.push_str(&buf);
            while let Some(pos) = s.pending.find('\n') {
                let l: String = s.pending.drain(..=pos).collect();
                if let Some(entry) = logs::parse_line(l.trim_end()) {
                    print_entry(s, &entry, timestamps);
                }
                any = true;
            }
        }
        if stop() {
            return Ok(FollowEnd::Interrupted);
        }
        if !any {
            let mut active = false;
            let mut first_exit = None;
            for (i, s) in sources.iter_mut().enumerate() {
                let running = rt::is_active(e.store(), &s.id);
                active |= running;
                if !announce || running != s.exited {
                    s.exited = !running;
                    continue;
                }
                s.exited = true;
                first_exit.get_or_insert(i);
                let code = e.store().state(&s.id).map_or(0, |st| st.exit_code);
                let mut o = std::io::stdout().lock();
                let _ = writeln!(
                    o,
                    "{}",
                    paint(s.colour, &format!("{} exited with code {code}", s.name))
                );
                let _ = o.flush();
            }
            if let Some(i) = first_exit.filter(|_| abort_on_exit) {
                return Ok(FollowEnd::Exited(i));
            }
            if !active {
                return Ok(FollowEnd::AllExited);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// SIGINT and SIGTERM, taken as events instead of ending keel.
struct Signals(nix::sys::signalfd::SignalFd);

impl Signals {
    fn new() -> anyhow::Result<Self> {
        use nix::sys::signal::{SigSet, Signal};
        use nix::sys::signalfd::{SfdFlags, SignalFd};
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGINT);
        mask.add(Signal::SIGTERM);
        mask.thread_block().context("blocking signals")?;
        Ok(Signals(
            SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
                .context("signalfd")?,
        ))
    }

    fn pending(&self) -> bool {
        matches!(self.0.read_signal(), Ok(Some(_)))
    }
}

pub fn logs(root: &Path, args: &ComposeArgs, a: &LogsArgs) -> anyhow::Result<ExitCode> {
    let e = KeelEngine::open(root)?;
    let p = spec_or_labels(args, &a.services, &e)?;
    let cs: Vec<Container> = selected(&e, &p, &a.services)?
        .into_iter()
        .filter(|c| !c.oneoff)
        .collect();
    let tail: Option<usize> = if a.tail == "all" || a.tail == "-1" {
        None
    } else {
        Some(
            a.tail
                .parse()
                .with_context(|| format!("invalid --tail {:?}", a.tail))?,
        )
    };
    let style = LogStyle {
        prefix: !a.no_log_prefix,
        colour: a.no_color.then_some(false),
    };
    let mut srcs = sources(&e, &p.model.name, &cs, style);
    // What is there already, each container's last `tail` lines, in time order.
    let mut backlog: Vec<(usize, logs::Entry)> = Vec::new();
    for (i, s) in srcs.iter_mut().enumerate() {
        s.offset = std::fs::metadata(&s.path).map_or(0, |m| m.len());
        let mut entries = logs::read_all(&s.path);
        if let Some(n) = tail {
            let skip = entries.len().saturating_sub(n);
            entries.drain(..skip);
        }
        backlog.extend(entries.into_iter().map(|en| (i, en)));
    }
    backlog.sort_by_key(|(_, en)| en.time);
    for (i, en) in &backlog {
        print_entry(&srcs[*i], en, a.timestamps);
    }
    if a.follow {
        let signals = Signals::new()?;
        follow(&e, &mut srcs, a.timestamps, false, false, || {
            signals.pending()
        })?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn build(root: &Path, args: &ComposeArgs, a: &ServicesArgs) -> anyhow::Result<ExitCode> {
    let p = spec(args, &a.services)?;
    let e = KeelEngine::open(root)?;
    let services: Vec<String> = p
        .order(&a.services)
        .map_err(reconcile_error)?
        .into_iter()
        .filter(|s| p.model.services[s].build.is_some())
        .collect();
    with_reconciler(&p, &e, |r| {
        r.ensure_images(&services, BuildPolicy::Always, None)
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The services a command acts on: those named (all when none are), with
/// `include_deps` their dependencies too, in start order.
fn targets(
    p: &ProjectSpec,
    services: &[String],
    include_deps: bool,
) -> anyhow::Result<Vec<String>> {
    Ok(p.order(services)
        .map_err(reconcile_error)?
        .into_iter()
        .filter(|s| include_deps || services.is_empty() || services.contains(s))
        .collect())
}

/// `pull`, by docker compose's rules: services without an `image` and those
/// whose `pull_policy` is `never` or `build` are skipped, `missing` ones
/// already present too; a failed pull of a service that can be built only
/// warns, other failures stop unless `--ignore-pull-failures`.
pub fn pull(root: &Path, args: &ComposeArgs, a: &PullArgs) -> anyhow::Result<ExitCode> {
    let p = spec(args, &a.services)?;
    let e = KeelEngine::open(root)?;
    let event = |image: &str, status: &'static str| {
        if !a.quiet {
            print_event(Event::Progress {
                kind: "Image",
                name: image.to_string(),
                status,
            });
        }
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut must_build = Vec::new();
    for s in targets(&p, &a.services, a.include_deps)? {
        let svc = &p.model.services[&s];
        let Some(image) = svc.image.clone() else {
            continue;
        };
        let skip = match svc.pull_policy.as_deref() {
            Some("never" | "build") => true,
            Some("missing" | "if_not_present") => {
                e.image_id(&image).map_err(anyhow::Error::msg)?.is_some()
            }
            _ => svc.build.is_some() && a.ignore_buildable,
        };
        if skip {
            event(&image, "Skipped");
            continue;
        }
        if !seen.insert(image.clone()) {
            continue;
        }
        event(&image, "Pulling");
        match e.pull(&image) {
            Ok(()) => event(&image, "Pulled"),
            Err(err) if svc.build.is_some() || a.ignore_pull_failures => {
                event(&image, "Error");
                print_event(Event::Warning(format!(
                    "pulling {image} for service {s}: {err}"
                )));
                if svc.build.is_some() {
                    must_build.push(s.clone());
                }
            }
            Err(err) => {
                return Err(anyhow::Error::msg(err))
                    .with_context(|| format!("pulling {image} for service {s}"));
            }
        }
    }
    if !must_build.is_empty() {
        print_event(Event::Warning(format!(
            "Some service image(s) must be built from source by running: keel compose build {}",
            must_build.join(" ")
        )));
    }
    Ok(ExitCode::SUCCESS)
}

/// `push`: the image (and `build.tags`) of every service that is built and
/// names its image.
pub fn push(root: &Path, args: &ComposeArgs, a: &PushArgs) -> anyhow::Result<ExitCode> {
    let p = spec(args, &a.services)?;
    let e = KeelEngine::open(root)?;
    for s in targets(&p, &a.services, a.include_deps)? {
        let svc = &p.model.services[&s];
        let (Some(image), Some(b)) = (svc.image.clone(), svc.build.as_ref()) else {
            continue;
        };
        for tag in std::iter::once(image).chain(b.tags.iter().cloned()) {
            if !a.quiet {
                print_event(Event::Progress {
                    kind: "Image",
                    name: tag.clone(),
                    status: "Pushing",
                });
            }
            match e.keel(&["push".into(), tag.clone()], "push") {
                Ok(()) if a.quiet => {}
                Ok(()) => print_event(Event::Progress {
                    kind: "Image",
                    name: tag,
                    status: "Pushed",
                }),
                Err(err) if a.ignore_push_failures => {
                    print_event(Event::Warning(format!(
                        "pushing {tag} for service {s}: {err}"
                    )));
                }
                Err(err) => {
                    return Err(anyhow::Error::msg(err))
                        .with_context(|| format!("pushing {tag} for service {s}"));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn exit_status(s: std::process::ExitStatus) -> ExitCode {
    ExitCode::from(u8::try_from(s.code().unwrap_or(1).clamp(0, 255)).unwrap_or(1))
}

pub fn exec(root: &Path, args: &ComposeArgs, a: &ExecArgs) -> anyhow::Result<ExitCode> {
    let p = spec(args, &[])?;
    let e = KeelEngine::open(root)?;
    let c = selected(&e, &p, std::slice::from_ref(&a.service))?
        .into_iter()
        .find(|c| !c.oneoff && c.number == a.index && c.running())
        .ok_or_else(|| {
            anyhow::Error::new(Hint::new(format!(
                "start it with `keel compose up -d {}`",
                a.service
            )))
            .context(format!("service {:?} is not running", a.service))
        })?;
    let mut cmd = Command::new(std::env::current_exe().context("locating the keel binary")?);
    cmd.arg("--root").arg(root).arg("exec");
    // docker compose exec always forwards stdin (`-i` defaults to true) and
    // allocates a TTY only when stdin is one, unless `-T`.
    if a.detach {
        cmd.arg("-d");
    } else {
        cmd.arg("-i");
        if !a.no_tty && std::io::stdin().is_terminal() {
            cmd.arg("-t");
        }
    }
    for env in &a.env {
        cmd.args(["-e", env]);
    }
    if let Some(u) = &a.user {
        cmd.args(["-u", u]);
    }
    if let Some(w) = &a.workdir {
        cmd.args(["-w", w]);
    }
    if a.privileged {
        cmd.arg("--privileged");
    }
    cmd.arg(&c.id).args(&a.command);
    let st = cmd.status().context("running keel exec")?;
    Ok(exit_status(st))
}

pub fn run(root: &Path, args: &ComposeArgs, a: &RunArgs) -> anyhow::Result<ExitCode> {
    let p = spec(args, std::slice::from_ref(&a.service))?;
    let e = KeelEngine::open(root)?;
    let svc = p
        .model
        .services
        .get(&a.service)
        .ok_or_else(|| reconcile_error(ReconcileError::NoSuchService(a.service.clone())))?
        .clone();
    let deps: Vec<String> = svc
        .depends_on
        .keys()
        .filter(|d| p.model.services.contains_key(*d))
        .cloned()
        .collect();
    with_reconciler(&p, &e, |r| {
        if !a.no_deps && !deps.is_empty() {
            r.up(&UpOptions {
                services: deps.clone(),
                ..UpOptions::default()
            })?;
        }
        r.ensure_images(std::slice::from_ref(&a.service), BuildPolicy::Missing, None)?;
        r.ensure_networks_and_volumes(std::slice::from_ref(&a.service))
    })?;
    let suffix = keel_runtime::ids::short(&keel_runtime::ids::new_id()).to_string();
    let mut cs = p
        .container_spec(&e, &a.service, 1, Some(&suffix))
        .map_err(reconcile_error)?;
    if let Some(n) = &a.process.name {
        cs.name.clone_from(n);
    }
    if !a.command.is_empty() {
        cs.command = Some(a.command.clone());
    }
    if let Some(ep) = &a.process.entrypoint {
        // docker compose splits it into words like a shell would.
        cs.entrypoint =
            Some(shlex::split(ep).ok_or_else(|| {
                anyhow::anyhow!("invalid --entrypoint {ep:?}: unbalanced quotes")
            })?);
    }
    cs.env.extend(a.process.env.iter().cloned());
    if let Some(u) = &a.process.user {
        cs.user = Some(u.clone());
    }
    if let Some(w) = &a.process.workdir {
        cs.working_dir = Some(w.clone());
    }
    if !a.service_ports {
        cs.ports.clear();
    }
    cs.restart = "no".into();
    // Like docker compose run: stdin attached unless -i=false, a TTY when
    // stdin is a terminal unless -T.
    cs.interactive = a.interactive && !a.detach;
    cs.tty = !a.no_tty && !a.detach && std::io::stdin().is_terminal();
    let id = e.create(&cs).map_err(anyhow::Error::msg)?;
    if a.detach {
        e.start(&id).map_err(anyhow::Error::msg)?;
        println!("{}", cs.name);
        return Ok(ExitCode::SUCCESS);
    }
    let code = crate::container::start_attached(root, e.store(), &id, cs.interactive);
    if a.rm {
        e.remove(&id, true).map_err(anyhow::Error::msg)?;
    }
    code
}

pub fn start(root: &Path, args: &ComposeArgs, a: &ServicesArgs) -> anyhow::Result<ExitCode> {
    let e = KeelEngine::open(root)?;
    let p = spec_or_labels(args, &a.services, &e)?;
    with_reconciler(&p, &e, |r| r.start(&a.services, Duration::from_mins(2)))?;
    Ok(ExitCode::SUCCESS)
}

pub fn stop(
    root: &Path,
    args: &ComposeArgs,
    a: &StopArgs,
    restart: bool,
) -> anyhow::Result<ExitCode> {
    let e = KeelEngine::open(root)?;
    let p = spec_or_labels(args, &a.services, &e)?;
    for s in &a.services {
        if !p.model.services.contains_key(s) {
            return Err(reconcile_error(ReconcileError::NoSuchService(s.clone())));
        }
    }
    with_reconciler(&p, &e, |r| {
        r.stop(&a.services, a.timeout)?;
        if restart {
            // Only what was asked for: dependencies stay as they are.
            let all: Vec<String> = if a.services.is_empty() {
                p.model.services.keys().cloned().collect()
            } else {
                a.services.clone()
            };
            for s in p.order(&all)?.into_iter().filter(|s| all.contains(s)) {
                r.start(std::slice::from_ref(&s), Duration::from_mins(2))?;
            }
        }
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn ls(root: &Path, a: &LsArgs) -> anyhow::Result<ExitCode> {
    let e = KeelEngine::open(root)?;
    let mut projects: BTreeMap<String, (BTreeMap<String, usize>, String)> = BTreeMap::new();
    for c in e.all_project_containers().map_err(anyhow::Error::msg)? {
        let name = c.labels.get(LABEL_PROJECT).cloned().unwrap_or_default();
        let entry = projects.entry(name).or_default();
        *entry.0.entry(c.status.clone()).or_default() += 1;
        if entry.1.is_empty() {
            entry.1 = c
                .labels
                .get(LABEL_CONFIG_FILES)
                .cloned()
                .unwrap_or_default();
        }
    }
    let mut rows = Vec::new();
    let mut objs = Vec::new();
    for (name, (states, files)) in projects {
        if !a.all && !states.contains_key("running") {
            continue;
        }
        let status = states
            .iter()
            .map(|(s, n)| format!("{s}({n})"))
            .collect::<Vec<_>>()
            .join(", ");
        if a.quiet {
            println!("{name}");
            continue;
        }
        objs.push(json!({"Name": name, "Status": status, "ConfigFiles": files}));
        rows.push(vec![name, status, files]);
    }
    if a.quiet {
        return Ok(ExitCode::SUCCESS);
    }
    if a.output == Format::Table {
        print!("{}", table(&["NAME", "STATUS", "CONFIG FILES"], &rows));
    } else {
        print_structured(&objs, a.output)?;
    }
    Ok(ExitCode::SUCCESS)
}
