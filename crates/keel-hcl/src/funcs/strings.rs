//! String functions: case, trimming, splitting, `format` (Go's verbs),
//! regular expressions (RE2 syntax, which Rust's regex crate shares), and
//! grapheme-aware `substr`/`strrev` as cty counts characters.

use std::collections::BTreeMap;

use unicode_segmentation::UnicodeSegmentation;

use super::{FnError, Functions, def, int_arg, p, p_any, s, str_fn};
use crate::convert::convert;
use crate::render::to_json_string;
use crate::value::{Kind, Type, Value};

pub(super) fn register(f: &mut Functions) {
    str_fn(f, "upper", |a, _| {
        Ok(Value::string(s(&a[0]).to_uppercase()))
    });
    str_fn(f, "lower", |a, _| {
        Ok(Value::string(s(&a[0]).to_lowercase()))
    });
    str_fn(f, "title", |a, _| Ok(Value::string(title(s(&a[0])))));
    str_fn(f, "chomp", |a, _| {
        let mut t = s(&a[0]);
        while let Some(x) = t.strip_suffix('\n').or_else(|| t.strip_suffix('\r')) {
            t = x;
        }
        Ok(Value::string(t))
    });
    str_fn(f, "trimspace", |a, _| Ok(Value::string(s(&a[0]).trim())));
    str_fn(f, "strrev", |a, _| {
        Ok(Value::string(
            s(&a[0]).graphemes(true).rev().collect::<String>(),
        ))
    });
    let ss = || vec![p("str", Type::String), p("cutset", Type::String)];
    def(f, "trim", ss(), None, Type::String, |a, _| {
        let cut: Vec<char> = s(&a[1]).chars().collect();
        Ok(Value::string(s(&a[0]).trim_matches(|c| cut.contains(&c))))
    });
    def(
        f,
        "trimprefix",
        vec![p("str", Type::String), p("prefix", Type::String)],
        None,
        Type::String,
        |a, _| {
            Ok(Value::string(
                s(&a[0]).strip_prefix(s(&a[1])).unwrap_or(s(&a[0])),
            ))
        },
    );
    def(
        f,
        "trimsuffix",
        vec![p("str", Type::String), p("suffix", Type::String)],
        None,
        Type::String,
        |a, _| {
            Ok(Value::string(
                s(&a[0]).strip_suffix(s(&a[1])).unwrap_or(s(&a[0])),
            ))
        },
    );
    def(
        f,
        "startswith",
        vec![p("str", Type::String), p("prefix", Type::String)],
        None,
        Type::Bool,
        |a, _| Ok(Value::bool(s(&a[0]).starts_with(s(&a[1])))),
    );
    def(
        f,
        "endswith",
        vec![p("str", Type::String), p("suffix", Type::String)],
        None,
        Type::Bool,
        |a, _| Ok(Value::bool(s(&a[0]).ends_with(s(&a[1])))),
    );
    def(
        f,
        "strcontains",
        vec![p("str", Type::String), p("substr", Type::String)],
        None,
        Type::Bool,
        |a, _| Ok(Value::bool(s(&a[0]).contains(s(&a[1])))),
    );
    def(
        f,
        "substr",
        vec![
            p("str", Type::String),
            p("offset", Type::Number),
            p("length", Type::Number),
        ],
        None,
        Type::String,
        |a, _| {
            let g: Vec<&str> = s(&a[0]).graphemes(true).collect();
            let n = g.len() as i64;
            let mut off = int_arg(&a[1], 1)?;
            let len = int_arg(&a[2], 2)?;
            if off < 0 {
                off += n;
                if off < 0 {
                    off = 0;
                }
            }
            if off > n {
                return Err(FnError::Arg(1, "offset out of bounds".into()));
            }
            let end = if len < 0 { n } else { (off + len).min(n) };
            Ok(Value::string(
                g[off as usize..end.max(off) as usize].concat(),
            ))
        },
    );
    def(
        f,
        "indent",
        vec![p("spaces", Type::Number), p("str", Type::String)],
        None,
        Type::String,
        |a, _| {
            let n = int_arg(&a[0], 0)?.max(0) as usize;
            let pad = format!("\n{}", " ".repeat(n));
            Ok(Value::string(s(&a[1]).replace('\n', &pad)))
        },
    );
    def(
        f,
        "join",
        vec![p("separator", Type::String)],
        Some(p("lists", Type::list(Type::String))),
        Type::String,
        |a, _| {
            if a.len() < 2 {
                return Err(FnError::Msg("at least one list is required".into()));
            }
            let mut parts = Vec::new();
            for (li, l) in a[1..].iter().enumerate() {
                for (i, x) in l.as_seq().unwrap_or_default().iter().enumerate() {
                    if x.is_null() {
                        return Err(FnError::Arg(li + 1, format!("element {i} is null")));
                    }
                    parts.push(s(x).to_string());
                }
            }
            Ok(Value::string(parts.join(s(&a[0]))))
        },
    );
    def(
        f,
        "split",
        vec![p("separator", Type::String), p("str", Type::String)],
        None,
        Type::list(Type::String),
        |a, _| {
            let (sep, st) = (s(&a[0]), s(&a[1]));
            let parts: Vec<Value> = if sep.is_empty() {
                st.chars().map(|c| Value::string(c.to_string())).collect()
            } else {
                st.split(sep).map(Value::string).collect()
            };
            Ok(Value::list(Type::String, parts))
        },
    );
    def(
        f,
        "replace",
        vec![
            p("str", Type::String),
            p("substr", Type::String),
            p("replace", Type::String),
        ],
        None,
        Type::String,
        |a, _| {
            let (st, sub, rep) = (s(&a[0]), s(&a[1]), s(&a[2]));
            if sub.len() > 1 && sub.starts_with('/') && sub.ends_with('/') {
                let re = regex::Regex::new(&sub[1..sub.len() - 1])
                    .map_err(|e| FnError::Arg(1, format!("invalid regular expression: {e}")))?;
                return Ok(Value::string(re.replace_all(st, rep).into_owned()));
            }
            Ok(Value::string(st.replace(sub, rep)))
        },
    );
    def(
        f,
        "regex",
        vec![p("pattern", Type::String), p("string", Type::String)],
        None,
        Type::Dynamic,
        |a, _| {
            let re = compile(s(&a[0]))?;
            let caps = re.captures(s(&a[1])).ok_or_else(|| {
                FnError::Msg("pattern did not match any part of the given string".into())
            })?;
            Ok(captures(&re, &caps))
        },
    );
    def(
        f,
        "regexall",
        vec![p("pattern", Type::String), p("string", Type::String)],
        None,
        Type::list(Type::Dynamic),
        |a, _| {
            let re = compile(s(&a[0]))?;
            let all: Vec<Value> = re
                .captures_iter(s(&a[1]))
                .map(|c| captures(&re, &c))
                .collect();
            let et = match re.captures_len() {
                1 => Type::String,
                _ if re.capture_names().flatten().next().is_some() => Type::Object(
                    re.capture_names()
                        .flatten()
                        .map(|n| (n.to_string(), Type::String))
                        .collect(),
                ),
                n => Type::Tuple(vec![Type::String; n - 1]),
            };
            Ok(Value::list(et, all))
        },
    );
    def(
        f,
        "format",
        vec![p("format", Type::String)],
        Some(p_any("args")),
        Type::String,
        |a, _| format(s(&a[0]), &a[1..]).map(Value::string),
    );
    def(
        f,
        "formatlist",
        vec![p("format", Type::String)],
        Some(p_any("args")),
        Type::list(Type::String),
        |a, _| {
            let mut n: Option<usize> = None;
            for (i, x) in a[1..].iter().enumerate() {
                if let Some(seq) = x.as_seq() {
                    match n {
                        Some(m) if m != seq.len() => {
                            return Err(FnError::Arg(
                                i + 1,
                                format!(
                                    "argument {} has length {}, which is inconsistent with argument 1 of length {m}",
                                    i + 1,
                                    seq.len()
                                ),
                            ));
                        }
                        _ => n = Some(seq.len()),
                    }
                }
            }
            let n = n.unwrap_or(1);
            let mut out = Vec::with_capacity(n);
            for i in 0..n {
                let args: Vec<Value> = a[1..]
                    .iter()
                    .map(|x| x.as_seq().map_or_else(|| x.clone(), |seq| seq[i].clone()))
                    .collect();
                out.push(Value::string(format(s(&a[0]), &args)?));
            }
            Ok(Value::list(Type::String, out))
        },
    );
}

fn compile(p: &str) -> Result<regex::Regex, FnError> {
    regex::Regex::new(p)
        .map_err(|e| FnError::Arg(0, format!("invalid regular expression pattern: {e}")))
}

fn captures(re: &regex::Regex, c: &regex::Captures<'_>) -> Value {
    let named: Vec<&str> = re.capture_names().flatten().collect();
    let get = |m: Option<regex::Match<'_>>| {
        m.map_or_else(|| Value::null(Type::String), |m| Value::string(m.as_str()))
    };
    if c.len() == 1 {
        return Value::string(c.get(0).map_or("", |m| m.as_str()));
    }
    if !named.is_empty() {
        let m: BTreeMap<String, Value> = named
            .iter()
            .map(|n| ((*n).to_string(), get(c.name(n))))
            .collect();
        return Value::object(m);
    }
    Value::tuple((1..c.len()).map(|i| get(c.get(i))).collect())
}

/// Go's strings.Title: upper-case the first letter of each word.
fn title(st: &str) -> String {
    let mut out = String::with_capacity(st.len());
    let mut prev_sep = true;
    for c in st.chars() {
        if prev_sep {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_sep = if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else {
            c.is_whitespace()
        };
    }
    out
}

/// cty's `format`: Go verbs over cty values.
pub(crate) fn format(fmt: &str, args: &[Value]) -> Result<String, FnError> {
    let mut out = String::new();
    let mut it = fmt.char_indices().peekable();
    let mut argi = 0usize;
    while let Some((_, c)) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        if let Some((_, '%')) = it.peek() {
            it.next();
            out.push('%');
            continue;
        }
        let (mut minus, mut plus, mut zero, mut space, mut sharp) =
            (false, false, false, false, false);
        while let Some(&(_, f)) = it.peek() {
            match f {
                '-' => minus = true,
                '+' => plus = true,
                '0' => zero = true,
                ' ' => space = true,
                '#' => sharp = true,
                _ => break,
            }
            it.next();
        }
        if let Some(&(_, '[')) = it.peek() {
            it.next();
            let mut num = String::new();
            for (_, d) in it.by_ref() {
                if d == ']' {
                    break;
                }
                num.push(d);
            }
            argi = num
                .parse::<usize>()
                .map_err(|_| FnError::Msg("invalid argument index".into()))?
                .saturating_sub(1);
        }
        let mut width = String::new();
        while let Some(&(_, d)) = it.peek() {
            if !d.is_ascii_digit() {
                break;
            }
            width.push(d);
            it.next();
        }
        let mut prec: Option<usize> = None;
        if let Some(&(_, '.')) = it.peek() {
            it.next();
            let mut pr = String::new();
            while let Some(&(_, d)) = it.peek() {
                if !d.is_ascii_digit() {
                    break;
                }
                pr.push(d);
                it.next();
            }
            prec = Some(pr.parse().unwrap_or(0));
        }
        let Some((_, verb)) = it.next() else {
            return Err(FnError::Msg(
                "invalid format string starting at offset: unterminated format verb".into(),
            ));
        };
        let Some(arg) = args.get(argi) else {
            return Err(FnError::Msg(format!(
                "not enough arguments for \"%{verb}\" at {argi}"
            )));
        };
        argi += 1;
        if !arg.is_known() {
            return Err(FnError::Msg("unknown argument".into()));
        }
        let body = verb_fmt(verb, arg, prec, plus, space, sharp)?;
        let w: usize = width.parse().unwrap_or(0);
        let len = body.chars().count();
        if len < w {
            let pad = w - len;
            if minus {
                out.push_str(&body);
                out.push_str(&" ".repeat(pad));
            } else if zero && !matches!(verb, 's' | 'q' | 'v') {
                let (sign, digits) = if body.starts_with(['-', '+']) {
                    body.split_at(1)
                } else {
                    ("", body.as_str())
                };
                out.push_str(sign);
                out.push_str(&"0".repeat(pad));
                out.push_str(digits);
            } else {
                out.push_str(&" ".repeat(pad));
                out.push_str(&body);
            }
        } else {
            out.push_str(&body);
        }
    }
    if argi < args.len() {
        return Err(FnError::Msg(format!(
            "too many arguments; only {argi} used by format string"
        )));
    }
    Ok(out)
}

fn verb_fmt(
    verb: char,
    arg: &Value,
    prec: Option<usize>,
    plus: bool,
    space: bool,
    sharp: bool,
) -> Result<String, FnError> {
    let num = |a: &Value| -> Result<crate::num::Number, FnError> {
        convert(a, &Type::Number)
            .ok()
            .and_then(|v| v.as_number().cloned())
            .ok_or_else(|| {
                FnError::Msg(format!(
                    "unsupported value for \"%{verb}\": number required"
                ))
            })
    };
    let sign = |neg: bool| {
        if neg {
            "-"
        } else if plus {
            "+"
        } else if space {
            " "
        } else {
            ""
        }
    };
    Ok(match verb {
        'v' if sharp => to_json_string(arg),
        'v' => match &arg.kind {
            Kind::Null(_) => "null".into(),
            Kind::String(x) => x.clone(),
            Kind::Number(n) => n.to_string(),
            Kind::Bool(b) => b.to_string(),
            _ => to_json_string(arg),
        },
        's' => {
            let v = convert(arg, &Type::String)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .ok_or_else(|| {
                    FnError::Msg("unsupported value for \"%s\": string required".into())
                })?;
            match prec {
                Some(p) => v.chars().take(p).collect(),
                None => v,
            }
        }
        'q' => {
            let v = convert(arg, &Type::String)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .ok_or_else(|| {
                    FnError::Msg("unsupported value for \"%q\": string required".into())
                })?;
            crate::render::go_quote(&v)
        }
        't' => {
            let b = convert(arg, &Type::Bool)
                .ok()
                .and_then(|v| v.as_bool())
                .ok_or_else(|| {
                    FnError::Msg("unsupported value for \"%t\": bool required".into())
                })?;
            b.to_string()
        }
        'd' | 'b' | 'o' | 'x' | 'X' if num(arg)?.is_integer() => {
            let n = num(arg)?;
            let i = n.to_bigint().unwrap_or_default();
            let neg = i < num_bigint::BigInt::from(0);
            let m = i.magnitude();
            let digits = match verb {
                'd' => m.to_str_radix(10),
                'b' => m.to_str_radix(2),
                'o' => m.to_str_radix(8),
                'x' => m.to_str_radix(16),
                _ => m.to_str_radix(16).to_uppercase(),
            };
            format!("{}{digits}", sign(neg))
        }
        'd' => {
            return Err(FnError::Msg(
                "unsupported value for \"%d\": number must be an integer".into(),
            ));
        }
        'x' | 'X' => {
            let st = convert(arg, &Type::String)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let h: String = st.bytes().fold(String::new(), |mut h, b| {
                let _ = std::fmt::Write::write_fmt(&mut h, format_args!("{b:02x}"));
                h
            });
            if verb == 'X' { h.to_uppercase() } else { h }
        }
        'e' | 'E' | 'f' | 'F' | 'g' | 'G' => {
            let x = num(arg)?.to_f64();
            let neg = x.is_sign_negative();
            let a = x.abs();
            let body = match verb {
                'f' | 'F' => format!("{a:.*}", prec.unwrap_or(6)),
                'e' | 'E' => {
                    let s = go_exp(a, prec.unwrap_or(6));
                    if verb == 'E' { s.to_uppercase() } else { s }
                }
                _ => {
                    let s = go_g(a, prec);
                    if verb == 'G' { s.to_uppercase() } else { s }
                }
            };
            format!("{}{body}", sign(neg))
        }
        c => {
            return Err(FnError::Msg(format!(
                "unsupported format verb {c:?} in format string"
            )));
        }
    })
}

fn go_exp(a: f64, prec: usize) -> String {
    let s = format!("{a:.prec$e}");
    // Rust prints 1.5e2; Go prints 1.5e+02.
    match s.split_once('e') {
        Some((m, e)) => {
            let (sign, digits) = if let Some(d) = e.strip_prefix('-') {
                ("-", d)
            } else {
                ("+", e)
            };
            format!("{m}e{sign}{digits:0>2}")
        }
        None => s,
    }
}

fn go_g(a: f64, prec: Option<usize>) -> String {
    if a == 0.0 {
        return "0".into();
    }
    let exp = a.log10().floor() as i32;
    let p = prec.unwrap_or(0);
    if prec.is_none() {
        if (-4..21).contains(&exp) {
            return format!("{a}");
        }
        let s = format!("{a:e}");
        return match s.split_once('e') {
            Some((m, e)) => {
                let (sign, digits) = if let Some(d) = e.strip_prefix('-') {
                    ("-", d)
                } else {
                    ("+", e)
                };
                format!("{m}e{sign}{digits:0>2}")
            }
            None => s,
        };
    }
    let p = p.max(1);
    if exp < -4 || exp >= p as i32 {
        go_exp(a, p - 1)
    } else {
        let dec = (p as i32 - 1 - exp).max(0) as usize;
        let s = format!("{a:.dec$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    }
}
