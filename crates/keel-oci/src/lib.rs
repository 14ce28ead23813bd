//! keel's image store: a content-addressed blob store under the keel root
//! ([`BlobStore`]), images and tags ([`ImageStore`], [`Image`]), Docker-style
//! references ([`Reference`]), archive load/save ([`archive`]), import of root
//! filesystems ([`import`]), the registry client ([`registry`]), layer
//! apply/diff, the snapshot cache and the check every layer passes before it
//! is stored ([`layer`]), and the offline busybox base image ([`busybox`]).

pub mod archive;
pub mod artifact;
pub mod blobs;
pub mod busybox;
pub mod digest;
pub mod error;
pub mod image;
pub mod import;
pub mod layer;
pub mod reference;
pub mod registry;
pub mod store;

pub use blobs::BlobStore;
pub use digest::Digest;
pub use error::{OciError, RegistryError, Result};
pub use image::Image;
pub use reference::Reference;
pub use store::{DirLayer, ImageStore, ImageSummary, PruneReport, RemoveEvent};
