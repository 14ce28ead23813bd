//! sprig's semver.go: `semver` and `semverCompare`, with Masterminds/semver
//! v3's version parsing and constraint checking.

use std::collections::HashMap;

use super::s;
use crate::funcs::{FuncDef, Ty, def};
use crate::value::Value;

// ---- semver (Masterminds/semver v3)

#[derive(Clone, Debug, PartialEq)]
pub(super) struct Ver {
    major: u64,
    minor: u64,
    patch: u64,
    pre: String,
    meta: String,
    original: String,
}

impl Ver {
    /// Masterminds' `Version.String()`: rebuilt, not the original text.
    fn text(&self) -> String {
        let mut s = format!("{}.{}.{}", self.major, self.minor, self.patch);
        if !self.pre.is_empty() {
            s.push('-');
            s.push_str(&self.pre);
        }
        if !self.meta.is_empty() {
            s.push('+');
            s.push_str(&self.meta);
        }
        s
    }
}

/// sprig's `semver` returns a `*semver.Version`: methods `Major`, `Minor`,
/// `Patch`, `Prerelease`, `Metadata`, `Original`, `String` and the
/// comparisons; it prints and marshals (`toJson`) as its string.
impl crate::value::Object for Ver {
    fn type_name(&self) -> String {
        "*semver.Version".into()
    }
    fn field(&self, _name: &str) -> Option<Value> {
        None
    }
    fn method_arity(&self, name: &str) -> Option<usize> {
        match name {
            "Major" | "Minor" | "Patch" | "Prerelease" | "Metadata" | "Original" | "String" => {
                Some(0)
            }
            "LessThan" | "LessThanEqual" | "GreaterThan" | "GreaterThanEqual" | "Equal"
            | "Compare" => Some(1),
            _ => None,
        }
    }
    fn method(&self, name: &str, args: &[Value]) -> Option<Result<Value, String>> {
        let other = || -> Result<Ver, String> {
            match args.first() {
                Some(Value::Object(o)) if o.type_name() == "*semver.Version" => {
                    parse_ver(&o.display())
                }
                Some(v) => Err(format!(
                    "wrong type for value; expected *semver.Version; got {}",
                    v.type_name()
                )),
                None => Err("missing argument".into()),
            }
        };
        let cmp =
            |f: fn(std::cmp::Ordering) -> bool| other().map(|o| Value::Bool(f(cmp_ver(self, &o))));
        Some(match name {
            "Major" => Ok(Value::Int64(self.major as i64)),
            "Minor" => Ok(Value::Int64(self.minor as i64)),
            "Patch" => Ok(Value::Int64(self.patch as i64)),
            "Prerelease" => Ok(Value::str(&self.pre)),
            "Metadata" => Ok(Value::str(&self.meta)),
            "Original" => Ok(Value::str(&self.original)),
            "String" => Ok(Value::string(self.text())),
            "LessThan" => cmp(std::cmp::Ordering::is_lt),
            "LessThanEqual" => cmp(std::cmp::Ordering::is_le),
            "GreaterThan" => cmp(std::cmp::Ordering::is_gt),
            "GreaterThanEqual" => cmp(std::cmp::Ordering::is_ge),
            "Equal" => cmp(std::cmp::Ordering::is_eq),
            "Compare" => other().map(|o| Value::Int(cmp_ver(self, &o) as i64)),
            _ => return None,
        })
    }
    fn display(&self) -> String {
        self.text()
    }
}

pub(super) fn parse_ver(v: &str) -> Result<Ver, String> {
    let orig = v.to_string();
    let t = v.strip_prefix('v').unwrap_or(v);
    let (t, meta) = match t.split_once('+') {
        Some((a, b)) => (a, b.to_string()),
        None => (t, String::new()),
    };
    let (t, pre) = match t.split_once('-') {
        Some((a, b)) => (a, b.to_string()),
        None => (t, String::new()),
    };
    let parts: Vec<&str> = t.split('.').collect();
    if parts.is_empty()
        || parts.len() > 3
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("Invalid Semantic Version".into());
    }
    let n = |i: usize| -> Result<u64, String> {
        parts.get(i).map_or(Ok(0), |p| {
            p.parse()
                .map_err(|_| "Invalid Semantic Version".to_string())
        })
    };
    Ok(Ver {
        major: n(0)?,
        minor: n(1)?,
        patch: n(2)?,
        pre,
        meta,
        original: orig,
    })
}

pub(super) fn cmp_pre(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a.is_empty(), b.is_empty()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        _ => {}
    }
    let pa: Vec<&str> = a.split('.').collect();
    let pb: Vec<&str> = b.split('.').collect();
    for i in 0..pa.len().max(pb.len()) {
        let (x, y) = match (pa.get(i), pb.get(i)) {
            (None, _) => return Ordering::Less,
            (_, None) => return Ordering::Greater,
            (Some(x), Some(y)) => (*x, *y),
        };
        let o = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(p), Ok(q)) => p.cmp(&q),
            (Ok(_), Err(_)) => Ordering::Less,
            (Err(_), Ok(_)) => Ordering::Greater,
            _ => x.cmp(y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

pub(super) fn cmp_ver(a: &Ver, b: &Ver) -> std::cmp::Ordering {
    (a.major, a.minor, a.patch)
        .cmp(&(b.major, b.minor, b.patch))
        .then_with(|| cmp_pre(&a.pre, &b.pre))
}

pub(super) fn check_one(c: &str, v: &Ver) -> Result<bool, String> {
    use std::cmp::Ordering::{Equal, Greater, Less};
    let c = c.trim();
    let ops = ["!=", ">=", "=>", "<=", "=<", "~>", ">", "<", "=", "~", "^"];
    let (op, rest) = ops
        .iter()
        .find_map(|o| c.strip_prefix(o).map(|r| (*o, r.trim())))
        .unwrap_or(("", c));
    let rest_t = rest.strip_prefix('v').unwrap_or(rest);
    // wildcard handling
    let core = rest_t.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    let is_wild = |p: &&str| matches!(*p, "x" | "X" | "*");
    let wild_at = parts.iter().position(is_wild);
    let given = parts.len();
    let cleaned: String = parts
        .iter()
        .map(|p| if is_wild(p) { "0" } else { *p })
        .collect::<Vec<_>>()
        .join(".");
    let suffix = &rest_t[core.len()..];
    let cv = parse_ver(&format!("{cleaned}{suffix}"))
        .map_err(|_| format!("improper constraint: {c}"))?;
    if cv.pre.is_empty() && !v.pre.is_empty() {
        return Ok(false);
    }
    let dirty = wild_at.is_some() || given < 3;
    let level = wild_at.unwrap_or(given);
    let ord = cmp_ver(v, &cv);
    Ok(match op {
        "" | "=" => {
            if dirty {
                match level {
                    0 => true,
                    1 => v.major == cv.major,
                    _ => v.major == cv.major && v.minor == cv.minor,
                }
            } else {
                ord == Equal
            }
        }
        "!=" => {
            if dirty {
                match level {
                    0 => false,
                    1 => v.major != cv.major,
                    _ => !(v.major == cv.major && v.minor == cv.minor),
                }
            } else {
                ord != Equal
            }
        }
        ">" => {
            if dirty {
                match level {
                    0 => false,
                    1 => v.major > cv.major,
                    _ => (v.major, v.minor) > (cv.major, cv.minor),
                }
            } else {
                ord == Greater
            }
        }
        ">=" | "=>" => ord != Less,
        "<" => ord == Less,
        "<=" | "=<" => {
            if dirty {
                match level {
                    0 => true,
                    1 => v.major <= cv.major,
                    _ => (v.major, v.minor) <= (cv.major, cv.minor),
                }
            } else {
                ord != Greater
            }
        }
        "~" | "~>" => {
            if ord == Less {
                false
            } else if level == 1 && wild_at.is_none() && given == 1 {
                v.major == cv.major
            } else {
                v.major == cv.major && v.minor == cv.minor
            }
        }
        "^" => {
            if ord == Less {
                false
            } else if cv.major > 0 || level <= 1 {
                v.major == cv.major
            } else if cv.minor > 0 || level == 2 {
                v.major == 0 && v.minor == cv.minor
            } else {
                v.major == 0 && v.minor == 0 && v.patch == cv.patch
            }
        }
        _ => false,
    })
}

/// Masterminds/semver's constraint grammar (its `cvRegex` and operators).
const CV: &str = r"v?([0-9|x|X|\*]+)(\.[0-9|x|X|\*]+)?(\.[0-9|x|X|\*]+)?(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?";
const OPS: &str = r"=||!=|>|<|>=|=>|<=|=<|~|~>|\^";

struct Grammar {
    find: regex::Regex,
    valid: regex::Regex,
    range: regex::Regex,
}

fn grammar() -> &'static Grammar {
    static G: std::sync::OnceLock<Grammar> = std::sync::OnceLock::new();
    G.get_or_init(|| {
        let re = |s: String| regex::Regex::new(&s).expect("semver constraint grammar");
        Grammar {
            find: re(format!(r"({OPS})\s*({CV})")),
            valid: re(format!(
                r"^(\s*({OPS})\s*({CV})\s*)((?:\s+|,\s*)({OPS})\s*({CV})\s*)*$"
            )),
            range: re(format!(r"\s*({CV})\s+-\s+({CV})\s*")),
        }
    })
}

/// `NewConstraint(c).Check(NewVersion(v))`: hyphen ranges rewritten, `||`
/// groups of comma- or space-separated constraints, errors as Masterminds'.
pub fn semver_compare(constraint: &str, version: &str) -> Result<bool, String> {
    let g = grammar();
    // rewriteRange: "1.2 - 1.4" means ">= 1.2 <= 1.4"
    let c = g.range.replace_all(constraint, |m: &regex::Captures<'_>| {
        let (a, b) = (&m[1], &m[11]);
        format!(">= {a} <= {b}")
    });
    let mut groups = Vec::new();
    for group in c.split("||") {
        if !g.valid.is_match(group) {
            return Err(format!("improper constraint: {group}"));
        }
        let mut cs: Vec<&str> = g.find.find_iter(group).map(|m| m.as_str()).collect();
        if cs.is_empty() {
            cs.push(group);
        }
        groups.push(cs);
    }
    let v = parse_ver(version).map_err(|_| "Invalid Semantic Version".to_string())?;
    for cs in groups {
        let mut ok = true;
        for c in cs {
            if !check_one(c, &v)? {
                ok = false;
                break;
            }
        }
        if ok {
            return Ok(true);
        }
    }
    Ok(false)
}

pub(super) fn register(m: &mut HashMap<&'static str, FuncDef>) {
    use Ty::Str;
    let mut add = |n: &'static str, p: &[Ty], v: Option<Ty>, f: crate::funcs::PlainFn| {
        m.insert(n, def(p, v, f));
    };
    add("semverCompare", &[Str, Str], None, |a| {
        semver_compare(s(&a[0]), s(&a[1])).map(Value::Bool)
    });
    add("semver", &[Str], None, |a| {
        Ok(Value::Object(std::rc::Rc::new(parse_ver(s(&a[0]))?)))
    });
}
