//! Addresses: instance keys, module instance paths and the absolute
//! addresses terraform prints (`module.a["x"].terraform_data.b[0]`).

use std::fmt;

use keel_hcl::{Kind, Value};

/// An instance key: none, a count index or a `for_each` key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    None,
    Int(i64),
    Str(String),
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::None => Ok(()),
            Key::Int(i) => write!(f, "[{i}]"),
            Key::Str(s) => write!(f, "[{}]", keel_hcl::render::go_quote(s)),
        }
    }
}

impl Key {
    /// As state's `index_key`.
    pub fn to_json(&self) -> Option<serde_json::Value> {
        match self {
            Key::None => None,
            Key::Int(i) => Some(serde_json::Value::from(*i)),
            Key::Str(s) => Some(serde_json::Value::from(s.clone())),
        }
    }

    pub fn from_json(j: Option<&serde_json::Value>) -> Key {
        match j {
            Some(serde_json::Value::Number(n)) => Key::Int(n.as_i64().unwrap_or(0)),
            Some(serde_json::Value::String(s)) => Key::Str(s.clone()),
            _ => Key::None,
        }
    }

    /// The key as a value (`count.index`, `each.key`).
    pub fn value(&self) -> Value {
        match self {
            Key::None => Value::dyn_null(),
            Key::Int(i) => Value::int(*i),
            Key::Str(s) => Value::string(s.clone()),
        }
    }

    pub fn from_value(v: &Value) -> Option<Key> {
        match &v.kind {
            Kind::String(s) => Some(Key::Str(s.clone())),
            Kind::Number(n) => n.to_i64().map(Key::Int),
            _ => None,
        }
    }
}

/// A module instance: the calls from the root with their keys.
pub type ModInst = Vec<(String, Key)>;

/// `module.a["x"].module.b` (empty for the root).
pub fn module_prefix(m: &ModInst) -> String {
    m.iter()
        .map(|(n, k)| format!("module.{n}{k}"))
        .collect::<Vec<_>>()
        .join(".")
}

/// The config path of a module instance (names only).
pub fn config_path(m: &ModInst) -> Vec<String> {
    m.iter().map(|(n, _)| n.clone()).collect()
}

/// Absolute instance address.
pub fn instance_addr(m: &ModInst, res_key: &str, key: &Key) -> String {
    let p = module_prefix(m);
    if p.is_empty() {
        format!("{res_key}{key}")
    } else {
        format!("{p}.{res_key}{key}")
    }
}

/// Absolute resource (config) address, as state's `dependencies` hold them.
pub fn resource_addr(m: &ModInst, res_key: &str) -> String {
    let p = module_prefix(m);
    if p.is_empty() {
        res_key.to_string()
    } else {
        format!("{p}.{res_key}")
    }
}

/// Parses `module.a["x"].module.b[0]` (a state `module` field) into a module instance.
pub fn parse_module(s: &str) -> Option<ModInst> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        rest = rest.strip_prefix("module.")?;
        let end = rest.find(['[', '.']).unwrap_or(rest.len());
        let name = rest[..end].to_string();
        rest = &rest[end..];
        let mut key = Key::None;
        if let Some(r) = rest.strip_prefix('[') {
            let close = close_bracket(r)?;
            let inner = &r[..close];
            key = if let Ok(i) = inner.parse::<i64>() {
                Key::Int(i)
            } else {
                Key::Str(serde_json::from_str(inner).ok()?)
            };
            rest = &r[close + 1..];
        }
        out.push((name, key));
        rest = rest.strip_prefix('.').unwrap_or(rest);
    }
    Some(out)
}

fn close_bracket(s: &str) -> Option<usize> {
    let mut in_str = false;
    let mut esc = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if esc => esc = false,
            '\\' if in_str => esc = true,
            '"' => in_str = !in_str,
            ']' if !in_str => return Some(i),
            _ => {}
        }
    }
    None
}

/// A parsed instance address (`module.m[0].terraform_data.a["k"]`, `data.x.y`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstAddr {
    pub module: ModInst,
    /// `type.name` or `data.type.name`.
    pub res_key: String,
    /// `None` when the address names the whole resource.
    pub key: Option<Key>,
}

impl fmt::Display for InstAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&instance_addr(
            &self.module,
            &self.res_key,
            self.key.as_ref().unwrap_or(&Key::None),
        ))
    }
}

/// Parses an address given on the command line (`-target`, `state rm`, `import`).
pub fn parse_inst_addr(s: &str) -> Option<InstAddr> {
    let mut module = Vec::new();
    let mut rest = s;
    while rest.starts_with("module.") {
        let r = &rest[7..];
        let end = r.find(['[', '.']).unwrap_or(r.len());
        let name = r[..end].to_string();
        let mut after = &r[end..];
        let mut key = Key::None;
        if let Some(x) = after.strip_prefix('[') {
            let close = close_bracket(x)?;
            let inner = &x[..close];
            key = if let Ok(i) = inner.parse::<i64>() {
                Key::Int(i)
            } else {
                Key::Str(serde_json::from_str(inner).ok()?)
            };
            after = &x[close + 1..];
        }
        module.push((name, key));
        rest = after.strip_prefix('.')?;
    }
    let (data, rest) = match rest.strip_prefix("data.") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let (ty, rest) = rest.split_once('.')?;
    let end = rest.find('[').unwrap_or(rest.len());
    let name = &rest[..end];
    if ty.is_empty() || name.is_empty() {
        return None;
    }
    let key = if end < rest.len() {
        let r = &rest[end + 1..];
        let close = close_bracket(r)?;
        if close + 1 != r.len() {
            return None;
        }
        let inner = &r[..close];
        Some(if let Ok(i) = inner.parse::<i64>() {
            Key::Int(i)
        } else {
            Key::Str(serde_json::from_str(inner).ok()?)
        })
    } else {
        None
    };
    let res_key = if data {
        format!("data.{ty}.{name}")
    } else {
        format!("{ty}.{name}")
    };
    Some(InstAddr {
        module,
        res_key,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip() {
        let a = parse_inst_addr("module.a[\"x\"].module.b[0].terraform_data.c[\"k.1\"]").unwrap();
        assert_eq!(
            a.to_string(),
            "module.a[\"x\"].module.b[0].terraform_data.c[\"k.1\"]"
        );
        assert_eq!(
            parse_module("module.a[\"x\"].module.b[0]").unwrap(),
            a.module
        );
        assert_eq!(
            parse_inst_addr("data.local_file.f").unwrap().res_key,
            "data.local_file.f"
        );
        assert!(parse_inst_addr("nonsense").is_none());
        assert!(parse_inst_addr("a.b[").is_none());
    }
}
