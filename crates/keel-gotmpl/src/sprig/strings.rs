//! sprig's strings.go, and the Go `strings` and xstrings functions that
//! functions.go maps directly: case, trimming, quoting, splitting, joining,
//! truncation, wrapping, base64/base32 and the random strings.

use std::collections::{BTreeMap, HashMap};

use super::crypto::random_below;
use super::{int, s, strs, vstr};
use crate::funcs::{FuncDef, Ty, def};
use crate::gofmt;
use crate::value::Value;

/// sprig's `strval`.
pub(crate) fn strval(v: &Value) -> String {
    match v {
        Value::Str(s) => s.to_string(),
        Value::Object(o) => o.display(),
        Value::List(l) if l.elem == crate::value::Elem::Byte => {
            let bytes: Vec<u8> = l.iter().map(|b| b.as_int().unwrap_or(0) as u8).collect();
            crate::value::go_string(&bytes)
        }
        v => gofmt::sprint_value(v),
    }
}

/// Go `strings.Title`.
pub(super) fn title(x: &str) -> String {
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

pub(super) fn untitle(x: &str) -> String {
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

pub(super) fn byte_slice(x: &str, a: usize, b: usize) -> String {
    String::from_utf8_lossy(&x.as_bytes()[a..b]).into_owned()
}

pub(super) fn strslice(v: &Value) -> Vec<String> {
    match v {
        Value::List(l) => l.iter().filter(|x| !x.is_nil_like()).map(strval).collect(),
        Value::Invalid | Value::Nil => Vec::new(),
        v => vec![strval(v)],
    }
}

/// goutils' `AbbreviateFull` on bytes, as Go slices strings; errors give "".
pub(super) fn abbreviate_full(x: &[u8], offset: i64, max: i64) -> Vec<u8> {
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

pub(super) fn b32enc(data: &[u8]) -> String {
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

/// `count` characters drawn uniformly from `chars` with the OS CSPRNG, as
/// goutils' `CryptoRandom` does for sprig's `randAlphaNum` and friends.
pub(super) fn rand_from(chars: &[u8], n: i64) -> Result<String, String> {
    (0..n.max(0))
        .map(|_| Ok(chars[usize::try_from(random_below(chars.len() as u64)?).unwrap_or(0)] as char))
        .collect()
}

/// Go regexp replacement template (`$1`, `${name}`) is the same syntax as Rust's.
pub(super) fn split_words(x: &str) -> Vec<String> {
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

/// Go's `strings.Replace(s, old, new, -1)` (empty `old` inserts between runes).
pub(super) fn go_replace(x: &str, old: &str, new: &str) -> String {
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
pub(super) fn go_split(x: &str, sep: &str, n: i64) -> Vec<String> {
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
pub(super) fn wrap(x: &str, width: i64, sep: &str) -> String {
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

pub(super) fn b32dec(s: &str) -> Result<Vec<u8>, String> {
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

pub(super) fn register(m: &mut HashMap<&'static str, FuncDef>) {
    use Ty::{Any, Int, Str};
    let mut add = |n: &'static str, p: &[Ty], v: Option<Ty>, f: crate::funcs::PlainFn| {
        m.insert(n, def(p, v, f));
    };
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
    add("toString", &[Any], None, |a| vstr(strval(&a[0])));
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
    add("shuffle", &[Str], None, |a| {
        let mut c: Vec<char> = s(&a[0]).chars().collect();
        for i in (1..c.len()).rev() {
            let j = random_below(i as u64 + 1)? as usize;
            c.swap(i, j);
        }
        vstr(c.into_iter().collect::<String>())
    });
    add("join", &[Str, Any], None, |a| {
        vstr(strslice(&a[1]).join(s(&a[0])))
    });
    add("abbrevboth", &[Int, Int, Str], None, |a| {
        let (l, r, x) = (int(&a[0]), int(&a[1]), s(&a[2]));
        if r < 4 || l > 0 && r < 7 {
            return vstr(x);
        }
        vstr(String::from_utf8_lossy(&abbreviate_full(x.as_bytes(), l, r)).into_owned())
    });
    add("b64enc", &[Str], None, |a| {
        vstr(b64enc(&crate::value::go_bytes(s(&a[0]))))
    });
    add("b64dec", &[Str], None, |a| {
        vstr(match b64dec(s(&a[0])) {
            Ok(b) => crate::value::go_string(&b),
            Err(e) => e,
        })
    });
    add("b32enc", &[Str], None, |a| {
        vstr(b32enc(&crate::value::go_bytes(s(&a[0]))))
    });
    add("b32dec", &[Str], None, |a| {
        vstr(match b32dec(s(&a[0])) {
            Ok(b) => crate::value::go_string(&b),
            Err(e) => e,
        })
    });
    add("randAlphaNum", &[Int], None, |a| {
        vstr(rand_from(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            int(&a[0]),
        )?)
    });
    add("randAlpha", &[Int], None, |a| {
        vstr(rand_from(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
            int(&a[0]),
        )?)
    });
    add("randNumeric", &[Int], None, |a| {
        vstr(rand_from(b"0123456789", int(&a[0]))?)
    });
    add("randAscii", &[Int], None, |a| {
        // goutils' CryptoRandomAscii: code points 32 (space) to 126
        vstr(rand_from(b" !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~", int(&a[0]))?)
    });
}
