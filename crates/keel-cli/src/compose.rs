//! `keel compose …`: the project options shared by every compose command and
//! `keel compose config` (the normalized model, like `docker compose config`).
//! Containers are not started here yet; the reconciler comes with keel-runtime.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
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
    /// Services to enable (whatever their profiles).
    pub service: Vec<String>,
}

pub fn run(args: ComposeArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ComposeCommand::Config(ref c) => config(&args, c),
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
    })
}

fn load(args: &ComposeArgs, services: &[String]) -> anyhow::Result<keel_compose::Project> {
    let opts = options(args, services)?;
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
    let project = load(args, &c.service)?;
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
