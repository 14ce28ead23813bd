//! Finds ../shared/conformance (or `KEEL_CONFORMANCE`); missing data fails.

use std::path::PathBuf;

pub fn data_dir(sub: &str) -> PathBuf {
    let dir = std::env::var_os("KEEL_CONFORMANCE").map_or_else(
        || {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .ancestors()
                .map(|a| a.join("shared/conformance").join(sub))
                .find(|d| d.is_dir())
                .unwrap_or_else(|| PathBuf::from("../shared/conformance").join(sub))
        },
        |c| PathBuf::from(c).join(sub),
    );
    assert!(
        dir.is_dir(),
        "conformance data missing at {} (the repo must sit beside shared/, or set KEEL_CONFORMANCE)",
        dir.display()
    );
    dir
}
