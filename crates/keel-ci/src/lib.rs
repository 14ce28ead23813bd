//! keel's pipelines: GitHub Actions workflow files run locally.
//!
//! - [`expr`]: `${{ }}` expressions (values, coercions, functions) as GitHub
//!   evaluates them.
//! - [`matrix`], [`filters`]: strategy expansion and `on` trigger filters.
//! - [`mask`]: secret masking; [`commands`]: `::cmd::` lines and env files.
//! - [`run`]: the executor (jobs on threads along the needs graph, steps on
//!   the host or in job containers driven through the keel binary).
//! - [`yaml`] → [`template`] (schema validation against [`schema`], GitHub's
//!   messages) → [`workflow`] (the model: events, jobs, steps, needs graph)
//!   → [`reusable`] (called workflows loaded and checked: inputs, secrets,
//!   permissions, nesting and job limits).
//!
//! Parsers here do no I/O beyond what they are handed and never panic on
//! input; errors carry `file (Line: L, Col: C)` as GitHub prints them.
//! Written by hand because no crate implements GitHub's workflow language
//! (the schema-driven reader, its messages, the expression semantics).

pub mod commands;
pub mod expr;
pub mod filters;
pub mod mask;
pub mod matrix;
pub mod reusable;
pub mod run;
pub mod schema;
pub mod template;
pub mod workflow;
pub mod yaml;
