//! keel-infra: Terraform configurations planned and applied by keel.
//! [`config`] loads modules (HCL through keel-hcl), [`graph`] orders
//! variables, locals, outputs, resources and module calls and walks them in
//! parallel, [`plan`] and [`apply`] compute and carry out changes through the
//! built-in [`providers`] (`terraform_data`, null, random, local, time, http,
//! external, archive, tls), [`state`] reads and writes state format v4 (atomic
//! writes, a backup, a per-resource journal), [`backend`] holds the local
//! backend with terraform's lock, [`backend_http`] and [`backend_k8s`]
//! terraform's http and kubernetes backends, [`render`] prints plans as
//! terraform does and [`plan_json`] gives them in terraform's JSON format.

// Renderers build text with format!; the walk's closures and results carry
// whole diagnostics lists; short names in address arithmetic read best.
#![allow(
    clippy::format_push_string,
    clippy::result_large_err,
    clippy::type_complexity,
    clippy::many_single_char_names,
    clippy::return_self_not_must_use,
    clippy::match_same_arms
)]

pub mod addr;
pub mod apply;
pub mod backend;
pub mod backend_http;
pub mod backend_k8s;
pub mod config;
pub mod graph;
pub mod http;
pub mod kubeconfig;
pub mod plan;
pub mod plan_json;
pub mod provider_config;
pub mod providers;
pub mod render;
pub mod scope;
pub mod state;
pub mod validate;
