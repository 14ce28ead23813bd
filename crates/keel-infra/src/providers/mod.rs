//! Built-in providers (`terraform_data`, null, random, local, time, http,
//! external, archive, tls, kubernetes' `kubernetes_manifest`). Each resource type has a schema (attribute types,
//! required/optional/computed, sensitive, forces replacement) and the CRUD
//! operations; planning is shared ([`plan_generic`]) with per-type hooks, as
//! terraform's plugin SDK does it for `HashiCorp`'s providers.

pub mod builtin;
pub mod docker;
mod kubernetes;
mod kubernetes_typed;
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
    /// The plugin SDK's `Default`: the value planned when the configuration leaves it unset.
    pub default: Option<Value>,
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
            default: None,
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
    /// An optional attribute with the SDK's `Default`.
    pub fn with_default(mut self, v: Value) -> Attr {
        self.optional = true;
        self.default = Some(v);
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
    /// Optional+computed (the SDK's `Computed` blocks): left out of the
    /// configuration, the prior value stays.
    pub computed: bool,
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
                computed: false,
            },
        );
        self
    }

    /// A nested block whose change forces replacement (`computed`: see [`NestedBlock`]).
    pub fn block_new(
        mut self,
        name: &str,
        nesting: Nesting,
        block: Schema,
        computed: bool,
    ) -> Schema {
        self.blocks.insert(
            name.to_string(),
            NestedBlock {
                nesting,
                block,
                force_new: true,
                computed,
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
    /// The evaluated `provider` block of the resource's provider, if there is one.
    pub provider: Option<Value>,
}

impl OpCtx {
    /// The context for a resource of type `ty` (its provider's local name
    /// unless `name` says otherwise) with provider alias `alias`.
    pub fn for_resource(
        run: &crate::scope::RunInfo,
        ty: &str,
        name: Option<&str>,
        alias: Option<&str>,
    ) -> OpCtx {
        let local = name.unwrap_or_else(|| {
            if ty == "terraform_data" {
                "terraform"
            } else {
                ty.split('_').next().unwrap_or(ty)
            }
        });
        OpCtx {
            cwd: run.cwd.clone(),
            provider: run
                .provider_configs
                .get(&crate::provider_config::key(local, alias))
                .cloned(),
        }
    }

    /// The context for a change whose provider address is `addr`
    /// (`provider["registry.terraform.io/hashicorp/kubernetes"].west`).
    pub fn for_change(run: &crate::scope::RunInfo, ty: &str, addr: &str) -> OpCtx {
        let alias = addr.rsplit_once("\"].").map(|(_, a)| a);
        OpCtx::for_resource(run, ty, None, alias)
    }
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
            docker::docker_with(None),
        ] {
            by_name.insert(local_name(p.address), p);
        }
        Providers { by_name }
    }

    /// The docker provider on the engine `factory` opens.
    pub fn with_docker_engine(mut self, factory: docker::EngineFactory) -> Providers {
        let p = docker::docker_with(Some(factory));
        self.by_name.insert(local_name(p.address), p);
        self
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

/// The generic plan of the plugin SDK: configured values win, then the
/// schema's defaults; computed attributes left unset keep their prior value
/// (or become unknown on create or replacement), in nested blocks too; a
/// changed force-new attribute or block means replacement.
pub fn plan_generic(schema: &Schema, prior: Option<&Value>, config: &Value) -> Planned {
    let value = plan_object(schema, prior, config);
    let Some(prior) = prior else {
        return Planned {
            value,
            requires_replace: Vec::new(),
        };
    };
    let mut replace = Vec::new();
    let old = prior.as_map().cloned().unwrap_or_default();
    let new = value.as_map().cloned().unwrap_or_default();
    let differs = |k: &str| {
        let n = new.get(k).cloned().unwrap_or_else(Value::dyn_null);
        let p = old.get(k).cloned().unwrap_or_else(Value::dyn_null);
        let empty = |v: &Value| v.is_null() || v.len() == Some(0);
        !(empty(&n) && empty(&p)) && n.equals(&p) != Some(true)
    };
    for (k, a) in &schema.attrs {
        if a.force_new && differs(k) {
            replace.push(k.clone());
        }
    }
    for (k, b) in &schema.blocks {
        if b.force_new && differs(k) {
            replace.push(k.clone());
        }
    }
    if replace.is_empty() {
        Planned {
            value,
            requires_replace: replace,
        }
    } else {
        Planned {
            value: plan_object(schema, None, config),
            requires_replace: replace,
        }
    }
}

/// One object of `schema`: configured values, defaults, computed values
/// from `prior` (unknown without one).
fn plan_object(schema: &Schema, prior: Option<&Value>, config: &Value) -> Value {
    let cfg = config.as_map().cloned().unwrap_or_default();
    let old = prior.and_then(Value::as_map).cloned().unwrap_or_default();
    let mut out = BTreeMap::new();
    for (k, a) in &schema.attrs {
        let c = cfg
            .get(k)
            .cloned()
            .unwrap_or_else(|| Value::null(a.ty.clone()));
        let v = if !c.is_null() {
            c
        } else if let Some(d) = &a.default {
            d.clone()
        } else if !a.computed {
            c
        } else if prior.is_some() {
            old.get(k)
                .cloned()
                .unwrap_or_else(|| Value::unknown(a.ty.clone()))
        } else {
            Value::unknown(a.ty.clone())
        };
        out.insert(k.clone(), v.mark(a.sensitive));
    }
    for (k, b) in &schema.blocks {
        let c = cfg.get(k).cloned().unwrap_or_else(Value::dyn_null);
        let p = old.get(k);
        let unset = c.is_null() || c.len() == Some(0);
        let v = if unset && b.computed && p.is_some() {
            p.cloned().unwrap_or_else(Value::dyn_null)
        } else {
            plan_block(b, p, &c)
        };
        out.insert(k.clone(), v);
    }
    Value::object(out)
}

fn plan_block(b: &NestedBlock, prior: Option<&Value>, config: &Value) -> Value {
    let plain = b
        .block
        .attrs
        .values()
        .all(|a| a.default.is_none() && !a.computed)
        && b.block.blocks.is_empty();
    if plain || config.is_null() || !config.is_known() {
        return config.clone();
    }
    let t = b.block.implied_type();
    match (&config.kind, b.nesting) {
        (Kind::Object(_), _) => plan_object(&b.block, prior, config),
        (Kind::List(_, items), _) => {
            let olds = prior.and_then(Value::as_seq).unwrap_or_default();
            let items = items
                .iter()
                .enumerate()
                .map(|(i, x)| plan_object(&b.block, olds.get(i), x))
                .collect();
            Value::list(t, items)
        }
        (Kind::Set(_, items), _) => {
            let items = items
                .iter()
                .map(|x| plan_object(&b.block, None, x))
                .collect();
            Value::set(t, items)
        }
        _ => config.clone(),
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
