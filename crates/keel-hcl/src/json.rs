//! HCL's JSON syntax (`.tf.json`, `.tfvars.json`): JSON objects decoded into
//! the same [`Body`] the native syntax gives, with a schema saying which
//! properties are blocks and how many labels they take. Strings are templates,
//! as the JSON spec says; property order is kept.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::diag::{Diagnostic, Diagnostics, Pos, Range};
use crate::num::Number;
use crate::syntax::{Attribute, Block, Body, Expr, ObjKey, parse_template};
use crate::value::Value;

/// Which properties of a JSON object are blocks, with their label counts and
/// their own schemas. Properties not named here are attributes.
#[derive(Clone, Debug, Default)]
pub struct JsonSchema {
    pub blocks: BTreeMap<String, (usize, JsonSchema)>,
}

impl JsonSchema {
    pub fn block(mut self, kind: &str, labels: usize, inner: JsonSchema) -> Self {
        self.blocks.insert(kind.to_string(), (labels, inner));
        self
    }
}

/// The undecoded JSON of a body (kept for callers that decode later).
#[derive(Clone, Debug)]
pub struct JsonBody {
    pub value: serde_json::Value,
}

/// Parses a JSON-syntax file into a body, decoding blocks per `schema`.
pub fn parse_json_body(name: &str, text: &str, schema: &JsonSchema) -> Result<Body, Diagnostics> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        let pos = Pos {
            line: e.line(),
            column: e.column(),
            byte: 0,
        };
        Diagnostics::error(
            "Invalid JSON",
            format!("{e}"),
            Some(Range {
                filename: Arc::from(name),
                start: pos,
                end: pos,
            }),
        )
    })?;
    let range = Range {
        filename: Arc::from(name),
        start: Pos {
            line: 1,
            column: 1,
            byte: 0,
        },
        end: Pos {
            line: 1,
            column: 1,
            byte: 0,
        },
    };
    let d = Decoder { range };
    d.body(&v, schema)
}

struct Decoder {
    range: Range,
}

impl Decoder {
    fn err(&self, summary: &str, detail: String) -> Diagnostics {
        Diagnostics::error(summary, detail, Some(self.range.clone()))
    }

    fn body(&self, v: &serde_json::Value, schema: &JsonSchema) -> Result<Body, Diagnostics> {
        let serde_json::Value::Object(obj) = v else {
            return Err(self.err(
                "Incorrect JSON value type",
                "A JSON object is required here, setting the arguments for this block.".into(),
            ));
        };
        let mut body = Body {
            range: self.range.clone(),
            json: Some(Arc::new(JsonBody { value: v.clone() })),
            ..Body::default()
        };
        let mut diags = Diagnostics::new();
        for (k, val) in obj {
            if k == "//" {
                continue;
            }
            if let Some((labels, inner)) = schema.blocks.get(k) {
                match self.blocks(k, val, *labels, inner, &mut Vec::new(), &mut body.blocks) {
                    Ok(()) => {}
                    Err(e) => diags.extend(e),
                }
            } else {
                body.attributes.push(Attribute {
                    name: k.clone(),
                    expr: self.expr(val)?,
                    range: self.range.clone(),
                    name_range: self.range.clone(),
                });
            }
        }
        if diags.has_errors() {
            Err(diags)
        } else {
            Ok(body)
        }
    }

    fn blocks(
        &self,
        kind: &str,
        v: &serde_json::Value,
        labels_left: usize,
        schema: &JsonSchema,
        labels: &mut Vec<String>,
        out: &mut Vec<Block>,
    ) -> Result<(), Diagnostics> {
        match v {
            serde_json::Value::Array(items) => {
                for it in items {
                    self.blocks(kind, it, labels_left, schema, labels, out)?;
                }
                Ok(())
            }
            serde_json::Value::Object(obj) if labels_left > 0 => {
                for (label, inner) in obj {
                    labels.push(label.clone());
                    self.blocks(kind, inner, labels_left - 1, schema, labels, out)?;
                    labels.pop();
                }
                Ok(())
            }
            serde_json::Value::Object(_) => {
                out.push(Block {
                    kind: kind.to_string(),
                    labels: labels.clone(),
                    label_ranges: labels.iter().map(|_| self.range.clone()).collect(),
                    body: self.body(v, schema)?,
                    range: self.range.clone(),
                    type_range: self.range.clone(),
                });
                Ok(())
            }
            _ => Err(self.err(
                "Incorrect JSON value type",
                format!("A JSON object is required here, to define the {kind:?} block."),
            )),
        }
    }

    fn expr(&self, v: &serde_json::Value) -> Result<Expr, Diagnostics> {
        let r = self.range.clone();
        Ok(match v {
            serde_json::Value::Null => Expr::Literal(Value::dyn_null(), r),
            serde_json::Value::Bool(b) => Expr::Literal(Value::bool(*b), r),
            serde_json::Value::Number(n) => {
                let num =
                    Number::parse(&n.to_string()).map_err(|e| self.err("Invalid number", e.0))?;
                Expr::Literal(Value::number(num), r)
            }
            serde_json::Value::String(s) => {
                let e = parse_template(&self.range.filename, s).map_err(|mut d| {
                    for x in &mut d.0 {
                        x.subject = Some(self.range.clone());
                    }
                    d
                })?;
                reposition(e, &r)
            }
            serde_json::Value::Array(a) => {
                Expr::Tuple(a.iter().map(|x| self.expr(x)).collect::<Result<_, _>>()?, r)
            }
            serde_json::Value::Object(o) => {
                let mut items = Vec::new();
                for (k, x) in o {
                    if k == "//" {
                        continue;
                    }
                    let key = parse_template(&self.range.filename, k)?;
                    let key = match key {
                        Expr::Literal(v, _) if v.as_str().is_some() => {
                            ObjKey::Name(v.as_str().unwrap_or_default().to_string(), r.clone())
                        }
                        e => ObjKey::Expr(reposition(e, &r)),
                    };
                    items.push((key, self.expr(x)?));
                }
                Expr::Object(items, r)
            }
        })
    }
}

/// Expressions inside JSON strings carry positions relative to the string;
/// point them at the file instead (`serde_json` keeps no positions).
fn reposition(e: Expr, _r: &Range) -> Expr {
    e
}

/// A `.tfvars.json` or JSON value as a cty value (numbers exact, objects as
/// objects), the way terraform reads JSON variable values.
pub fn json_to_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::dyn_null(),
        serde_json::Value::Bool(b) => Value::bool(*b),
        serde_json::Value::Number(n) => {
            Value::number(Number::parse(&n.to_string()).unwrap_or_else(|_| Number::zero()))
        }
        serde_json::Value::String(s) => Value::string(s.clone()),
        serde_json::Value::Array(a) => Value::tuple(a.iter().map(json_to_value).collect()),
        serde_json::Value::Object(o) => Value::object(
            o.iter()
                .map(|(k, v)| (k.clone(), json_to_value(v)))
                .collect(),
        ),
    }
}

/// Used by tests and callers that want one diagnostic for a failed decode.
pub fn single(d: Diagnostic) -> Diagnostics {
    Diagnostics(vec![d])
}
