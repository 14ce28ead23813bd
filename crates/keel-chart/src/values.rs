//! Values: Helm's coalescing of chart defaults with user values (subchart
//! scoping, globals, `null` deletion), dependency conditions/tags,
//! import-values, merging of `-f` files and the `--set` family (strvals).

use std::collections::BTreeMap;

use keel_gotmpl::Value;

use crate::ChartError;
use crate::chart::Chart;

/// An owned values table.
pub type Table = BTreeMap<String, Value>;

/// Deep-copies a map value into an owned table (non-maps give an empty table).
pub fn table(v: &Value) -> Table {
    match v.deep_copy() {
        Value::Map(m) => m.borrow().clone(),
        _ => Table::new(),
    }
}

fn as_table(v: &Value) -> Option<Table> {
    match v {
        Value::Map(m) => Some(m.borrow().clone()),
        _ => None,
    }
}

fn is_table(v: &Value) -> bool {
    matches!(v, Value::Map(_))
}

fn is_nil(v: &Value) -> bool {
    matches!(v, Value::Nil | Value::Invalid)
}

/// Helm's `mergeMaps` for `-f` files: later files win, maps merge deeply.
pub fn merge_maps(a: &Table, b: &Table) -> Table {
    let mut out = a.clone();
    for (k, v) in b {
        if let (Some(bv), Some(old)) = (as_table(v), out.get(k).and_then(as_table)) {
            out.insert(k.clone(), Value::map(merge_maps(&old, &bv)));
            continue;
        }
        out.insert(k.clone(), v.clone());
    }
    out
}

/// Helm's `concatPrefix`.
fn concat_prefix(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a}.{b}")
    }
}

/// Warnings Helm prints while coalescing (`log.Printf`), in the order keel
/// meets them (Helm's follows Go's random map order).
pub type Warnings = Vec<String>;

/// `coalesceTablesFullKey`: `dst` is authoritative; `merge` keeps nulls.
fn coalesce_tables(dst: &mut Table, src: &Table, prefix: &str, merge: bool, w: &mut Warnings) {
    for (k, sv) in src {
        let full = concat_prefix(prefix, k);
        match dst.get(k) {
            Some(dv) if !merge && is_nil(dv) => {
                dst.remove(k);
            }
            None => {
                dst.insert(k.clone(), sv.clone());
            }
            Some(dv) => match (as_table(dv), as_table(sv)) {
                (Some(mut dt), Some(st)) => {
                    coalesce_tables(&mut dt, &st, &full, merge, w);
                    dst.insert(k.clone(), Value::map(dt));
                }
                (None, Some(_)) if !is_nil(dv) => w.push(format!(
                    "warning: cannot overwrite table with non table for {full} ({sv})"
                )),
                (Some(_), None) if !is_nil(sv) => w.push(format!(
                    "warning: destination for {full} is a table. Ignoring non-table value ({sv})"
                )),
                _ => {}
            },
        }
    }
}

fn coalesce_globals(dest: &mut Table, src: &Table, prefix: &str, w: &mut Warnings) {
    // a `global` that is not a table stops the merge, with Helm's warning
    let table_or_warn = |t: &Table, side: &str, w: &mut Warnings| -> Option<Table> {
        let Some(v) = t.get("global") else {
            return Some(Table::new());
        };
        let g = as_table(v);
        if g.is_none() {
            w.push(format!(
                "warning: skipping globals because {side} global is not a table."
            ));
        }
        g
    };
    let Some(mut dg) = table_or_warn(dest, "destination", w) else {
        return;
    };
    let Some(sg) = table_or_warn(src, "source", w) else {
        return;
    };
    for (k, v) in &sg {
        if let Some(vt) = as_table(v) {
            let mut vv = table(&Value::map(vt));
            match dg.get(k) {
                None => {
                    dg.insert(k.clone(), Value::map(vv));
                }
                Some(destv) => {
                    if let Some(dt) = as_table(destv) {
                        coalesce_tables(&mut vv, &dt, &concat_prefix(prefix, k), true, w);
                        dg.insert(k.clone(), Value::map(vv));
                    } else {
                        w.push(format!(
                            "Conflict: cannot merge map onto non-map for {}. Skipping.",
                            keel_gotmpl::gofmt::quote(k)
                        ));
                    }
                }
            }
        } else if dg.get(k).is_some_and(is_table) {
            // a table in the subchart's globals is not replaced by a scalar
            w.push(format!("key {k} is table. Skipping"));
        } else {
            dg.insert(k.clone(), v.clone());
        }
    }
    dest.insert("global".into(), Value::map(dg));
}

fn coalesce_values(c: &Chart, v: &mut Table, prefix: &str, merge: bool, w: &mut Warnings) {
    let sub_prefix = concat_prefix(prefix, c.name());
    let defaults = table(&c.values);
    for (k, dv) in defaults {
        match v.get(&k) {
            Some(uv) => {
                if is_nil(uv) && !merge {
                    v.remove(&k);
                } else if let Some(mut ut) = as_table(uv) {
                    if let Some(dt) = as_table(&dv) {
                        // subchart sections always merge (nulls are handled when the subchart coalesces)
                        let child_merge = merge || c.dependencies.iter().any(|d| d.name() == k);
                        coalesce_tables(
                            &mut ut,
                            &dt,
                            &concat_prefix(&sub_prefix, &k),
                            child_merge,
                            w,
                        );
                        v.insert(k, Value::map(ut));
                    } else if !is_nil(&dv) {
                        w.push(format!(
                            "warning: skipped value for {sub_prefix}.{k}: Not a table."
                        ));
                    }
                }
            }
            None => {
                v.insert(k, dv);
            }
        }
    }
}

fn coalesce(
    c: &Chart,
    dest: &mut Table,
    prefix: &str,
    merge: bool,
    w: &mut Warnings,
) -> Result<(), ChartError> {
    coalesce_values(c, dest, prefix, merge, w);
    for sub in &c.dependencies {
        let name = sub.name().to_string();
        let mut dv = match dest.get(&name) {
            None => Table::new(),
            Some(v) => match as_table(v) {
                Some(t) => t,
                None => {
                    return Err(ChartError::Values {
                        path: c.full_path.clone(),
                        msg: format!("type mismatch on {name}: %!t({}={})", v.type_name(), v),
                    });
                }
            },
        };
        let sub_prefix = concat_prefix(prefix, c.name());
        coalesce_globals(&mut dv, dest, &sub_prefix, w);
        coalesce(sub, &mut dv, &sub_prefix, merge, w)?;
        dest.insert(name, Value::map(dv));
    }
    Ok(())
}

/// Helm's `CoalesceValues`: user values over chart defaults, nulls delete.
pub fn coalesce_values_for(c: &Chart, user: &Table, w: &mut Warnings) -> Result<Table, ChartError> {
    let mut v = table(&Value::map(user.clone()));
    coalesce(c, &mut v, "", false, w)?;
    Ok(v)
}

fn merge_values_for(c: &Chart, user: &Table, w: &mut Warnings) -> Result<Table, ChartError> {
    let mut v = table(&Value::map(user.clone()));
    coalesce(c, &mut v, "", true, w)?;
    Ok(v)
}

/// `Values.PathValue`: a dotted path to a non-table value.
fn path_value(t: &Table, path: &str) -> Option<Value> {
    let parts: Vec<&str> = path.split('.').collect();
    let mut cur = t.clone();
    for (i, p) in parts.iter().enumerate() {
        let v = cur.get(*p)?.clone();
        if i == parts.len() - 1 {
            return Some(v);
        }
        cur = as_table(&v)?;
    }
    None
}

fn table_at(t: &Table, path: &str) -> Option<Table> {
    let mut cur = t.clone();
    for p in path.split('.').filter(|p| !p.is_empty()) {
        cur = as_table(cur.get(p)?)?;
    }
    Some(cur)
}

/// Helm's `ProcessDependencies`: aliases, conditions, tags and import-values.
pub fn process_dependencies(
    c: &mut Chart,
    user: &Table,
    w: &mut Warnings,
) -> Result<(), ChartError> {
    process_enabled(c, user, "", w)?;
    process_imports(c, w)
}

fn process_enabled(
    c: &mut Chart,
    user: &Table,
    path: &str,
    w: &mut Warnings,
) -> Result<(), ChartError> {
    if c.metadata.dependencies.is_empty() {
        return Ok(());
    }
    let existing = std::mem::take(&mut c.dependencies);
    let mut deps: Vec<Chart> = existing
        .iter()
        .filter(|e| !c.metadata.dependencies.iter().any(|r| r.name == e.name()))
        .cloned()
        .collect();
    for req in &mut c.metadata.dependencies {
        if let Some(found) = existing.iter().find(|e| e.name() == req.name) {
            let mut copy = found.clone();
            if !req.alias.is_empty() {
                copy.metadata.name.clone_from(&req.alias);
            }
            deps.push(copy);
        }
        if !req.alias.is_empty() {
            req.name = req.alias.clone();
        }
        req.enabled = Some(true);
    }
    c.dependencies = deps;
    let cvals = coalesce_values_for(c, user, w)?;
    // tags
    if let Some(tags) = cvals.get("tags").and_then(as_table) {
        for r in &mut c.metadata.dependencies {
            let (mut has_true, mut has_false) = (false, false);
            for k in &r.tags {
                if let Some(Value::Bool(b)) = tags.get(k) {
                    if *b {
                        has_true = true;
                    } else {
                        has_false = true;
                    }
                }
            }
            if !has_true && has_false {
                r.enabled = Some(false);
            } else {
                r.enabled = Some(true);
            }
        }
    }
    // conditions: the first path that resolves to a bool decides
    for r in &mut c.metadata.dependencies {
        for cond in r.condition.trim().split(',') {
            let cond = cond.trim();
            if cond.is_empty() {
                continue;
            }
            if let Some(Value::Bool(b)) = path_value(&cvals, &format!("{path}{cond}")) {
                r.enabled = Some(b);
                break;
            }
        }
    }
    let disabled: Vec<String> = c
        .metadata
        .dependencies
        .iter()
        .filter(|r| r.enabled == Some(false))
        .map(|r| r.name.clone())
        .collect();
    c.dependencies
        .retain(|d| !disabled.iter().any(|n| n == d.name()));
    c.metadata
        .dependencies
        .retain(|r| !disabled.contains(&r.name));
    for d in &mut c.dependencies {
        let sub = format!("{path}{}.", d.name());
        process_enabled(d, &cvals, &sub, w)?;
    }
    let fp = if c.full_path.contains("/charts/") {
        c.full_path
            .rsplit_once("/charts/")
            .map(|(p, _)| p.to_string())
    } else {
        None
    };
    crate::chart::set_full_paths(c, fp.as_deref());
    Ok(())
}

fn path_to_map(path: &str, data: Table) -> Table {
    if path == "." {
        return data;
    }
    let mut cur = data;
    for p in path.split('.').rev().filter(|p| !p.is_empty()) {
        let mut t = Table::new();
        t.insert(p.to_string(), Value::map(cur));
        cur = t;
    }
    cur
}

fn process_imports(c: &mut Chart, w: &mut Warnings) -> Result<(), ChartError> {
    for d in &mut c.dependencies {
        process_imports(d, w)?;
    }
    if c.metadata.dependencies.is_empty() {
        return Ok(());
    }
    let cvals = merge_values_for(c, &Table::new(), w)?;
    let mut b = Table::new();
    let mut any = false;
    for r in &c.metadata.dependencies {
        for iv in &r.import_values {
            any = true;
            let (child, parent) = match iv {
                serde_yaml_ng::Value::String(s) => (format!("exports.{s}"), ".".to_string()),
                serde_yaml_ng::Value::Mapping(m) => {
                    let get = |k: &str| m.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
                    (get("child"), get("parent"))
                }
                _ => continue,
            };
            let Some(vv) = table_at(&cvals, &format!("{}.{child}", r.name)) else {
                continue;
            };
            let add = path_to_map(&parent, vv);
            // later imports win over earlier ones (MergeTables with dst = new)
            let mut nb = add;
            coalesce_tables(&mut nb, &b, "", true, w);
            b = nb;
        }
    }
    if !any {
        return Ok(());
    }
    // Helm 3.14+ merges (keeping nulls, so that they still delete subchart defaults)
    let mut merged = cvals;
    coalesce_tables(&mut merged, &b, "", true, w);
    c.values = Value::map(merged);
    Ok(())
}

// ---------------------------------------------------------------- strvals

/// Kinds of `--set` flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetKind {
    /// `--set`: typed values (`true`, `null`, ints)
    Typed,
    /// `--set-string`
    String,
    /// `--set-file`: the value is a path; the file's content is the value
    File,
    /// `--set-json`: the value is JSON
    Json,
    /// `--set-literal`: the value is the rest of the argument, as is
    Literal,
}

/// A strvals error; [`parse_set`] prefixes the flag (`failed parsing --set data: …`).
fn set_err(msg: impl Into<String>) -> ChartError {
    ChartError::UserValues(msg.into())
}

/// Helm's strvals `typedVal`.
fn typed(v: &str, string: bool) -> Value {
    if string {
        return Value::str(v);
    }
    if v.eq_ignore_ascii_case("true") {
        return Value::Bool(true);
    }
    if v.eq_ignore_ascii_case("false") {
        return Value::Bool(false);
    }
    if v.eq_ignore_ascii_case("null") {
        return Value::Nil;
    }
    if v == "0" {
        return Value::Int64(0);
    }
    if !v.is_empty()
        && !v.starts_with('0')
        && let Ok(i) = v.parse::<i64>()
    {
        return Value::Int64(i);
    }
    Value::str(v)
}

/// One key segment: a name and the list indexes after it (`a[0][1]`).
#[derive(Debug)]
struct Seg {
    name: String,
    idx: Vec<usize>,
}

fn parse_key(key: &str) -> Result<Vec<Seg>, ChartError> {
    let mut segs = Vec::new();
    let mut name = String::new();
    let mut idx = Vec::new();
    let mut chars = key.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    name.push(n);
                }
            }
            '.' => {
                segs.push(Seg {
                    name: std::mem::take(&mut name),
                    idx: std::mem::take(&mut idx),
                });
            }
            '[' => {
                let mut num = String::new();
                for d in chars.by_ref() {
                    if d == ']' {
                        break;
                    }
                    num.push(d);
                }
                let i: i64 = num.parse().map_err(|_| {
                    set_err(format!(
                        "error parsing index: strconv.Atoi: parsing {}: invalid syntax",
                        keel_gotmpl::gofmt::quote(&num)
                    ))
                })?;
                if i < 0 {
                    return Err(set_err(format!("negative {i} index not allowed")));
                }
                if i > 65536 {
                    return Err(set_err(format!(
                        "index of {i} is greater than maximum supported index 65536"
                    )));
                }
                idx.push(i as usize);
            }
            c => name.push(c),
        }
    }
    segs.push(Seg { name, idx });
    if segs.iter().any(|s| s.name.is_empty() && s.idx.is_empty()) {
        return Err(set_err(format!("key {key:?} has no value")));
    }
    Ok(segs)
}

/// Splits on unescaped `sep` outside `{}` (list values).
fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '{' => {
                depth += 1;
                cur.push(c);
            }
            '}' => {
                depth -= 1;
                cur.push(c);
            }
            c if c == sep && depth <= 0 => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn set_path(t: &mut Table, segs: &[Seg], v: Value) {
    let seg = &segs[0];
    let rest = &segs[1..];
    if seg.idx.is_empty() {
        if rest.is_empty() {
            t.insert(seg.name.clone(), v);
            return;
        }
        let mut sub = t.get(&seg.name).and_then(as_table).unwrap_or_default();
        set_path(&mut sub, rest, v);
        t.insert(seg.name.clone(), Value::map(sub));
        return;
    }
    let list = match t.get(&seg.name) {
        Some(Value::List(l)) => l.to_vec(),
        _ => Vec::new(),
    };
    let nl = set_in_list(list, &seg.idx, rest, v);
    t.insert(seg.name.clone(), Value::list(nl));
}

fn set_in_list(mut list: Vec<Value>, idx: &[usize], rest: &[Seg], v: Value) -> Vec<Value> {
    let i = idx[0];
    while list.len() <= i {
        list.push(Value::Nil);
    }
    if idx.len() > 1 {
        let inner = match &list[i] {
            Value::List(l) => l.to_vec(),
            _ => Vec::new(),
        };
        list[i] = Value::list(set_in_list(inner, &idx[1..], rest, v));
    } else if rest.is_empty() {
        list[i] = v;
    } else {
        let mut sub = as_table(&list[i]).unwrap_or_default();
        set_path(&mut sub, rest, v);
        list[i] = Value::map(sub);
    }
    list
}

/// Parses one `--set`-style argument into `base`. `read_file` serves `--set-file`.
/// Errors read as Helm's: `failed parsing --set data: key "b" has no value`.
pub fn parse_set(
    arg: &str,
    kind: SetKind,
    base: &mut Table,
    read_file: &dyn Fn(&str) -> Result<String, String>,
) -> Result<(), ChartError> {
    let flag = match kind {
        SetKind::Typed => "--set",
        SetKind::String => "--set-string",
        SetKind::File => "--set-file",
        SetKind::Json => "--set-json",
        SetKind::Literal => "--set-literal",
    };
    let r = match kind {
        SetKind::Json => {
            return parse_set_json(arg, base).map_err(|()| {
                ChartError::UserValues(format!("failed parsing --set-json data {arg}"))
            });
        }
        SetKind::Literal => parse_set_literal(arg, base),
        _ => parse_set_items(arg, kind, base, read_file),
    };
    r.map_err(|e| ChartError::UserValues(format!("failed parsing {flag} data: {e}")))
}

fn no_value(item: &str) -> String {
    // strvals reports the last key segment it was reading
    let last = split_unescaped(item, '.').pop().unwrap_or_default();
    format!("key {:?} has no value", unescape(&last))
}

fn inner(e: ChartError) -> String {
    match e {
        ChartError::UserValues(m) => m,
        e => e.to_string(),
    }
}

fn parse_set_items(
    arg: &str,
    kind: SetKind,
    base: &mut Table,
    read_file: &dyn Fn(&str) -> Result<String, String>,
) -> Result<(), String> {
    for item in split_unescaped(arg, ',') {
        if item.is_empty() {
            continue;
        }
        let Some((k, val)) = split_key_value(&item) else {
            return Err(no_value(&item));
        };
        let segs = parse_key(&k).map_err(inner)?;
        let value = if kind == SetKind::File {
            Value::string(read_file(&unescape(&val))?)
        } else {
            let string = kind == SetKind::String;
            if val.starts_with('{') && val.ends_with('}') && val.len() >= 2 {
                // `{a,b}` is a list; `{}` is a list of one empty string, as in strvals
                let inner = &val[1..val.len() - 1];
                Value::list(
                    split_unescaped(inner, ',')
                        .iter()
                        .map(|x| typed(&unescape(x), string))
                        .collect(),
                )
            } else {
                typed(&unescape(&val), string)
            }
        };
        set_path(base, &segs, value);
    }
    Ok(())
}

/// `--set-json a=<json>[,b=<json>…]`: each value is one JSON document, read
/// as encoding/json reads it (every number a float64).
fn parse_set_json(arg: &str, base: &mut Table) -> Result<(), ()> {
    let mut rest = arg;
    while !rest.is_empty() {
        let (k, after) = split_key_value(rest).ok_or(())?;
        let value_start = rest.len() - after.len();
        let mut stream = serde_json::Deserializer::from_str(&rest[value_start..])
            .into_iter::<serde_json::Value>();
        let j = stream.next().ok_or(())?.map_err(|_| ())?;
        let end = value_start + stream.byte_offset();
        let segs = parse_key(&k).map_err(|_| ())?;
        set_path(base, &segs, Value::from_json(&j, false));
        rest = &rest[end..];
        match rest.strip_prefix(',') {
            Some(r) => rest = r,
            None if rest.trim().is_empty() => break,
            None => return Err(()),
        }
    }
    Ok(())
}

/// `--set-literal key=value`: everything after the first `=` is the value.
fn parse_set_literal(arg: &str, base: &mut Table) -> Result<(), String> {
    let Some((k, val)) = split_key_value(arg) else {
        return Err(no_value(arg));
    };
    let segs = parse_key(&k).map_err(inner)?;
    set_path(
        base,
        &segs,
        Value::string(arg[arg.len() - val.len()..].to_string()),
    );
    Ok(())
}

/// Splits `key=value` at the first unescaped `=`.
fn split_key_value(s: &str) -> Option<(String, String)> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        if c == '\\' {
            escaped = true;
            continue;
        }
        if c == '=' {
            return Some((s[..i].to_string(), s[i + 1..].to_string()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &str) -> String {
        let mut t = Table::new();
        parse_set(s, SetKind::Typed, &mut t, &|_| Ok(String::new())).unwrap();
        keel_gotmpl::gofmt::sprint_value(&Value::map(t))
    }

    #[test]
    fn strvals() {
        assert_eq!(set("a=1,b=true,c=x"), "map[a:1 b:true c:x]");
        assert_eq!(set("a.b.c=1"), "map[a:map[b:map[c:1]]]");
        assert_eq!(set("a[1].b=x"), "map[a:[<nil> map[b:x]]]");
        assert_eq!(set("a={x,y},b=007"), "map[a:[x y] b:007]");
        assert_eq!(set(r"a\.b=c\,d"), "map[a.b:c,d]");
        assert_eq!(set("n=null"), "map[n:<nil>]");
    }
}
