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
    ComposeArgs, DownArgs, ExecArgs, LogsArgs, LsArgs, PsArgs, Rmi, RunArgs, ServicesArgs,
    StopArgs, UpArgs,
};
use crate::Hint;
use crate::output::{Format, print_structured, table};

fn spec(args: &ComposeArgs, services: &[String]) -> anyhow::Result<ProjectSpec> {
    let project = super::load(args, services)?;
    Ok(ProjectSpec::from_project(&project)?)
}

/// Prints reconciler events on stderr the way docker compose does without a terminal.
fn print_event(e: Event) {
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
        _ => None,
    };
    let msg = e.to_string();
    match hint {
        Some(h) => anyhow::Error::new(Hint::new(h)).context(msg),
        None => anyhow::anyhow!(msg),
    }
}

fn with_reconciler<T>(
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
    let o = UpOptions {
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
        remove_orphans: a.remove_orphans,
        wait: a.wait,
        timeout: Duration::from_secs(a.wait_timeout),
        stop_timeout: a.timeout,
        start: true,
    };
    with_reconciler(&p, &e, |r| r.up(&o))?;
    if a.detach || a.wait {
        return Ok(ExitCode::SUCCESS);
    }
    // Attached: stream the logs until every container stops or we are told to.
    let order = p.order(&a.services).map_err(reconcile_error)?;
    let containers: Vec<Container> = e
        .containers(&p.model.name)
        .map_err(anyhow::Error::msg)?
        .into_iter()
        .filter(|c| !c.oneoff && order.contains(&c.service))
        .collect();
    let signals = Signals::new()?;
    let mut sources = sources(&e, &containers, false, None);
    let interrupted = follow(&e, &mut sources, false, || signals.pending())?;
    if interrupted {
        eprintln!("Gracefully stopping... (press Ctrl+C again to force)");
        with_reconciler(&p, &e, |r| r.stop(&a.services, a.timeout))?;
        return Ok(ExitCode::from(130));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn down(root: &Path, args: &ComposeArgs, a: &DownArgs) -> anyhow::Result<ExitCode> {
    let p = spec(args, &[])?;
    let e = KeelEngine::open(root)?;
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

fn selected(
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
    let p = spec(args, &a.service)?;
    let e = KeelEngine::open(root)?;
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

/// docker compose's palette, one colour per container in turn.
const COLOURS: [&str; 10] = ["36", "33", "32", "35", "34", "96", "93", "92", "95", "94"];

/// One container's log being printed.
struct Source {
    id: String,
    prefix: String,
    colour: Option<&'static str>,
    path: PathBuf,
    offset: u64,
    pending: String,
}

fn sources(e: &KeelEngine, cs: &[Container], no_prefix: bool, colour: Option<bool>) -> Vec<Source> {
    let colour = colour.unwrap_or_else(|| {
        std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
    });
    let width = cs.iter().map(|c| c.name.len()).max().unwrap_or(0);
    cs.iter()
        .enumerate()
        .map(|(i, c)| Source {
            id: c.id.clone(),
            prefix: if no_prefix {
                String::new()
            } else {
                format!("{:width$} | ", c.name)
            },
            colour: colour.then_some(COLOURS[i % COLOURS.len()]),
            path: e.store().log_path(&c.id),
            offset: 0,
            pending: String::new(),
        })
        .collect()
}

fn print_entry(s: &Source, e: &logs::Entry, timestamps: bool) {
    let prefix = match s.colour {
        Some(c) => format!("\x1b[{c}m{}\x1b[0m", s.prefix),
        None => s.prefix.clone(),
    };
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
/// more (or `stop` says so: then returns true).
fn follow(
    e: &KeelEngine,
    sources: &mut [Source],
    timestamps: bool,
    mut stop: impl FnMut() -> bool,
) -> anyhow::Result<bool> {
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
            return Ok(true);
        }
        if !any {
            if !sources.iter().any(|s| rt::is_active(e.store(), &s.id)) {
                return Ok(false);
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
    let p = spec(args, &a.services)?;
    let e = KeelEngine::open(root)?;
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
    let mut srcs = sources(&e, &cs, a.no_log_prefix, a.no_color.then_some(false));
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
        follow(&e, &mut srcs, a.timestamps, || signals.pending())?;
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
    with_reconciler(&p, &e, |r| r.ensure_images(&services, BuildPolicy::Always))?;
    Ok(ExitCode::SUCCESS)
}

pub fn pull(root: &Path, args: &ComposeArgs, a: &ServicesArgs) -> anyhow::Result<ExitCode> {
    let p = spec(args, &a.services)?;
    let e = KeelEngine::open(root)?;
    for s in p.order(&a.services).map_err(reconcile_error)? {
        let svc = &p.model.services[&s];
        // Like docker compose: services that are built have nothing to pull.
        let Some(image) = svc.image.clone().filter(|_| svc.build.is_none()) else {
            continue;
        };
        if !a.services.is_empty() && !a.services.contains(&s) {
            continue;
        }
        print_event(Event::Progress {
            kind: "Image",
            name: image.clone(),
            status: "Pulling",
        });
        e.pull(&image)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("pulling {image} for service {s}"))?;
        print_event(Event::Progress {
            kind: "Image",
            name: image,
            status: "Pulled",
        });
    }
    Ok(ExitCode::SUCCESS)
}

pub fn push(root: &Path, args: &ComposeArgs, a: &ServicesArgs) -> anyhow::Result<ExitCode> {
    let p = spec(args, &a.services)?;
    let e = KeelEngine::open(root)?;
    for (s, svc) in &p.model.services {
        if !a.services.is_empty() && !a.services.contains(s) {
            continue;
        }
        let Some(image) = svc.image.clone() else {
            continue;
        };
        if svc.build.is_none() {
            continue;
        }
        print_event(Event::Progress {
            kind: "Image",
            name: image.clone(),
            status: "Pushing",
        });
        e.keel(&["push".into(), image.clone()], "push")
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("pushing {image} for service {s}"))?;
        print_event(Event::Progress {
            kind: "Image",
            name: image,
            status: "Pushed",
        });
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
    if a.detach {
        cmd.arg("-d");
    } else if std::io::stdin().is_terminal() {
        cmd.arg("-i");
        if !a.no_tty {
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
        r.ensure_images(std::slice::from_ref(&a.service), BuildPolicy::Missing)
    })?;
    let suffix = keel_runtime::ids::short(&keel_runtime::ids::new_id()).to_string();
    let mut cs = p
        .container_spec(&e, &a.service, 1, Some(&suffix))
        .map_err(reconcile_error)?;
    if let Some(n) = &a.name {
        cs.name.clone_from(n);
    }
    if !a.command.is_empty() {
        cs.command = Some(a.command.clone());
    }
    if let Some(ep) = &a.entrypoint {
        cs.entrypoint = Some(if ep.is_empty() {
            Vec::new()
        } else {
            vec![ep.clone()]
        });
    }
    cs.env.extend(a.env.iter().cloned());
    if let Some(u) = &a.user {
        cs.user = Some(u.clone());
    }
    if let Some(w) = &a.workdir {
        cs.working_dir = Some(w.clone());
    }
    if !a.service_ports {
        cs.ports.clear();
    }
    cs.restart = "no".into();
    let id = e.create(&cs).map_err(anyhow::Error::msg)?;
    let exe = std::env::current_exe().context("locating the keel binary")?;
    if a.detach {
        e.start(&id).map_err(anyhow::Error::msg)?;
        println!("{}", cs.name);
        return Ok(ExitCode::SUCCESS);
    }
    let st = Command::new(exe)
        .arg("--root")
        .arg(root)
        .args(["start", "-a", &id])
        .status()
        .context("running keel start")?;
    if a.rm {
        e.remove(&id, true).map_err(anyhow::Error::msg)?;
    }
    Ok(exit_status(st))
}

pub fn start(root: &Path, args: &ComposeArgs, a: &ServicesArgs) -> anyhow::Result<ExitCode> {
    let p = spec(args, &a.services)?;
    let e = KeelEngine::open(root)?;
    with_reconciler(&p, &e, |r| r.start(&a.services, Duration::from_mins(2)))?;
    Ok(ExitCode::SUCCESS)
}

pub fn stop(
    root: &Path,
    args: &ComposeArgs,
    a: &StopArgs,
    restart: bool,
) -> anyhow::Result<ExitCode> {
    let p = spec(args, &a.services)?;
    let e = KeelEngine::open(root)?;
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
