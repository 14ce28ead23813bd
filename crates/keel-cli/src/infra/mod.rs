//! `keel infra …`: terraform's verbs, flags, output and exit codes over
//! keel-infra. Flags are parsed Go-style (see [`flags`]); diagnostics print
//! as terraform prints them (see [`diag`]).

// Loading returns the sources with the diagnostics, a large error by design.
#![allow(
    clippy::result_large_err,
    clippy::format_push_string,
    clippy::many_single_char_names
)]

mod backends;
mod diag;
mod docker;
mod flags;
mod inputs;
mod state_cmds;
mod ui_json;

use std::collections::BTreeMap;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use backends::{AnyBackend, AnyLock};
use keel_hcl::{Diagnostics, Sources, Value};
use keel_infra::apply::{Event, StateRecorder, set_outputs};
use keel_infra::config::{Module, load_module};
use keel_infra::graph::Graph;
use keel_infra::plan::{Action, Options, Plan};
use keel_infra::providers::Providers;
use keel_infra::scope::RunInfo;
use keel_infra::state::StateFile;

use flags::Flags;

/// `keel infra`: the terraform command line.
#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
pub struct InfraArgs {
    /// The terraform command and its flags (`plan -var k=v`, `apply -auto-approve`, …).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

const USAGE: &str = "Usage: keel infra [-chdir=DIR] <command> [args]

Main commands:
  init          Prepare your working directory for other commands
  validate      Check whether the configuration is valid
  plan          Show changes required by the current configuration
  apply         Create or update infrastructure
  destroy       Destroy previously-created infrastructure

All other commands:
  console       Try Terraform expressions at an interactive command prompt
  fmt           Reformat your configuration in the standard style
  force-unlock  Release a stuck lock on the current workspace
  graph         Generate a Graphviz graph of the steps in an operation
  import        Associate existing infrastructure with a Terraform resource
  output        Show output values from your root module
  providers     Show the providers required for this configuration
  refresh       Update the state to match remote systems
  show          Show the current state or a saved plan
  state         Advanced state management
  version       Show the current Terraform version
  workspace     Workspace management
";

/// Runs `keel infra ARGS`.
pub fn run(root: &Path, a: InfraArgs) -> Result<ExitCode> {
    // An apply whose stdout closes must still give its state lock back.
    crate::unwind_on_broken_pipe();
    let mut args = a.args;
    let mut dir = std::env::current_dir().context("working directory")?;
    while let Some(first) = args.first() {
        if let Some(d) = first
            .strip_prefix("-chdir=")
            .or_else(|| first.strip_prefix("--chdir="))
        {
            dir = dir.join(d);
            args.remove(0);
        } else {
            break;
        }
    }
    let Some(cmd) = args.first().cloned() else {
        eprint!("{USAGE}");
        return Ok(ExitCode::from(127));
    };
    let rest = &args[1..];
    let ctx = Ctx {
        dir,
        root: root.to_path_buf(),
    };
    match cmd.as_str() {
        "init" => ctx.init(rest),
        "validate" => ctx.validate(rest),
        "plan" => ctx.plan_cmd(rest),
        "apply" => ctx.apply_cmd(rest, false),
        "destroy" => ctx.apply_cmd(rest, true),
        "refresh" => ctx.refresh(rest),
        "show" => state_cmds::show(&ctx, rest),
        "output" => state_cmds::output(&ctx, rest),
        "console" => ctx.console(rest),
        "graph" => ctx.graph(rest),
        "state" => state_cmds::state(&ctx, rest),
        "import" => ctx.import(rest),
        "workspace" => state_cmds::workspace(&ctx, rest),
        "providers" => ctx.providers(rest),
        "force-unlock" => state_cmds::force_unlock(&ctx, rest),
        "fmt" => fmt(&ctx.dir, rest),
        "version" | "-version" | "--version" | "-v" => {
            println!(
                "Terraform v{} (keel {})\non linux_amd64",
                keel_infra::state::TERRAFORM_VERSION,
                env!("CARGO_PKG_VERSION")
            );
            Ok(ExitCode::SUCCESS)
        }
        "-help" | "--help" | "-h" | "help" => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => {
            eprintln!(
                "Terraform has no command named {other:?}.\n\nTo see all of Terraform's top-level commands, run:\n  keel infra -help\n"
            );
            Ok(ExitCode::from(1))
        }
    }
}

/// A loaded working directory.
pub(crate) struct Ctx {
    pub dir: PathBuf,
    /// keel's root (`--root`/`KEEL_ROOT`): where the docker provider's engine lives.
    pub root: PathBuf,
}

pub(crate) struct Loaded {
    pub module: Module,
    pub sources: Sources,
    pub graph: Graph,
    pub providers: Providers,
    pub run: RunInfo,
    pub backend: AnyBackend,
}

const PLAN_VALUES: &[&str] = &[
    "var",
    "var-file",
    "target",
    "replace",
    "out",
    "parallelism",
    "lock-timeout",
    "state",
    "state-out",
    "backup",
];
const PLAN_BOOLS: &[&str] = &[
    "destroy",
    "refresh-only",
    "refresh",
    "detailed-exitcode",
    "json",
    "lock",
    "input",
    "no-color",
    "compact-warnings",
    "auto-approve",
];

fn fail(srcs: &Sources, d: &Diagnostics, no_color: bool) -> ExitCode {
    diag::print(srcs, d, no_color);
    ExitCode::from(1)
}

impl Ctx {
    pub(crate) fn load(&self) -> std::result::Result<Loaded, (Sources, Diagnostics)> {
        let mut sources = Sources::default();
        let module = match load_module(&self.dir, &mut sources) {
            Ok(m) => m,
            Err(d) => return Err((sources, d)),
        };
        if let Err(d) = keel_infra::config::check_required_version(&module) {
            return Err((sources, d));
        }
        let graph = match Graph::build(&module) {
            Ok(g) => g,
            Err(d) => return Err((sources, d)),
        };
        let providers = Providers::builtin().with_docker_engine(docker::factory(&self.root));
        // Every resource type needs a built-in provider.
        let mut diags = Diagnostics::new();
        check_types(&module, &providers, &mut diags);
        diags.extend(keel_infra::validate::validate(&module, &providers));
        if diags.has_errors() {
            return Err((sources, diags));
        }
        let backend = match AnyBackend::of(&self.dir, &module) {
            Ok(b) => b,
            Err(e) => {
                return Err((
                    sources,
                    Diagnostics::error("Invalid backend configuration", e.to_string(), None),
                ));
            }
        };
        let run = RunInfo {
            root_dir: self.dir.clone(),
            cwd: self.dir.clone(),
            workspace: backend.workspace(),
            funcs: keel_infra::scope::functions_for(&module),
            provider_configs: BTreeMap::new(),
        };
        Ok(Loaded {
            module,
            sources,
            graph,
            providers,
            run,
            backend,
        })
    }

    /// The backend, for commands that need no more of the configuration.
    pub(crate) fn backend(&self) -> Result<AnyBackend> {
        let mut s = Sources::default();
        let m = load_module(&self.dir, &mut s).unwrap_or_default();
        Ok(AnyBackend::of(&self.dir, &m)?)
    }

    fn init(&self, rest: &[String]) -> Result<ExitCode> {
        let f = Flags::parse(
            rest,
            &["backend-config", "plugin-dir", "lock-timeout"],
            &[
                "upgrade",
                "reconfigure",
                "migrate-state",
                "no-color",
                "input",
                "backend",
                "get",
                "lock",
                "force-copy",
            ],
        )?;
        let no_color = f.flag("no-color", false);
        let pairs = f.all("backend-config");
        if !pairs.is_empty() {
            backends::save_backend_config(&self.dir, &pairs)?;
        }
        let l = match self.load() {
            Ok(l) => l,
            Err((s, d)) => return Ok(fail(&s, &d, no_color)),
        };
        std::fs::create_dir_all(self.dir.join(".terraform")).context("creating .terraform")?;
        println!("Initializing the backend...");
        if !l.module.calls.is_empty() {
            println!("Initializing modules...");
        }
        println!("Initializing provider plugins...");
        let mut used: Vec<&str> = Vec::new();
        collect_providers(&l.module, &l.providers, &mut used);
        used.sort_unstable();
        used.dedup();
        for p in used {
            println!("- {p} is built in to keel");
        }
        println!(
            "\nTerraform has been successfully initialized!\n\nYou may now begin working with Terraform. Try running \"terraform plan\" to see\nany changes that are required for your infrastructure. All Terraform commands\nshould now work."
        );
        Ok(ExitCode::SUCCESS)
    }

    fn validate(&self, rest: &[String]) -> Result<ExitCode> {
        let f = Flags::parse(rest, &[], &["json", "no-color"])?;
        let res = self.load();
        if f.flag("json", false) {
            let diags = match &res {
                Ok(_) => Diagnostics::new(),
                Err((_, d)) => d.clone(),
            };
            let errors = diags
                .0
                .iter()
                .filter(|d| d.severity == keel_hcl::Severity::Error)
                .count();
            let j = serde_json::json!({
                "format_version": "1.0",
                "valid": errors == 0,
                "error_count": errors,
                "warning_count": diags.0.len() - errors,
                "diagnostics": diags.0.iter().map(diag_json).collect::<Vec<_>>(),
            });
            println!("{}", serde_json::to_string_pretty(&j)?);
            return Ok(if errors == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        match res {
            Ok(_) => {
                println!("Success! The configuration is valid.\n");
                Ok(ExitCode::SUCCESS)
            }
            Err((s, d)) => Ok(fail(&s, &d, f.flag("no-color", false))),
        }
    }

    fn options(&self, f: &Flags, l: &Loaded) -> std::result::Result<Options, Diagnostics> {
        let inputs = inputs::collect(&self.dir, &l.module, &f.all("var-file"), &f.all("var"))?;
        let parse_addrs =
            |name: &str| -> std::result::Result<Vec<keel_infra::addr::InstAddr>, Diagnostics> {
                f.all(name)
                    .iter()
                    .map(|a| {
                        keel_infra::addr::parse_inst_addr(a).ok_or_else(|| {
                            Diagnostics::error(
                                "Invalid target address",
                                format!("{a:?} is not a valid resource address."),
                                None,
                            )
                        })
                    })
                    .collect()
            };
        Ok(Options {
            destroy: f.flag("destroy", false),
            refresh: f.flag("refresh", true),
            refresh_only: f.flag("refresh-only", false),
            parallelism: f
                .get("parallelism")
                .and_then(|p| p.parse().ok())
                .unwrap_or(10),
            targets: parse_addrs("target")?,
            replace: parse_addrs("replace")?,
            inputs,
        })
    }

    fn lock(f: &Flags, l: &Loaded, op: &str) -> Result<Option<AnyLock>> {
        if !f.flag("lock", true) {
            return Ok(None);
        }
        let timeout = f
            .get("lock-timeout")
            .and_then(parse_duration)
            .unwrap_or(Duration::ZERO);
        let b = &l.backend;
        Ok(Some(b.lock(op, timeout)?))
    }

    fn read_state(lock: &mut Option<AnyLock>, l: &Loaded) -> Result<StateFile> {
        match lock {
            Some(k) => Ok(k.read()?),
            None => Ok(l.backend.read_unlocked()?),
        }
    }

    fn plan_cmd(&self, rest: &[String]) -> Result<ExitCode> {
        let f = Flags::parse(rest, PLAN_VALUES, PLAN_BOOLS)?;
        let no_color = f.flag("no-color", false);
        let l = match self.load() {
            Ok(l) => l,
            Err((s, d)) => return Ok(fail(&s, &d, no_color)),
        };
        let opts = match self.options(&f, &l) {
            Ok(o) => o,
            Err(d) => return Ok(fail(&l.sources, &d, no_color)),
        };
        let mut lock = Self::lock(&f, &l, "OperationTypePlan")?;
        let prior = Self::read_state(&mut lock, &l)?;
        let json = f.flag("json", false);
        if !json {
            print_refreshing(&prior, &l, &opts);
        }
        let plan = match keel_infra::plan::plan(
            &l.module,
            &l.graph,
            &l.providers,
            &l.run,
            &prior,
            &opts,
        ) {
            Ok(p) => p,
            Err(d) => return Ok(fail(&l.sources, &d, no_color)),
        };
        if json {
            ui_json::plan(&plan, opts.refresh && !opts.destroy);
        } else {
            print!("{}", keel_infra::render::plan_text(&plan));
        }
        if let Some(out) = f.get("out") {
            let mut saved = saved_plan(&plan, &opts);
            // What `show -json PLANFILE` prints: terraform's JSON plan.
            saved["plan_json"] =
                keel_infra::plan_json::plan_json(&l.module, &plan, &prior, &l.providers);
            std::fs::write(self.dir.join(out), serde_json::to_vec_pretty(&saved)?)
                .with_context(|| format!("writing plan {out}"))?;
            if json {
                return Ok(detailed(&f, &plan));
            }
            println!(
                "\n─────────────────────────────────────────────────────────────────────────────\n\nSaved the plan to: {out}\n\nTo perform exactly these actions, run the following command to apply:\n    keel infra apply {out:?}"
            );
        } else if plan.has_changes() && !json {
            println!(
                "\n─────────────────────────────────────────────────────────────────────────────\n\nNote: You didn't use the -out option to save this plan, so Terraform can't\nguarantee to take exactly these actions if you run \"terraform apply\" now."
            );
        }
        Ok(detailed(&f, &plan))
    }

    fn apply_cmd(&self, rest: &[String], destroy: bool) -> Result<ExitCode> {
        let f = Flags::parse(rest, PLAN_VALUES, PLAN_BOOLS)?;
        let no_color = f.flag("no-color", false);
        let l = match self.load() {
            Ok(l) => l,
            Err((s, d)) => return Ok(fail(&s, &d, no_color)),
        };
        // A saved plan: its options, checked against the state it was made from.
        let saved: Option<serde_json::Value> = match f.args.first() {
            Some(p) => Some(
                serde_json::from_slice(
                    &std::fs::read(self.dir.join(p))
                        .with_context(|| format!("reading saved plan {p}"))?,
                )
                .with_context(|| {
                    format!("{p} is not a plan file written by keel infra plan -out")
                })?,
            ),
            None => None,
        };
        let mut opts = match self.options(&f, &l) {
            Ok(o) => o,
            Err(d) => return Ok(fail(&l.sources, &d, no_color)),
        };
        opts.destroy |= destroy;
        if let Some(s) = &saved {
            restore_options(s, &mut opts);
        }
        let mut lock = Self::lock(&f, &l, "OperationTypeApply")?;
        let prior = Self::read_state(&mut lock, &l)?;
        if let Some(s) = &saved
            && (s["lineage"].as_str() != Some(prior.lineage.as_str())
                && s["serial"].as_u64() != Some(0)
                || s["serial"].as_u64() != Some(prior.serial))
        {
            let d = Diagnostics::error(
                "Saved plan is stale",
                "The given plan file can no longer be applied because the state was changed by another operation after the plan was created.",
                None,
            );
            return Ok(fail(&l.sources, &d, no_color));
        }
        print_refreshing(&prior, &l, &opts);
        let plan = match keel_infra::plan::plan(
            &l.module,
            &l.graph,
            &l.providers,
            &l.run,
            &prior,
            &opts,
        ) {
            Ok(p) => p,
            Err(d) => return Ok(fail(&l.sources, &d, no_color)),
        };
        if let Some(s) = &saved
            && s["changes"] != saved_plan(&plan, &opts)["changes"]
        {
            let d = Diagnostics::error(
                "Saved plan does not match the configuration",
                "The configuration or the real infrastructure changed after the plan was saved; run plan again.",
                None,
            );
            return Ok(fail(&l.sources, &d, no_color));
        }
        print!("{}", keel_infra::render::plan_text(&plan));
        let verb = if opts.destroy { "destroy" } else { "apply" };
        if plan.has_changes() && saved.is_none() && !f.flag("auto-approve", false) {
            let q = if opts.destroy {
                "\nDo you really want to destroy all resources?\n  Terraform will destroy all your managed infrastructure, as shown above.\n  There is no undo. Only 'yes' will be accepted to confirm.\n\n  Enter a value: "
            } else {
                "\nDo you want to perform these actions?\n  Terraform will perform the actions described above.\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: "
            };
            print!("{q}");
            std::io::stdout().flush()?;
            let mut answer = String::new();
            std::io::stdin().lock().read_line(&mut answer)?;
            if answer.trim() != "yes" {
                println!();
                eprintln!(
                    "\n{}",
                    if opts.destroy {
                        "Destroy cancelled."
                    } else {
                        "Apply cancelled."
                    }
                );
                return Ok(ExitCode::from(1));
            }
        }
        let journal = match &lock {
            Some(k) => k.journal().context("opening the state journal")?,
            None => None,
        };
        // Moves first, in state, so that a crash cannot lose them.
        let (mut moved, moves) = keel_infra::apply::apply_moves(&l.module, &prior);
        if !moves.is_empty() {
            match &mut lock {
                Some(k) => k.write(&mut moved)?,
                None => l.backend.write_unlocked(&mut moved)?,
            }
        }
        let rec = StateRecorder::new(moved, journal);
        let quiet = !plan.has_changes();
        let events = move |e: Event| {
            if quiet {
                return;
            }
            let line = match e {
                Event::Start { addr, action, id } => {
                    let id = id.map(|i| format!(" [id={i}]")).unwrap_or_default();
                    match action {
                        Action::Create => format!("{addr}: Creating..."),
                        Action::Update => format!("{addr}: Modifying...{id}"),
                        Action::Delete => format!("{addr}: Destroying...{id}"),
                        _ => return,
                    }
                }
                Event::Done {
                    addr,
                    action,
                    id,
                    secs,
                } => {
                    let id = id.map(|i| format!(" [id={i}]")).unwrap_or_default();
                    match action {
                        Action::Create => format!("{addr}: Creation complete after {secs}s{id}"),
                        Action::Update => {
                            format!("{addr}: Modifications complete after {secs}s{id}")
                        }
                        Action::Delete => format!("{addr}: Destruction complete after {secs}s"),
                        _ => return,
                    }
                }
                Event::Failed { .. } => return,
            };
            println!("{line}");
        };
        if !quiet {
            println!();
        }
        let result = keel_infra::apply::apply(
            &l.module,
            &l.graph,
            &l.providers,
            &l.run,
            &prior,
            &plan,
            &opts,
            &rec,
            &events,
        );
        let (mut state, journal) = rec.into_parts();
        let code = match &result {
            Ok(s) => {
                if opts.destroy {
                    state.outputs.clear();
                } else if opts.targets.is_empty() {
                    let m = &l.module;
                    set_outputs(&mut state, &s.outputs, &|k| {
                        m.outputs.get(k).is_some_and(|o| o.sensitive)
                    });
                }
                ExitCode::SUCCESS
            }
            Err(_) => ExitCode::from(1),
        };
        if let Some(k) = &mut lock {
            k.write(&mut state)?;
            if let Some(j) = journal {
                j.remove();
            }
        } else {
            l.backend.write_unlocked(&mut state)?;
        }
        match result {
            Ok(s) => {
                if opts.destroy {
                    println!("\nDestroy complete! Resources: {} destroyed.", s.destroyed);
                } else {
                    println!(
                        "\nApply complete! Resources: {} added, {} changed, {} destroyed.",
                        s.added, s.changed, s.destroyed
                    );
                    print_outputs(&l.module, &s.outputs);
                }
            }
            Err(d) => {
                diag::print(&l.sources, &d, no_color);
            }
        }
        let _ = verb;
        Ok(code)
    }

    fn refresh(&self, rest: &[String]) -> Result<ExitCode> {
        let mut r = rest.to_vec();
        r.push("-refresh-only".into());
        r.push("-auto-approve".into());
        self.apply_cmd(&r, false)
    }

    fn console(&self, rest: &[String]) -> Result<ExitCode> {
        let f = Flags::parse(rest, &["var", "var-file", "state", "plan"], &["no-color"])?;
        let l = match self.load() {
            Ok(l) => l,
            Err((s, d)) => return Ok(fail(&s, &d, f.flag("no-color", false))),
        };
        let opts = match self.options(&f, &l) {
            Ok(o) => Options {
                refresh: false,
                ..o
            },
            Err(d) => return Ok(fail(&l.sources, &d, false)),
        };
        let prior = l.backend.read_unlocked()?;
        let vars = match keel_infra::plan::root_scope(
            &l.module,
            &l.graph,
            &l.providers,
            &l.run,
            &prior,
            &opts,
        ) {
            Ok(v) => v,
            Err(d) => return Ok(fail(&l.sources, &d, false)),
        };
        let stdin = std::io::stdin();
        let interactive = stdin.is_terminal();
        let mut code = ExitCode::SUCCESS;
        loop {
            if interactive {
                print!("> ");
                std::io::stdout().flush()?;
            }
            let mut line = String::new();
            if stdin.lock().read_line(&mut line)? == 0 {
                break;
            }
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if line == "exit" {
                break;
            }
            match console_eval(line, &vars, &l) {
                Ok(s) => println!("{s}"),
                Err(d) => {
                    let mut srcs = l.sources.clone();
                    srcs.add("<console-input>", line);
                    diag::print(&srcs, &d, f.flag("no-color", false));
                    code = ExitCode::from(1);
                    if !interactive {
                        break;
                    }
                }
            }
        }
        Ok(code)
    }

    fn graph(&self, _rest: &[String]) -> Result<ExitCode> {
        let l = match self.load() {
            Ok(l) => l,
            Err((s, d)) => return Ok(fail(&s, &d, false)),
        };
        println!("digraph {{\n\tcompound = \"true\"\n\tnewrank = \"true\"\n\tsubgraph \"root\" {{");
        for (i, n) in l.graph.nodes.iter().enumerate() {
            if !matches!(n.kind, keel_infra::graph::NodeKind::Res(_)) {
                continue;
            }
            println!(
                "\t\t\"[root] {} (expand)\" [label = \"{}\", shape = \"box\"]",
                n.label(),
                n.label()
            );
            let _ = i;
        }
        for (i, n) in l.graph.nodes.iter().enumerate() {
            if !matches!(n.kind, keel_infra::graph::NodeKind::Res(_)) {
                continue;
            }
            for d in l.graph.res_deps.get(&i).into_iter().flatten() {
                println!(
                    "\t\t\"[root] {} (expand)\" -> \"[root] {d} (expand)\"",
                    n.label()
                );
            }
        }
        println!("\t}}\n}}");
        Ok(ExitCode::SUCCESS)
    }

    fn import(&self, rest: &[String]) -> Result<ExitCode> {
        let f = Flags::parse(
            rest,
            &["var", "var-file", "lock-timeout", "config", "state"],
            &["lock", "input", "no-color"],
        )?;
        let no_color = f.flag("no-color", false);
        let [addr, id] = f.args.as_slice() else {
            bail!("The import command expects two arguments: ADDR ID");
        };
        let l = match self.load() {
            Ok(l) => l,
            Err((s, d)) => return Ok(fail(&s, &d, no_color)),
        };
        let Some(a) = keel_infra::addr::parse_inst_addr(addr) else {
            return Ok(fail(
                &l.sources,
                &Diagnostics::error(
                    "Invalid address",
                    format!("{addr:?} is not a valid resource instance address."),
                    None,
                ),
                no_color,
            ));
        };
        let m = keel_infra::graph::module_at(&l.module, &keel_infra::addr::config_path(&a.module));
        let Some(res) = m.resources.get(&a.res_key) else {
            return Ok(fail(
                &l.sources,
                &Diagnostics::error(
                    "Configuration for import target does not exist",
                    format!(
                        "The configuration for the given import target {addr} does not exist. All target instances must have an associated configuration to be imported."
                    ),
                    None,
                ),
                no_color,
            ));
        };
        let mut lock = Self::lock(&f, &l, "OperationTypeImport")?;
        let mut state = Self::read_state(&mut lock, &l)?;
        let rt = l
            .providers
            .resource(&res.ty)
            .context("no provider for this resource type")?;
        let key = a.key.clone().unwrap_or(keel_infra::addr::Key::None);
        let full = keel_infra::addr::instance_addr(&a.module, &a.res_key, &key);
        if state.resources.iter().any(|r| {
            r.ty == res.ty
                && r.name == res.name
                && r.module.clone().unwrap_or_default()
                    == keel_infra::addr::module_prefix(&a.module)
                && r.instances
                    .iter()
                    .any(|i| keel_infra::addr::Key::from_json(i.index_key.as_ref()) == key)
        }) {
            return Ok(fail(
                &l.sources,
                &Diagnostics::error(
                    "Resource already managed by Terraform",
                    format!(
                        "Terraform is already managing a remote object for {full}. To import to this address you must first remove the existing object from the state."
                    ),
                    None,
                ),
                no_color,
            ));
        }
        println!("{full}: Importing from ID {id:?}...");
        let configs =
            match keel_infra::provider_config::evaluate(&l.module, &l.run, &BTreeMap::new()) {
                Ok(c) => c,
                Err(d) => return Ok(fail(&l.sources, &d, no_color)),
            };
        let run = RunInfo {
            provider_configs: configs,
            ..l.run.clone()
        };
        let op = keel_infra::providers::OpCtx::for_resource(&run, &res.ty, None, None);
        let v = match rt.import(id, &op) {
            Ok(v) => v,
            Err(e) => {
                return Ok(fail(
                    &l.sources,
                    &Diagnostics::error("Import failed", e, None),
                    no_color,
                ));
            }
        };
        println!("{full}: Import prepared!\n  Prepared {} for import", res.ty);
        let entry = keel_infra::state::JournalEntry {
            resource: keel_infra::state::ResourceState {
                module: Some(keel_infra::addr::module_prefix(&a.module)).filter(|m| !m.is_empty()),
                mode: "managed".into(),
                ty: res.ty.clone(),
                name: res.name.clone(),
                each: match key {
                    keel_infra::addr::Key::Int(_) => Some("list".into()),
                    keel_infra::addr::Key::Str(_) => Some("map".into()),
                    keel_infra::addr::Key::None => None,
                },
                provider: keel_infra::plan::provider_addr(&l.providers, &res.ty, None),
                instances: vec![keel_infra::state::InstanceState {
                    index_key: key.to_json(),
                    status: None,
                    deposed: None,
                    schema_version: 0,
                    attributes: keel_infra::state::encode_attr(&v, &rt.schema().implied_type()),
                    sensitive_attributes: keel_infra::state::sensitive_paths(&v),
                    attributes_flat: None,
                    identity_schema_version: None,
                    identity: None,
                    private: None,
                    dependencies: Vec::new(),
                    create_before_destroy: false,
                }],
            },
            removed: false,
        };
        keel_infra::state::apply_entry(&mut state, entry);
        match &mut lock {
            Some(k) => k.write(&mut state)?,
            None => l.backend.write_unlocked(&mut state)?,
        }
        println!(
            "{full}: Refreshing state... [id={id}]\n\nImport successful!\n\nThe resources that were imported are shown above. These resources are now in\nyour Terraform state and will henceforth be managed by Terraform.\n"
        );
        Ok(ExitCode::SUCCESS)
    }

    fn providers(&self, _rest: &[String]) -> Result<ExitCode> {
        let l = match self.load() {
            Ok(l) => l,
            Err((s, d)) => return Ok(fail(&s, &d, false)),
        };
        println!("\nProviders required by configuration:\n.");
        print_provider_tree(&l.module, &l.providers, "");
        Ok(ExitCode::SUCCESS)
    }
}

fn print_provider_tree(m: &Module, p: &Providers, indent: &str) {
    let mut used: Vec<&str> = Vec::new();
    for r in m.resources.values() {
        if let Some(pr) = p.for_type(&r.ty) {
            used.push(pr.address);
        }
    }
    used.sort_unstable();
    used.dedup();
    for u in used {
        println!("{indent}├── provider[{u}]");
    }
    for (n, c) in &m.calls {
        println!("{indent}└── module.{n}");
        print_provider_tree(&c.module, p, &format!("{indent}    "));
    }
}

fn collect_providers<'a>(m: &Module, p: &'a Providers, out: &mut Vec<&'a str>) {
    for r in m.resources.values() {
        if let Some(pr) = p.for_type(&r.ty) {
            out.push(pr.address);
        }
    }
    for c in m.calls.values() {
        collect_providers(&c.module, p, out);
    }
}

fn check_types(m: &Module, p: &Providers, diags: &mut Diagnostics) {
    for r in m.resources.values() {
        let ok = match r.mode {
            keel_infra::config::Mode::Managed => p.resource(&r.ty).is_some(),
            keel_infra::config::Mode::Data => p.data(&r.ty).is_some(),
        };
        if !ok {
            diags.push(keel_hcl::Diagnostic::error(
                "Provider not available",
                format!("keel infra has no built-in provider for {} type {:?}. Built in: terraform_data, null, random, local, time, http, external, archive.", if r.mode == keel_infra::config::Mode::Data { "data source" } else { "resource" }, r.ty),
                Some(r.range.clone()),
            ));
        }
    }
    for c in m.calls.values() {
        check_types(&c.module, p, diags);
    }
}

fn print_refreshing(prior: &StateFile, l: &Loaded, opts: &Options) {
    if !opts.refresh || opts.destroy && prior.resources.is_empty() {
        return;
    }
    for r in &prior.resources {
        if r.mode != "managed" {
            continue;
        }
        for i in &r.instances {
            let mi = keel_infra::addr::parse_module(r.module.as_deref().unwrap_or(""))
                .unwrap_or_default();
            let addr = keel_infra::addr::instance_addr(
                &mi,
                &format!("{}.{}", r.ty, r.name),
                &keel_infra::addr::Key::from_json(i.index_key.as_ref()),
            );
            let id = i
                .attributes
                .get("id")
                .and_then(|v| v.as_str())
                .map(|s| format!(" [id={s}]"))
                .unwrap_or_default();
            println!("{addr}: Refreshing state...{id}");
        }
    }
    let _ = l;
}

fn print_outputs(m: &Module, outs: &BTreeMap<String, Value>) {
    if outs.is_empty() {
        return;
    }
    println!("\nOutputs:\n");
    let list: Vec<(String, Value, bool)> = outs
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.clone(),
                m.outputs.get(k).is_some_and(|o| o.sensitive) || v.has_sensitive(),
            )
        })
        .collect();
    print!("{}", keel_infra::render::outputs_text(&list));
}

/// `-lock-timeout`: Go's `time.ParseDuration` as terraform reads it (`30s`,
/// `1m30s`, `500ms`), or keel's plain seconds.
fn parse_duration(s: &str) -> Option<Duration> {
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).ok();
    }
    let ns = keel_go::parse_duration(s).ok()?;
    Some(Duration::from_nanos(u64::try_from(ns).ok()?))
}

fn diag_json(d: &keel_hcl::Diagnostic) -> serde_json::Value {
    let pos =
        |p: &keel_hcl::Pos| serde_json::json!({"line": p.line, "column": p.column, "byte": p.byte});
    let mut j = serde_json::json!({
        "severity": if d.severity == keel_hcl::Severity::Error { "error" } else { "warning" },
        "summary": d.summary,
        "detail": d.detail,
    });
    if let Some(r) = &d.subject {
        j["range"] = serde_json::json!({"filename": r.filename.to_string(), "start": pos(&r.start), "end": pos(&r.end)});
    }
    j
}

/// Plan's exit code: 2 for pending changes under `-detailed-exitcode`.
fn detailed(f: &Flags, plan: &Plan) -> ExitCode {
    if f.flag("detailed-exitcode", false) && plan.has_changes() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

/// A saved plan: what `apply PLANFILE` needs to redo and check it.
fn saved_plan(p: &Plan, o: &Options) -> serde_json::Value {
    serde_json::json!({
        "format": "keel-infra-plan-1",
        "lineage": p.lineage,
        "serial": p.serial,
        "destroy": o.destroy,
        "refresh_only": o.refresh_only,
        "targets": o.targets.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "replace": o.replace.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "variables": o.inputs.iter().map(|(k, v)| (k.clone(), serde_json::json!({"value": keel_hcl::render::to_json(v), "type": v.ty().to_json()}))).collect::<serde_json::Map<_, _>>(),
        "changes": p.changes.iter().filter(|c| c.action != Action::NoOp).map(|c| format!("{} {:?}", c.addr(), c.action)).collect::<Vec<_>>(),
    })
}

fn restore_options(s: &serde_json::Value, o: &mut Options) {
    o.destroy = s["destroy"].as_bool().unwrap_or(false);
    o.refresh_only = s["refresh_only"].as_bool().unwrap_or(false);
    o.targets = s["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().and_then(keel_infra::addr::parse_inst_addr))
        .collect();
    o.replace = s["replace"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().and_then(keel_infra::addr::parse_inst_addr))
        .collect();
    if let Some(vars) = s["variables"].as_object() {
        for (k, v) in vars {
            let t = keel_hcl::Type::from_json(&v["type"]).unwrap_or(keel_hcl::Type::Dynamic);
            if let Ok(val) = keel_hcl::render::from_json_typed(&v["value"], &t) {
                o.inputs.insert(k.clone(), val);
            }
        }
    }
}

fn console_eval(
    line: &str,
    vars: &BTreeMap<String, Value>,
    l: &Loaded,
) -> std::result::Result<String, Diagnostics> {
    // References must name declared things, as in configuration.
    let expr = keel_hcl::syntax::parse_expr("<console-input>", line)?;
    for r in expr.references() {
        if !vars.contains_key(&r.root) && !matches!(r.root.as_str(), "path" | "terraform") {
            let what = match r.root.as_str() {
                "var" => "Reference to undeclared input variable",
                "local" => "Reference to undeclared local value",
                "module" => "Reference to undeclared module",
                "count" => "Reference to \"count\" in non-counted context",
                "each" => "Reference to \"each\" in context without for_each",
                _ if r.steps.is_empty() => "Invalid reference",
                _ => "Reference to undeclared resource",
            };
            return Err(Diagnostics::error(
                what,
                format!("{r} is not declared in the root module."),
                Some(r.range.clone()),
            ));
        }
    }
    keel_hcl::console::console_line(line, vars, &l.run.funcs, &l.run.cwd)
}

/// `fmt`: terraform's canonical layout.
fn fmt(dir: &Path, rest: &[String]) -> Result<ExitCode> {
    let f = Flags::parse(
        rest,
        &[],
        &["check", "recursive", "diff", "write", "list", "no-color"],
    )?;
    let targets: Vec<PathBuf> = if f.args.is_empty() {
        vec![dir.to_path_buf()]
    } else {
        f.args.iter().map(|a| dir.join(a)).collect()
    };
    let mut files = Vec::new();
    for t in &targets {
        if t.is_file() {
            files.push(t.clone());
            continue;
        }
        let walker = walk_tf(t, f.flag("recursive", false));
        files.extend(walker);
    }
    let mut changed = false;
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let name = file
            .strip_prefix(dir)
            .unwrap_or(&file)
            .display()
            .to_string();
        if let Err(d) = keel_hcl::syntax::parse_body(&name, &text) {
            let mut s = Sources::default();
            s.add(&name, &text);
            diag::print(&s, &d, f.flag("no-color", false));
            return Ok(ExitCode::from(2));
        }
        let out = keel_hcl::fmt::format(&text);
        if out != text {
            changed = true;
            if f.flag("list", true) {
                println!("{name}");
            }
            if !f.flag("check", false) && f.flag("write", true) {
                std::fs::write(&file, &out)
                    .with_context(|| format!("writing {}", file.display()))?;
            }
        }
    }
    Ok(if f.flag("check", false) && changed {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

fn walk_tf(dir: &Path, recursive: bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut entries: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        let n = p
            .file_name()
            .map(|x| x.to_string_lossy().into_owned())
            .unwrap_or_default();
        if n.starts_with('.') {
            continue;
        }
        if p.is_dir() {
            if recursive {
                out.extend(walk_tf(&p, true));
            }
        } else if p
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("tf") || e.eq_ignore_ascii_case("tfvars"))
        {
            out.push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    /// Regression: `-lock-timeout=1m30s` (Go's syntax, as terraform reads
    /// it) came out as no timeout, and a negative one panicked.
    #[test]
    fn lock_timeouts_like_terraform() {
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("-5"), None);
    }
}
