//! Root module input values, in terraform's order of precedence (later
//! wins): `TF_VAR_*`, `terraform.tfvars(.json)`, `*.auto.tfvars(.json)` in
//! name order, then `-var-file` and `-var` in command-line order.

use std::collections::BTreeMap;
use std::path::Path;

use keel_hcl::{Diagnostics, Type, Value};
use keel_infra::config::{Module, const_value};

/// A `-var`/`TF_VAR_` value: literal for primitive types, HCL otherwise.
fn raw_value(m: &Module, name: &str, raw: &str, origin: &str) -> Result<Value, Diagnostics> {
    let ty = m
        .variables
        .get(name)
        .map_or(Type::Dynamic, |v| v.ty.clone());
    if ty.is_primitive() {
        return Ok(Value::string(raw));
    }
    let e = keel_hcl::syntax::parse_expr(origin, raw)?;
    const_value(&e)
}

fn file_values(path: &Path, name: &str) -> Result<BTreeMap<String, Value>, Diagnostics> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostics::error(
            "Failed to read variables file",
            format!("Given variables file {name} does not exist: {e}."),
            None,
        )
    })?;
    let mut out = BTreeMap::new();
    if Path::new(name)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
    {
        let j: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            Diagnostics::error(
                "Failed to read variables file",
                format!("{name}: {e}"),
                None,
            )
        })?;
        for (k, v) in j.as_object().into_iter().flatten() {
            out.insert(k.clone(), keel_hcl::json::json_to_value(v));
        }
        return Ok(out);
    }
    let body = keel_hcl::syntax::parse_body(name, &text)?;
    for (k, a) in keel_hcl::syntax::just_attributes(&body)? {
        out.insert(k, const_value(&a.expr)?);
    }
    Ok(out)
}

pub(super) fn collect(
    dir: &Path,
    m: &Module,
    var_files: &[String],
    vars: &[String],
) -> Result<BTreeMap<String, Value>, Diagnostics> {
    let mut out = BTreeMap::new();
    for (k, v) in std::env::vars() {
        if let Some(name) = k.strip_prefix("TF_VAR_")
            && m.variables.contains_key(name)
        {
            out.insert(name.to_string(), raw_value(m, name, &v, &k)?);
        }
    }
    let mut auto: Vec<String> = Vec::new();
    for base in ["terraform.tfvars", "terraform.tfvars.json"] {
        if dir.join(base).is_file() {
            auto.push(base.to_string());
        }
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        let mut more: Vec<String> = rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".auto.tfvars") || n.ends_with(".auto.tfvars.json"))
            .collect();
        more.sort();
        auto.extend(more);
    }
    for f in auto.iter().chain(var_files) {
        for (k, v) in file_values(&dir.join(f), f)? {
            if !m.variables.contains_key(&k) {
                // Terraform warns for files and errors for -var; keel warns on stderr.
                eprintln!(
                    "\nWarning: Value for undeclared variable\n\nThe root module does not declare a variable named {k:?} but a value was found in file {f:?}."
                );
                continue;
            }
            out.insert(k, v);
        }
    }
    for kv in vars {
        let Some((k, v)) = kv.split_once('=') else {
            return Err(Diagnostics::error(
                "Invalid -var option",
                format!(
                    "The given -var option {kv:?} is not correctly specified. Must be a variable name and value separated by an equals sign, like -var=\"key=value\"."
                ),
                None,
            ));
        };
        if !m.variables.contains_key(k) {
            return Err(Diagnostics::error(
                "Value for undeclared variable",
                format!(
                    "A variable named {k:?} was assigned on the command line, but the root module does not declare a variable of that name. To use this value, add a \"variable\" block to the configuration."
                ),
                None,
            ));
        }
        out.insert(
            k.to_string(),
            raw_value(m, k, v, "<value for var.".to_string().as_str())?,
        );
    }
    Ok(out)
}
