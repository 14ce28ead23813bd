//! The `path` and `path/filepath` entries of sprig's functions.go (`base`,
//! `dir`, `clean`, `ext`, `isAbs` and their `os…` forms).

use std::collections::HashMap;

use keel_go::path::clean as path_clean;

use super::{s, vstr};
use crate::funcs::{FuncDef, Ty, def};
use crate::value::Value;

pub(super) fn path_base(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        return "/".into();
    }
    t.rsplit('/').next().unwrap_or(t).to_string()
}

pub(super) fn path_dir(p: &str) -> String {
    let dir = match p.rfind('/') {
        Some(i) => &p[..=i],
        None => "",
    };
    path_clean(dir)
}

pub(super) fn path_ext(p: &str) -> String {
    for (i, c) in p.char_indices().rev() {
        if c == '/' {
            break;
        }
        if c == '.' {
            return p[i..].to_string();
        }
    }
    String::new()
}

pub(super) fn register(m: &mut HashMap<&'static str, FuncDef>) {
    use Ty::Str;
    let mut add = |n: &'static str, p: &[Ty], v: Option<Ty>, f: crate::funcs::PlainFn| {
        m.insert(n, def(p, v, f));
    };
    add("base", &[Str], None, |a| vstr(path_base(s(&a[0]))));
    add("dir", &[Str], None, |a| vstr(path_dir(s(&a[0]))));
    add("clean", &[Str], None, |a| vstr(path_clean(s(&a[0]))));
    add("ext", &[Str], None, |a| vstr(path_ext(s(&a[0]))));
    add("isAbs", &[Str], None, |a| {
        Ok(Value::Bool(s(&a[0]).starts_with('/')))
    });
    // path/filepath on Linux: the same as package path.
    add("osBase", &[Str], None, |a| vstr(path_base(s(&a[0]))));
    add("osDir", &[Str], None, |a| vstr(path_dir(s(&a[0]))));
    add("osClean", &[Str], None, |a| vstr(path_clean(s(&a[0]))));
    add("osExt", &[Str], None, |a| vstr(path_ext(s(&a[0]))));
    add("osIsAbs", &[Str], None, |a| {
        Ok(Value::Bool(s(&a[0]).starts_with('/')))
    });
}
