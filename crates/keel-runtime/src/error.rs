use std::path::PathBuf;

/// Everything that can fail in the runtime, one variant per failed operation.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("no such container: {0}")]
    NotFound(String),
    /// docker's words for an ID prefix that several containers share.
    #[error("multiple IDs found with provided prefix: {0}")]
    AmbiguousId(String),
    #[error("container name \"/{name}\" is already in use by container \"{id}\"")]
    NameInUse { name: String, id: String },
    #[error("invalid container name {0:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidName(String),
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("image store")]
    Image(#[from] keel_oci::OciError),
    #[error("no command specified")]
    NoCommand,
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UnknownUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    UnknownGroup(String),
    #[error("invalid {what} {value:?}: {why}")]
    InvalidOption {
        what: &'static str,
        value: String,
        why: String,
    },
    #[error("building the OCI runtime spec")]
    Spec(#[from] oci_spec::OciSpecError),
    #[error("mounting {what} at {path}")]
    Mount {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("unmounting {path}")]
    Unmount {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("creating the network namespace")]
    Netns(#[source] std::io::Error),
    /// keel-net's error, which names the network itself.
    #[error(transparent)]
    Network(#[from] keel_net::NetError),
    #[error("connecting to {network}")]
    Connect {
        network: String,
        #[source]
        source: keel_net::NetError,
    },
    #[error("{0}")]
    Start(String),
    #[error("executing in the container: {0}")]
    Exec(String),
    #[error("deleting the runtime state: {0}")]
    Delete(String),
    #[error("signalling the container")]
    Signal(#[source] std::io::Error),
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("cannot join network of a non running container: {0}")]
    JoinNotRunning(String),
    #[error("conflicting options: {0}")]
    ConflictingOptions(&'static str),
    #[error(
        "container sharing network namespace with another container or host cannot be connected to any other network"
    )]
    SharedNetns,
    #[error("container {container} is not connected to network {network}")]
    NotConnected { container: String, network: String },
    #[error("container {0} is running: stop it first or use force")]
    Running(String),
    #[error("spawning {what}")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("locking {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no such volume: {0}")]
    NoSuchVolume(String),
    #[error("volume {name} is in use by container {id}")]
    VolumeInUse { name: String, id: String },
    #[error("volume {0} already exists")]
    VolumeExists(String),
    #[error("copying {what}")]
    Copy {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot copy a directory over the non-directory {0}")]
    CopyDirOverFile(String),
    #[error("terminal: {0}")]
    Tty(String),
    #[error("monitor: {0}")]
    Monitor(String),
    #[error("compiling the seccomp filter: {0}")]
    SeccompCompile(String),
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

pub(crate) fn read_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let path = path.to_path_buf();
    move |source| RuntimeError::Read { path, source }
}

pub(crate) fn write_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let path = path.to_path_buf();
    move |source| RuntimeError::Write { path, source }
}

/// `r` of removing `path`, where a missing `path` is already what was wanted.
pub(crate) fn removed(r: std::io::Result<()>, path: &std::path::Path) -> Result<()> {
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r.map_err(write_err(path)),
    }
}

/// The error and its sources as one line, `: `-joined; a part that a
/// wrapper already said (or an empty one, like a hint's) is left out. The
/// one way keel renders a cause chain: the monitor's recorded error and the
/// CLI's `error:` line both come from it.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = String::new();
    let mut cur = Some(e);
    while let Some(c) = cur {
        let t = c.to_string();
        if !t.is_empty() && !s.contains(&t) {
            if !s.is_empty() {
                s.push_str(": ");
            }
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}
