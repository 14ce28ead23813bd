//! The dynamic value model: what Go's `reflect.Value` holds when a Helm chart
//! is rendered (JSON/YAML-decoded data plus a few host objects).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;

/// A host object with fields and methods (`.Files`, `.Capabilities`, …).
pub trait Object: fmt::Debug {
    /// Go's type name, used in error messages and `%T`.
    fn type_name(&self) -> String;
    /// A struct field or map-like entry, `None` if absent.
    fn field(&self, name: &str) -> Option<Value>;
    /// Calls method `name`; `None` if the object has no such method.
    fn method(&self, name: &str, args: &[Value]) -> Option<Result<Value, String>>;
    /// How `%v` prints the object.
    fn display(&self) -> String;
    /// Number of arguments the method takes (for Go's arity check), if it exists.
    fn method_arity(&self, name: &str) -> Option<usize>;
    /// Key/value pairs in key order when the object is a Go map (`range`, `len`).
    fn entries(&self) -> Option<Vec<(String, Value)>> {
        None
    }
    /// The elements when the object is a Go slice of a named type (Helm's
    /// `chartutil.VersionSet`): `range`, `len` and sprig's list functions use them.
    fn items(&self) -> Option<Vec<Value>> {
        None
    }
    /// Go's `reflect.Kind` name (`kindOf`); host objects are pointers unless
    /// they are Go struct values.
    fn kind(&self) -> &'static str {
        "ptr"
    }
    /// The exported fields when the object is a Go struct value, for `%+v`,
    /// `toJson` and `toYaml` (which marshal structs as objects).
    fn struct_fields(&self) -> Option<Vec<(String, Value)>> {
        None
    }
}

/// The element type of a slice (observable through `typeOf`, error messages
/// and `deepEqual`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    Any,
    Str,
    Int,
    /// `[][]interface{}` (sprig's `chunk`)
    AnyList,
    /// `[]byte` (Helm's `.Files` entries); items are `Int`s
    Byte,
}

/// A slice value; dereferences to its items.
#[derive(Clone, Debug)]
pub struct List {
    pub elem: Elem,
    pub items: Vec<Value>,
}

impl std::ops::Deref for List {
    type Target = Vec<Value>;
    fn deref(&self) -> &Vec<Value> {
        &self.items
    }
}

/// A shared, mutable map (Go maps are references).
pub type MapRef = Rc<RefCell<BTreeMap<String, Value>>>;

/// One value as Go's template engine sees it.
#[derive(Clone, Debug)]
pub enum Value {
    /// Go's invalid `reflect.Value` (a missing map key in the default mode).
    Invalid,
    /// A nil `interface{}`.
    Nil,
    Bool(bool),
    /// Go `int`.
    Int(i64),
    /// Go `int64`.
    Int64(i64),
    Float(f64),
    Str(Rc<str>),
    /// A slice: `[]interface{}`, or `[]string`/`[]int` as some sprig functions return.
    List(Rc<List>),
    /// `map[string]interface{}`; Go prints and ranges maps in key order. Shared
    /// and mutable like a Go map (sprig's `set` and `merge` change it in place).
    Map(MapRef),
    Object(Rc<dyn Object>),
}

impl Value {
    pub fn str(s: &str) -> Value {
        Value::Str(Rc::from(s))
    }
    pub fn string(s: String) -> Value {
        Value::Str(Rc::from(s))
    }
    pub fn list(v: Vec<Value>) -> Value {
        Value::List(Rc::new(List {
            elem: Elem::Any,
            items: v,
        }))
    }
    /// A slice with a concrete element type (`[]string`, `[]int`).
    pub fn typed_list(v: Vec<Value>, elem: Elem) -> Value {
        Value::List(Rc::new(List { elem, items: v }))
    }
    pub fn map(m: BTreeMap<String, Value>) -> Value {
        Value::Map(Rc::new(RefCell::new(m)))
    }

    /// Go's type name (`reflect.Type.String()`).
    pub fn type_name(&self) -> String {
        match self {
            Value::Invalid => "<nil>".into(),
            Value::Nil => "interface {}".into(),
            Value::Bool(_) => "bool".into(),
            Value::Int(_) => "int".into(),
            Value::Int64(_) => "int64".into(),
            Value::Float(_) => "float64".into(),
            Value::Str(_) => "string".into(),
            Value::List(l) => match l.elem {
                Elem::Any => "[]interface {}".into(),
                Elem::Str => "[]string".into(),
                Elem::Int => "[]int".into(),
                Elem::AnyList => "[][]interface {}".into(),
                Elem::Byte => "[]uint8".into(),
            },
            Value::Map(_) => "map[string]interface {}".into(),
            Value::Object(o) => o.type_name(),
        }
    }

    /// Go's `reflect.Kind` name, as sprig's `kindOf` prints it.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Invalid => "invalid",
            Value::Nil => "interface",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Int64(_) => "int64",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::List(_) => "slice",
            Value::Map(_) => "map",
            Value::Object(o) => o.kind(),
        }
    }

    /// Template truth (`if`, `with`, `and`, `or`, `not`).
    pub fn truth(&self) -> bool {
        match self {
            Value::Invalid | Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) | Value::Int64(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Map(m) => !m.borrow().is_empty(),
            Value::Object(_) => true,
        }
    }

    pub fn is_nil_like(&self) -> bool {
        matches!(self, Value::Invalid | Value::Nil)
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) | Value::Int64(i) => Some(*i),
            _ => None,
        }
    }

    /// A deep copy (maps are shared references otherwise).
    #[must_use]
    pub fn deep_copy(&self) -> Value {
        crate::sprig::deep_copy(self)
    }

    /// Converts decoded JSON. `ints` decodes integral numbers as `int64` (what
    /// keel does for YAML) instead of Go's `encoding/json` float64.
    pub fn from_json(v: &serde_json::Value, ints: bool) -> Value {
        match v {
            serde_json::Value::Null => Value::Nil,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => {
                if ints && let Some(i) = n.as_i64() {
                    return Value::Int64(i);
                }
                Value::Float(n.as_f64().unwrap_or(0.0))
            }
            serde_json::Value::String(s) => Value::str(s),
            serde_json::Value::Array(a) => {
                Value::list(a.iter().map(|x| Value::from_json(x, ints)).collect())
            }
            serde_json::Value::Object(o) => Value::map(
                o.iter()
                    .map(|(k, x)| (k.clone(), Value::from_json(x, ints)))
                    .collect(),
            ),
        }
    }

    /// Converts to JSON the way `encoding/json` marshals these Go values.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Invalid | Value::Nil => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) | Value::Int64(i) => serde_json::Value::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            Value::Str(s) => serde_json::Value::String(s.to_string()),
            Value::List(l) => serde_json::Value::Array(l.iter().map(Value::to_json).collect()),
            Value::Map(m) => serde_json::Value::Object(
                m.borrow()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
            Value::Object(o) => serde_json::Value::String(o.display()),
        }
    }
}

/// First code point of the range that carries bytes which are not UTF-8.
const RAW_BYTE_BASE: u32 = 0x10_FF00;

/// A Go string (any bytes) as a Rust string: valid UTF-8 is kept, every other
/// byte b becomes U+10FF00+b so that [`go_bytes`] gives the bytes back. Binary
/// chart files (`.Files.Get` of a `.bz2`) then survive `b64enc` as in Go.
pub fn go_string(bytes: &[u8]) -> String {
    if let Ok(s) = std::str::from_utf8(bytes) {
        return s.to_string();
    }
    let mut out = String::with_capacity(bytes.len() * 2);
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push(char::from_u32(RAW_BYTE_BASE + u32::from(*b)).unwrap_or('\u{fffd}'));
        }
    }
    out
}

/// The bytes Go would hold for a string made by [`go_string`].
pub fn go_bytes(s: &str) -> std::borrow::Cow<'_, [u8]> {
    let raw = |c: char| (RAW_BYTE_BASE + 0x80..=RAW_BYTE_BASE + 0xFF).contains(&u32::from(c));
    if !s.chars().any(raw) {
        return std::borrow::Cow::Borrowed(s.as_bytes());
    }
    let mut out = Vec::with_capacity(s.len());
    let mut buf = [0u8; 4];
    for c in s.chars() {
        if raw(c) {
            out.push((u32::from(c) - RAW_BYTE_BASE) as u8);
        } else {
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    std::borrow::Cow::Owned(out)
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::str(s)
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::string(s)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl fmt::Display for Value {
    /// `%v` formatting, as `fmt.Sprint` prints the value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::gofmt::sprint_value(self))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn go_strings_carry_any_bytes() {
        let b = [b'a', 0xff, 0xc3, 0xa9, 0x80, b'z'];
        let s = super::go_string(&b);
        assert_eq!(s.chars().count(), 5);
        assert_eq!(&*super::go_bytes(&s), &b);
        assert_eq!(&*super::go_bytes("plain é"), "plain é".as_bytes());
    }
}
