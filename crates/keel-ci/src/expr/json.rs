//! `fromJSON`: JSON text into values the way JavaScript's `JSON.parse` orders
//! objects (array-index keys first, ascending; a repeated key keeps its first
//! position with the last value), then GitHub's case-insensitive objects.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::value::{Object, Value};

/// A value deserialized with JavaScript's object ordering (see the module
/// docs); usable inside any serde structure.
#[derive(Debug)]
pub struct Js(pub Value);

impl<'de> Deserialize<'de> for Js {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsVisitor)
    }
}

struct JsVisitor;

// JavaScript numbers are doubles: large integers lose precision there too.
#[allow(clippy::cast_precision_loss)]
impl<'de> Visitor<'de> for JsVisitor {
    type Value = Js;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_unit<E>(self) -> Result<Js, E> {
        Ok(Js(Value::Null))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Js, E> {
        Ok(Js(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Js, E> {
        Ok(Js(Value::Number(v as f64)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Js, E> {
        Ok(Js(Value::Number(v as f64)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Js, E> {
        Ok(Js(Value::Number(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Js, E> {
        Ok(Js(Value::String(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Js, E> {
        Ok(Js(Value::String(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Js, A::Error> {
        let mut items = Vec::new();
        while let Some(Js(v)) = a.next_element()? {
            items.push(v);
        }
        Ok(Js(Value::array(items)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Js, A::Error> {
        let mut entries: Vec<(String, Value)> = Vec::new();
        while let Some((k, Js(v))) = a.next_entry::<String, Js>()? {
            if let Some(e) = entries.iter_mut().find(|e| e.0 == k) {
                e.1 = v;
            } else {
                entries.push((k, v));
            }
        }
        let index_of = |k: &str| -> Option<u32> {
            let n: u32 = k.parse().ok()?;
            (n.to_string() == k && n != u32::MAX).then_some(n)
        };
        let (mut idx, rest): (Vec<_>, Vec<_>) = entries
            .into_iter()
            .partition(|(k, _)| index_of(k).is_some());
        idx.sort_by_key(|(k, _)| index_of(k));
        let mut o = Object::new();
        for (k, v) in idx.into_iter().chain(rest) {
            o.insert(k, v);
        }
        Ok(Js(Value::object(o)))
    }
}

/// Parses JSON text (one value, surrounding whitespace allowed).
pub fn parse(s: &str) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(s);
    let v = Js::deserialize(&mut de)?;
    de.end()?;
    Ok(v.0)
}
