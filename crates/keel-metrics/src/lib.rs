//! keel's metrics store and Prometheus-compatible query API: an in-memory
//! time-series database ([`store::Store`]: append-only chunks per series, a
//! label index, a retention window and a series limit), a scraper of
//! Prometheus' text exposition format ([`scrape`], [`exposition`]), a
//! PromQL evaluator ([`eval`], [`funcs`]) on the AST of the `promql-parser`
//! crate, and Prometheus' HTTP API ([`api::handle`]) with its JSON and
//! number formatting, independent of any HTTP server.
//!
//! Written here rather than taken from a crate: Rust's PromQL engines come
//! inside whole databases (GreptimeDB, Databend) built on `DataFusion`;
//! keel needs a small store scraped every few seconds and the semantics of
//! Prometheus' own engine, which this follows rule for rule.

// PromQL compares sample values exactly and mixes i64 milliseconds with f64
// seconds, as Prometheus' engine does; its rules read best in its own short
// names (l, r, v, t); "PromQL" is a name here, not code.
#![allow(
    clippy::float_cmp,
    clippy::cast_precision_loss,
    clippy::many_single_char_names,
    clippy::doc_markdown
)]

pub mod api;
pub mod eval;
pub mod exposition;
pub mod funcs;
pub mod http;
pub mod labels;
pub mod scrape;
pub mod store;

pub use labels::Labels;
pub use store::{Options, Store};
