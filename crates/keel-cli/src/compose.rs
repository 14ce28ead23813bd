//! `keel compose …`: the project options shared by every compose command,
//! `keel compose config` (the normalized model, like `docker compose config`),
//! and the commands that run the project through keel-compose's reconciler
//! ([`ops`]) on keel's runtime ([`engine`]).

pub(crate) mod engine;
mod more;
mod ops;
mod verbs;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};

use crate::Hint;

/// Options every `keel compose` command takes.
#[derive(Debug, Args)]
pub struct ComposeArgs {
    /// Compose configuration files (default: compose.yaml, compose.yml,
    /// docker-compose.yaml or docker-compose.yml, plus the override file).
    #[arg(short = 'f', long = "file")]
    pub files: Vec<PathBuf>,
    /// Project name.
    #[arg(short = 'p', long = "project-name")]
    pub project_name: Option<String>,
    /// Profiles to enable.
    #[arg(long = "profile")]
    pub profiles: Vec<String>,
    /// Environment files to read instead of the project directory's .env.
    #[arg(long = "env-file")]
    pub env_files: Vec<PathBuf>,
    /// Alternate working directory (default: the first file's directory).
    #[arg(long = "project-directory")]
    pub project_directory: Option<PathBuf>,
    #[command(subcommand)]
    pub command: ComposeCommand,
}

#[derive(Debug, Subcommand)]
pub enum ComposeCommand {
    /// Parse, resolve and render the compose file in canonical format.
    Config(ConfigArgs),
    /// Create and start containers.
    Up(UpArgs),
    /// Stop and remove containers, networks (and with -v volumes).
    Down(DownArgs),
    /// List containers.
    Ps(PsArgs),
    /// View output from containers.
    Logs(LogsArgs),
    /// Build or rebuild services.
    Build(ServicesArgs),
    /// Pull service images.
    Pull(PullArgs),
    /// Push service images.
    Push(PushArgs),
    /// Execute a command in a running container.
    Exec(ExecArgs),
    /// Run a one-off command on a service.
    Run(RunArgs),
    /// Start services.
    Start(ServicesArgs),
    /// Stop services.
    Stop(StopArgs),
    /// Restart services.
    Restart(StopArgs),
    /// List running compose projects.
    Ls(LsArgs),
    /// Show keel's compose version.
    Version(more::VersionArgs),
    /// Print the public address of a service's port.
    Port(more::PortArgs),
    /// Display the running processes of the services' containers.
    Top(more::TopArgs),
    /// Send a signal (SIGKILL by default) to the services' containers.
    Kill(more::KillArgs),
    /// Remove stopped service containers.
    Rm(verbs::RmArgs),
    /// Pause services.
    Pause(verbs::PauseArgs),
    /// Unpause services.
    Unpause(verbs::PauseArgs),
    /// Copy files between a service container and the local filesystem.
    Cp(verbs::CpArgs),
    /// List images used by the created containers.
    Images(verbs::ImagesArgs),
    /// Scale services (SERVICE=REPLICAS).
    Scale(verbs::ScaleArgs),
    /// Block until the services' containers stop; exit with the last one's code.
    Wait(verbs::WaitArgs),
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Detached mode: run containers in the background.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Build images before starting containers.
    #[arg(long, conflicts_with = "no_build")]
    pub build: bool,
    /// Don't build an image, even if it's missing.
    #[arg(long)]
    pub no_build: bool,
    /// Pull image before running ("always"|"missing"|"never"|"build").
    #[arg(long, value_parser = ["always", "missing", "never", "build"])]
    pub pull: Option<String>,
    /// Recreate containers even if their configuration and image haven't changed.
    #[arg(long, conflicts_with = "no_recreate")]
    pub force_recreate: bool,
    /// If containers already exist, don't recreate them.
    #[arg(long)]
    pub no_recreate: bool,
    /// Remove containers for services not defined in the compose file.
    #[arg(long)]
    pub remove_orphans: bool,
    /// Wait for services to be running|healthy. Implies detached mode.
    #[arg(long)]
    pub wait: bool,
    /// Maximum duration in seconds to wait for a dependency or for --wait.
    #[arg(long, default_value_t = 120)]
    pub wait_timeout: u64,
    /// Scale SERVICE to NUM instances (SERVICE=NUM).
    #[arg(long, value_parser = parse_scale)]
    pub scale: Vec<(String, u32)>,
    /// Shutdown timeout in seconds when containers are recreated or stopped.
    #[arg(short = 't', long)]
    pub timeout: Option<u32>,
    /// Produce monochrome output.
    #[arg(long)]
    pub no_color: bool,
    /// Don't print prefix in logs.
    #[arg(long)]
    pub no_log_prefix: bool,
    /// Show timestamps.
    #[arg(long)]
    pub timestamps: bool,
    /// Attach to the log output of the named services' dependencies too.
    #[arg(long)]
    pub attach_dependencies: bool,
    /// Don't start linked services.
    #[arg(long)]
    pub no_deps: bool,
    /// Stop all containers if any container was stopped.
    #[arg(long, conflicts_with = "detach")]
    pub abort_on_container_exit: bool,
    /// Return the exit code of the selected service container. Implies --abort-on-container-exit.
    #[arg(long, value_name = "SERVICE", conflicts_with = "detach")]
    pub exit_code_from: Option<String>,
    pub services: Vec<String>,
}

fn parse_scale(s: &str) -> Result<(String, u32), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("invalid scale {s:?}: expected SERVICE=NUM"))?;
    let n = v
        .parse()
        .map_err(|_| format!("invalid scale {s:?}: {v:?} is not a number"))?;
    Ok((k.to_string(), n))
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Rmi {
    Local,
    All,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// Remove named volumes declared in the volumes section and anonymous volumes.
    #[arg(short = 'v', long)]
    pub volumes: bool,
    /// Remove images used by services: local (built ones) or all.
    #[arg(long, value_enum)]
    pub rmi: Option<Rmi>,
    /// Remove containers for services not defined in the compose file.
    #[arg(long)]
    pub remove_orphans: bool,
    /// Shutdown timeout in seconds.
    #[arg(short = 't', long)]
    pub timeout: Option<u32>,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all stopped containers too.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only display IDs.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Output format.
    #[arg(short = 'o', long = "format", value_enum, default_value_t)]
    pub output: crate::output::Format,
    /// Display services.
    #[arg(long)]
    pub services: bool,
    pub service: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Follow log output.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Number of lines to show from the end of the logs for each container.
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show timestamps.
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// Don't print the prefix.
    #[arg(long)]
    pub no_log_prefix: bool,
    /// Produce monochrome output.
    #[arg(long)]
    pub no_color: bool,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Pull what it can and ignores images with pull failures.
    #[arg(long)]
    pub ignore_pull_failures: bool,
    /// Ignore images that can be built.
    #[arg(long)]
    pub ignore_buildable: bool,
    /// Also pull services declared as dependencies.
    #[arg(long)]
    pub include_deps: bool,
    /// Pull without printing progress information.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Push what it can and ignores images with push failures.
    #[arg(long)]
    pub ignore_push_failures: bool,
    /// Also push images of services declared as dependencies.
    #[arg(long)]
    pub include_deps: bool,
    /// Push without printing progress information.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ServicesArgs {
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Shutdown timeout in seconds.
    #[arg(short = 't', long)]
    pub timeout: Option<u32>,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Detached mode: run the command in the background.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Disable pseudo-TTY allocation.
    #[arg(short = 'T', long = "no-TTY")]
    pub no_tty: bool,
    /// Keep STDIN open (the default, as in docker compose; accepted for scripts that pass it).
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Set environment variables.
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Run the command as this user.
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// Index of the container if the service has several replicas.
    #[arg(long, default_value_t = 1)]
    pub index: u32,
    /// Give the command every capability.
    #[arg(long)]
    pub privileged: bool,
    pub service: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Remove the container after it exits.
    #[arg(long)]
    pub rm: bool,
    /// Run in the background and print the container ID.
    #[arg(short = 'd', long)]
    pub detach: bool,
    #[command(flatten)]
    pub process: crate::container::ProcessFlags,
    /// Don't start linked services.
    #[arg(long)]
    pub no_deps: bool,
    /// Publish the service's ports.
    #[arg(long)]
    pub service_ports: bool,
    /// Disable pseudo-TTY allocation (default: a TTY when stdin is a terminal).
    #[arg(short = 'T', long = "no-TTY")]
    pub no_tty: bool,
    /// Keep STDIN open even if not attached (default true; `-i=false` closes it).
    #[arg(
        short = 'i',
        long,
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub interactive: bool,
    pub service: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Show all stopped projects too.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only display project names.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Output format.
    #[arg(short = 'o', long = "format", value_enum, default_value_t)]
    pub output: crate::output::Format,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Yaml,
    Json,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "yaml")]
    pub format: Format,
    /// Print the service names, one per line.
    #[arg(long)]
    pub services: bool,
    /// Print the volume names, one per line.
    #[arg(long)]
    pub volumes: bool,
    /// Print the profile names, one per line.
    #[arg(long)]
    pub profiles: bool,
    /// Print the image names, one per line.
    #[arg(long)]
    pub images: bool,
    /// Only validate the configuration, don't print anything.
    #[arg(short, long)]
    pub quiet: bool,
    /// Don't check model consistency (references to undefined services,
    /// networks, volumes, secrets, configs); may print an invalid model.
    #[arg(long)]
    pub no_consistency: bool,
    /// Services to enable (whatever their profiles).
    pub service: Vec<String>,
}

pub fn run(root: &Path, args: ComposeArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        ComposeCommand::Config(c) => config(&args, c),
        ComposeCommand::Up(a) => ops::up(root, &args, a),
        ComposeCommand::Down(a) => ops::down(root, &args, a),
        ComposeCommand::Ps(a) => ops::ps(root, &args, a),
        ComposeCommand::Logs(a) => ops::logs(root, &args, a),
        ComposeCommand::Build(a) => ops::build(root, &args, a),
        ComposeCommand::Pull(a) => ops::pull(root, &args, a),
        ComposeCommand::Push(a) => ops::push(root, &args, a),
        ComposeCommand::Exec(a) => ops::exec(root, &args, a),
        ComposeCommand::Run(a) => ops::run(root, &args, a),
        ComposeCommand::Start(a) => ops::start(root, &args, a),
        ComposeCommand::Stop(a) => ops::stop(root, &args, a, false),
        ComposeCommand::Restart(a) => ops::stop(root, &args, a, true),
        ComposeCommand::Ls(a) => ops::ls(root, a),
        ComposeCommand::Version(a) => Ok(more::version(a)),
        ComposeCommand::Port(a) => more::port(root, &args, a),
        ComposeCommand::Top(a) => more::top(root, &args, a),
        ComposeCommand::Kill(a) => more::kill(root, &args, a),
        ComposeCommand::Rm(a) => verbs::rm(root, &args, a),
        ComposeCommand::Pause(a) => verbs::pause(root, &args, a, true),
        ComposeCommand::Unpause(a) => verbs::pause(root, &args, a, false),
        ComposeCommand::Cp(a) => verbs::cp(root, &args, a),
        ComposeCommand::Images(a) => verbs::images(root, &args, a),
        ComposeCommand::Scale(a) => verbs::scale(root, &args, a),
        ComposeCommand::Wait(a) => verbs::wait(root, &args, a),
    }
}

fn options(args: &ComposeArgs, services: &[String]) -> anyhow::Result<keel_compose::Options> {
    let cwd = std::env::current_dir().context("cannot determine the current directory")?;
    let env: BTreeMap<String, String> = std::env::vars().collect();
    Ok(keel_compose::Options {
        files: args.files.clone(),
        project_name: args.project_name.clone(),
        profiles: args.profiles.clone(),
        env_files: args.env_files.clone(),
        project_directory: args.project_directory.clone(),
        cwd,
        env,
        services: services.to_vec(),
        no_consistency: false,
    })
}

pub(crate) fn load(
    args: &ComposeArgs,
    services: &[String],
) -> anyhow::Result<keel_compose::Project> {
    load_with(options(args, services)?)
}

fn load_with(opts: keel_compose::Options) -> anyhow::Result<keel_compose::Project> {
    let project = keel_compose::load(&opts).map_err(|e| match e {
        keel_compose::Error::NoConfigFile { .. } => {
            anyhow::Error::new(e).context(Hint::new("create compose.yaml or name a file with -f"))
        }
        other => anyhow::Error::new(other),
    })?;
    for w in &project.warnings {
        eprintln!("WARN[0000] {}", w.replace('\n', " "));
    }
    Ok(project)
}

fn config(args: &ComposeArgs, c: &ConfigArgs) -> anyhow::Result<ExitCode> {
    let project = load_with(keel_compose::Options {
        no_consistency: c.no_consistency,
        ..options(args, &c.service)?
    })?;
    if c.quiet {
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::new();
    if c.services {
        for s in project.service_names() {
            out.push_str(&s);
            out.push('\n');
        }
    } else if c.volumes {
        if let Some(serde_yaml_ng::Value::Mapping(m)) = project.to_value().get("volumes") {
            for k in m.keys() {
                out.push_str(k.as_str().unwrap_or_default());
                out.push('\n');
            }
        }
    } else if c.profiles {
        for p in &project.all_profiles {
            out.push_str(p);
            out.push('\n');
        }
    } else if c.images {
        let model = project.model()?;
        for (name, svc) in &model.services {
            // A service that is only built gets compose's default image name.
            let image = svc
                .image
                .clone()
                .unwrap_or_else(|| format!("{}-{name}", model.name));
            out.push_str(&image);
            out.push('\n');
        }
    } else {
        match c.format {
            Format::Yaml => {
                out = keel_compose::emit::escape_dollars(&keel_compose::emit::to_yaml(
                    &project.to_value(),
                ));
            }
            Format::Json => {
                out = keel_compose::emit::escape_dollars(
                    &serde_json::to_string_pretty(&project.to_value())
                        .context("cannot render the project as JSON")?,
                );
                out.push('\n');
            }
        }
    }
    std::io::stdout()
        .write_all(out.as_bytes())
        .context("cannot write to stdout")?;
    Ok(ExitCode::SUCCESS)
}
