//! `terraform_data` (terraform's own built-in provider) and `HashiCorp`'s
//! `null` provider.

use std::collections::BTreeMap;
use std::sync::Arc;

use keel_hcl::{Type, Value};

use super::{
    Attr, OpCtx, Planned, Provider, ResourceType, Schema, fill_unknown, get, plan_generic,
    random_uuid,
};

/// `terraform_data`: stores `input`, mirrors it to `output`, replaced when
/// `triggers_replace` changes.
pub struct TerraformData {
    schema: Schema,
}

impl TerraformData {
    pub fn new() -> Self {
        TerraformData {
            schema: Schema::default()
                .attr("id", Attr::computed(Type::String))
                .attr("input", Attr::optional(Type::Dynamic))
                .attr("output", Attr::computed(Type::Dynamic))
                .attr("triggers_replace", Attr::optional(Type::Dynamic)),
        }
    }
}

impl Default for TerraformData {
    fn default() -> Self {
        Self::new()
    }
}

impl ResourceType for TerraformData {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    fn modify_plan(
        &self,
        prior: Option<&Value>,
        config: &Value,
        mut p: Planned,
    ) -> Result<Planned, String> {
        let input = get(config, "input")
            .cloned()
            .unwrap_or_else(Value::dyn_null);
        if let Some(prior) = prior {
            let old_trig = get(prior, "triggers_replace")
                .cloned()
                .unwrap_or_else(Value::dyn_null);
            let new_trig = get(config, "triggers_replace")
                .cloned()
                .unwrap_or_else(Value::dyn_null);
            if old_trig.equals(&new_trig) != Some(true) {
                p.requires_replace.push("triggers_replace".into());
            }
            let old_in = get(prior, "input").cloned().unwrap_or_else(Value::dyn_null);
            let replacing = !p.requires_replace.is_empty();
            if replacing {
                super::set(&mut p.value, "id", Value::unknown(Type::String));
            }
            if replacing || old_in.equals(&input) != Some(true) {
                super::set(&mut p.value, "output", Value::unknown(input.ty()));
            } else {
                super::set(
                    &mut p.value,
                    "output",
                    get(prior, "output")
                        .cloned()
                        .unwrap_or_else(Value::dyn_null),
                );
            }
        } else {
            super::set(&mut p.value, "output", Value::unknown(input.ty()));
        }
        Ok(p)
    }

    fn apply(
        &self,
        _prior: Option<&Value>,
        planned: &Value,
        _ctx: &OpCtx,
    ) -> Result<Value, String> {
        let input = get(planned, "input")
            .cloned()
            .unwrap_or_else(Value::dyn_null);
        Ok(fill_unknown(planned, |k| match k {
            "id" => Some(Value::string(random_uuid())),
            "output" => Some(input.clone()),
            _ => None,
        }))
    }

    fn import(&self, id: &str, _ctx: &OpCtx) -> Result<Value, String> {
        Ok(Value::object(BTreeMap::from([
            ("id".into(), Value::string(id)),
            ("input".into(), Value::dyn_null()),
            ("output".into(), Value::dyn_null()),
            ("triggers_replace".into(), Value::dyn_null()),
        ])))
    }
}

/// `null_resource`: an id, replaced when `triggers` change.
struct NullResource {
    schema: Schema,
}

impl ResourceType for NullResource {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    fn apply(
        &self,
        _prior: Option<&Value>,
        planned: &Value,
        _ctx: &OpCtx,
    ) -> Result<Value, String> {
        Ok(fill_unknown(planned, |k| {
            (k == "id").then(|| Value::string(format!("{}", rand::random::<u64>() >> 1)))
        }))
    }

    fn import(&self, id: &str, _ctx: &OpCtx) -> Result<Value, String> {
        Ok(Value::object(BTreeMap::from([
            ("id".into(), Value::string(id)),
            ("triggers".into(), Value::null(Type::map(Type::String))),
        ])))
    }
}

/// `null_data_source` (deprecated, still used): echoes `inputs` to `outputs`.
struct NullData {
    schema: Schema,
}

impl super::DataType for NullData {
    fn schema(&self) -> &Schema {
        &self.schema
    }
    fn read(&self, config: &Value, _ctx: &OpCtx) -> Result<Value, String> {
        let mut v = config.clone();
        let inputs = get(config, "inputs")
            .cloned()
            .unwrap_or_else(|| Value::null(Type::map(Type::String)));
        super::set(&mut v, "outputs", inputs);
        super::set(
            &mut v,
            "random",
            Value::string(format!("{}", rand::random::<u64>() >> 1)),
        );
        super::set(&mut v, "id", Value::string("static"));
        Ok(v)
    }
}

pub(super) fn terraform() -> Provider {
    let mut resources: BTreeMap<&'static str, Arc<dyn ResourceType>> = BTreeMap::new();
    resources.insert("terraform_data", Arc::new(TerraformData::new()));
    Provider {
        address: "terraform.io/builtin/terraform",
        resources,
        data: BTreeMap::new(),
    }
}

pub(super) fn null() -> Provider {
    let mut resources: BTreeMap<&'static str, Arc<dyn ResourceType>> = BTreeMap::new();
    resources.insert(
        "null_resource",
        Arc::new(NullResource {
            schema: Schema::default()
                .attr("id", Attr::computed(Type::String))
                .attr(
                    "triggers",
                    Attr::optional(Type::map(Type::String)).force_new(),
                ),
        }),
    );
    let mut data: BTreeMap<&'static str, Arc<dyn super::DataType>> = BTreeMap::new();
    data.insert(
        "null_data_source",
        Arc::new(NullData {
            schema: Schema::default()
                .attr("id", Attr::computed(Type::String))
                .attr("inputs", Attr::optional(Type::map(Type::String)))
                .attr("outputs", Attr::computed(Type::map(Type::String)))
                .attr("random", Attr::computed(Type::String))
                .attr("has_computed_default", Attr::opt_computed(Type::String)),
        }),
    );
    Provider {
        address: "registry.terraform.io/hashicorp/null",
        resources,
        data,
    }
}

/// Used by tests and the engine when a schema is needed without a provider.
pub fn plan_with(
    rt: &dyn ResourceType,
    prior: Option<&Value>,
    config: &Value,
) -> Result<Planned, String> {
    let p = plan_generic(rt.schema(), prior, config);
    rt.modify_plan(prior, config, p)
}
