//! Sprig 3.2.3's text function map, one module per sprig source file
//! (strings.go, numeric.go, list.go, dict.go, defaults.go, reflect.go,
//! regex.go, semver.go, url.go, network.go, crypto.go, date.go, and the
//! `path` entries of functions.go), with sprig's argument types and behaviour.

use std::collections::HashMap;

use crate::funcs::{FuncDef, Ty, def};
use crate::value::Value;

mod crypto;
mod date;
mod defaults;
mod dict;
mod list;
mod network;
mod numeric;
mod path;
mod reflect;
mod regex;
mod semver;
pub use semver::semver_compare;
mod strings;
mod url;

pub(crate) use crypto::CERT_TYPE;
pub(crate) use date::days_in_month;
pub(crate) use dict::deep_copy;
pub use strings::b64enc;

type Res = Result<Value, String>;

pub(super) fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}
pub(super) fn int(v: &Value) -> i64 {
    v.as_int().unwrap_or(0)
}
pub(super) fn vstr(x: impl Into<String>) -> Res {
    Ok(Value::string(x.into()))
}
pub(super) fn strs(v: Vec<String>) -> Value {
    Value::typed_list(
        v.into_iter().map(Value::string).collect(),
        crate::value::Elem::Str,
    )
}

/// Registers every sprig function.
pub(crate) fn register(m: &mut HashMap<&'static str, FuncDef>) {
    strings::register(m);
    numeric::register(m);
    list::register(m);
    dict::register(m);
    defaults::register(m);
    reflect::register(m);
    path::register(m);
    url::register(m);
    semver::register(m);
    regex::register(m);
    crypto::register(m);
    network::register(m);
    date::register(m);
    // functions.go's own one-liners
    m.insert("hello", def(&[], None, |_| vstr("Hello!")));
    m.insert("fail", def(&[Ty::Str], None, |a| Err(s(&a[0]).to_string())));
}
