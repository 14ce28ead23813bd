//! keel's command line: clap definitions (one module per command group), terminal
//! output (tables, progress, colours) and error reporting. The only crate that
//! knows about terminals; libraries return data to it.

use std::process::ExitCode;

use clap::Parser;

/// Top-level arguments.
#[derive(Debug, Parser)]
#[command(name = "keel", version, about = "One binary for the whole DevOps stack")]
pub struct Cli {
    /// State directory (images, containers, cluster data).
    #[arg(long, global = true, env = "KEEL_ROOT", default_value = "/var/lib/keel")]
    pub root: std::path::PathBuf,
}

/// Entry point used by the `keel` binary.
pub fn main() -> ExitCode {
    let _cli = Cli::parse();
    ExitCode::SUCCESS
}
