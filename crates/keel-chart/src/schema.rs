//! A focused JSON Schema validator for values.schema.json (the keywords charts
//! use), with gojsonschema's messages as Helm prints them.

use serde_json::Value as J;

fn type_of(v: &J) -> &'static str {
    match v {
        J::Null => "null",
        J::Bool(_) => "boolean",
        J::Number(n) => {
            if n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0) {
                "integer"
            } else {
                "number"
            }
        }
        J::String(_) => "string",
        J::Array(_) => "array",
        J::Object(_) => "object",
    }
}

fn type_ok(expected: &str, v: &J) -> bool {
    let t = type_of(v);
    t == expected || (expected == "number" && t == "integer")
}

fn num(v: &J) -> String {
    match v {
        J::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

fn field(path: &str) -> String {
    if path.is_empty() {
        "(root)".into()
    } else {
        path.to_string()
    }
}

fn join(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    }
}

/// Validates `v` against `schema`; returns the error lines (`field: message`).
pub fn validate(schema: &J, v: &J) -> Vec<String> {
    let mut errs = Vec::new();
    check(schema, schema, v, "", &mut errs);
    errs
}

fn resolve<'a>(root: &'a J, s: &'a J) -> &'a J {
    if let Some(r) = s.get("$ref").and_then(J::as_str)
        && let Some(p) = r.strip_prefix("#/")
    {
        let mut cur = root;
        for seg in p.split('/') {
            match cur.get(seg) {
                Some(x) => cur = x,
                None => return s,
            }
        }
        return cur;
    }
    s
}

fn check(root: &J, schema: &J, v: &J, path: &str, errs: &mut Vec<String>) {
    let schema = resolve(root, schema);
    let J::Object(s) = schema else { return };
    let f = field(path);
    if let Some(t) = s.get("type") {
        let ok = match t {
            J::String(t) => type_ok(t, v),
            J::Array(ts) => ts.iter().filter_map(J::as_str).any(|t| type_ok(t, v)),
            _ => true,
        };
        if !ok {
            let expected = match t {
                J::String(t) => t.clone(),
                J::Array(ts) => ts
                    .iter()
                    .filter_map(J::as_str)
                    .collect::<Vec<_>>()
                    .join("/"),
                _ => String::new(),
            };
            errs.push(format!(
                "{f}: Invalid type. Expected: {expected}, given: {}",
                type_of(v)
            ));
            return;
        }
    }
    if let Some(J::Array(allowed)) = s.get("enum")
        && !allowed.contains(v)
    {
        let list: Vec<String> = allowed.iter().map(J::to_string).collect();
        errs.push(format!(
            "{f}: {} must be one of the following: {}",
            f,
            list.join(", ")
        ));
    }
    if let Some(c) = s.get("const")
        && c != v
    {
        errs.push(format!("{f}: {f} does not match: {c}"));
    }
    if let Some(x) = v.as_f64() {
        if let Some(m) = s.get("minimum").and_then(J::as_f64)
            && x < m
        {
            errs.push(format!(
                "{f}: Must be greater than or equal to {}",
                num(&s["minimum"])
            ));
        }
        if let Some(m) = s.get("maximum").and_then(J::as_f64)
            && x > m
        {
            errs.push(format!(
                "{f}: Must be less than or equal to {}",
                num(&s["maximum"])
            ));
        }
        if let Some(m) = s.get("exclusiveMinimum").and_then(J::as_f64)
            && x <= m
        {
            errs.push(format!(
                "{f}: Must be greater than {}",
                num(&s["exclusiveMinimum"])
            ));
        }
        if let Some(m) = s.get("exclusiveMaximum").and_then(J::as_f64)
            && x >= m
        {
            errs.push(format!(
                "{f}: Must be less than {}",
                num(&s["exclusiveMaximum"])
            ));
        }
    }
    if let J::String(st) = v {
        let n = st.chars().count() as u64;
        if let Some(m) = s.get("minLength").and_then(J::as_u64)
            && n < m
        {
            errs.push(format!(
                "{f}: String length must be greater than or equal to {m}"
            ));
        }
        if let Some(m) = s.get("maxLength").and_then(J::as_u64)
            && n > m
        {
            errs.push(format!(
                "{f}: String length must be less than or equal to {m}"
            ));
        }
        if let Some(p) = s.get("pattern").and_then(J::as_str)
            && let Ok(re) = regex::Regex::new(p)
            && !re.is_match(st)
        {
            errs.push(format!("{f}: Does not match pattern '{p}'"));
        }
    }
    if let J::Array(items) = v {
        if let Some(m) = s.get("minItems").and_then(J::as_u64)
            && (items.len() as u64) < m
        {
            errs.push(format!("{f}: Array must have at least {m} items"));
        }
        if let Some(m) = s.get("maxItems").and_then(J::as_u64)
            && (items.len() as u64) > m
        {
            errs.push(format!("{f}: Array must have at most {m} items"));
        }
        if s.get("uniqueItems") == Some(&J::Bool(true)) {
            'outer: for i in 0..items.len() {
                for j in i + 1..items.len() {
                    if items[i] == items[j] {
                        errs.push(format!("{f}: array items[{i},{j}] must be unique"));
                        break 'outer;
                    }
                }
            }
        }
        if let Some(is) = s.get("items") {
            for (i, it) in items.iter().enumerate() {
                check(root, is, it, &join(path, &i.to_string()), errs);
            }
        }
    }
    if let J::Object(obj) = v {
        if let Some(J::Array(req)) = s.get("required") {
            for r in req.iter().filter_map(J::as_str) {
                if !obj.contains_key(r) {
                    errs.push(format!("{f}: {r} is required"));
                }
            }
        }
        let props = s.get("properties").and_then(J::as_object);
        if let Some(props) = props {
            let mut keys: Vec<&String> = props.keys().collect();
            keys.sort();
            for k in keys {
                if let Some(x) = obj.get(k) {
                    check(root, &props[k], x, &join(path, k), errs);
                }
            }
        }
        let mut extra: Vec<&String> = obj
            .keys()
            .filter(|k| props.is_none_or(|p| !p.contains_key(*k)))
            .collect();
        extra.sort();
        match s.get("additionalProperties") {
            Some(J::Bool(false)) => {
                for k in extra {
                    errs.push(format!("{f}: Additional property {k} is not allowed"));
                }
            }
            Some(sub @ J::Object(_)) => {
                for k in extra {
                    check(root, sub, &obj[k], &join(path, k), errs);
                }
            }
            _ => {}
        }
    }
    for key in ["allOf"] {
        if let Some(J::Array(all)) = s.get(key) {
            for sub in all {
                check(root, sub, v, path, errs);
            }
        }
    }
    if let Some(J::Array(any)) = s.get("anyOf")
        && !any.iter().any(|sub| validate_sub(root, sub, v))
    {
        errs.push(format!("{f}: Must validate at least one schema (anyOf)"));
    }
    if let Some(J::Array(one)) = s.get("oneOf")
        && any_count(root, one, v) != 1
    {
        errs.push(format!(
            "{f}: Must validate one and only one schema (oneOf)"
        ));
    }
}

fn validate_sub(root: &J, s: &J, v: &J) -> bool {
    let mut e = Vec::new();
    check(root, s, v, "", &mut e);
    e.is_empty()
}

fn any_count(root: &J, list: &[J], v: &J) -> usize {
    list.iter().filter(|s| validate_sub(root, s, v)).count()
}
