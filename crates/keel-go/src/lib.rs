//! Go- and Docker-compatible primitives that several keel crates need, each
//! written once and checked against Go itself (`tests/differential.rs` runs
//! the same inputs, proptest-generated ones included, through a Go program):
//!
//! - [`duration`][]: `time.ParseDuration` and `time.Duration.String`;
//! - [`units`][]: docker's go-units sizes (`RAMInBytes`, `FromHumanSize`,
//!   `HumanSize`, `BytesSize`, `HumanDuration`);
//! - [`path`][]: `path.Clean`;
//! - [`strconv`][]: `strconv.Quote` and friends, `IsPrint`, `ParseFloat` and
//!   `%.Ng`;
//! - [`slog`][]: lines of `log/slog`'s text handler, as Helm 4 logs.
//!
//! Written by hand because no crate reproduces Go's exact grammars, error
//! texts and formatting (Rust's own float parser is used for decimal
//! digits). Callers keep their own policy (trimming, plain seconds,
//! rounding, error wording) on top. Depends on `thiserror` only, so that
//! pure parsers can use it.

pub mod duration;
mod isprint;
pub mod path;
pub mod slog;
pub mod strconv;
pub mod units;

pub use duration::{DurationError, format_duration, parse_duration};
pub use strconv::{quote, quote_bytes};
pub use units::{SizeError, from_human_size, human_size, ram_in_bytes};

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,24}", b in proptest::collection::vec(any::<u8>(), 0..24)) {
            let _ = crate::parse_duration(&s);
            let _ = crate::ram_in_bytes(&s);
            let _ = crate::from_human_size(&s);
            let _ = crate::strconv::parse_float(&s);
            let _ = crate::path::clean(&s);
            let _ = crate::quote_bytes(&b);
        }
    }
}
