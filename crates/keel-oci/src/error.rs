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
    #[error("archive is truncated or corrupt: {0}")]
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
    #[error("registry {registry}: {message}")]
    Registry { registry: String, message: String },
    #[error(transparent)]
    Layer(#[from] crate::layer::LayerError),
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
