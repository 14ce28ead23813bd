//! keel's command line: clap definitions (one module per command group), terminal
//! output (tables, progress, colours) and error reporting. The only crate that
//! knows about terminals; libraries return data to it.
//!
//! Errors reach the user as one line, `error: <what failed>: <why>`, followed by
//! a `hint: …` line when the error chain carries a [`Hint`].

use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod agent;
mod argv;
mod build;
pub mod chart;
mod chart_apply;
mod chart_csa;
mod chart_deps;
mod chart_oci;
mod chart_owner;
mod chart_release;
mod chart_repo;
mod chart_show;
mod chart_wait;
mod ci;
mod compose;
mod container;
mod dockerfile;
mod events;
mod hints;
mod image;
mod infra;
mod kube;
mod logging;
mod malloc;
mod network;
mod output;
mod progress;
mod rollout;
pub mod server;
mod server_dns;
mod server_metrics;
mod server_metrics_hpa;
mod system;
mod template;

/// Top-level arguments.
#[derive(Debug, Parser)]
#[command(
    name = "keel",
    version,
    about = "One binary for the whole DevOps stack"
)]
pub struct Cli {
    /// State directory (images, containers, cluster data).
    #[arg(
        long,
        global = true,
        env = "KEEL_ROOT",
        default_value = "/var/lib/keel"
    )]
    pub root: PathBuf,
    #[arg(
        long,
        global = true,
        env = "KEEL_LOG",
        value_name = "LEVEL",
        help = "Diagnostics on stderr: error, warn (default), info, debug, trace, or filter directives such as warn,keel_runtime=debug"
    )]
    pub log_level: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

/// Every command group. Each variant's implementation lives in its own module.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show version information.
    Version(system::FormatArgs),
    /// Display system-wide information.
    Info(system::FormatArgs),
    /// List images.
    Images(image::ImagesArgs),
    /// Manage images.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Show details of images.
    Inspect(image::InspectArgs),
    /// Create a tag TARGET that refers to SOURCE.
    Tag(image::TagArgs),
    /// Remove images.
    Rmi(image::RmiArgs),
    /// Show the history of an image.
    History(image::HistoryArgs),
    /// Save images to a tar archive (docker-archive and OCI layout in one).
    Save(image::SaveArgs),
    /// Load images from a tar archive (docker-archive, OCI layout, oci-archive).
    Load(image::LoadArgs),
    /// Import a root filesystem (tarball or directory) as an image.
    Import(image::ImportArgs),
    /// Pull an image from a registry.
    Pull(image::PullArgs),
    /// Push an image to a registry.
    Push(image::PushArgs),
    /// Log in to a registry.
    Login(image::LoginArgs),
    /// Log out from a registry.
    Logout(image::LogoutArgs),
    /// Manage keel's data.
    #[command(subcommand)]
    System(image::SystemCommand),
    /// Helm charts and releases: template, install, upgrade, rollback, list…
    Chart(Box<chart::ChartArgs>),
    /// Manage networks.
    #[command(subcommand)]
    Network(network::NetworkCommand),
    /// Run the Kubernetes-compatible API server.
    Server(server::ServerArgs),
    /// Join a keel server as a node and run the pods bound to it.
    Agent(agent::AgentArgs),
    /// Create and run a new container from an image.
    Run(container::RunArgs),
    /// Create a new container.
    Create(container::CreateFlags),
    /// Start one or more stopped containers.
    Start(container::StartArgs),
    /// Stop one or more running containers.
    Stop(container::StopArgs),
    /// Kill one or more running containers.
    Kill(container::KillArgs),
    /// Restart one or more containers.
    Restart(container::StopArgs),
    /// Remove one or more containers.
    Rm(container::RmArgs),
    /// List containers.
    Ps(container::PsArgs),
    /// Fetch the logs of a container.
    Logs(container::LogsArgs),
    /// Execute a command in a running container.
    Exec(container::ExecArgs),
    /// Block until containers stop, then print their exit codes.
    Wait(container::ContainersArgs),
    /// List port mappings of a container.
    Port(container::PortArgs),
    /// Display a live stream of container resource usage.
    Stats(container::StatsArgs),
    /// Copy files between a container and the host.
    Cp(container::CpArgs),
    /// Rename a container.
    Rename(container::RenameArgs),
    /// Display the running processes of a container.
    Top(container::TopArgs),
    /// Pause all processes within one or more containers.
    Pause(container::PauseArgs),
    /// Unpause all processes within one or more containers.
    Unpause(container::PauseArgs),
    /// Inspect changes to files or directories on a container's filesystem.
    Diff(container::DiffArgs),
    /// Export a container's filesystem as a tar archive.
    Export(container::ExportArgs),
    /// Create a new image from a container's changes.
    Commit(container::CommitArgs),
    /// Update configuration of one or more containers.
    Update(container::UpdateArgs),
    /// Attach local standard input, output, and error streams to a running container.
    Attach(container::AttachArgs),
    /// Get real time events from keel (containers, images).
    Events(events::EventsArgs),
    /// Print a shell completion script: bash, zsh, fish, elvish, powershell.
    Completion { shell: clap_complete::Shell },
    /// Manage volumes.
    #[command(subcommand)]
    Volume(container::VolumeCommand),
    /// Manage containers (docker's grouped form of the container commands).
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Supervises one container (started by keel itself).
    #[command(name = "__monitor", hide = true)]
    Monitor { id: String },
    /// Dockerfile debugging: print the parse as `BuildKit` does.
    #[command(subcommand, hide = true)]
    Dockerfile(dockerfile::DockerfileCommand),
    /// Multi-container applications from compose files.
    Compose(Box<compose::ComposeArgs>),
    /// Build an image from a Dockerfile.
    Build(build::BuildArgs),
    /// Manage the build cache.
    #[command(subcommand)]
    Builder(build::BuilderCommand),
    /// Pipelines: run GitHub Actions workflows locally.
    Ci(ci::CiArgs),
    /// Infrastructure as code: terraform's commands on Terraform configurations.
    Infra(infra::InfraArgs),
    /// Progressive delivery: `kubectl argo rollouts`' commands on Argo Rollouts.
    Rollout(rollout::RolloutArgs),
}

/// `keel container …`: the same commands as the top-level ones, as docker
/// groups them, plus `prune`.
#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Create and run a new container from an image.
    Run(container::RunArgs),
    /// Create a new container.
    Create(container::CreateFlags),
    /// Start one or more stopped containers.
    Start(container::StartArgs),
    /// Stop one or more running containers.
    Stop(container::StopArgs),
    /// Kill one or more running containers.
    Kill(container::KillArgs),
    /// Restart one or more containers.
    Restart(container::StopArgs),
    /// Remove one or more containers.
    #[command(alias = "remove")]
    Rm(container::RmArgs),
    /// List containers.
    #[command(aliases = ["ps", "list"])]
    Ls(container::PsArgs),
    /// Fetch the logs of a container.
    Logs(container::LogsArgs),
    /// Execute a command in a running container.
    Exec(container::ExecArgs),
    /// Block until containers stop, then print their exit codes.
    Wait(container::ContainersArgs),
    /// List port mappings of a container.
    Port(container::PortArgs),
    /// Display a live stream of container resource usage.
    Stats(container::StatsArgs),
    /// Copy files between a container and the host.
    Cp(container::CpArgs),
    /// Display detailed information on containers.
    Inspect(image::InspectArgs),
    /// Remove all stopped containers.
    Prune(image::PruneArgs),
    /// Rename a container.
    Rename(container::RenameArgs),
    /// Display the running processes of a container.
    Top(container::TopArgs),
    /// Pause all processes within one or more containers.
    Pause(container::PauseArgs),
    /// Unpause all processes within one or more containers.
    Unpause(container::PauseArgs),
    /// Inspect changes to files or directories on a container's filesystem.
    Diff(container::DiffArgs),
    /// Export a container's filesystem as a tar archive.
    Export(container::ExportArgs),
    /// Create a new image from a container's changes.
    Commit(container::CommitArgs),
    /// Update configuration of one or more containers.
    Update(container::UpdateArgs),
    /// Attach local standard input, output, and error streams to a running container.
    Attach(container::AttachArgs),
}

fn container_command(root: &std::path::Path, c: ContainerCommand) -> anyhow::Result<ExitCode> {
    match c {
        ContainerCommand::Run(a) => container::run(root, a),
        ContainerCommand::Create(a) => container::create(root, a),
        ContainerCommand::Start(a) => container::start(root, a),
        ContainerCommand::Stop(a) => container::stop(root, a),
        ContainerCommand::Kill(a) => container::kill(root, a),
        ContainerCommand::Restart(a) => container::restart(root, a),
        ContainerCommand::Rm(a) => container::rm(root, a),
        ContainerCommand::Ls(a) => container::ps(root, a),
        ContainerCommand::Logs(a) => container::logs_cmd(root, a),
        ContainerCommand::Exec(a) => container::exec(root, a),
        ContainerCommand::Wait(a) => container::wait(root, a),
        ContainerCommand::Port(a) => container::port(root, a),
        ContainerCommand::Stats(a) => container::stats_cmd(root, a),
        ContainerCommand::Cp(a) => container::cp(root, a),
        ContainerCommand::Inspect(a) => container::inspect_any(root, a),
        ContainerCommand::Prune(a) => image::container_prune(root, a),
        ContainerCommand::Rename(a) => container::rename(root, &a),
        ContainerCommand::Top(a) => container::top(root, &a),
        ContainerCommand::Pause(a) => container::pause(root, &a, true),
        ContainerCommand::Unpause(a) => container::pause(root, &a, false),
        ContainerCommand::Diff(a) => container::diff(root, &a),
        ContainerCommand::Export(a) => container::export(root, &a),
        ContainerCommand::Commit(a) => container::commit(root, &a),
        ContainerCommand::Update(a) => container::update(root, &a),
        ContainerCommand::Attach(a) => container::attach(root, &a),
    }
}

/// Something the user can do about an error; attach with
/// `.context(Hint::new("run keel pull busybox"))` or `anyhow::Error::new(Hint…)`.
/// Printed on its own line after the error.
#[derive(Debug)]
pub struct Hint(pub String);

impl Hint {
    pub fn new(s: impl Into<String>) -> Self {
        Hint(s.into())
    }
}

impl fmt::Display for Hint {
    fn fmt(&self, _f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hints are printed separately; as a context layer they add nothing to the line.
        Ok(())
    }
}

impl std::error::Error for Hint {}

/// Turns an error chain into the user's one line (plus hint line). The
/// chain is joined as everywhere in keel (`keel_runtime::error_chain`:
/// parts a wrapper already said are dropped); hints come from
/// [`hints`] or a [`Hint`] context anywhere in the chain.
pub fn render_error(err: &anyhow::Error) -> String {
    // anyhow finds a context value of a given type anywhere in its stack.
    let hint = err.downcast_ref::<Hint>().map(|h| h.0.clone());
    let mut out = format!(
        "error: {}",
        keel_runtime::error_chain(err.as_ref()).replace('\n', " ")
    );
    if let Some(h) = hint {
        out.push_str("\nhint: ");
        out.push_str(&h);
    }
    out
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Version(a) => system::version(&cli.root, &a),
        Command::System(image::SystemCommand::Df(a)) => system::df(&cli.root, &a),
        Command::Info(a) | Command::System(image::SystemCommand::Info(a)) => {
            system::info(&cli.root, &a)
        }
        Command::Images(a) => image::images(&cli.root, a),
        Command::Image(image::ImageCommand::Rm(a)) => {
            container::check_image_unused(&cli.root, &a.images, a.force)?;
            image::image_command(&cli.root, image::ImageCommand::Rm(a))
        }
        Command::Image(c) => image::image_command(&cli.root, c),
        Command::Inspect(a) => container::inspect_any(&cli.root, a),
        Command::Tag(a) => image::tag(&cli.root, a),
        Command::Rmi(a) => {
            container::check_image_unused(&cli.root, &a.images, a.force)?;
            image::rmi(&cli.root, a)
        }
        Command::History(a) => image::history(&cli.root, a),
        Command::Save(a) => image::save(&cli.root, a),
        Command::Load(a) => image::load(&cli.root, a),
        Command::Import(a) => image::import(&cli.root, a),
        Command::Pull(a) => image::pull(&cli.root, a),
        Command::Push(a) => image::push(&cli.root, a),
        Command::Login(a) => image::login(&cli.root, a),
        Command::Logout(a) => image::logout(&cli.root, a),
        Command::System(image::SystemCommand::Prune(a)) => image::system_prune(&cli.root, a),
        Command::Chart(args) => chart::run(*args),
        Command::Rollout(args) => rollout::run(args),
        Command::Network(c) => network::network_command(&cli.root, c),
        Command::Server(args) => server::run(&cli.root, args),
        Command::Agent(args) => agent::run(&cli.root, args),
        Command::Run(a) => container::run(&cli.root, a),
        Command::Create(a) => container::create(&cli.root, a),
        Command::Start(a) => container::start(&cli.root, a),
        Command::Stop(a) => container::stop(&cli.root, a),
        Command::Kill(a) => container::kill(&cli.root, a),
        Command::Restart(a) => container::restart(&cli.root, a),
        Command::Rm(a) => container::rm(&cli.root, a),
        Command::Ps(a) => container::ps(&cli.root, a),
        Command::Logs(a) => container::logs_cmd(&cli.root, a),
        Command::Exec(a) => container::exec(&cli.root, a),
        Command::Wait(a) => container::wait(&cli.root, a),
        Command::Port(a) => container::port(&cli.root, a),
        Command::Stats(a) => container::stats_cmd(&cli.root, a),
        Command::Cp(a) => container::cp(&cli.root, a),
        Command::Rename(a) => container::rename(&cli.root, &a),
        Command::Top(a) => container::top(&cli.root, &a),
        Command::Pause(a) => container::pause(&cli.root, &a, true),
        Command::Unpause(a) => container::pause(&cli.root, &a, false),
        Command::Diff(a) => container::diff(&cli.root, &a),
        Command::Export(a) => container::export(&cli.root, &a),
        Command::Commit(a) => container::commit(&cli.root, &a),
        Command::Update(a) => container::update(&cli.root, &a),
        Command::Attach(a) => container::attach(&cli.root, &a),
        Command::Events(a) => events::events(&cli.root, &a),
        Command::Completion { shell } => {
            use clap::CommandFactory;
            // Into a buffer first: clap_complete panics on a closed pipe.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "keel", &mut script);
            match std::io::Write::write_all(&mut std::io::stdout(), &script) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::from(141)),
                r => r.map(|()| ExitCode::SUCCESS).map_err(Into::into),
            }
        }
        Command::Volume(c) => container::volume(&cli.root, c),
        Command::Container(c) => container_command(&cli.root, c),
        Command::Monitor { id } => container::monitor(&cli.root, &id),
        Command::Dockerfile(c) => dockerfile::run(c),
        Command::Compose(args) => compose::run(&cli.root, *args),
        Command::Build(a) => build::build(&cli.root, a),
        Command::Builder(c) => build::builder(&cli.root, c),
        Command::Ci(a) => ci::run(&cli.root, a),
        Command::Infra(a) => infra::run(&cli.root, a),
    }
}

/// Set once a print to stdout failed because the reader went away.
static BROKEN_PIPE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// Commands that hold something to give back (`keel infra`'s state lock)
/// unwind on a closed stdout instead of exiting on the spot.
static UNWIND_ON_BROKEN_PIPE: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Makes a closed stdout unwind (running drops: a remote state lock is
/// released) and end the process with 141 from [`main`].
pub(crate) fn unwind_on_broken_pipe() {
    UNWIND_ON_BROKEN_PIPE.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// A closed stdout (`keel images | head -1`) ends the process quietly with
/// 141, as it would for docker; everything else panics as usual. SIGPIPE
/// itself stays ignored so that a registry dropping a connection is an
/// error, not a kill. Most commands exit at once (threads that print, such
/// as `logs -f` pumps, then cannot outlive the reader); those that called
/// [`unwind_on_broken_pipe`] unwind quietly and [`main`] exits after the drops.
fn quiet_broken_pipe() {
    use std::sync::atomic::Ordering;
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            BROKEN_PIPE.store(true, Ordering::SeqCst);
            if UNWIND_ON_BROKEN_PIPE.load(Ordering::SeqCst) {
                return;
            }
            std::process::exit(141);
        }
        default(info);
    }));
}

/// The command line as keel reads it: clap's definitions with `keel
/// chart`'s booleans taking `=true|false` as pflag's do, arguments put in
/// docker's order.
pub fn parse(argv: Vec<std::ffi::OsString>) -> Result<Cli, clap::Error> {
    let cmd = chart::go_bool_flags(<Cli as clap::CommandFactory>::command());
    let argv = argv::docker_order(&cmd, argv);
    let mut m = cmd.try_get_matches_from(argv)?;
    <Cli as clap::FromArgMatches>::from_arg_matches_mut(&mut m)
}

/// Entry point used by the `keel` binary.
pub fn main() -> ExitCode {
    quiet_broken_pipe();
    // Several TLS users (registry client, API server, etcd client) share one
    // rustls; with more than one crypto backend compiled in, rustls needs the
    // process default named. keel uses ring everywhere.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = match parse(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            let code = u8::try_from(e.exit_code()).unwrap_or(2);
            return ExitCode::from(container::usage_exit_code(&e).unwrap_or(code));
        }
    };
    // Long-running processes say what they do; commands only what went wrong.
    let default = if matches!(
        cli.command,
        Command::Monitor { .. } | Command::Server(_) | Command::Agent(_)
    ) {
        logging::SERVICE_DEFAULT
    } else {
        logging::COMMAND_DEFAULT
    };
    if let Err(err) = logging::init(cli.log_level.as_deref(), default) {
        eprintln!("{}", render_error(&err));
        return ExitCode::from(2);
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(cli)));
    match result {
        Ok(Ok(code)) => code,
        Ok(Err(err)) => {
            eprintln!("{}", render_error(&err));
            ExitCode::FAILURE
        }
        Err(_) if BROKEN_PIPE.load(std::sync::atomic::Ordering::SeqCst) => ExitCode::from(141),
        Err(payload) => std::panic::resume_unwind(payload),
    }
}
