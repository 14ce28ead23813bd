//! `keel dockerfile parse FILE`: a hidden debugging command that prints a
//! Dockerfile in `BuildKit`'s S-expression form (what `BuildKit`'s parser tests
//! compare), after checking every instruction the way the builder will.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::Hint;

#[derive(Debug, Subcommand)]
pub enum DockerfileCommand {
    /// Parse a Dockerfile (`-` for stdin) and print `BuildKit`'s S-expression form.
    Parse(ParseArgs),
}

#[derive(Debug, Args)]
pub struct ParseArgs {
    /// The Dockerfile, or `-` for stdin.
    pub file: PathBuf,
}

pub fn run(cmd: DockerfileCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DockerfileCommand::Parse(a) => parse(&a),
    }
}

fn parse(a: &ParseArgs) -> anyhow::Result<ExitCode> {
    let (src, name) = if a.file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the Dockerfile from stdin")?;
        (s, "-".to_string())
    } else {
        let bytes =
            std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
        (
            String::from_utf8_lossy(&bytes).into_owned(),
            a.file.display().to_string(),
        )
    };
    let checked = keel_dockerfile::parse(&src, &name).and_then(|ast| {
        keel_dockerfile::Dockerfile::from_ast(&ast, &name)?;
        Ok(ast)
    });
    let ast = match checked {
        Ok(ast) => ast,
        Err(e) => {
            let hint = e.hint().map(str::to_string);
            let err = anyhow::Error::new(e);
            return Err(match hint {
                Some(h) => err.context(Hint::new(h)).context("parsing the Dockerfile"),
                None => err.context("parsing the Dockerfile"),
            });
        }
    };
    print!("{}", ast.dump());
    Ok(ExitCode::SUCCESS)
}
