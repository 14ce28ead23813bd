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

pub mod server;

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
    #[command(subcommand)]
    pub command: Command,
}

/// Every command group. Each variant's implementation lives in its own module.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show version information.
    Version,
    /// Run the Kubernetes-compatible API server.
    Server(server::ServerArgs),
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

/// Turns an error chain into the user's one line (plus hint line).
pub fn render_error(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut hint = None;
    for cause in err.chain() {
        if let Some(h) = cause.downcast_ref::<Hint>() {
            hint.get_or_insert_with(|| h.0.clone());
            continue;
        }
        let s = cause.to_string();
        // anyhow's chain repeats a source's text when a wrapper formats it in;
        // keep the line short by dropping parts already said.
        if !s.is_empty() && !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    let mut out = format!("error: {}", parts.join(": ").replace('\n', " "));
    if let Some(h) = hint {
        out.push_str("\nhint: ");
        out.push_str(&h);
    }
    out
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Version => {
            println!("keel {}", env!("CARGO_PKG_VERSION"));
            println!("root: {}", cli.root.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Server(args) => server::run(&cli.root, args),
    }
}

/// Entry point used by the `keel` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("{}", render_error(&err));
            ExitCode::FAILURE
        }
    }
}
