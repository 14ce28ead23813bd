//! Sprig 3.2.3's text function map (the deterministic part, plus uuid/rand),
//! with sprig's argument types and behaviour.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use crate::funcs::{FuncDef, Ty, def};
use crate::gofmt;
use crate::value::Value;

type Res = Result<Value, String>;

/// sprig's `strval`.
pub(crate) fn strval(v: &Value) -> String {
    match v {
        Value::Str(s) => s.to_string(),
        Value::Object(o) => o.display(),
        v => gofmt::sprint_value(v),
    }
}

/// `cast.ToInt64` (errors become 0).
pub(crate) fn to_i64(v: &Value) -> i64 {
    match v {
        Value::Int(i) | Value::Int64(i) => *i,
        Value::Float(f) => *f as i64,
        Value::Bool(b) => i64::from(*b),
        Value::Str(s) => parse_int0(s).unwrap_or(0),
        _ => 0,
    }
}

/// `strconv.ParseInt(s, 0, 0)`.
fn parse_int0(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(r) = lower.strip_prefix("0x") {
        (16, r)
    } else if let Some(r) = lower.strip_prefix("0o") {
        (8, r)
    } else if let Some(r) = lower.strip_prefix("0b") {
        (2, r)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return None;
    }
    let d: String = digits.chars().filter(|c| *c != '_').collect();
    let u = u64::from_str_radix(&d, radix).ok()?;
    if neg {
        if u <= 1u64 << 63 {
            Some((u as i64).wrapping_neg())
        } else {
            None
        }
    } else {
        i64::try_from(u).ok()
    }
}

/// `cast.ToFloat64`.
pub(crate) fn to_f64(v: &Value) -> f64 {
    match v {
        Value::Int(i) | Value::Int64(i) => *i as f64,
        Value::Float(f) => *f,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Str(s) => s.parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// sprig's `empty`.
pub(crate) fn empty(v: &Value) -> bool {
    !v.truth()
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}
fn int(v: &Value) -> i64 {
    v.as_int().unwrap_or(0)
}
fn vstr(x: impl Into<String>) -> Res {
    Ok(Value::string(x.into()))
}
fn strs(v: Vec<String>) -> Value {
    Value::typed_list(
        v.into_iter().map(Value::string).collect(),
        crate::value::Elem::Str,
    )
}

/// Go `strings.Title`.
fn title(x: &str) -> String {
    let mut out = String::with_capacity(x.len());
    let mut prev_sep = true;
    for c in x.chars() {
        if prev_sep {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_sep = !(c.is_alphanumeric() || c == '_' || c == '\'');
        if c.is_whitespace() {
            prev_sep = true;
        }
    }
    out
}

fn untitle(x: &str) -> String {
    let mut out = String::with_capacity(x.len());
    let mut prev_space = true;
    for c in x.chars() {
        if prev_space && c.is_alphabetic() {
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
        prev_space = c.is_whitespace();
    }
    out
}

fn byte_slice(x: &str, a: usize, b: usize) -> String {
    String::from_utf8_lossy(&x.as_bytes()[a..b]).into_owned()
}

fn list_items(v: &Value, what: &str) -> Result<Vec<Value>, String> {
    match v {
        Value::List(l) => Ok(l.to_vec()),
        // reflect.TypeOf(nil).Kind() dereferences a nil pointer in Go
        Value::Invalid | Value::Nil => {
            Err("runtime error: invalid memory address or nil pointer dereference".into())
        }
        v => Err(format!("Cannot {what} on type {}", v.kind_name())),
    }
}

/// Go's `reflect.DeepEqual` over our values.
pub(crate) fn deep_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Invalid | Value::Nil, Value::Invalid | Value::Nil) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x), Value::Int(y)) | (Value::Int64(x), Value::Int64(y)) => x == y,
        (Value::Float(x), Value::Float(y)) => x == y,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::List(x), Value::List(y)) => {
            x.elem == y.elem
                && x.len() == y.len()
                && x.iter().zip(y.iter()).all(|(p, q)| deep_equal(p, q))
        }
        (Value::Map(x), Value::Map(y)) => {
            let (x, y) = (x.borrow(), y.borrow());
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| deep_equal(v, w)))
        }
        _ => false,
    }
}

fn strslice(v: &Value) -> Vec<String> {
    match v {
        Value::List(l) => l.iter().filter(|x| !x.is_nil_like()).map(strval).collect(),
        Value::Invalid | Value::Nil => Vec::new(),
        v => vec![strval(v)],
    }
}

/// goutils' `AbbreviateFull` on bytes, as Go slices strings; errors give "".
fn abbreviate_full(x: &[u8], offset: i64, max: i64) -> Vec<u8> {
    let l = x.len() as i64;
    if x.is_empty() || max < 4 {
        return Vec::new();
    }
    if l <= max {
        return x.to_vec();
    }
    let mut offset = offset.min(l);
    if l - offset < max - 3 {
        offset = l - (max - 3);
    }
    let dots = |b: &[u8]| [b"...".as_slice(), b].concat();
    if offset <= 4 {
        return [&x[..(max - 3) as usize], b"..."].concat();
    }
    if max < 7 {
        return Vec::new();
    }
    if offset + max - 3 < l {
        return dots(&abbreviate_full(&x[offset as usize..], 0, max - 3));
    }
    dots(&x[(l - (max - 3)) as usize..])
}

/// Standard base64 with padding, as Go's `base64.StdEncoding` (sprig's b64enc).
pub fn b64enc(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

pub(crate) fn b64dec(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut buf = 0u32;
    let mut n = 0;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'\n' || c == b'\r' {
            i += 1;
            continue;
        }
        if c == b'=' {
            break;
        }
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return Err(format!("illegal base64 data at input byte {i}")),
        };
        buf = (buf << 6) | u32::from(v);
        n += 1;
        if n == 4 {
            out.extend_from_slice(&[(buf >> 16) as u8, (buf >> 8) as u8, buf as u8]);
            buf = 0;
            n = 0;
        }
        i += 1;
    }
    // padding checks as Go's StdEncoding (strict length)
    let rest = &bytes[i..];
    let pads = rest.len() - rest.iter().filter(|c| **c != b'=').count();
    match n {
        0 if pads == 0 => {}
        2 if pads == 2 => out.push((buf >> 4) as u8),
        3 if pads == 1 => out.extend_from_slice(&[(buf >> 10) as u8, (buf >> 2) as u8]),
        _ => {
            let pos = if n == 1 { i - 1 } else { i };
            return Err(format!("illegal base64 data at input byte {pos}"));
        }
    }
    Ok(out)
}

fn b32enc(data: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    for ch in data.chunks(5) {
        let mut b = [0u8; 5];
        b[..ch.len()].copy_from_slice(ch);
        let n = b.iter().fold(0u64, |a, x| (a << 8) | u64::from(*x));
        let chars = match ch.len() {
            1 => 2,
            2 => 4,
            3 => 5,
            4 => 7,
            _ => 8,
        };
        for k in 0..8 {
            if k < chars {
                out.push(T[((n >> (35 - 5 * k)) & 31) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// SHA-1, for `sha1sum` (small and self-contained).
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut msg = data.to_vec();
    let bitlen = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bitlen.to_be_bytes());
    for chunk in msg.chunks(64) {
        let mut w = [0u32; 80];
        for i in 0..16 {
            w[i] = u32::from_be_bytes([
                chunk[4 * i],
                chunk[4 * i + 1],
                chunk[4 * i + 2],
                chunk[4 * i + 3],
            ]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | ((!b) & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        h[0] = h[0].wrapping_add(a);
        h[1] = h[1].wrapping_add(b);
        h[2] = h[2].wrapping_add(c);
        h[3] = h[3].wrapping_add(d);
        h[4] = h[4].wrapping_add(e);
    }
    let mut out = [0u8; 20];
    for (i, x) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for x in data {
        a = (a + u32::from(*x)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

/// A small PRNG for the random functions (not diff-tested; not for secrets).
fn rand_u64() -> u64 {
    use std::cell::Cell;
    thread_local!(static STATE: Cell<u64> = Cell::new({
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        t | 1
    }));
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    })
}

fn rand_from(chars: &[u8], n: i64) -> String {
    (0..n.max(0))
        .map(|_| chars[(rand_u64() % chars.len() as u64) as usize] as char)
        .collect()
}

fn uuidv4() -> String {
    let mut b = [0u8; 16];
    for x in &mut b {
        *x = rand_u64() as u8;
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Go's `path.Clean`.
pub(crate) fn path_clean(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let j = parts.join("/");
    if rooted {
        format!("/{j}")
    } else if j.is_empty() {
        ".".into()
    } else {
        j
    }
}

fn path_base(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        return "/".into();
    }
    t.rsplit('/').next().unwrap_or(t).to_string()
}

fn path_dir(p: &str) -> String {
    let dir = match p.rfind('/') {
        Some(i) => &p[..=i],
        None => "",
    };
    path_clean(dir)
}

fn path_ext(p: &str) -> String {
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

fn regex(re: &str) -> Result<regex::Regex, String> {
    // Go panics in MustCompile; the message differs in its details from RE2's.
    regex::Regex::new(re).map_err(|_| {
        format!(
            "regexp: Compile({}): error parsing regexp",
            crate::gofmt::quote(re)
        )
    })
}

/// Go regexp replacement template (`$1`, `${name}`) is the same syntax as Rust's.
fn split_words(x: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = x.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if c.is_uppercase() && !cur.is_empty() {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            if prev.is_lowercase() || prev.is_numeric() || (prev.is_uppercase() && next_lower) {
                words.push(std::mem::take(&mut cur));
            }
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

// ---- semver (Masterminds/semver v3)

#[derive(Clone, Debug, PartialEq)]
struct Ver {
    major: u64,
    minor: u64,
    patch: u64,
    pre: String,
    meta: String,
    original: String,
}

fn parse_ver(v: &str) -> Result<Ver, String> {
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

fn cmp_pre(a: &str, b: &str) -> std::cmp::Ordering {
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

fn cmp_ver(a: &Ver, b: &Ver) -> std::cmp::Ordering {
    (a.major, a.minor, a.patch)
        .cmp(&(b.major, b.minor, b.patch))
        .then_with(|| cmp_pre(&a.pre, &b.pre))
}

fn check_one(c: &str, v: &Ver) -> Result<bool, String> {
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

pub(crate) fn semver_compare(constraint: &str, version: &str) -> Result<bool, String> {
    let v = parse_ver(version).map_err(|_| "Invalid Semantic Version".to_string())?;
    for group in constraint.split("||") {
        let mut ok = true;
        // AND: comma or space separated (hyphen ranges unsupported)
        for c in group.split([',', ' ']).filter(|x| !x.trim().is_empty()) {
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

pub(crate) fn register(m: &mut HashMap<&'static str, FuncDef>) {
    use Ty::{Any, Bool, Int, List, Map, Str};
    let mut add = |n: &'static str, p: &[Ty], v: Option<Ty>, f: crate::funcs::PlainFn| {
        m.insert(n, def(p, v, f));
    };
    // strings
    add("trim", &[Str], None, |a| {
        vstr(s(&a[0]).trim_matches(char::is_whitespace))
    });
    add("upper", &[Str], None, |a| vstr(s(&a[0]).to_uppercase()));
    add("lower", &[Str], None, |a| vstr(s(&a[0]).to_lowercase()));
    add("title", &[Str], None, |a| vstr(title(s(&a[0]))));
    add("untitle", &[Str], None, |a| vstr(untitle(s(&a[0]))));
    add("substr", &[Int, Int, Str], None, |a| {
        let (st, en, x) = (int(&a[0]), int(&a[1]), s(&a[2]));
        let l = x.len() as i64;
        if st < 0 {
            if en < 0 || en > l {
                return Err(format!(
                    "runtime error: slice bounds out of range [:{en}] with length {l}"
                ));
            }
            return vstr(byte_slice(x, 0, en as usize));
        }
        if en < 0 || en > l {
            if st > l {
                return Err(format!(
                    "runtime error: slice bounds out of range [{st}:{l}]"
                ));
            }
            return vstr(byte_slice(x, st as usize, l as usize));
        }
        if st > en {
            return Err(format!(
                "runtime error: slice bounds out of range [{st}:{en}]"
            ));
        }
        vstr(byte_slice(x, st as usize, en as usize))
    });
    add("repeat", &[Int, Str], None, |a| {
        let n = int(&a[0]);
        if n < 0 {
            return Err("strings: negative Repeat count".into());
        }
        vstr(s(&a[1]).repeat(n as usize))
    });
    add("trimall", &[Str, Str], None, |a| {
        vstr(s(&a[1]).trim_matches(|c| s(&a[0]).contains(c)))
    });
    add("trimAll", &[Str, Str], None, |a| {
        vstr(s(&a[1]).trim_matches(|c| s(&a[0]).contains(c)))
    });
    add("trimSuffix", &[Str, Str], None, |a| {
        vstr(s(&a[1]).strip_suffix(s(&a[0])).unwrap_or(s(&a[1])))
    });
    add("trimPrefix", &[Str, Str], None, |a| {
        vstr(s(&a[1]).strip_prefix(s(&a[0])).unwrap_or(s(&a[1])))
    });
    add("nospace", &[Str], None, |a| {
        vstr(
            s(&a[0])
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect::<String>(),
        )
    });
    add("initials", &[Str], None, |a| {
        vstr(
            s(&a[0])
                .split_whitespace()
                .filter_map(|w| w.chars().next())
                .collect::<String>(),
        )
    });
    add("swapcase", &[Str], None, |a| {
        vstr(
            s(&a[0])
                .chars()
                .map(|c| {
                    if c.is_uppercase() {
                        c.to_lowercase().collect::<String>()
                    } else {
                        c.to_uppercase().collect()
                    }
                })
                .collect::<String>(),
        )
    });
    add("snakecase", &[Str], None, |a| {
        vstr(
            split_words(s(&a[0]))
                .iter()
                .map(|w| w.to_lowercase())
                .collect::<Vec<_>>()
                .join("_"),
        )
    });
    add("kebabcase", &[Str], None, |a| {
        vstr(
            split_words(s(&a[0]))
                .iter()
                .map(|w| w.to_lowercase())
                .collect::<Vec<_>>()
                .join("-"),
        )
    });
    add("camelcase", &[Str], None, |a| {
        vstr(
            s(&a[0])
                .split('_')
                .filter(|w| !w.is_empty())
                .map(|w| {
                    let mut c = w.chars();
                    c.next()
                        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                        .unwrap_or_default()
                })
                .collect::<String>(),
        )
    });
    add("contains", &[Str, Str], None, |a| {
        Ok(Value::Bool(s(&a[1]).contains(s(&a[0]))))
    });
    add("hasPrefix", &[Str, Str], None, |a| {
        Ok(Value::Bool(s(&a[1]).starts_with(s(&a[0]))))
    });
    add("hasSuffix", &[Str, Str], None, |a| {
        Ok(Value::Bool(s(&a[1]).ends_with(s(&a[0]))))
    });
    add("quote", &[], Some(Any), |a| {
        vstr(
            a.iter()
                .filter(|x| !x.is_nil_like())
                .map(|x| gofmt::quote(&strval(x)))
                .collect::<Vec<_>>()
                .join(" "),
        )
    });
    add("squote", &[], Some(Any), |a| {
        vstr(
            a.iter()
                .filter(|x| !x.is_nil_like())
                .map(|x| format!("'{}'", strval(x)))
                .collect::<Vec<_>>()
                .join(" "),
        )
    });
    add("cat", &[], Some(Any), |a| {
        vstr(
            a.iter()
                .filter(|x| !x.is_nil_like())
                .map(gofmt::sprint_value)
                .collect::<Vec<_>>()
                .join(" "),
        )
    });
    add("indent", &[Int, Str], None, |a| {
        let pad = " ".repeat(int(&a[0]).max(0) as usize);
        vstr(format!(
            "{pad}{}",
            s(&a[1]).replace('\n', &format!("\n{pad}"))
        ))
    });
    add("nindent", &[Int, Str], None, |a| {
        let pad = " ".repeat(int(&a[0]).max(0) as usize);
        vstr(format!(
            "\n{pad}{}",
            s(&a[1]).replace('\n', &format!("\n{pad}"))
        ))
    });
    add("replace", &[Str, Str, Str], None, |a| {
        vstr(go_replace(s(&a[2]), s(&a[0]), s(&a[1])))
    });
    add("plural", &[Str, Str, Int], None, |a| {
        Ok(if int(&a[2]) == 1 {
            a[0].clone()
        } else {
            a[1].clone()
        })
    });
    add("trunc", &[Int, Str], None, |a| {
        let (c, x) = (int(&a[0]), s(&a[1]));
        let l = x.len() as i64;
        if c < 0 && l + c > 0 {
            return vstr(byte_slice(x, (l + c) as usize, l as usize));
        }
        if c >= 0 && l > c {
            return vstr(byte_slice(x, 0, c as usize));
        }
        vstr(x)
    });
    add("abbrev", &[Int, Str], None, |a| {
        let (w, x) = (int(&a[0]), s(&a[1]));
        if w < 4 || x.len() as i64 <= w {
            return vstr(x);
        }
        vstr(format!("{}...", byte_slice(x, 0, (w - 3) as usize)))
    });
    add("wrap", &[Int, Str], None, |a| {
        vstr(wrap(s(&a[1]), int(&a[0]), "\n"))
    });
    add("wrapWith", &[Int, Str, Str], None, |a| {
        vstr(wrap(s(&a[2]), int(&a[0]), s(&a[1])))
    });
    add("sha1sum", &[Str], None, |a| {
        vstr(hex(&sha1(s(&a[0]).as_bytes())))
    });
    add("sha256sum", &[Str], None, |a| {
        use sha2::Digest;
        vstr(hex(&sha2::Sha256::digest(s(&a[0]).as_bytes())))
    });
    add("adler32sum", &[Str], None, |a| {
        vstr(adler32(s(&a[0]).as_bytes()).to_string())
    });
    add("toString", &[Any], None, |a| vstr(strval(&a[0])));
    add("atoi", &[Str], None, |a| {
        Ok(Value::Int(s(&a[0]).parse::<i64>().unwrap_or(0)))
    });
    add("int64", &[Any], None, |a| Ok(Value::Int64(to_i64(&a[0]))));
    add("int", &[Any], None, |a| Ok(Value::Int(to_i64(&a[0]))));
    add("float64", &[Any], None, |a| Ok(Value::Float(to_f64(&a[0]))));
    add("toDecimal", &[Any], None, |a| {
        Ok(Value::Int64(
            i64::from_str_radix(&gofmt::sprint_value(&a[0]), 8).unwrap_or(0),
        ))
    });
    add("seq", &[], Some(Int), |a| {
        let p: Vec<i64> = a.iter().map(int).collect();
        let (start, end, step) = match p.len() {
            0 => return vstr(""),
            1 => (1, p[0], if p[0] < 1 { -1 } else { 1 }),
            2 => (p[0], p[1], if p[1] < p[0] { -1 } else { 1 }),
            _ => (p[0], p[2], p[1]),
        };
        if step == 0 || (end < start && step > 0) || (end > start && step < 0) {
            return vstr("");
        }
        let mut out = Vec::new();
        let mut i = start;
        while (step > 0 && i <= end) || (step < 0 && i >= end) {
            out.push(i.to_string());
            i += step;
        }
        vstr(out.join(" "))
    });
    add("split", &[Str, Str], None, |a| {
        let m: BTreeMap<String, Value> = go_split(s(&a[1]), s(&a[0]), -1)
            .into_iter()
            .enumerate()
            .map(|(i, p)| (format!("_{i}"), Value::string(p)))
            .collect();
        Ok(Value::map(m))
    });
    add("splitList", &[Str, Str], None, |a| {
        Ok(strs(go_split(s(&a[1]), s(&a[0]), -1)))
    });
    add("splitn", &[Str, Int, Str], None, |a| {
        let m: BTreeMap<String, Value> = go_split(s(&a[2]), s(&a[0]), int(&a[1]))
            .into_iter()
            .enumerate()
            .map(|(i, p)| (format!("_{i}"), Value::string(p)))
            .collect();
        Ok(Value::map(m))
    });
    add("toStrings", &[Any], None, |a| Ok(strs(strslice(&a[0]))));
    add("until", &[Int], None, |a| {
        let c = int(&a[0]);
        Ok(until_step(0, c, if c < 0 { -1 } else { 1 }))
    });
    add("untilStep", &[Int, Int, Int], None, |a| {
        Ok(until_step(int(&a[0]), int(&a[1]), int(&a[2])))
    });
    // math
    add("add1", &[Any], None, |a| {
        Ok(Value::Int64(to_i64(&a[0]).wrapping_add(1)))
    });
    add("add", &[], Some(Any), |a| {
        Ok(Value::Int64(
            a.iter().map(to_i64).fold(0i64, i64::wrapping_add),
        ))
    });
    add("sub", &[Any, Any], None, |a| {
        Ok(Value::Int64(to_i64(&a[0]).wrapping_sub(to_i64(&a[1]))))
    });
    add("div", &[Any, Any], None, |a| {
        let d = to_i64(&a[1]);
        if d == 0 {
            return Err("runtime error: integer divide by zero".into());
        }
        Ok(Value::Int64(to_i64(&a[0]).wrapping_div(d)))
    });
    add("mod", &[Any, Any], None, |a| {
        let d = to_i64(&a[1]);
        if d == 0 {
            return Err("runtime error: integer divide by zero".into());
        }
        Ok(Value::Int64(to_i64(&a[0]).wrapping_rem(d)))
    });
    add("mul", &[Any], Some(Any), |a| {
        Ok(Value::Int64(
            a.iter().map(to_i64).fold(1i64, i64::wrapping_mul),
        ))
    });
    let maxf: crate::funcs::PlainFn = |a| Ok(Value::Int64(a.iter().map(to_i64).max().unwrap_or(0)));
    add("max", &[Any], Some(Any), maxf);
    add("biggest", &[Any], Some(Any), maxf);
    add("min", &[Any], Some(Any), |a| {
        Ok(Value::Int64(a.iter().map(to_i64).min().unwrap_or(0)))
    });
    add("maxf", &[Any], Some(Any), |a| {
        Ok(Value::Float(
            a.iter().map(to_f64).fold(f64::NEG_INFINITY, f64::max),
        ))
    });
    add("minf", &[Any], Some(Any), |a| {
        Ok(Value::Float(
            a.iter().map(to_f64).fold(f64::INFINITY, f64::min),
        ))
    });
    // shopspring/decimal arithmetic on the floats' shortest decimal forms
    add("addf", &[], Some(Any), |a| {
        Ok(Value::Float(dec_op(&Value::Float(0.0), a, DecOp::Add)))
    });
    add("add1f", &[Any], None, |a| {
        Ok(Value::Float(dec_op(&a[0], &[Value::Int(1)], DecOp::Add)))
    });
    add("subf", &[Any], Some(Any), |a| {
        Ok(Value::Float(dec_op(&a[0], &a[1..], DecOp::Sub)))
    });
    add("mulf", &[Any], Some(Any), |a| {
        Ok(Value::Float(dec_op(&a[0], &a[1..], DecOp::Mul)))
    });
    add("divf", &[Any], Some(Any), |a| {
        let r = dec_op(&a[0], &a[1..], DecOp::Div);
        if r.is_nan() {
            return Err("decimal division by 0".into());
        }
        Ok(Value::Float(r))
    });
    add("randBytes", &[Int], None, |a| {
        let n = int(&a[0]).max(0) as usize;
        let b: Vec<u8> = (0..n).map(|_| rand_u64() as u8).collect();
        vstr(b64enc(&b))
    });
    add("shuffle", &[Str], None, |a| {
        let mut c: Vec<char> = s(&a[0]).chars().collect();
        for i in (1..c.len()).rev() {
            let j = (rand_u64() % (i as u64 + 1)) as usize;
            c.swap(i, j);
        }
        vstr(c.into_iter().collect::<String>())
    });
    add("floor", &[Any], None, |a| {
        Ok(Value::Float(to_f64(&a[0]).floor()))
    });
    add("ceil", &[Any], None, |a| {
        Ok(Value::Float(to_f64(&a[0]).ceil()))
    });
    add("round", &[Any, Int], Some(Ty::Float), |a| {
        let round_on = a.get(2).map_or(0.5, to_f64);
        let val = to_f64(&a[0]);
        let pow = 10f64.powf(int(&a[1]) as f64);
        let digit = pow * val;
        let div = digit.fract();
        let r = if div >= round_on {
            digit.ceil()
        } else {
            digit.floor()
        };
        Ok(Value::Float(r / pow))
    });
    add("join", &[Str, Any], None, |a| {
        vstr(strslice(&a[1]).join(s(&a[0])))
    });
    add("sortAlpha", &[Any], None, |a| {
        let mut v = strslice(&a[0]);
        v.sort();
        Ok(strs(v))
    });
    // defaults
    add("default", &[Any], Some(Any), |a| {
        if a.len() < 2 || empty(&a[1]) {
            return Ok(a[0].clone());
        }
        Ok(a[1].clone())
    });
    add("empty", &[Any], None, |a| Ok(Value::Bool(empty(&a[0]))));
    add("coalesce", &[], Some(Any), |a| {
        Ok(a.iter().find(|v| !empty(v)).cloned().unwrap_or(Value::Nil))
    });
    add("all", &[], Some(Any), |a| {
        Ok(Value::Bool(a.iter().all(|v| !empty(v))))
    });
    add("any", &[], Some(Any), |a| {
        Ok(Value::Bool(a.iter().any(|v| !empty(v))))
    });
    add("compact", &[Any], None, |a| {
        Ok(Value::list(
            list_items(&a[0], "compact")?
                .into_iter()
                .filter(|v| !empty(v))
                .collect(),
        ))
    });
    add("mustCompact", &[Any], None, |a| {
        Ok(Value::list(
            list_items(&a[0], "compact")?
                .into_iter()
                .filter(|v| !empty(v))
                .collect(),
        ))
    });
    add("ternary", &[Any, Any, Bool], None, |a| {
        Ok(if matches!(a[2], Value::Bool(true)) {
            a[0].clone()
        } else {
            a[1].clone()
        })
    });
    add("deepCopy", &[Any], None, |a| Ok(deep_copy(&a[0])));
    add("mustDeepCopy", &[Any], None, |a| Ok(deep_copy(&a[0])));
    add("typeOf", &[Any], None, |a| {
        vstr(if a[0].is_nil_like() {
            "<nil>".to_string()
        } else {
            a[0].type_name()
        })
    });
    add("typeIs", &[Str, Any], None, |a| {
        Ok(Value::Bool(
            s(&a[0])
                == (if a[1].is_nil_like() {
                    "<nil>".to_string()
                } else {
                    a[1].type_name()
                }),
        ))
    });
    add("typeIsLike", &[Str, Any], None, |a| {
        let t = a[1].type_name();
        Ok(Value::Bool(s(&a[0]) == t || s(&a[0]) == format!("*{t}")))
    });
    add("kindOf", &[Any], None, |a| {
        vstr(if a[0].is_nil_like() {
            "invalid"
        } else {
            a[0].kind_name()
        })
    });
    add("kindIs", &[Str, Any], None, |a| {
        Ok(Value::Bool(
            s(&a[0])
                == (if a[1].is_nil_like() {
                    "invalid"
                } else {
                    a[1].kind_name()
                }),
        ))
    });
    add("deepEqual", &[Any, Any], None, |a| {
        Ok(Value::Bool(deep_equal(&a[0], &a[1])))
    });
    // paths
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
    add("hello", &[], None, |_| vstr("Hello!"));
    add("abbrevboth", &[Int, Int, Str], None, |a| {
        let (l, r, x) = (int(&a[0]), int(&a[1]), s(&a[2]));
        if r < 4 || l > 0 && r < 7 {
            return vstr(x);
        }
        vstr(String::from_utf8_lossy(&abbreviate_full(x.as_bytes(), l, r)).into_owned())
    });
    // encodings
    add("b64enc", &[Str], None, |a| {
        vstr(b64enc(s(&a[0]).as_bytes()))
    });
    add("b64dec", &[Str], None, |a| {
        vstr(match b64dec(s(&a[0])) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => e,
        })
    });
    add("b32enc", &[Str], None, |a| {
        vstr(b32enc(s(&a[0]).as_bytes()))
    });
    add("b32dec", &[Str], None, |a| {
        vstr(match b32dec(s(&a[0])) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => e,
        })
    });
    add("urlParse", &[Str], None, |a| url_parse(s(&a[0])));
    add("urlJoin", &[Map], None, url_join);
    // lists and dicts
    add("list", &[], Some(Any), |a| Ok(Value::list(a.to_vec())));
    add("tuple", &[], Some(Any), |a| Ok(Value::list(a.to_vec())));
    add("dict", &[], Some(Any), |a| {
        let mut m = BTreeMap::new();
        for pair in a.chunks(2) {
            m.insert(
                strval(&pair[0]),
                pair.get(1).cloned().unwrap_or_else(|| Value::str("")),
            );
        }
        Ok(Value::map(m))
    });
    add("get", &[Map, Str], None, |a| {
        let Value::Map(m) = &a[0] else {
            return vstr("");
        };
        Ok(m.borrow()
            .get(s(&a[1]))
            .cloned()
            .unwrap_or_else(|| Value::str("")))
    });
    add("set", &[Map, Str, Any], None, |a| {
        if let Value::Map(m) = &a[0] {
            m.borrow_mut().insert(s(&a[1]).to_string(), a[2].clone());
        }
        Ok(a[0].clone())
    });
    add("unset", &[Map, Str], None, |a| {
        if let Value::Map(m) = &a[0] {
            m.borrow_mut().remove(s(&a[1]));
        }
        Ok(a[0].clone())
    });
    add("hasKey", &[Map, Str], None, |a| {
        Ok(Value::Bool(
            matches!(&a[0], Value::Map(m) if m.borrow().contains_key(s(&a[1]))),
        ))
    });
    add("pluck", &[Str], Some(Map), |a| {
        Ok(Value::list(
            a[1..]
                .iter()
                .filter_map(|d| match d {
                    Value::Map(m) => m.borrow().get(s(&a[0])).cloned(),
                    _ => None,
                })
                .collect(),
        ))
    });
    add("keys", &[], Some(Map), |a| {
        let mut k = Vec::new();
        for d in a {
            if let Value::Map(m) = d {
                k.extend(m.borrow().keys().cloned());
            }
        }
        Ok(strs(k))
    });
    add("pick", &[Map], Some(Str), |a| {
        let Value::Map(m) = &a[0] else {
            return Ok(Value::map(BTreeMap::new()));
        };
        let m = m.borrow();
        Ok(Value::map(
            a[1..]
                .iter()
                .filter_map(|k| m.get(s(k)).map(|v| (s(k).to_string(), v.clone())))
                .collect(),
        ))
    });
    add("omit", &[Map], Some(Str), |a| {
        let Value::Map(m) = &a[0] else {
            return Ok(Value::map(BTreeMap::new()));
        };
        let m = m.borrow();
        Ok(Value::map(
            m.iter()
                .filter(|(k, _)| !a[1..].iter().any(|o| s(o) == k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ))
    });
    add("values", &[Map], None, |a| {
        let Value::Map(m) = &a[0] else {
            return Ok(Value::list(Vec::new()));
        };
        Ok(Value::list(m.borrow().values().cloned().collect()))
    });
    add("merge", &[Map], Some(Map), |a| {
        for src in &a[1..] {
            merge_into(&a[0], src, false);
        }
        Ok(a[0].clone())
    });
    add("mustMerge", &[Map], Some(Map), |a| {
        for src in &a[1..] {
            merge_into(&a[0], src, false);
        }
        Ok(a[0].clone())
    });
    add("mergeOverwrite", &[Map], Some(Map), |a| {
        for src in &a[1..] {
            merge_into(&a[0], src, true);
        }
        Ok(a[0].clone())
    });
    add("mustMergeOverwrite", &[Map], Some(Map), |a| {
        for src in &a[1..] {
            merge_into(&a[0], src, true);
        }
        Ok(a[0].clone())
    });
    let push: crate::funcs::PlainFn = |a| {
        let mut l = list_items(&a[0], "push")?;
        l.push(a[1].clone());
        Ok(Value::list(l))
    };
    add("append", &[Any, Any], None, push);
    add("push", &[Any, Any], None, push);
    add("mustAppend", &[Any, Any], None, push);
    add("mustPush", &[Any, Any], None, push);
    let prepend: crate::funcs::PlainFn = |a| {
        let mut l = list_items(&a[0], "prepend")?;
        l.insert(0, a[1].clone());
        Ok(Value::list(l))
    };
    add("prepend", &[Any, Any], None, prepend);
    add("mustPrepend", &[Any, Any], None, prepend);
    let first: crate::funcs::PlainFn = |a| {
        Ok(list_items(&a[0], "find first")?
            .first()
            .cloned()
            .unwrap_or(Value::Nil))
    };
    add("first", &[Any], None, first);
    add("mustFirst", &[Any], None, first);
    let last: crate::funcs::PlainFn = |a| {
        Ok(list_items(&a[0], "find last")?
            .last()
            .cloned()
            .unwrap_or(Value::Nil))
    };
    add("last", &[Any], None, last);
    add("mustLast", &[Any], None, last);
    let rest: crate::funcs::PlainFn = |a| {
        let l = list_items(&a[0], "find rest")?;
        if l.is_empty() {
            return Ok(Value::Nil);
        }
        Ok(Value::list(l[1..].to_vec()))
    };
    add("rest", &[Any], None, rest);
    add("mustRest", &[Any], None, rest);
    let initial: crate::funcs::PlainFn = |a| {
        let l = list_items(&a[0], "find initial")?;
        if l.is_empty() {
            return Ok(Value::Nil);
        }
        Ok(Value::list(l[..l.len() - 1].to_vec()))
    };
    add("initial", &[Any], None, initial);
    add("mustInitial", &[Any], None, initial);
    let reverse: crate::funcs::PlainFn = |a| {
        let mut l = list_items(&a[0], "find reverse")?;
        l.reverse();
        Ok(Value::list(l))
    };
    add("reverse", &[Any], None, reverse);
    add("mustReverse", &[Any], None, reverse);
    let uniq: crate::funcs::PlainFn = |a| {
        let mut out: Vec<Value> = Vec::new();
        for v in list_items(&a[0], "find uniq")? {
            if !out.iter().any(|x| deep_equal(x, &v)) {
                out.push(v);
            }
        }
        Ok(Value::list(out))
    };
    add("uniq", &[Any], None, uniq);
    add("mustUniq", &[Any], None, uniq);
    let without: crate::funcs::PlainFn = |a| {
        let l = list_items(&a[0], "find without")?;
        Ok(Value::list(
            l.into_iter()
                .filter(|v| !a[1..].iter().any(|o| deep_equal(o, v)))
                .collect(),
        ))
    };
    add("without", &[Any], Some(Any), without);
    add("mustWithout", &[Any], Some(Any), without);
    let has: crate::funcs::PlainFn = |a| {
        if a[1].is_nil_like() {
            return Ok(Value::Bool(false));
        }
        let l = list_items(&a[1], "find has")?;
        Ok(Value::Bool(l.iter().any(|x| deep_equal(x, &a[0]))))
    };
    add("has", &[Any, Any], None, has);
    add("mustHas", &[Any, Any], None, has);
    let sslice: crate::funcs::PlainFn = |a| {
        let l = list_items(&a[0], "slice")?;
        let len = l.len() as i64;
        let st = a.get(1).map_or(0, to_i64);
        let en = a.get(2).map_or(len, to_i64);
        if st < 0 || en > len || st > en {
            return Err(format!(
                "runtime error: slice bounds out of range [{st}:{en}]"
            ));
        }
        Ok(Value::list(l[st as usize..en as usize].to_vec()))
    };
    add("slice", &[Any], Some(Any), sslice);
    add("mustSlice", &[Any], Some(Any), sslice);
    add("concat", &[], Some(Any), |a| {
        let mut out = Vec::new();
        for l in a {
            match l {
                Value::List(x) => out.extend(x.iter().cloned()),
                v => return Err(format!("Cannot concat type {} as list", v.kind_name())),
            }
        }
        Ok(Value::list(out))
    });
    add("dig", &[], Some(Any), |a| {
        if a.len() < 3 {
            return Err("dig needs at least three arguments".into());
        }
        let Value::Map(m) = &a[a.len() - 1] else {
            return Err(format!(
                "interface conversion: interface {{}} is {}, not map[string]interface {{}}",
                a[a.len() - 1].type_name()
            ));
        };
        let def = a[a.len() - 2].clone();
        let mut cur = Value::Map(m.clone());
        for k in &a[..a.len() - 2] {
            let Value::Map(mm) = &cur else {
                return Err(format!(
                    "interface conversion: interface {{}} is {}, not map[string]interface {{}}",
                    cur.type_name()
                ));
            };
            let next = mm.borrow().get(s(k)).cloned();
            match next {
                Some(v) => cur = v,
                None => return Ok(def),
            }
        }
        Ok(cur)
    });
    let chunk: crate::funcs::PlainFn = |a| {
        let size = int(&a[0]);
        let l = list_items(&a[1], "chunk")?;
        if size <= 0 {
            return Err("runtime error: integer divide by zero".into());
        }
        Ok(Value::typed_list(
            l.chunks(size as usize)
                .map(|c| Value::list(c.to_vec()))
                .collect(),
            crate::value::Elem::AnyList,
        ))
    };
    add("chunk", &[Int, Any], None, chunk);
    add("mustChunk", &[Int, Any], None, chunk);
    // random and ids (not deterministic; excluded from differential tests)
    add("uuidv4", &[], None, |_| vstr(uuidv4()));
    add("randAlphaNum", &[Int], None, |a| {
        vstr(rand_from(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            int(&a[0]),
        ))
    });
    add("randAlpha", &[Int], None, |a| {
        vstr(rand_from(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
            int(&a[0]),
        ))
    });
    add("randNumeric", &[Int], None, |a| {
        vstr(rand_from(b"0123456789", int(&a[0])))
    });
    add("randAscii", &[Int], None, |a| {
        vstr(rand_from(b"!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~", int(&a[0])))
    });
    add("randInt", &[Int, Int], None, |a| {
        let (lo, hi) = (int(&a[0]), int(&a[1]));
        if hi <= lo {
            return Err("invalid argument to Intn".into());
        }
        Ok(Value::Int(lo + (rand_u64() % (hi - lo) as u64) as i64))
    });
    // password hashes (random salt: not diff-tested; Go's x/crypto writes $2a$)
    add("bcrypt", &[Str], None, |a| vstr(bcrypt_2a(s(&a[0]))));
    add("htpasswd", &[Str, Str], None, |a| {
        let user = s(&a[0]);
        if user.contains(':') {
            return vstr(format!("invalid username: {user}"));
        }
        vstr(format!("{user}:{}", bcrypt_2a(s(&a[1]))))
    });
    // semver
    add("semverCompare", &[Str, Str], None, |a| {
        semver_compare(s(&a[0]), s(&a[1])).map(Value::Bool)
    });
    add("semver", &[Str], None, |a| {
        let v = parse_ver(s(&a[0]))?;
        let mut m = BTreeMap::new();
        m.insert("Major".to_string(), Value::Int64(v.major as i64));
        m.insert("Minor".to_string(), Value::Int64(v.minor as i64));
        m.insert("Patch".to_string(), Value::Int64(v.patch as i64));
        m.insert("Prerelease".to_string(), Value::string(v.pre));
        m.insert("Metadata".to_string(), Value::string(v.meta));
        m.insert("Original".to_string(), Value::string(v.original));
        Ok(Value::map(m))
    });
    add("fail", &[Str], None, |a| Err(s(&a[0]).to_string()));
    // regex
    add("regexMatch", &[Str, Str], None, |a| {
        Ok(Value::Bool(
            regex(s(&a[0])).is_ok_and(|r| r.is_match(s(&a[1]))),
        ))
    });
    add("mustRegexMatch", &[Str, Str], None, |a| {
        Ok(Value::Bool(regex(s(&a[0]))?.is_match(s(&a[1]))))
    });
    let rfindall: crate::funcs::PlainFn = |a| {
        let re = regex(s(&a[0]))?;
        let n = int(&a[2]);
        let it = re.find_iter(s(&a[1])).map(|m| m.as_str().to_string());
        let v: Vec<String> = if n < 0 {
            it.collect()
        } else {
            it.take(n as usize).collect()
        };
        Ok(strs(v))
    };
    add("regexFindAll", &[Str, Str, Int], None, rfindall);
    add("mustRegexFindAll", &[Str, Str, Int], None, rfindall);
    let rfind: crate::funcs::PlainFn = |a| {
        vstr(
            regex(s(&a[0]))?
                .find(s(&a[1]))
                .map(|m| m.as_str().to_string())
                .unwrap_or_default(),
        )
    };
    add("regexFind", &[Str, Str], None, rfind);
    add("mustRegexFind", &[Str, Str], None, rfind);
    let rrepl: crate::funcs::PlainFn = |a| {
        vstr(
            regex(s(&a[0]))?
                .replace_all(s(&a[1]), s(&a[2]))
                .into_owned(),
        )
    };
    add("regexReplaceAll", &[Str, Str, Str], None, rrepl);
    add("mustRegexReplaceAll", &[Str, Str, Str], None, rrepl);
    let rrepll: crate::funcs::PlainFn = |a| {
        vstr(
            regex(s(&a[0]))?
                .replace_all(s(&a[1]), regex::NoExpand(s(&a[2])))
                .into_owned(),
        )
    };
    add("regexReplaceAllLiteral", &[Str, Str, Str], None, rrepll);
    add("mustRegexReplaceAllLiteral", &[Str, Str, Str], None, rrepll);
    let rsplit: crate::funcs::PlainFn = |a| {
        let re = regex(s(&a[0]))?;
        let n = int(&a[2]);
        let v: Vec<String> = match n {
            ..0 => re.split(s(&a[1])).map(str::to_string).collect(),
            0 => Vec::new(),
            _ => re
                .splitn(s(&a[1]), n as usize)
                .map(str::to_string)
                .collect(),
        };
        Ok(strs(v))
    };
    add("regexSplit", &[Str, Str, Int], None, rsplit);
    add("mustRegexSplit", &[Str, Str, Int], None, rsplit);
    add("regexQuoteMeta", &[Str], None, |a| {
        vstr(regex::escape(s(&a[0])))
    });
    let _ = List;
}

fn until_step(start: i64, stop: i64, step: i64) -> Value {
    let ints = |v| Value::typed_list(v, crate::value::Elem::Int);
    let mut v = Vec::new();
    if stop < start {
        if step >= 0 {
            return ints(v);
        }
        let mut i = start;
        while i > stop {
            v.push(Value::Int(i));
            i += step;
        }
        return ints(v);
    }
    if step <= 0 {
        return ints(v);
    }
    let mut i = start;
    while i < stop {
        v.push(Value::Int(i));
        i += step;
    }
    ints(v)
}

/// Go's `strings.Replace(s, old, new, -1)` (empty `old` inserts between runes).
fn go_replace(x: &str, old: &str, new: &str) -> String {
    if old.is_empty() {
        let mut out = String::from(new);
        for c in x.chars() {
            out.push(c);
            out.push_str(new);
        }
        return out;
    }
    x.replace(old, new)
}

/// Go's `strings.SplitN` (n < 0: all; empty sep splits into UTF-8 sequences).
fn go_split(x: &str, sep: &str, n: i64) -> Vec<String> {
    if n == 0 {
        return Vec::new();
    }
    if sep.is_empty() {
        let chars: Vec<String> = x.chars().map(String::from).collect();
        if n > 0 && chars.len() as i64 > n {
            let mut v: Vec<String> = chars[..(n - 1) as usize].to_vec();
            v.push(chars[(n - 1) as usize..].concat());
            return v;
        }
        return chars;
    }
    if n < 0 {
        x.split(sep).map(str::to_string).collect()
    } else {
        x.splitn(n as usize, sep).map(str::to_string).collect()
    }
}

/// `goutils.WrapCustom(str, width, sep, true)`.
fn wrap(x: &str, width: i64, sep: &str) -> String {
    let width = if width < 1 { 1 } else { width as usize };
    let mut out = String::new();
    for (li, line) in x.split('\n').enumerate() {
        if li > 0 {
            out.push_str(sep);
        }
        let mut cur = String::new();
        for word in line.split(' ') {
            if cur.is_empty() {
                cur.push_str(word);
            } else if cur.len() + 1 + word.len() <= width {
                cur.push(' ');
                cur.push_str(word);
            } else {
                out.push_str(&cur);
                out.push_str(sep);
                cur = word.to_string();
            }
            while cur.len() > width {
                let (a, b) = cur.split_at(width);
                out.push_str(a);
                out.push_str(sep);
                cur = b.to_string();
            }
        }
        out.push_str(&cur);
    }
    out
}

pub(crate) fn deep_copy(v: &Value) -> Value {
    match v {
        Value::List(l) => Value::list(l.iter().map(deep_copy).collect()),
        Value::Map(m) => Value::map(
            m.borrow()
                .iter()
                .map(|(k, v)| (k.clone(), deep_copy(v)))
                .collect(),
        ),
        v => v.clone(),
    }
}

/// mergo's Merge / `MergeWithOverwrite` for maps: fills missing (or, with
/// overwrite, non-empty source) keys, recursing into nested maps.
pub(crate) fn merge_into(dst: &Value, src: &Value, overwrite: bool) {
    let (Value::Map(d), Value::Map(sm)) = (dst, src) else {
        return;
    };
    if std::rc::Rc::ptr_eq(d, sm) {
        return;
    }
    let src_entries: Vec<(String, Value)> = sm
        .borrow()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, sv) in src_entries {
        let existing = d.borrow().get(&k).cloned();
        match existing {
            Some(dv @ Value::Map(_)) if matches!(sv, Value::Map(_)) => {
                merge_into(&dv, &sv, overwrite);
            }
            Some(dv) => {
                if (overwrite && !empty(&sv))
                    || (!overwrite && empty(&dv) && !matches!(dv, Value::Map(_)))
                {
                    d.borrow_mut().insert(k, sv);
                }
            }
            None => {
                d.borrow_mut().insert(k, sv);
            }
        }
    }
}

fn b32dec(s: &str) -> Result<Vec<u8>, String> {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let clean: Vec<u8> = s.bytes().filter(|b| *b != b'\n' && *b != b'\r').collect();
    if !clean.len().is_multiple_of(8) {
        return Err(format!(
            "illegal base32 data at input byte {}",
            clean.len() / 8 * 8
        ));
    }
    let mut out = Vec::new();
    for (ci, chunk) in clean.chunks(8).enumerate() {
        let pads = chunk.iter().rev().take_while(|b| **b == b'=').count();
        let mut n: u64 = 0;
        for (i, b) in chunk.iter().enumerate() {
            let v = if *b == b'=' {
                if i < 8 - pads {
                    return Err(format!("illegal base32 data at input byte {}", ci * 8 + i));
                }
                0
            } else {
                match T.iter().position(|t| t == b) {
                    Some(p) => p as u64,
                    None => {
                        return Err(format!("illegal base32 data at input byte {}", ci * 8 + i));
                    }
                }
            };
            n = (n << 5) | v;
        }
        let bytes = n.to_be_bytes();
        let keep = match pads {
            0 => 5,
            1 => 4,
            3 => 3,
            4 => 2,
            6 => 1,
            _ => {
                return Err(format!(
                    "illegal base32 data at input byte {}",
                    ci * 8 + 8 - pads
                ));
            }
        };
        out.extend_from_slice(&bytes[3..3 + keep]);
    }
    Ok(out)
}

fn pct_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(v) = h else {
                let bad: String = s[i..].chars().take(3).collect();
                return Err(format!("invalid URL escape {}", crate::gofmt::quote(&bad)));
            };
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// `url.Parse` for the common shapes (<scheme://user@host/path?query#fragment>).
fn url_parse(raw: &str) -> Res {
    let err = |e: String| {
        format!(
            "unable to parse url: parse {}: {e}",
            crate::gofmt::quote(raw)
        )
    };
    let (rest, fragment) = match raw.split_once('#') {
        Some((r, f)) => (r, pct_decode(f).map_err(err)?),
        None => (raw, String::new()),
    };
    let mut scheme = String::new();
    let mut rest = rest;
    if let Some(i) = rest.find(':') {
        let cand = &rest[..i];
        if !cand.is_empty()
            && cand.as_bytes()[0].is_ascii_alphabetic()
            && cand
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.')
        {
            scheme = cand.to_ascii_lowercase();
            rest = &rest[i + 1..];
        } else if i == 0 {
            return Err(err("missing protocol scheme".into()));
        }
    }
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, q.to_string()),
        None => (rest, String::new()),
    };
    let (mut host, mut userinfo, mut opaque, mut path) =
        (String::new(), String::new(), String::new(), String::new());
    if !scheme.is_empty() && !rest.starts_with('/') {
        opaque = rest.to_string();
    } else if let Some(auth_rest) = rest.strip_prefix("//") {
        let (auth, p) = match auth_rest.find('/') {
            Some(i) => (&auth_rest[..i], &auth_rest[i..]),
            None => (auth_rest, ""),
        };
        match auth.rsplit_once('@') {
            Some((u, h)) => {
                userinfo = u.to_string();
                host = h.to_string();
            }
            None => host = auth.to_string(),
        }
        path = pct_decode(p).map_err(err)?;
    } else {
        path = pct_decode(rest).map_err(err)?;
    }
    let hostname = if let Some(h) = host.strip_prefix('[') {
        h.split(']').next().unwrap_or("").to_string()
    } else {
        host.split(':').next().unwrap_or("").to_string()
    };
    let mut m = BTreeMap::new();
    for (k, v) in [
        ("scheme", scheme),
        ("host", host),
        ("hostname", hostname),
        ("path", path),
        ("query", query),
        ("opaque", opaque),
        ("fragment", fragment),
        ("userinfo", userinfo),
    ] {
        m.insert(k.to_string(), Value::string(v));
    }
    Ok(Value::map(m))
}

fn url_escape_path(p: &str) -> String {
    let mut out = String::new();
    for b in p.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/:@&=+$!*'(),;".contains(&b) {
            out.push(b as char);
        } else {
            {
                let _ = write!(out, "%{b:02X}");
            };
        }
    }
    out
}

fn url_join(a: &[Value]) -> Res {
    let Value::Map(d) = &a[0] else {
        return vstr("");
    };
    let d = d.borrow();
    let get = |k: &str| -> Result<String, String> {
        match d.get(k) {
            None => Ok(String::new()),
            Some(Value::Str(s)) => Ok(s.to_string()),
            Some(v) => Err(format!(
                "unable to parse {k} key, must be of type string, but {} found",
                v.kind_name()
            )),
        }
    };
    let (scheme, host, path, query, opaque, fragment, user) = (
        get("scheme")?,
        get("host")?,
        get("path")?,
        get("query")?,
        get("opaque")?,
        get("fragment")?,
        get("userinfo")?,
    );
    let mut out = String::new();
    if !scheme.is_empty() {
        out.push_str(&scheme);
        out.push(':');
    }
    if opaque.is_empty() {
        if !scheme.is_empty() || !host.is_empty() || !user.is_empty() {
            if !host.is_empty() || !path.is_empty() || !user.is_empty() {
                out.push_str("//");
            }
            if !user.is_empty() {
                out.push_str(&user);
                out.push('@');
            }
            out.push_str(&host);
        }
        if !path.is_empty() && !path.starts_with('/') && !host.is_empty() {
            out.push('/');
        }
        out.push_str(&url_escape_path(&path));
    } else {
        out.push_str(&opaque);
    }
    if !query.is_empty() {
        out.push('?');
        out.push_str(&query);
    }
    if !fragment.is_empty() {
        out.push('#');
        out.push_str(&url_escape_path(&fragment));
    }
    vstr(out)
}

#[derive(Clone, Copy)]
enum DecOp {
    Add,
    Sub,
    Mul,
    Div,
}

/// A decimal `m × 10^e` (shopspring/decimal's representation, bounded to i128).
#[derive(Clone, Copy)]
struct Dec {
    m: i128,
    e: i32,
}

fn dec_from_f64(f: f64) -> Option<Dec> {
    if !f.is_finite() {
        return None;
    }
    let s = format!("{f:e}");
    let (mant, exp) = s.split_once('e')?;
    let exp: i32 = exp.parse().ok()?;
    let neg = mant.starts_with('-');
    let mant = mant.trim_start_matches('-');
    let (int_part, frac) = mant.split_once('.').unwrap_or((mant, ""));
    let digits = format!("{int_part}{frac}");
    let m: i128 = digits.parse().ok()?;
    Some(Dec {
        m: if neg { -m } else { m },
        e: exp - frac.len() as i32,
    })
}

fn pow10(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

fn align(a: Dec, b: Dec) -> Option<(i128, i128, i32)> {
    if a.e >= b.e {
        Some((a.m.checked_mul(pow10((a.e - b.e) as u32)?)?, b.m, b.e))
    } else {
        Some((a.m, b.m.checked_mul(pow10((b.e - a.e) as u32)?)?, a.e))
    }
}

fn dec_apply(a: Dec, b: Dec, op: DecOp) -> Option<Dec> {
    match op {
        DecOp::Add => align(a, b).and_then(|(x, y, e)| {
            Some(Dec {
                m: x.checked_add(y)?,
                e,
            })
        }),
        DecOp::Sub => align(a, b).and_then(|(x, y, e)| {
            Some(Dec {
                m: x.checked_sub(y)?,
                e,
            })
        }),
        DecOp::Mul => Some(Dec {
            m: a.m.checked_mul(b.m)?,
            e: a.e + b.e,
        }),
        DecOp::Div => {
            if b.m == 0 {
                return None;
            }
            // round half away from zero to 16 decimal places (DivisionPrecision)
            let k = a.e - b.e + 16;
            let (num, den) = if k >= 0 {
                (a.m.checked_mul(pow10(k as u32)?)?, b.m)
            } else {
                (a.m, b.m.checked_mul(pow10((-k) as u32)?)?)
            };
            let q = num / den;
            let r = num % den;
            let q = if (r.unsigned_abs() * 2) >= den.unsigned_abs() {
                if (num < 0) == (den < 0) { q + 1 } else { q - 1 }
            } else {
                q
            };
            Some(Dec { m: q, e: -16 })
        }
    }
}

/// sprig's execDecimalOp; NaN marks division by zero.
fn dec_op(first: &Value, rest: &[Value], op: DecOp) -> f64 {
    let mut acc = to_f64(first);
    let mut dec = dec_from_f64(acc);
    for x in rest {
        let xf = to_f64(x);
        if matches!(op, DecOp::Div) && xf == 0.0 {
            return f64::NAN;
        }
        dec = match (dec, dec_from_f64(xf)) {
            (Some(a), Some(b)) => dec_apply(a, b, op),
            _ => None,
        };
        acc = match op {
            DecOp::Add => acc + xf,
            DecOp::Sub => acc - xf,
            DecOp::Mul => acc * xf,
            DecOp::Div => acc / xf,
        };
        if let Some(d) = dec {
            acc = format!("{}e{}", d.m, d.e).parse().unwrap_or(acc);
        }
    }
    acc
}

/// `bcrypt.GenerateFromPassword(pw, bcrypt.DefaultCost)` in Go's `$2a$` form.
fn bcrypt_2a(pw: &str) -> String {
    bcrypt::hash_with_result(pw, 10).map_or_else(
        |e| e.to_string(),
        |h| h.format_for_version(bcrypt::Version::TwoA),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htpasswd_verifies() {
        let h = bcrypt_2a("s3cret");
        assert!(h.starts_with("$2a$10$"), "{h}");
        assert!(bcrypt::verify("s3cret", &h).unwrap());
        assert!(!bcrypt::verify("other", &h).unwrap());
    }
}
