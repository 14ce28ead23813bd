//! `keel rollout lint -f FILE`: Argo's validation of every Rollout in a
//! file and of the Services it names there, printed as the plugin prints
//! it (each problem's body on stdout, the first one as `Error: …` on
//! stderr), exit status 1 on any problem.

use std::process::ExitCode;

use keel_controllers::rollout_validate::{FieldError, check_fields, validate, validate_services};
use serde::Deserialize as _;
use serde_json::Value as J;

fn fail(msg: &str) -> ExitCode {
    eprintln!("Error: {msg}");
    ExitCode::FAILURE
}

/// The YAML (or JSON) documents of `text`, empty ones left out.
fn documents(text: &str) -> Result<Vec<J>, String> {
    let mut out = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let v = J::deserialize(doc).map_err(|e| e.to_string())?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

fn group(v: &J) -> &str {
    let av = v["apiVersion"].as_str().unwrap_or_default();
    av.split_once('/').map_or("", |(g, _)| g)
}

/// The problems in `text`, as Argo's lint finds them: `Err` for a file it
/// cannot decode, else every validation error (empty when valid).
///
/// # Errors
/// A document that is not YAML, or a Rollout with a field Argo does not know.
pub fn problems(text: &str) -> Result<Vec<FieldError>, String> {
    let mut rollouts = Vec::new();
    let mut services = Vec::new();
    for d in documents(text)? {
        if group(&d) == "argoproj.io" && d["kind"] == "Rollout" {
            check_fields(&d)?;
            rollouts.push(d);
        } else if group(&d).is_empty() && d["kind"] == "Service" {
            services.push(d);
        }
    }
    let mut errs = Vec::new();
    for ro in &rollouts {
        errs.extend(validate(ro));
        errs.extend(validate_services(ro, &services));
    }
    Ok(errs)
}

/// Runs the lint of `path`.
#[must_use]
pub fn run(path: &str) -> ExitCode {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return fail(&format!("open {path}: {e}")),
    };
    let errs = match problems(&text) {
        Ok(e) => e,
        Err(e) => return fail(&e),
    };
    for e in &errs {
        println!("{}", e.body());
    }
    match errs.first() {
        Some(e) => fail(&e.to_string()),
        None => ExitCode::SUCCESS,
    }
}
