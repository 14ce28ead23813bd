//! keel-dockerfile: a pure (no I/O) parser of Dockerfiles and `.dockerignore`
//! files that reads them as `BuildKit`'s Dockerfile frontend does. [`parse`]
//! gives the raw [`Ast`] of [`Node`]s (`BuildKit`'s parse tree, printable in its
//! S-expression form with [`Ast::dump`]); [`Dockerfile::parse`] interprets every
//! node into a typed [`Instruction`] (flags, mounts, heredocs, healthchecks)
//! with its [`Span`]; [`shell::expand`] and [`shell::expand_words`] do
//! `BuildKit`'s shell-word expansion; [`ignore::Ignore`] matches `.dockerignore`
//! patterns. Errors carry `file:line:col`.

pub mod ignore;
pub mod instructions;
pub mod parser;
pub mod shell;

pub use ignore::Ignore;
pub use instructions::{
    Add, ArgDef, Command, Copy, Dockerfile, From, Healthcheck, Instruction, Mount, MountType, Run,
    Spanned,
};
pub use parser::{Args, Ast, Directives, Heredoc, Node, Span, parse};
pub use shell::{EnvLookup, NoEnv, Options, expand, expand_words};

use std::fmt;

/// A position in a file: 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Dockerfile could not be parsed or one of its instructions is invalid.
    #[error("{location}: {message}")]
    Dockerfile {
        location: Location,
        message: String,
        /// What the user can do about it, when there is something to say.
        hint: Option<String>,
    },
    /// Shell-word expansion failed.
    #[error("failed to process {}: {message}", parser::go_quote(word))]
    Expand { word: String, message: String },
    /// A `.dockerignore` pattern is malformed.
    #[error("{location}: invalid pattern {}: {message}", parser::go_quote(pattern))]
    IgnorePattern {
        location: Location,
        pattern: String,
        message: String,
    },
}

impl Error {
    /// The hint attached to the error, if any.
    pub fn hint(&self) -> Option<&str> {
        match self {
            Error::Dockerfile { hint, .. } => hint.as_deref(),
            _ => None,
        }
    }

    /// Where the error is, when it is in a file.
    pub fn location(&self) -> Option<&Location> {
        match self {
            Error::Dockerfile { location, .. } | Error::IgnorePattern { location, .. } => {
                Some(location)
            }
            Error::Expand { .. } => None,
        }
    }
}
