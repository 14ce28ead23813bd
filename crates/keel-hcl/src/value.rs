//! cty's type system and values: primitive, collection (list, set, map) and
//! structural (tuple, object) types; null and unknown values of any type; the
//! `sensitive` mark carried by any value.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use crate::num::Number;

/// A cty type. `Optional` appears only as an attribute type inside object
/// type constraints (`optional(string)`), never as the type of a value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Type {
    Dynamic,
    Bool,
    Number,
    String,
    List(Box<Type>),
    Set(Box<Type>),
    Map(Box<Type>),
    Tuple(Vec<Type>),
    Object(BTreeMap<String, Type>),
    Optional(Box<Type>),
}

impl Type {
    pub fn list(t: Type) -> Type {
        Type::List(Box::new(t))
    }
    pub fn set(t: Type) -> Type {
        Type::Set(Box::new(t))
    }
    pub fn map(t: Type) -> Type {
        Type::Map(Box::new(t))
    }

    pub fn is_primitive(&self) -> bool {
        matches!(self, Type::Bool | Type::Number | Type::String)
    }

    pub fn is_collection(&self) -> bool {
        matches!(self, Type::List(_) | Type::Set(_) | Type::Map(_))
    }

    /// The element type of a collection.
    pub fn element(&self) -> Option<&Type> {
        match self {
            Type::List(t) | Type::Set(t) | Type::Map(t) => Some(t),
            _ => None,
        }
    }

    /// Whether the type contains `Dynamic` anywhere (then it is a constraint).
    pub fn has_dynamic(&self) -> bool {
        match self {
            Type::Dynamic => true,
            Type::List(t) | Type::Set(t) | Type::Map(t) | Type::Optional(t) => t.has_dynamic(),
            Type::Tuple(ts) => ts.iter().any(Type::has_dynamic),
            Type::Object(m) => m.values().any(Type::has_dynamic),
            _ => false,
        }
    }

    /// The friendly name terraform's messages use ("list of string").
    pub fn friendly(&self) -> String {
        match self {
            Type::Dynamic => "dynamic".into(),
            Type::Bool => "bool".into(),
            Type::Number => "number".into(),
            Type::String => "string".into(),
            Type::List(t) => format!("list of {}", t.friendly()),
            Type::Set(t) => format!("set of {}", t.friendly()),
            Type::Map(t) => format!("map of {}", t.friendly()),
            Type::Tuple(_) => "tuple".into(),
            Type::Object(_) => "object".into(),
            Type::Optional(t) => t.friendly(),
        }
    }

    /// cty's JSON type notation (`"string"`, `["list","bool"]`).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Type::Dynamic => json!("dynamic"),
            Type::Bool => json!("bool"),
            Type::Number => json!("number"),
            Type::String => json!("string"),
            Type::List(t) => json!(["list", t.to_json()]),
            Type::Set(t) => json!(["set", t.to_json()]),
            Type::Map(t) => json!(["map", t.to_json()]),
            Type::Tuple(ts) => json!(["tuple", ts.iter().map(Type::to_json).collect::<Vec<_>>()]),
            Type::Object(m) => {
                let attrs: serde_json::Map<_, _> =
                    m.iter().map(|(k, t)| (k.clone(), t.to_json())).collect();
                json!(["object", attrs])
            }
            Type::Optional(t) => t.to_json(),
        }
    }

    /// Reads cty's JSON type notation.
    pub fn from_json(j: &serde_json::Value) -> Option<Type> {
        use serde_json::Value as J;
        Some(match j {
            J::String(s) => match s.as_str() {
                "dynamic" => Type::Dynamic,
                "bool" => Type::Bool,
                "number" => Type::Number,
                "string" => Type::String,
                _ => return None,
            },
            J::Array(a) if a.len() == 2 => {
                let kind = a[0].as_str()?;
                match kind {
                    "list" => Type::list(Type::from_json(&a[1])?),
                    "set" => Type::set(Type::from_json(&a[1])?),
                    "map" => Type::map(Type::from_json(&a[1])?),
                    "tuple" => Type::Tuple(
                        a[1].as_array()?
                            .iter()
                            .map(Type::from_json)
                            .collect::<Option<_>>()?,
                    ),
                    "object" => Type::Object(
                        a[1].as_object()?
                            .iter()
                            .map(|(k, v)| Some((k.clone(), Type::from_json(v)?)))
                            .collect::<Option<_>>()?,
                    ),
                    _ => return None,
                }
            }
            J::Array(a) if a.len() == 3 && a[0] == "object" => {
                Type::from_json(&serde_json::json!(["object", a[1]]))?
            }
            _ => return None,
        })
    }
}

/// Type expression syntax, as terraform writes types (`list(string)`).
impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Dynamic => f.write_str("any"),
            Type::Bool => f.write_str("bool"),
            Type::Number => f.write_str("number"),
            Type::String => f.write_str("string"),
            Type::List(t) => write!(f, "list({t})"),
            Type::Set(t) => write!(f, "set({t})"),
            Type::Map(t) => write!(f, "map({t})"),
            Type::Optional(t) => write!(f, "optional({t})"),
            Type::Tuple(ts) => {
                f.write_str("tuple([")?;
                for (i, t) in ts.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{t}")?;
                }
                f.write_str("])")
            }
            Type::Object(m) => {
                f.write_str("object({")?;
                for (i, (k, t)) in m.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}={t}")?;
                }
                f.write_str("})")
            }
        }
    }
}

/// The content of a value.
#[derive(Clone, Debug)]
pub enum Kind {
    Null(Type),
    Unknown(Type),
    Bool(bool),
    Number(Number),
    String(String),
    /// Element type, elements.
    List(Type, Vec<Value>),
    /// Element type, elements in cty's set order, no duplicates.
    Set(Type, Vec<Value>),
    Map(Type, BTreeMap<String, Value>),
    Tuple(Vec<Value>),
    Object(BTreeMap<String, Value>),
}

/// A cty value with its `sensitive` mark.
#[derive(Clone, Debug)]
pub struct Value {
    pub kind: Kind,
    pub sensitive: bool,
}

impl From<Kind> for Value {
    fn from(kind: Kind) -> Value {
        Value {
            kind,
            sensitive: false,
        }
    }
}

impl Value {
    pub fn null(t: Type) -> Value {
        Kind::Null(t).into()
    }
    pub fn dyn_null() -> Value {
        Kind::Null(Type::Dynamic).into()
    }
    pub fn unknown(t: Type) -> Value {
        Kind::Unknown(t).into()
    }
    pub fn bool(b: bool) -> Value {
        Kind::Bool(b).into()
    }
    pub fn string(s: impl Into<String>) -> Value {
        Kind::String(s.into()).into()
    }
    pub fn number(n: Number) -> Value {
        Kind::Number(n).into()
    }
    pub fn int(i: i64) -> Value {
        Kind::Number(Number::from_i64(i)).into()
    }
    pub fn tuple(v: Vec<Value>) -> Value {
        Kind::Tuple(v).into()
    }
    pub fn object(m: BTreeMap<String, Value>) -> Value {
        Kind::Object(m).into()
    }
    pub fn empty_object() -> Value {
        Kind::Object(BTreeMap::new()).into()
    }
    pub fn list(ety: Type, v: Vec<Value>) -> Value {
        Kind::List(ety, v).into()
    }
    pub fn map(ety: Type, m: BTreeMap<String, Value>) -> Value {
        Kind::Map(ety, m).into()
    }
    /// A set: sorts and removes duplicates.
    pub fn set(ety: Type, mut v: Vec<Value>) -> Value {
        v.sort_by(set_order);
        v.dedup_by(|a, b| a.raw_equals(b));
        Kind::Set(ety, v).into()
    }

    pub fn mark(mut self, sensitive: bool) -> Value {
        self.sensitive |= sensitive;
        self
    }

    pub fn with_sensitive(self) -> Value {
        self.mark(true)
    }

    /// Whether the value or anything inside it is sensitive.
    pub fn has_sensitive(&self) -> bool {
        self.sensitive || self.children().any(Value::has_sensitive)
    }

    /// Removes the marks everywhere inside.
    pub fn unmark_deep(&self) -> Value {
        let kind = match &self.kind {
            Kind::List(t, v) => Kind::List(t.clone(), v.iter().map(Value::unmark_deep).collect()),
            Kind::Set(t, v) => Kind::Set(t.clone(), v.iter().map(Value::unmark_deep).collect()),
            Kind::Tuple(v) => Kind::Tuple(v.iter().map(Value::unmark_deep).collect()),
            Kind::Map(t, m) => Kind::Map(
                t.clone(),
                m.iter()
                    .map(|(k, v)| (k.clone(), v.unmark_deep()))
                    .collect(),
            ),
            Kind::Object(m) => Kind::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), v.unmark_deep()))
                    .collect(),
            ),
            k => k.clone(),
        };
        kind.into()
    }

    pub fn children(&self) -> Box<dyn Iterator<Item = &Value> + '_> {
        match &self.kind {
            Kind::List(_, v) | Kind::Set(_, v) | Kind::Tuple(v) => Box::new(v.iter()),
            Kind::Map(_, m) | Kind::Object(m) => Box::new(m.values()),
            _ => Box::new(std::iter::empty()),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.kind, Kind::Null(_))
    }

    pub fn is_known(&self) -> bool {
        !matches!(self.kind, Kind::Unknown(_))
    }

    /// Known all the way down.
    pub fn is_wholly_known(&self) -> bool {
        self.is_known() && self.children().all(Value::is_wholly_known)
    }

    pub fn ty(&self) -> Type {
        match &self.kind {
            Kind::Null(t) | Kind::Unknown(t) => t.clone(),
            Kind::Bool(_) => Type::Bool,
            Kind::Number(_) => Type::Number,
            Kind::String(_) => Type::String,
            Kind::List(t, _) => Type::list(t.clone()),
            Kind::Set(t, _) => Type::set(t.clone()),
            Kind::Map(t, _) => Type::map(t.clone()),
            Kind::Tuple(v) => Type::Tuple(v.iter().map(Value::ty).collect()),
            Kind::Object(m) => Type::Object(m.iter().map(|(k, v)| (k.clone(), v.ty())).collect()),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match &self.kind {
            Kind::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_number(&self) -> Option<&Number> {
        match &self.kind {
            Kind::Number(n) => Some(n),
            _ => None,
        }
    }

    /// Elements of a list, set or tuple.
    pub fn as_seq(&self) -> Option<&[Value]> {
        match &self.kind {
            Kind::List(_, v) | Kind::Set(_, v) | Kind::Tuple(v) => Some(v),
            _ => None,
        }
    }

    /// Entries of a map or object.
    pub fn as_map(&self) -> Option<&BTreeMap<String, Value>> {
        match &self.kind {
            Kind::Map(_, m) | Kind::Object(m) => Some(m),
            _ => None,
        }
    }

    /// Whether a collection or structural value has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// Number of elements of a collection or structural value.
    pub fn len(&self) -> Option<usize> {
        match &self.kind {
            Kind::List(_, v) | Kind::Set(_, v) | Kind::Tuple(v) => Some(v.len()),
            Kind::Map(_, m) | Kind::Object(m) => Some(m.len()),
            _ => None,
        }
    }

    /// cty's `RawEquals`: same type, same content, same marks ignored.
    pub fn raw_equals(&self, o: &Value) -> bool {
        match (&self.kind, &o.kind) {
            (Kind::Null(a), Kind::Null(b)) | (Kind::Unknown(a), Kind::Unknown(b)) => a == b,
            (Kind::Bool(a), Kind::Bool(b)) => a == b,
            (Kind::Number(a), Kind::Number(b)) => a == b,
            (Kind::String(a), Kind::String(b)) => a == b,
            (Kind::List(ta, a), Kind::List(tb, b)) | (Kind::Set(ta, a), Kind::Set(tb, b)) => {
                ta == tb && a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.raw_equals(y))
            }
            (Kind::Tuple(a), Kind::Tuple(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.raw_equals(y))
            }
            (Kind::Map(ta, a), Kind::Map(tb, b)) => ta == tb && maps_equal(a, b),
            (Kind::Object(a), Kind::Object(b)) => maps_equal(a, b),
            _ => false,
        }
    }

    /// HCL's `==`: `None` when unknown values make the answer unknown.
    pub fn equals(&self, o: &Value) -> Option<bool> {
        if !self.is_known() || !o.is_known() {
            return None;
        }
        match (&self.kind, &o.kind) {
            (Kind::Null(_), Kind::Null(_)) => Some(true),
            (Kind::Null(_), _) | (_, Kind::Null(_)) => Some(false),
            (Kind::Bool(a), Kind::Bool(b)) => Some(a == b),
            (Kind::Number(a), Kind::Number(b)) => Some(a == b),
            (Kind::String(a), Kind::String(b)) => Some(a == b),
            (Kind::List(_, a), Kind::List(_, b))
            | (Kind::Tuple(a), Kind::Tuple(b))
            | (Kind::Set(_, a), Kind::Set(_, b)) => {
                if self.ty_shape_differs(o) || a.len() != b.len() {
                    return Some(false);
                }
                let mut unknown = false;
                for (x, y) in a.iter().zip(b) {
                    match x.equals(y) {
                        Some(false) => return Some(false),
                        None => unknown = true,
                        Some(true) => {}
                    }
                }
                if unknown { None } else { Some(true) }
            }
            (Kind::Map(_, a), Kind::Map(_, b)) | (Kind::Object(a), Kind::Object(b)) => {
                if self.ty_shape_differs(o) || a.len() != b.len() {
                    return Some(false);
                }
                let mut unknown = false;
                for (k, x) in a {
                    let Some(y) = b.get(k) else {
                        return Some(false);
                    };
                    match x.equals(y) {
                        Some(false) => return Some(false),
                        None => unknown = true,
                        Some(true) => {}
                    }
                }
                if unknown { None } else { Some(true) }
            }
            _ => Some(false),
        }
    }

    fn ty_shape_differs(&self, o: &Value) -> bool {
        let (a, b) = (self.ty(), o.ty());
        match (&a, &b) {
            (Type::List(x), Type::List(y))
            | (Type::Set(x), Type::Set(y))
            | (Type::Map(x), Type::Map(y)) => {
                **x != **y && **x != Type::Dynamic && **y != Type::Dynamic
            }
            _ => false,
        }
    }
}

fn maps_equal(a: &BTreeMap<String, Value>, b: &BTreeMap<String, Value>) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ka, va), (kb, vb))| ka == kb && va.raw_equals(vb))
}

/// cty's set order: strings lexically, numbers numerically, false before
/// true, everything else by its rendering (deterministic).
pub fn set_order(a: &Value, b: &Value) -> Ordering {
    match (&a.kind, &b.kind) {
        (Kind::String(x), Kind::String(y)) => x.cmp(y),
        (Kind::Number(x), Kind::Number(y)) => x.cmp(y),
        (Kind::Bool(x), Kind::Bool(y)) => x.cmp(y),
        (Kind::Unknown(_), Kind::Unknown(_)) => Ordering::Equal,
        (Kind::Unknown(_), _) => Ordering::Greater,
        (_, Kind::Unknown(_)) => Ordering::Less,
        _ => crate::render::to_json_string(a).cmp(&crate::render::to_json_string(b)),
    }
}
