//! keel's image store: a content-addressed blob store under the keel root
//! ([`BlobStore`]), images and tags ([`ImageStore`], [`Image`]), Docker-style
//! references ([`Reference`]), archive load/save ([`archive`]), import of root
//! filesystems ([`import`]), the registry client ([`registry`]) and layer
//! apply/diff into snapshots ([`layer`]).

pub mod archive;
pub mod blobs;
pub mod digest;
pub mod error;
pub mod image;
pub mod layer;
pub mod reference;
pub mod store;

pub use blobs::BlobStore;
pub use digest::Digest;
pub use error::{OciError, Result};
pub use image::Image;
pub use reference::Reference;
pub use store::{ImageStore, ImageSummary, PruneReport, RemoveEvent};
pub mod registry;
pub mod import;
