//! A focused JSON Schema validator for values.schema.json (the keywords charts
//! use), shaped like santhosh-tekuri/jsonschema v6, which Helm 4 uses: the
//! same order of checks, the same error tree (a `$ref` or several failures
//! under one node) and the same English messages, so the text Helm prints
//! (`- at '/replicaCount': got string, want number`) comes out unchanged.

// Counts and lengths go through `num` as f64, as jsonschema's printer formats them.
#![allow(clippy::cast_precision_loss)]

use std::fmt::Write as _;

use serde_json::Value as J;

/// One node of the error tree (jsonschema's `ValidationError`).
#[derive(Debug, Clone, PartialEq)]
struct VErr {
    /// Instance location as JSON pointer tokens.
    loc: Vec<String>,
    msg: String,
    causes: Vec<VErr>,
    /// A `$ref` failure: shown only when it has more than one cause.
    reference: bool,
}

/// Validates `v` against `schema`; the error text Helm prints under the
/// chart's name (one `- at '…': …` line per failure, nested by two spaces),
/// or `None` when the values are valid.
pub fn validate(schema: &J, v: &J) -> Option<String> {
    let draft = draft_of(schema);
    let ctx = Ctx {
        root: schema,
        draft,
    };
    let err = ctx.validate(schema, v, &[], 0)?;
    // Schema.validate: a group's causes become the top-level causes
    let causes = if !err.reference && err.msg == "validation failed" && !err.causes.is_empty() {
        err.causes
    } else {
        vec![err]
    };
    let mut out = String::new();
    for c in &causes {
        display(c, 1, &mut out);
    }
    Some(out.trim_start_matches('\n').to_string() + "\n")
}

fn display(e: &VErr, mut indent: usize, out: &mut String) {
    let skip = e.reference && e.causes.len() == 1;
    if !skip {
        out.push('\n');
        for _ in 0..indent.saturating_sub(1) {
            out.push_str("  ");
        }
        out.push_str("- ");
        indent += 1;
        let _ = write!(out, "at {}: {}", quote(&json_ptr(&e.loc)), e.msg);
    }
    for c in &e.causes {
        display(c, indent, out);
    }
}

fn json_ptr(tokens: &[String]) -> String {
    let mut out = String::new();
    for t in tokens {
        out.push('/');
        out.push_str(&t.replace('~', "~0").replace('/', "~1"));
    }
    out
}

/// jsonschema's `quote`: Go's `%q` in single quotes.
fn quote(s: &str) -> String {
    let q = keel_gotmpl::gofmt::quote(s);
    let inner = &q[1..q.len() - 1];
    format!("'{}'", inner.replace("\\\"", "\"").replace('\'', "\\'"))
}

/// `%v` through golang.org/x/text's English printer: digits grouped by three.
fn num(f: f64) -> String {
    let s = if f.fract() == 0.0 && f.abs() < 1e21 {
        format!("{f:.0}")
    } else {
        keel_gotmpl::gofmt::format_float(f, 'g', None)
    };
    if s.contains(['e', 'E']) {
        return s;
    }
    let (sign, body) = s.strip_prefix('-').map_or(("", s.as_str()), |b| ("-", b));
    let (int, frac) = body
        .split_once('.')
        .map_or((body, None), |(a, b)| (a, Some(b)));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

fn type_name(v: &J) -> &'static str {
    match v {
        J::Null => "null",
        J::Bool(_) => "boolean",
        J::Number(_) => "number",
        J::String(_) => "string",
        J::Array(_) => "array",
        J::Object(_) => "object",
    }
}

fn is_integer(v: &J) -> bool {
    v.as_f64().is_some_and(|f| f.fract() == 0.0)
}

/// The draft of `$schema`; jsonschema defaults to 2020-12.
fn draft_of(schema: &J) -> u32 {
    let s = schema.get("$schema").and_then(J::as_str).unwrap_or("");
    for (needle, d) in [
        ("draft-04", 4),
        ("draft-06", 6),
        ("draft-07", 7),
        ("2019-09", 2019),
    ] {
        if s.contains(needle) {
            return d;
        }
    }
    2020
}

/// JSON equality with numbers compared by value (1 == 1.0).
fn equals(a: &J, b: &J) -> bool {
    match (a, b) {
        (J::Number(x), J::Number(y)) => x.as_f64() == y.as_f64(),
        (J::Array(x), J::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| equals(p, q))
        }
        (J::Object(x), J::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| equals(v, w)))
        }
        _ => a == b,
    }
}

/// A primitive as jsonschema's `display` prints it.
fn display_value(v: &J) -> String {
    match v {
        J::String(s) => quote(s),
        J::Array(_) | J::Object(_) => "value".into(),
        J::Number(n) => num(n.as_f64().unwrap_or(0.0)),
        J::Null => "<nil>".into(),
        J::Bool(b) => b.to_string(),
    }
}

/// `minItems: got 1, want 2` and the like: a count against a limit.
fn count_err(loc: &[String], keyword: &str, got: usize, want: u64) -> VErr {
    Ctx::err(
        loc,
        format!(
            "{keyword}: got {}, want {}",
            num(got as f64),
            num(want as f64)
        ),
    )
}

struct Ctx<'a> {
    root: &'a J,
    draft: u32,
}

const MAX_DEPTH: usize = 256;

impl<'a> Ctx<'a> {
    fn resolve(&self, r: &str) -> Option<&'a J> {
        let p = r.strip_prefix('#')?;
        let mut cur = self.root;
        for seg in p.split('/').filter(|s| !s.is_empty()) {
            let seg = seg.replace("~1", "/").replace("~0", "~");
            cur = match cur {
                J::Object(m) => m.get(&seg)?,
                J::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(cur)
    }

    fn err(loc: &[String], msg: String) -> VErr {
        VErr {
            loc: loc.to_vec(),
            msg,
            causes: Vec::new(),
            reference: false,
        }
    }

    /// jsonschema's `validator.validate`: `None` when valid, else one error
    /// (several failures become a "validation failed" group).
    fn validate(&self, s: &'a J, v: &J, loc: &[String], depth: usize) -> Option<VErr> {
        if depth > MAX_DEPTH {
            return None;
        }
        let s = match s {
            J::Bool(false) => return Some(Self::err(loc, "false schema".into())),
            J::Object(m) => m,
            _ => return None,
        };
        if let Some(t) = s.get("type") {
            let want: Vec<&str> = match t {
                J::String(t) => vec![t.as_str()],
                J::Array(ts) => ts.iter().filter_map(J::as_str).collect(),
                _ => Vec::new(),
            };
            let got = type_name(v);
            let ok = want.is_empty()
                || want.contains(&got)
                || (want.contains(&"integer") && got == "number" && is_integer(v));
            if !ok {
                let order = [
                    "null", "boolean", "number", "integer", "string", "array", "object",
                ];
                let want: Vec<&str> = order.iter().copied().filter(|o| want.contains(o)).collect();
                return Some(Self::err(
                    loc,
                    format!("got {got}, want {}", want.join(" or ")),
                ));
            }
        }
        if let Some(c) = s.get("const")
            && !equals(v, c)
        {
            let msg = match c {
                J::Array(_) | J::Object(_) => "const failed".into(),
                c => format!("value must be {}", display_value(c)),
            };
            return Some(Self::err(loc, msg));
        }
        if let Some(J::Array(allowed)) = s.get("enum")
            && !allowed.iter().any(|a| equals(v, a))
        {
            let msg = if allowed.iter().any(|a| a.is_array() || a.is_object()) {
                "enum failed".to_string()
            } else if allowed.len() == 1 {
                format!("value must be {}", display_value(&allowed[0]))
            } else {
                let list: Vec<String> = allowed.iter().map(display_value).collect();
                format!("value must be one of {}", list.join(", "))
            };
            return Some(Self::err(loc, msg));
        }
        let mut errs: Vec<VErr> = Vec::new();
        if let Some(r) = s.get("$ref").and_then(J::as_str)
            && let Some(target) = self.resolve(r)
        {
            let e = self.validate(target, v, loc, depth + 1).map(|inner| {
                let causes = if !inner.reference
                    && inner.msg == "validation failed"
                    && !inner.causes.is_empty()
                {
                    inner.causes
                } else {
                    vec![inner]
                };
                VErr {
                    loc: loc.to_vec(),
                    msg: "validation failed".into(),
                    causes,
                    reference: true,
                }
            });
            if self.draft < 2019 {
                return e;
            }
            errs.extend(e);
        }
        match v {
            J::Object(obj) => self.object(s, obj, loc, depth, &mut errs),
            J::Array(arr) => self.array(s, arr, loc, depth, &mut errs),
            J::String(st) => Self::string(s, st, loc, &mut errs),
            J::Number(n) => Self::number(s, n.as_f64().unwrap_or(0.0), loc, &mut errs),
            _ => {}
        }
        self.conditions(s, v, loc, depth, &mut errs);
        match errs.len() {
            0 => None,
            1 => errs.pop(),
            _ => Some(VErr {
                loc: loc.to_vec(),
                msg: "validation failed".into(),
                causes: errs,
                reference: false,
            }),
        }
    }

    fn object(
        &self,
        s: &'a serde_json::Map<String, J>,
        obj: &serde_json::Map<String, J>,
        loc: &[String],
        depth: usize,
        errs: &mut Vec<VErr>,
    ) {
        let count = |k: &str| s.get(k).and_then(J::as_u64);
        if let Some(m) = count("minProperties")
            && (obj.len() as u64) < m
        {
            errs.push(count_err(loc, "minProperties", obj.len(), m));
        }
        if let Some(m) = count("maxProperties")
            && (obj.len() as u64) > m
        {
            errs.push(count_err(loc, "maxProperties", obj.len(), m));
        }
        if let Some(J::Array(req)) = s.get("required") {
            let missing: Vec<&str> = req
                .iter()
                .filter_map(J::as_str)
                .filter(|r| !obj.contains_key(*r))
                .collect();
            match missing.len() {
                0 => {}
                1 => errs.push(Self::err(
                    loc,
                    format!("missing property {}", quote(missing[0])),
                )),
                _ => {
                    let q: Vec<String> = missing.iter().map(|m| quote(m)).collect();
                    errs.push(Self::err(
                        loc,
                        format!("missing properties {}", q.join(", ")),
                    ));
                }
            }
        }
        let props = s.get("properties").and_then(J::as_object);
        let patterns: Vec<(regex::Regex, &J)> = s
            .get("patternProperties")
            .and_then(J::as_object)
            .map(|p| {
                p.iter()
                    .filter_map(|(k, sch)| regex::Regex::new(k).ok().map(|r| (r, sch)))
                    .collect()
            })
            .unwrap_or_default();
        let mut additional = Vec::new();
        // Go ranges over the values map in random order; keel takes key order.
        for (pname, pvalue) in obj {
            let mut evaluated = false;
            let child = || {
                let mut l = loc.to_vec();
                l.push(pname.clone());
                l
            };
            if let Some(sch) = props.and_then(|p| p.get(pname)) {
                evaluated = true;
                errs.extend(self.validate(sch, pvalue, &child(), depth + 1));
            }
            for (re, sch) in &patterns {
                if re.is_match(pname) {
                    evaluated = true;
                    errs.extend(self.validate(sch, pvalue, &child(), depth + 1));
                }
            }
            if !evaluated {
                match s.get("additionalProperties") {
                    Some(J::Bool(false)) => additional.push(pname.as_str()),
                    Some(sch @ J::Object(_)) => {
                        errs.extend(self.validate(sch, pvalue, &child(), depth + 1));
                    }
                    _ => {}
                }
            }
        }
        if !additional.is_empty() {
            let q: Vec<String> = additional.iter().map(|a| quote(a)).collect();
            errs.push(Self::err(
                loc,
                format!("additional properties {} not allowed", q.join(", ")),
            ));
        }
    }

    fn array(
        &self,
        s: &'a serde_json::Map<String, J>,
        arr: &[J],
        loc: &[String],
        depth: usize,
        errs: &mut Vec<VErr>,
    ) {
        let count = |k: &str| s.get(k).and_then(J::as_u64);
        if let Some(m) = count("minItems")
            && (arr.len() as u64) < m
        {
            errs.push(count_err(loc, "minItems", arr.len(), m));
        }
        if let Some(m) = count("maxItems")
            && (arr.len() as u64) > m
        {
            errs.push(count_err(loc, "maxItems", arr.len(), m));
        }
        if s.get("uniqueItems") == Some(&J::Bool(true)) {
            'outer: for i in 0..arr.len() {
                for j in i + 1..arr.len() {
                    if equals(&arr[i], &arr[j]) {
                        errs.push(Self::err(loc, format!("items at {i} and {j} are equal")));
                        break 'outer;
                    }
                }
            }
        }
        let item_loc = |i: usize| {
            let mut l = loc.to_vec();
            l.push(i.to_string());
            l
        };
        match s.get("items") {
            Some(J::Array(tuple)) if self.draft < 2020 => {
                for (i, (sch, it)) in tuple.iter().zip(arr).enumerate() {
                    errs.extend(self.validate(sch, it, &item_loc(i), depth + 1));
                }
            }
            Some(sch @ (J::Object(_) | J::Bool(_))) => {
                let start = if self.draft >= 2020 {
                    s.get("prefixItems")
                        .and_then(J::as_array)
                        .map_or(0, Vec::len)
                } else {
                    0
                };
                for (i, it) in arr.iter().enumerate().skip(start) {
                    errs.extend(self.validate(sch, it, &item_loc(i), depth + 1));
                }
            }
            _ => {}
        }
        if self.draft >= 2020
            && let Some(J::Array(prefix)) = s.get("prefixItems")
        {
            for (i, (sch, it)) in prefix.iter().zip(arr).enumerate() {
                errs.extend(self.validate(sch, it, &item_loc(i), depth + 1));
            }
        }
    }

    fn string(s: &serde_json::Map<String, J>, st: &str, loc: &[String], errs: &mut Vec<VErr>) {
        let n = st.chars().count() as u64;
        if let Some(m) = s.get("minLength").and_then(J::as_u64)
            && n < m
        {
            errs.push(count_err(loc, "minLength", n as usize, m));
        }
        if let Some(m) = s.get("maxLength").and_then(J::as_u64)
            && n > m
        {
            errs.push(count_err(loc, "maxLength", n as usize, m));
        }
        if let Some(p) = s.get("pattern").and_then(J::as_str)
            && let Ok(re) = regex::Regex::new(p)
            && !re.is_match(st)
        {
            errs.push(Self::err(
                loc,
                format!("{} does not match pattern {}", quote(st), quote(p)),
            ));
        }
    }

    fn number(s: &serde_json::Map<String, J>, x: f64, loc: &[String], errs: &mut Vec<VErr>) {
        let get = |k: &str| s.get(k).and_then(J::as_f64);
        if let Some(m) = get("minimum")
            && x < m
        {
            errs.push(Self::err(
                loc,
                format!("minimum: got {}, want {}", num(x), num(m)),
            ));
        }
        if let Some(m) = get("maximum")
            && x > m
        {
            errs.push(Self::err(
                loc,
                format!("maximum: got {}, want {}", num(x), num(m)),
            ));
        }
        if let Some(m) = get("exclusiveMinimum")
            && x <= m
        {
            errs.push(Self::err(
                loc,
                format!("exclusiveMinimum: got {}, want {}", num(x), num(m)),
            ));
        }
        if let Some(m) = get("exclusiveMaximum")
            && x >= m
        {
            errs.push(Self::err(
                loc,
                format!("exclusiveMaximum: got {}, want {}", num(x), num(m)),
            ));
        }
        if let Some(m) = get("multipleOf")
            && m != 0.0
            && (x / m).fract() != 0.0
        {
            errs.push(Self::err(
                loc,
                format!("multipleOf: got {}, want {}", num(x), num(m)),
            ));
        }
    }

    fn conditions(
        &self,
        s: &'a serde_json::Map<String, J>,
        v: &J,
        loc: &[String],
        depth: usize,
        errs: &mut Vec<VErr>,
    ) {
        if let Some(n) = s.get("not")
            && self.validate(n, v, loc, depth + 1).is_none()
        {
            errs.push(Self::err(loc, "not failed".into()));
        }
        if let Some(J::Array(all)) = s.get("allOf") {
            let causes: Vec<VErr> = all
                .iter()
                .filter_map(|x| self.validate(x, v, loc, depth + 1))
                .collect();
            if !causes.is_empty() {
                errs.push(VErr {
                    loc: loc.to_vec(),
                    msg: "allOf failed".into(),
                    causes,
                    reference: false,
                });
            }
        }
        if let Some(J::Array(any)) = s.get("anyOf") {
            let causes: Vec<VErr> = any
                .iter()
                .filter_map(|x| self.validate(x, v, loc, depth + 1))
                .collect();
            if causes.len() == any.len() {
                errs.push(VErr {
                    loc: loc.to_vec(),
                    msg: "anyOf failed".into(),
                    causes,
                    reference: false,
                });
            }
        }
        if let Some(J::Array(one)) = s.get("oneOf") {
            let mut matched: Vec<usize> = Vec::new();
            let mut causes = Vec::new();
            for (i, x) in one.iter().enumerate() {
                match self.validate(x, v, loc, depth + 1) {
                    None => matched.push(i),
                    Some(e) => causes.push(e),
                }
            }
            if matched.is_empty() {
                errs.push(VErr {
                    loc: loc.to_vec(),
                    msg: "oneOf failed, none matched".into(),
                    causes,
                    reference: false,
                });
            } else if matched.len() > 1 {
                errs.push(Self::err(
                    loc,
                    format!(
                        "oneOf failed, subschemas {}, {} matched",
                        matched[0], matched[1]
                    ),
                ));
            }
        }
        if let Some(cond) = s.get("if") {
            if self.validate(cond, v, loc, depth + 1).is_none() {
                if let Some(t) = s.get("then") {
                    errs.extend(self.validate(t, v, loc, depth + 1));
                }
            } else if let Some(e) = s.get("else") {
                errs.extend(self.validate(e, v, loc, depth + 1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_and_tree_like_jsonschema_v6() {
        let schema = json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "$ref": "#/$defs/v",
            "$defs": {
                "v": {"additionalProperties": false, "properties": {"replicaCount": {"$ref": "#/$defs/r"}}},
                "r": {"type": "number"}
            }
        });
        let got = validate(
            &schema,
            &json!({"replicaCount": "two", "notAKnownKey": true}),
        )
        .unwrap();
        assert_eq!(
            got,
            "- at '': validation failed\n  - at '/replicaCount': got string, want number\n  - at '': additional properties 'notAKnownKey' not allowed\n"
        );
        let flat =
            json!({"properties": {"p": {"type": "integer", "maximum": 65535}}, "required": ["q"]});
        assert_eq!(
            validate(&flat, &json!({"p": 70000})).unwrap(),
            "- at '': missing property 'q'\n- at '/p': maximum: got 70,000, want 65,535\n"
        );
        assert!(validate(&flat, &json!({"p": 1.0, "q": 1})).is_none());
    }
}
