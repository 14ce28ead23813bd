//! What keel-infra's integration tests share: where the peer data is.

use std::path::{Path, PathBuf};

/// `../shared/conformance/SUB` (or `$KEEL_CONFORMANCE/SUB`).
pub fn data_dir(sub: &str) -> PathBuf {
    let dir = std::env::var_os("KEEL_CONFORMANCE").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .ancestors()
                .map(|a| a.join("shared/conformance").join(sub))
                .find(|d| d.is_dir())
                .unwrap_or_else(|| PathBuf::from("../shared/conformance").join(sub))
        },
        |c| PathBuf::from(c).join(sub),
    );
    assert!(
        dir.is_dir(),
        "conformance data missing at {} (set KEEL_CONFORMANCE)",
        dir.display()
    );
    dir
}
