//! keel's image store: a content-addressed blob store under the keel root, OCI
//! image manifests/indexes/configs, image references, archive import/export,
//! the registry client and layer apply/diff into snapshots.

pub mod busybox;
pub mod layer;
