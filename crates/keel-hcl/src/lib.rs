//! keel-hcl: the Terraform language without Terraform. Parses HCL's native
//! syntax (through hcl-edit, which keeps source spans and the full expression
//! grammar) and JSON syntax into one [`syntax::Body`] tree; evaluates
//! expressions over cty's value model ([`value::Value`]: typed nulls, unknown
//! values, `sensitive` marks, 512-bit [`num::Number`]s) with cty's conversion
//! and unification rules; provides Terraform 1.11's built-in functions
//! ([`funcs::Functions`]); renders values as `terraform console` does and
//! errors as terraform's diagnostics ([`diag`]).
//!
//! Written by hand where no crate matches cty: hcl-rs's own evaluator has no
//! unknown values, marks or cty's conversion rules, and Go's `big.Float`
//! arithmetic (which decides how `1/3` prints) has no Rust counterpart.
//! Pure: no I/O except the file functions (`file`, `templatefile`, ...),
//! which read below the directory the caller names.

// Numeric and evaluator code reads best with short names (a, b, x, y); value
// operations return new values that are obviously used; repeated match arms
// mirror terraform's cases one by one.
#![allow(
    clippy::many_single_char_names,
    clippy::return_self_not_must_use,
    clippy::match_same_arms,
    clippy::format_push_string
)]

pub mod console;
pub mod convert;
pub mod diag;
pub mod eval;
pub mod fmt;
pub mod funcs;
pub mod json;
pub mod num;
pub mod render;
pub mod syntax;
pub mod typeexpr;
pub mod value;

pub use diag::{Diagnostic, Diagnostics, Pos, Range, Severity, Sources};
pub use eval::{Scope, eval};
pub use funcs::Functions;
pub use num::Number;
pub use syntax::{Attribute, Block, Body, Expr};
pub use value::{Kind, Type, Value};
