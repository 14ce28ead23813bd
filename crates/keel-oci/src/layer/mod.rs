//! Layers to root filesystems and back.
//!
//! [`apply_layer`] unpacks an (uncompressed) layer tar into a directory,
//! honouring whiteouts in one of two [`WhiteoutMode`]s, and refuses every
//! entry that would leave that directory. [`diff_to_layer`] is the reverse: a
//! directory (an overlayfs upper dir or a plain tree) to a deterministic layer
//! tar. [`Snapshots`] is the per-chain cache of unpacked layers used as
//! overlayfs lowerdirs; [`prepare_snapshot`] readies a tree that is about to
//! be diffed so that it can become that layer's snapshot as it is
//! ([`Snapshots::adopt`]). [`decompressed`] sniffs gzip/zstd.
//! [`check_layer`] (and [`LayerChecker`] for bytes arriving in pieces) is the
//! gate every layer passes before it is stored: it refuses, without writing
//! anything, every entry that unpacking would refuse, so a hostile layer
//! never enters the store; [`diff_to_layer`] runs the same check on what it
//! writes.

mod adopt;
mod apply;
mod check;
mod compression;
mod diff;
mod entries;
mod safepath;
mod snapshot;

use std::io;
use std::path::PathBuf;

pub use adopt::prepare_snapshot;
pub use apply::{ApplyStats, WhiteoutMode, apply_layer};
pub use check::{CheckedLayer, LayerChecker, check_layer};
pub use compression::{Compression, decompressed};
pub use diff::{DiffStats, diff_to_layer, diff_to_layer_except};
pub use snapshot::{SnapshotInfo, Snapshots};

/// Prefix of a whiteout entry's base name (`.wh.name` hides `name`).
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Base name of the opaque-directory marker entry.
pub const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";
/// Overlayfs xattr marking an opaque directory (value `y`).
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// Same marker when overlayfs is mounted with `userxattr` (rootless).
pub const OVERLAY_OPAQUE_USER_XATTR: &str = "user.overlay.opaque";

/// Everything that can go wrong while applying, diffing or caching layers.
/// Entry names are shown as they appear in the tar.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("reading layer tar")]
    Read(#[source] io::Error),
    #[error("layer entry {entry:?} climbs out of the root with `..`")]
    EscapesRoot { entry: String },
    #[error(
        "layer entry {entry:?} would be written through symlink {link:?}, which points outside the root"
    )]
    SymlinkEscape { entry: String, link: String },
    #[error("hardlink entry {entry:?} points to {target:?}, outside the root")]
    HardlinkEscape { entry: String, target: String },
    #[error("hardlink entry {entry:?} points to {target:?}, which does not exist in the layer")]
    HardlinkTargetMissing { entry: String, target: String },
    #[error("layer entry {entry:?}: too many levels of symbolic links")]
    SymlinkLoop { entry: String },
    #[error("layer entry {entry:?}: parent {parent:?} exists and is not a directory")]
    NotADirectory { entry: String, parent: String },
    #[error("layer entry {entry:?} has unsupported type {kind:?}")]
    UnsupportedType { entry: String, kind: String },
    #[error("layer entry {entry:?} is not a valid whiteout")]
    InvalidWhiteout { entry: String },
    #[error("layer entry {entry:?} replaces the root directory with a non-directory")]
    RootNotDirectory { entry: String },
    #[error("layer entry {entry:?} has no link target")]
    MissingLinkName { entry: String },
    #[error("looking up the path of layer entry {entry:?}")]
    Resolve {
        entry: String,
        #[source]
        source: io::Error,
    },
    #[error("writing layer entry {entry:?}")]
    Write {
        entry: String,
        #[source]
        source: io::Error,
    },
    #[error("removing existing {path} for layer entry {entry:?}")]
    Remove {
        entry: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("setting owner, mode, xattrs or times of layer entry {entry:?}")]
    Metadata {
        entry: String,
        #[source]
        source: io::Error,
    },
    #[error("reading {path} for the layer diff")]
    DiffRead {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path} carries overlayfs {feature} state, which a layer cannot represent (mount the overlay with redirect_dir=off,metacopy=off)"
    )]
    OverlayFeature { path: PathBuf, feature: String },
    #[error("writing layer tar")]
    TarWrite(#[source] io::Error),
    #[error("invalid digest {0:?} (want sha256:<64 hex digits>)")]
    InvalidDigest(String),
    #[error("layer content does not match its diff id: expected {expected}, got {actual}")]
    DiffIdMismatch { expected: String, actual: String },
    #[error("opening layer for snapshot {chain_id}")]
    OpenLayer {
        chain_id: String,
        #[source]
        source: io::Error,
    },
    #[error("creating snapshot directory {path}")]
    CreateSnapshot {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("committing snapshot {path}")]
    CommitSnapshot {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("listing snapshots in {path}")]
    ListSnapshots {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("removing snapshot {path}")]
    RemoveSnapshot {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("snapshot for chain {0} does not exist")]
    NoSuchSnapshot(String),
}

/// Lowercase hex of a byte slice (digests).
pub(crate) fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// The 64 hex digits of a `sha256:` digest, or `None` when malformed.
pub(crate) fn sha256_hex(digest: &str) -> Option<&str> {
    let h = digest.strip_prefix("sha256:")?;
    (h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(h)
}
