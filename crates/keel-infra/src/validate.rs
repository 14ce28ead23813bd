//! Static checks of resource bodies against their provider schemas, as
//! `terraform validate` does before any value is known: unsupported
//! arguments and blocks, unconfigurable attributes, missing required ones.

use keel_hcl::diag::{Diagnostic, Diagnostics};
use keel_hcl::syntax::Body;

use crate::config::{Mode, Module};
use crate::providers::{Providers, Schema};

fn check_body(b: &Body, s: &Schema, diags: &mut Diagnostics) {
    for a in &b.attributes {
        match s.attrs.get(&a.name) {
            None => {
                let hint = if s.blocks.contains_key(&a.name) { format!(" Did you mean to define a block of type {:?}?", a.name) } else { String::new() };
                diags.push(Diagnostic::error("Unsupported argument", format!("An argument named {:?} is not expected here.{hint}", a.name), Some(a.name_range.clone())));
            }
            Some(x) if x.computed && !x.optional && !x.required => diags.push(Diagnostic::error(
                "Value for unconfigurable attribute",
                format!("Can't configure a value for {:?}: its value will be decided automatically based on the result of applying this configuration.", a.name),
                Some(a.name_range.clone()),
            )),
            Some(_) => {}
        }
    }
    for (k, x) in &s.attrs {
        if x.required && b.attr(k).is_none() {
            diags.push(Diagnostic::error(
                "Missing required argument",
                format!("The argument {k:?} is required, but no definition was found."),
                Some(b.range.clone()),
            ));
        }
    }
    for blk in &b.blocks {
        let kind = if blk.kind == "dynamic" {
            blk.labels.first().cloned().unwrap_or_default()
        } else {
            blk.kind.clone()
        };
        match s.blocks.get(&kind) {
            Some(nb) if blk.kind != "dynamic" => check_body(&blk.body, &nb.block, diags),
            Some(_) => {}
            None => diags.push(Diagnostic::error(
                "Unsupported block type",
                format!("Blocks of type {kind:?} are not expected here."),
                Some(blk.type_range.clone()),
            )),
        }
    }
}

/// Checks every resource and data source of `m` and its children.
pub fn validate(m: &Module, providers: &Providers) -> Diagnostics {
    let mut diags = Diagnostics::new();
    for r in m.resources.values() {
        let schema = match r.mode {
            Mode::Managed => providers.resource(&r.ty).map(|t| t.schema().clone()),
            Mode::Data => providers.data(&r.ty).map(|t| t.schema().clone()),
        };
        if let Some(s) = schema {
            check_body(&r.body, &s, &mut diags);
        }
    }
    for c in m.calls.values() {
        diags.extend(validate(&c.module, providers));
    }
    diags
}
