//! keel-compose: the Compose Specification as docker compose v2 reads it.
//! [`load`] turns compose files (found like docker compose does, or given
//! with `-f`) into a [`Project`]: YAML with positions ([`yaml`]), variable
//! substitution ([`interp`]) from the environment and `.env` ([`dotenv`]),
//! validation by the compose-spec schema's rules ([`schema`]), short syntaxes
//! made long ([`normalize`]), several files merged ([`merge`]), `extends`,
//! `include` and `profiles` applied, and semantic checks. Every error names
//! `file:line:col: path: problem` in one line. [`Project::to_value`] is what
//! `keel compose config` prints; [`model`] holds the typed view the
//! reconciler consumes.

pub mod dotenv;
pub mod emit;
pub mod interp;
mod loader;
pub mod merge;
pub mod model;
pub mod normalize;
pub mod reconcile;
pub mod schema;
pub mod yaml;

pub use loader::{Options, Project, load};

use std::path::PathBuf;

/// Everything that can go wrong while loading a project.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no configuration file provided: not found (looked for compose.yaml, compose.yml, docker-compose.yaml, docker-compose.yml in {} and its parents)",
        dir.display()
    )]
    NoConfigFile { dir: PathBuf },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{pos}: {message}")]
    Syntax { pos: yaml::Pos, message: String },
    /// A schema violation or a semantic error at a known place.
    #[error("{pos}: {path}: {message}")]
    Invalid {
        pos: yaml::Pos,
        path: String,
        message: String,
    },
    #[error("{file}:{line}: {message}")]
    EnvFile {
        file: String,
        line: usize,
        message: String,
    },
    #[error(
        "invalid project name {name:?}: must contain only lowercase letters, decimal digits, dashes, and underscores, and must begin with a lowercase letter or decimal digit"
    )]
    ProjectName { name: String },
    #[error("no such service: {name}")]
    NoSuchService { name: String },
    #[error("the output model does not fit the typed model: {0}")]
    Model(String),
}
