//! The build's one error enum.

use std::path::PathBuf;

use keel_dockerfile::Location;

/// Everything that can fail in a build, one variant per failed operation.
/// Errors tied to a Dockerfile instruction carry its `file:line:col`.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Dockerfile(#[from] keel_dockerfile::Error),
    /// An instruction cannot be carried out (bad argument, missing source…).
    #[error("{location}: {message}")]
    Step {
        location: Location,
        message: String,
        hint: Option<String>,
    },
    /// A `RUN` command failed; `output` holds its last lines.
    #[error("{location}: RUN {command:?} exited with code {code}{}", last_lines(.output))]
    RunFailed {
        location: Location,
        command: String,
        code: i32,
        output: Vec<String>,
    },
    #[error("{location}: running {command:?}")]
    RunStart {
        location: Location,
        command: String,
        #[source]
        source: Box<keel_runtime::RuntimeError>,
    },
    /// Reading, hashing or copying a COPY/ADD source failed.
    #[error("{location}: {op} {path}")]
    Source {
        location: Location,
        /// What was being done: `COPY reading`, `ADD hashing`, …
        op: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// `ADD` of a local archive: the archive would not unpack.
    #[error("{location}: ADD {archive}")]
    Unpack {
        location: Location,
        archive: String,
        #[source]
        source: keel_oci::layer::LayerError,
    },
    /// `ADD` of a URL: the download failed.
    #[error("{location}: ADD {url}")]
    Fetch {
        location: Location,
        url: String,
        #[source]
        source: FetchError,
    },
    /// `--chown` names a user or group the image does not have.
    #[error("{location}: --chown={spec}")]
    Owner {
        location: Location,
        spec: String,
        #[source]
        source: Box<keel_runtime::RuntimeError>,
    },
    #[error("target stage {0:?} not found in the Dockerfile")]
    UnknownTarget(String),
    #[error("the Dockerfile has no FROM")]
    NoStages,
    #[error("a stage this one depends on failed")]
    DependencyFailed,
    #[error("build interrupted")]
    Cancelled,
    #[error("image store")]
    Oci(#[from] keel_oci::OciError),
    #[error("layer")]
    Layer(#[from] keel_oci::layer::LayerError),
    #[error("container runtime")]
    Runtime(#[source] Box<keel_runtime::RuntimeError>),
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid option {0}")]
    Option(String),
}

/// Why an `ADD http://…` download failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("only http:// URLs are supported")]
    Unsupported,
    #[error("connecting to {addr}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("talking to {addr}")]
    Transfer {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed HTTP response")]
    Malformed,
    #[error("HTTP status {0}")]
    Status(String),
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<keel_runtime::RuntimeError> for BuildError {
    fn from(e: keel_runtime::RuntimeError) -> Self {
        BuildError::Runtime(Box::new(e))
    }
}

fn last_lines(lines: &[String]) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!("; last output: {}", lines.join(" | "))
    }
}

impl BuildError {
    /// What the user can do about it, when there is something to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            BuildError::Dockerfile(e) => e.hint().map(str::to_string),
            BuildError::Step { hint, .. } => hint.clone(),
            BuildError::UnknownTarget(_) => {
                Some("--target names a stage (FROM … AS name) or its index".to_string())
            }
            _ => None,
        }
    }
}

pub type Result<T, E = BuildError> = std::result::Result<T, E>;

/// `map_err` helper for I/O on a path.
pub(crate) fn io_err(
    what: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> BuildError {
    let path = path.into();
    move |source| BuildError::Io { what, path, source }
}
