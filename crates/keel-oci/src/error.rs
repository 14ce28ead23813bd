//! The crate's error type: one variant per failed operation.

use std::path::PathBuf;

/// Everything that can fail in the image store.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("invalid digest {0:?}: expected sha256:<64 hex digits>")]
    InvalidDigest(String),
    #[error("invalid reference format {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("blob {0} is not in the store")]
    BlobMissing(String),
    #[error("no such image: {0}")]
    ImageNotFound(String),
    #[error("{reference} is ambiguous: it matches {count} images")]
    AmbiguousImage { reference: String, count: usize },
    #[error("malformed {what}: {reason}")]
    Malformed { what: String, reason: String },
    #[error("unsupported media type {media_type:?} for {what}")]
    UnsupportedMediaType { what: String, media_type: String },
    #[error("archive is truncated or corrupt: {}", printable(.0))]
    CorruptArchive(String),
    #[error(
        "conflict: unable to delete {image} (must be forced): image is referenced in multiple repositories"
    )]
    MultipleTags { image: String },
    #[error("conflict: unable to remove {image}: image is in use by container {container}")]
    InUse { image: String, container: String },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("registry {registry}")]
    Registry {
        registry: String,
        #[source]
        source: RegistryError,
    },
    #[error(transparent)]
    Layer(#[from] crate::layer::LayerError),
    /// A layer that unpacking would refuse (an entry leading out of the
    /// root, a malformed entry): it is never stored.
    #[error("refusing layer {layer}")]
    LayerRefused {
        layer: String,
        #[source]
        source: crate::layer::LayerError,
    },
}

impl OciError {
    /// The error for a layer [`crate::layer::check_layer`] did not pass:
    /// an unreadable tar is corrupt, anything else is refused.
    pub(crate) fn from_check(layer: &str, e: crate::layer::LayerError) -> Self {
        match e {
            crate::layer::LayerError::Read(e) => {
                OciError::CorruptArchive(format!("layer {layer}: {e}"))
            }
            source => OciError::LayerRefused {
                layer: layer.to_string(),
                source,
            },
        }
    }
}

/// How a registry request failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Client(#[from] oci_client::errors::OciDistributionError),
    #[error("reading a blob")]
    Read(#[from] std::io::Error),
    #[error("no manifest for linux/{0} in the index")]
    NoPlatform(String),
    #[error("bad media type {0}")]
    BadMediaType(String),
    #[error("deleting {what}: {reason}")]
    Delete { what: String, reason: String },
}

impl RegistryError {
    /// The registry could not be reached (nothing listening, no route, a
    /// TLS-less registry spoken to over TLS).
    pub fn is_unreachable(&self) -> bool {
        use oci_client::errors::OciDistributionError as E;
        matches!(self, RegistryError::Client(E::RequestError(e)) if e.is_connect() || e.is_request() || e.is_timeout())
    }

    /// The registry wants (other) credentials.
    pub fn is_unauthorized(&self) -> bool {
        use oci_client::errors::{OciDistributionError as E, OciErrorCode};
        match self {
            RegistryError::Client(E::AuthenticationFailure(_) | E::UnauthorizedError { .. }) => {
                true
            }
            RegistryError::Client(E::ServerError { code, .. }) => *code == 401,
            RegistryError::Client(E::RequestError(e)) => e.status().is_some_and(|s| s == 401),
            RegistryError::Client(E::RegistryError { envelope, .. }) => envelope
                .errors
                .iter()
                .any(|e| e.code == OciErrorCode::Unauthorized),
            _ => false,
        }
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = OciError> = std::result::Result<T, E>;

/// Attaches the operation and path to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn io(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn io(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| OciError::Io {
            op,
            path: path.into(),
            source,
        })
    }
}

/// `s` with control characters escaped: a garbage archive's bytes reach the
/// tar reader's message ("numeric field was not a number: ...") and must
/// not go to the terminal raw (issue 15).
fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::OciError;

    /// Issue 15: a garbage tar to `load` printed its bytes in the message.
    #[test]
    fn corrupt_archive_message_escapes_control_bytes() {
        let e = OciError::CorruptArchive("not a number: \u{c}\u{1b}[2J\0 for \n".into());
        assert_eq!(
            e.to_string(),
            "archive is truncated or corrupt: not a number: \\u{c}\\u{1b}[2J\\u{0} for \\n"
        );
    }
}
