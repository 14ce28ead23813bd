//! Built-in providers (`terraform_data`, null, random, local, time, http,
//! external, archive, tls, kubernetes' `kubernetes_manifest`). Each resource type has a schema (attribute types,
//! required/optional/computed, sensitive, forces replacement) and the CRUD
//! operations; planning is shared ([`plan_generic`]) with per-type hooks, as
//! terraform's plugin SDK does it for `HashiCorp`'s providers.

pub mod builtin;
mod kubernetes;
mod misc;
mod random;
mod tls;

use std::collections::BTreeMap;
use std::sync::Arc;

use keel_hcl::{Kind, Type, Value};

pub use builtin::TerraformData;

/// One attribute of a schema.
#[derive(Clone, Debug)]
pub struct Attr {
    pub ty: Type,
    pub required: bool,
    pub optional: bool,
    pub computed: bool,
    pub sensitive: bool,
    pub force_new: bool,
}

impl Default for Attr {
    fn default() -> Self {
        Attr {
            ty: Type::Dynamic,
            required: false,
            optional: false,
            computed: false,
            sensitive: false,
            force_new: false,
        }
    }
}

impl Attr {
    pub fn required(ty: Type) -> Attr {
        Attr {
            ty,
            required: true,
            ..Attr::default()
        }
    }
    pub fn optional(ty: Type) -> Attr {
        Attr {
            ty,
            optional: true,
            ..Attr::default()
        }
    }
    pub fn computed(ty: Type) -> Attr {
        Attr {
            ty,
            computed: true,
            ..Attr::default()
        }
    }
    pub fn opt_computed(ty: Type) -> Attr {
        Attr {
            ty,
            optional: true,
            computed: true,
            ..Attr::default()
        }
    }
    pub fn force_new(mut self) -> Attr {
        self.force_new = true;
        self
    }
    pub fn sensitive(mut self) -> Attr {
        self.sensitive = true;
        self
    }
}

/// How a nested block type repeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nesting {
    Single,
    List,
    Set,
}

/// A nested block type.
#[derive(Clone, Debug)]
pub struct NestedBlock {
    pub nesting: Nesting,
    pub block: Schema,
    pub force_new: bool,
}

/// A resource or data source schema.
#[derive(Clone, Debug, Default)]
pub struct Schema {
    pub attrs: BTreeMap<String, Attr>,
    pub blocks: BTreeMap<String, NestedBlock>,
}

impl Schema {
    pub fn attr(mut self, name: &str, a: Attr) -> Schema {
        self.attrs.insert(name.to_string(), a);
        self
    }

    pub fn block(mut self, name: &str, nesting: Nesting, block: Schema) -> Schema {
        self.blocks.insert(
            name.to_string(),
            NestedBlock {
                nesting,
                block,
                force_new: false,
            },
        );
        self
    }

    /// The object type values of this schema have.
    pub fn implied_type(&self) -> Type {
        let mut m: BTreeMap<String, Type> = self
            .attrs
            .iter()
            .map(|(k, a)| (k.clone(), a.ty.clone()))
            .collect();
        for (k, b) in &self.blocks {
            let t = b.block.implied_type();
            m.insert(
                k.clone(),
                match b.nesting {
                    Nesting::Single => t,
                    Nesting::List => Type::list(t),
                    Nesting::Set => Type::set(t),
                },
            );
        }
        Type::Object(m)
    }

    /// Attribute paths marked sensitive (top level only, as state records them).
    pub fn sensitive_attrs(&self) -> Vec<String> {
        self.attrs
            .iter()
            .filter(|(_, a)| a.sensitive)
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// What planning decided for one instance.
#[derive(Clone, Debug)]
pub struct Planned {
    pub value: Value,
    /// Attributes whose change forces replacement.
    pub requires_replace: Vec<String>,
}

/// Context for operations that touch the outside world.
#[derive(Clone, Debug, Default)]
pub struct OpCtx {
    /// The module's directory (`local_file` paths are relative to the working directory, as terraform's are).
    pub cwd: std::path::PathBuf,
}

/// A managed resource type.
pub trait ResourceType: Send + Sync {
    fn schema(&self) -> &Schema;
    /// Adjusts the generic plan (computed-on-update attributes, replacement rules).
    fn modify_plan(
        &self,
        _prior: Option<&Value>,
        _config: &Value,
        planned: Planned,
    ) -> Result<Planned, String> {
        Ok(planned)
    }
    /// Creates (prior None) or updates the object; returns the new state.
    fn apply(&self, prior: Option<&Value>, planned: &Value, ctx: &OpCtx) -> Result<Value, String>;
    fn delete(&self, _prior: &Value, _ctx: &OpCtx) -> Result<(), String> {
        Ok(())
    }
    /// Refresh: the object as it is now; `None` when it no longer exists.
    fn read(&self, prior: &Value, _ctx: &OpCtx) -> Result<Option<Value>, String> {
        Ok(Some(prior.clone()))
    }
    /// `terraform import`: the state of an existing object by its id.
    fn import(&self, id: &str, _ctx: &OpCtx) -> Result<Value, String> {
        Err(format!("resource type does not support import (id {id:?})"))
    }
}

/// A data source.
pub trait DataType: Send + Sync {
    fn schema(&self) -> &Schema;
    fn read(&self, config: &Value, ctx: &OpCtx) -> Result<Value, String>;
}

/// A provider: its registry address and types.
#[derive(Clone)]
pub struct Provider {
    /// e.g. `registry.terraform.io/hashicorp/random`, `terraform.io/builtin/terraform`.
    pub address: &'static str,
    pub resources: BTreeMap<&'static str, Arc<dyn ResourceType>>,
    pub data: BTreeMap<&'static str, Arc<dyn DataType>>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// All built-in providers by local name.
#[derive(Clone, Debug)]
pub struct Providers {
    pub by_name: BTreeMap<&'static str, Provider>,
}

impl Providers {
    pub fn builtin() -> Providers {
        let mut by_name = BTreeMap::new();
        for p in [
            builtin::terraform(),
            builtin::null(),
            random::random(),
            misc::local(),
            misc::time(),
            misc::http(),
            misc::external(),
            misc::archive(),
            tls::tls(),
            kubernetes::kubernetes(),
        ] {
            by_name.insert(local_name(p.address), p);
        }
        Providers { by_name }
    }

    /// The provider of a resource type: its prefix before `_` (`random_id` → random).
    pub fn for_type(&self, ty: &str) -> Option<&Provider> {
        if ty == "terraform_data" {
            return self.by_name.get("terraform");
        }
        let prefix = ty.split('_').next()?;
        self.by_name.get(prefix)
    }

    pub fn resource(&self, ty: &str) -> Option<Arc<dyn ResourceType>> {
        self.for_type(ty)?.resources.get(ty).cloned()
    }

    pub fn data(&self, ty: &str) -> Option<Arc<dyn DataType>> {
        self.for_type(ty)?.data.get(ty).cloned()
    }
}

fn local_name(address: &'static str) -> &'static str {
    address.rsplit('/').next().unwrap_or(address)
}

/// The generic plan of the plugin SDK: configured values win; computed
/// attributes left unset keep their prior value (or become unknown on create
/// or replacement); a changed force-new attribute means replacement.
pub fn plan_generic(schema: &Schema, prior: Option<&Value>, config: &Value) -> Planned {
    let attrs = |v: Option<&Value>| v.and_then(Value::as_map).cloned().unwrap_or_default();
    let cfg = attrs(Some(config));
    let old = attrs(prior);
    let mut replace = Vec::new();
    if prior.is_some() {
        for (k, a) in &schema.attrs {
            if !a.force_new {
                continue;
            }
            let c = cfg
                .get(k)
                .cloned()
                .unwrap_or_else(|| Value::null(a.ty.clone()));
            if a.computed && c.is_null() {
                continue;
            }
            let p = old
                .get(k)
                .cloned()
                .unwrap_or_else(|| Value::null(a.ty.clone()));
            if c.equals(&p) != Some(true) {
                replace.push(k.clone());
            }
        }
        for (k, b) in &schema.blocks {
            if b.force_new {
                let c = cfg.get(k).cloned().unwrap_or_else(Value::dyn_null);
                let p = old.get(k).cloned().unwrap_or_else(Value::dyn_null);
                if c.equals(&p) != Some(true) {
                    replace.push(k.clone());
                }
            }
        }
    }
    let keep_prior = prior.is_some() && replace.is_empty();
    let mut out = BTreeMap::new();
    for (k, a) in &schema.attrs {
        let c = cfg
            .get(k)
            .cloned()
            .unwrap_or_else(|| Value::null(a.ty.clone()));
        let v = if !c.is_null() || !a.computed {
            c
        } else if keep_prior {
            old.get(k)
                .cloned()
                .unwrap_or_else(|| Value::unknown(a.ty.clone()))
        } else {
            Value::unknown(a.ty.clone())
        };
        out.insert(k.clone(), v.mark(a.sensitive));
    }
    for k in schema.blocks.keys() {
        out.insert(
            k.clone(),
            cfg.get(k).cloned().unwrap_or_else(Value::dyn_null),
        );
    }
    Planned {
        value: Value::object(out),
        requires_replace: replace,
    }
}

/// Attribute `k` of an object value.
pub fn get<'a>(v: &'a Value, k: &str) -> Option<&'a Value> {
    v.as_map().and_then(|m| m.get(k)).filter(|x| !x.is_null())
}

pub fn get_str<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    get(v, k).and_then(Value::as_str)
}

pub fn get_i64(v: &Value, k: &str) -> Option<i64> {
    get(v, k)
        .and_then(Value::as_number)
        .and_then(keel_hcl::Number::to_i64)
}

pub fn get_bool(v: &Value, k: &str) -> Option<bool> {
    get(v, k).and_then(Value::as_bool)
}

/// Sets attribute `k` of an object value.
pub fn set(v: &mut Value, k: &str, x: Value) {
    if let Kind::Object(m) = &mut v.kind {
        m.insert(k.to_string(), x);
    }
}

/// Replaces unknown attributes with `f(name)`.
pub fn fill_unknown(v: &Value, mut f: impl FnMut(&str) -> Option<Value>) -> Value {
    let mut out = v.clone();
    if let Kind::Object(m) = &mut out.kind {
        for (k, x) in m.iter_mut() {
            if !x.is_known()
                && let Some(n) = f(k)
            {
                *x = n.mark(x.sensitive);
            }
        }
    }
    out
}

/// A random id as hashicorp/go-uuid prints it.
pub fn random_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}
