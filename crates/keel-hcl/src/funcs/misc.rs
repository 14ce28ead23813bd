//! Numeric, type-conversion, sensitivity, filesystem, date/time and IP
//! network functions.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Datelike, FixedOffset, Timelike};
use keel_go::path::clean;
use sha2::Digest as _;

use super::{
    CallCtx, FnError, FnResult, Function, Functions, Param, def, int_arg, p, p_any, s, str_fn_named,
};
use crate::convert::convert;
use crate::num::Number;
use crate::value::{Kind, Type, Value};

fn num(v: &Value) -> Number {
    v.as_number().cloned().unwrap_or_else(Number::zero)
}

fn to_func(name: &'static str, want: Type) -> Function {
    Function {
        params: vec![Param {
            name: "v",
            ty: Type::Dynamic,
            nullable: true,
            unknown: true,
        }],
        variadic: None,
        ret: want,
        marks: false,
        imp: match name {
            "tostring" => |a, _| to_conv(&a[0], &Type::String),
            "tonumber" => |a, _| to_conv(&a[0], &Type::Number),
            "tobool" => |a, _| to_conv(&a[0], &Type::Bool),
            "tolist" => |a, _| to_conv(&a[0], &Type::list(Type::Dynamic)),
            "toset" => |a, _| to_conv(&a[0], &Type::set(Type::Dynamic)),
            _ => |a, _| to_conv(&a[0], &Type::map(Type::Dynamic)),
        },
    }
}

fn to_conv(v: &Value, want: &Type) -> FnResult {
    convert(v, want).map_err(|_| {
        let msg = match (&v.kind, want) {
            (Kind::String(x), Type::Number) => {
                format!("cannot convert {x:?} to number; given string must be a decimal representation of a number")
            }
            (Kind::String(x), Type::Bool) => {
                format!("cannot convert {x:?} to bool; only the strings \"true\" or \"false\" are allowed")
            }
            (_, Type::List(_)) => format!("cannot convert {} to list of any single type", v.ty().friendly()),
            (_, Type::Set(_)) => format!("cannot convert {} to set of any single type", v.ty().friendly()),
            (_, Type::Map(_)) => format!("cannot convert {} to map of any single type", v.ty().friendly()),
            _ => format!("cannot convert {} to {}", v.ty().friendly(), want.friendly()),
        };
        FnError::Arg(0, msg)
    })
}

pub(super) fn register(f: &mut Functions) {
    for (n, t) in [
        ("tostring", Type::String),
        ("tonumber", Type::Number),
        ("tobool", Type::Bool),
        ("tolist", Type::list(Type::Dynamic)),
        ("toset", Type::set(Type::Dynamic)),
        ("tomap", Type::map(Type::Dynamic)),
    ] {
        f.insert(n, to_func(n, t));
    }
    let n1 = || vec![p("num", Type::Number)];
    def(f, "abs", n1(), None, Type::Number, |a, _| {
        Ok(Value::number(num(&a[0]).abs()))
    });
    def(f, "ceil", n1(), None, Type::Number, |a, _| {
        Ok(Value::number(num(&a[0]).ceil()))
    });
    def(f, "floor", n1(), None, Type::Number, |a, _| {
        Ok(Value::number(num(&a[0]).floor()))
    });
    def(f, "signum", n1(), None, Type::Number, |a, _| {
        let n = num(&a[0]);
        Ok(Value::int(if n.is_zero() {
            0
        } else if n.is_negative() {
            -1
        } else {
            1
        }))
    });
    def(
        f,
        "log",
        vec![p("num", Type::Number), p("base", Type::Number)],
        None,
        Type::Number,
        |a, _| {
            Ok(Value::number(Number::from_f64(
                num(&a[0]).to_f64().ln() / num(&a[1]).to_f64().ln(),
            )))
        },
    );
    def(
        f,
        "pow",
        vec![p("num", Type::Number), p("power", Type::Number)],
        None,
        Type::Number,
        |a, _| {
            let (b, e) = (num(&a[0]), num(&a[1]));
            if let Some(k) = e.to_i64().filter(|k| (0..=4096).contains(k)) {
                let mut acc = Number::from_i64(1);
                for _ in 0..k {
                    acc = acc.mul(&b);
                }
                return Ok(Value::number(acc));
            }
            Ok(Value::number(b.pow(&e)))
        },
    );
    def(
        f,
        "parseint",
        vec![p("number", Type::Dynamic), p("base", Type::Number)],
        None,
        Type::Dynamic,
        |a, _| {
            let st = a[0]
                .as_str()
                .ok_or_else(|| FnError::Arg(0, "string required".into()))?;
            let base = int_arg(&a[1], 1)?;
            if !(2..=62).contains(&base) {
                return Err(FnError::Arg(1, "must be between 2 and 62 inclusive".into()));
            }
            let (neg, digits) = match st.strip_prefix('-') {
                Some(d) => (true, d),
                None => (false, st.strip_prefix('+').unwrap_or(st)),
            };
            // Digits 0-9, a-z, A-Z as Go's big.Int.SetString (bases above 36 tell cases apart).
            let bad = || FnError::Msg(format!("cannot parse {st:?} as a base {base} integer"));
            if digits.is_empty() {
                return Err(bad());
            }
            let mut n = num_bigint::BigInt::from(0u8);
            for c in digits.chars() {
                let d = match c {
                    '0'..='9' => c as i64 - '0' as i64,
                    'a'..='z' => c as i64 - 'a' as i64 + 10,
                    'A'..='Z' if base <= 36 => c as i64 - 'A' as i64 + 10,
                    'A'..='Z' => c as i64 - 'A' as i64 + 36,
                    _ => return Err(bad()),
                };
                if d >= base {
                    return Err(bad());
                }
                n = n * base + d;
            }
            Ok(Value::number(Number::from_bigint(if neg { -n } else { n })))
        },
    );
    f.insert(
        "sensitive",
        Function {
            params: vec![p_any("value")],
            variadic: None,
            ret: Type::Dynamic,
            marks: true,
            imp: |a, _| Ok(a[0].clone().with_sensitive()),
        },
    );
    f.insert(
        "nonsensitive",
        Function {
            params: vec![p_any("value")],
            variadic: None,
            ret: Type::Dynamic,
            marks: true,
            imp: |a, _| {
                let mut v = a[0].clone();
                v.sensitive = false;
                Ok(v)
            },
        },
    );
    f.insert(
        "issensitive",
        Function {
            params: vec![p_any("value")],
            variadic: None,
            ret: Type::Bool,
            marks: true,
            imp: |a, _| Ok(Value::bool(a[0].sensitive)),
        },
    );
    f.insert(
        "ephemeralasnull",
        Function {
            params: vec![p_any("value")],
            variadic: None,
            ret: Type::Dynamic,
            marks: true,
            imp: |a, _| Ok(a[0].clone()),
        },
    );
    f.insert(
        "type",
        Function {
            params: vec![p_any("value")],
            variadic: None,
            ret: Type::Dynamic,
            marks: true,
            imp: |_, _| {
                Err(FnError::Msg(
                    "type() is only available in the console".into(),
                ))
            },
        },
    );

    // Filesystem.
    str_fn_named(f, "basename", "path", |a, _| {
        Ok(Value::string(go_base(s(&a[0]))))
    });
    str_fn_named(f, "dirname", "path", |a, _| {
        Ok(Value::string(go_dir(s(&a[0]))))
    });
    def(
        f,
        "abspath",
        vec![p("path", Type::String)],
        None,
        Type::String,
        |a, c| {
            let p = c.base_dir.join(s(&a[0]));
            let abs = if Path::new(s(&a[0])).is_absolute() {
                PathBuf::from(s(&a[0]))
            } else {
                std::env::current_dir().unwrap_or_default().join(p)
            };
            Ok(Value::string(clean(&abs.to_string_lossy())))
        },
    );
    str_fn_named(f, "pathexpand", "path", |a, _| {
        let st = s(&a[0]);
        Ok(Value::string(match st.strip_prefix('~') {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                format!("{}{rest}", std::env::var("HOME").unwrap_or_default())
            }
            _ => st.to_string(),
        }))
    });
    let file_fn = |f: &mut Functions, name: &str, imp: super::Imp| {
        def(
            f,
            name,
            vec![p("path", Type::String)],
            None,
            Type::String,
            imp,
        );
    };
    file_fn(f, "file", |a, c| {
        let b = read(c, s(&a[0]))?;
        String::from_utf8(b).map(Value::string).map_err(|_| FnError::Msg(format!("contents of {} are not valid UTF-8; use the filebase64 function to obtain the Base64 encoded contents or the other file functions (e.g. filemd5, filesha256) to obtain file hashing results instead", s(&a[0]))))
    });
    file_fn(f, "filebase64", |a, c| {
        Ok(Value::string(B64.encode(read(c, s(&a[0]))?)))
    });
    file_fn(f, "filemd5", |a, c| {
        Ok(Value::string(hex(&md5::Md5::digest(read(c, s(&a[0]))?))))
    });
    file_fn(f, "filesha1", |a, c| {
        Ok(Value::string(hex(&sha1::Sha1::digest(read(c, s(&a[0]))?))))
    });
    file_fn(f, "filesha256", |a, c| {
        Ok(Value::string(hex(&sha2::Sha256::digest(read(
            c,
            s(&a[0]),
        )?))))
    });
    file_fn(f, "filesha512", |a, c| {
        Ok(Value::string(hex(&sha2::Sha512::digest(read(
            c,
            s(&a[0]),
        )?))))
    });
    file_fn(f, "filebase64sha256", |a, c| {
        Ok(Value::string(
            B64.encode(sha2::Sha256::digest(read(c, s(&a[0]))?)),
        ))
    });
    file_fn(f, "filebase64sha512", |a, c| {
        Ok(Value::string(
            B64.encode(sha2::Sha512::digest(read(c, s(&a[0]))?)),
        ))
    });
    def(
        f,
        "fileexists",
        vec![p("path", Type::String)],
        None,
        Type::Bool,
        |a, c| {
            let path = resolve(c, s(&a[0]));
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => Ok(Value::bool(true)),
                Ok(_) => Err(FnError::Msg(format!(
                    "{} is not a regular file, but {:?}",
                    s(&a[0]),
                    "directory"
                ))),
                Err(_) => Ok(Value::bool(false)),
            }
        },
    );
    def(
        f,
        "fileset",
        vec![p("path", Type::String), p("pattern", Type::String)],
        None,
        Type::set(Type::String),
        |a, c| {
            let root = resolve(c, s(&a[0]));
            let pat = glob::Pattern::new(s(&a[1])).map_err(|e| {
                FnError::Arg(1, format!("failed to glob pattern {:?}: {e}", s(&a[1])))
            })?;
            let opts = glob::MatchOptions {
                case_sensitive: true,
                require_literal_separator: true,
                require_literal_leading_dot: false,
            };
            let mut out = Vec::new();
            for e in walkdir::WalkDir::new(&root)
                .follow_links(true)
                .into_iter()
                .flatten()
            {
                if !e.file_type().is_file() {
                    continue;
                }
                if let Ok(rel) = e.path().strip_prefix(&root) {
                    let rel = rel.to_string_lossy().replace('\\', "/");
                    if pat.matches_with(&rel, opts) {
                        out.push(Value::string(rel));
                    }
                }
            }
            Ok(Value::set(Type::String, out))
        },
    );
    def(
        f,
        "templatefile",
        vec![p("path", Type::String), p("vars", Type::Dynamic)],
        None,
        Type::Dynamic,
        |a, c| {
            let path = resolve(c, s(&a[0]));
            let text = std::fs::read_to_string(&path).map_err(|e| FnError::Arg(0, format!("no file exists at {:?}; this function works only with files that are distributed as part of the configuration source code, so if this file will be created by a resource in this configuration you must instead obtain this result from an attribute of that resource ({e})", s(&a[0]))))?;
            let vars = a[1]
                .as_map()
                .cloned()
                .ok_or_else(|| FnError::Arg(1, "invalid vars value: must be a map".into()))?;
            let expr = crate::syntax::parse_template(&path.to_string_lossy(), &text)
                .map_err(|d| FnError::Msg(d.to_string()))?;
            let mut funcs = c.funcs.clone();
            funcs.insert(
                "templatefile",
                Function {
                    params: vec![],
                    variadic: Some(p_any("args")),
                    ret: Type::Dynamic,
                    marks: false,
                    imp: |_, _| {
                        Err(FnError::Msg(
                            "cannot recursively call templatefile from inside templatefile call"
                                .into(),
                        ))
                    },
                },
            );
            let scope = crate::eval::Scope {
                vars: &vars,
                funcs: &funcs,
                base_dir: c.base_dir.to_path_buf(),
            };
            crate::eval::eval(&expr, &scope).map_err(|d| FnError::Msg(d.to_string()))
        },
    );

    // Date and time.
    def(f, "timestamp", vec![], None, Type::String, |_, _| {
        Ok(Value::string(now_rfc3339()))
    });
    def(f, "plantimestamp", vec![], None, Type::String, |_, _| {
        Ok(Value::string(now_rfc3339()))
    });
    def(
        f,
        "formatdate",
        vec![p("format", Type::String), p("time", Type::String)],
        None,
        Type::String,
        |a, _| {
            let t = parse_ts(s(&a[1]), 1)?;
            format_date(s(&a[0]), &t).map(Value::string)
        },
    );
    def(
        f,
        "timeadd",
        vec![p("timestamp", Type::String), p("duration", Type::String)],
        None,
        Type::String,
        |a, _| {
            let t = parse_ts(s(&a[0]), 0)?;
            let d =
                keel_go::parse_duration(s(&a[1])).map_err(|e| FnError::Arg(1, e.to_string()))?;
            let out = t + chrono::Duration::nanoseconds(d);
            Ok(Value::string(rfc3339(&out)))
        },
    );
    def(
        f,
        "timecmp",
        vec![
            p("timestamp_a", Type::String),
            p("timestamp_b", Type::String),
        ],
        None,
        Type::Number,
        |a, _| {
            let (x, y) = (parse_ts(s(&a[0]), 0)?, parse_ts(s(&a[1]), 1)?);
            Ok(Value::int(match x.cmp(&y) {
                std::cmp::Ordering::Less => -1,
                std::cmp::Ordering::Equal => 0,
                std::cmp::Ordering::Greater => 1,
            }))
        },
    );

    // IP networks.
    def(
        f,
        "cidrhost",
        vec![p("prefix", Type::String), p("hostnum", Type::Number)],
        None,
        Type::String,
        |a, _| {
            let (addr, plen, bits) = parse_cidr(s(&a[0]))?;
            let host = num(&a[1])
                .to_bigint()
                .ok_or_else(|| FnError::Arg(1, "value must be a whole number".into()))?;
            let hb = bits - plen;
            let max = num_bigint::BigInt::from(1u8) << hb;
            let h = if host < num_bigint::BigInt::from(0) {
                &max + &host
            } else {
                host.clone()
            };
            if h < num_bigint::BigInt::from(0) || h >= max {
                return Err(FnError::Msg(format!(
                    "prefix of {plen} does not accommodate a host numbered {host}"
                )));
            }
            let h: u128 = h.try_into().unwrap_or(0);
            Ok(Value::string(fmt_ip(mask(addr, plen, bits) | h, bits)))
        },
    );
    str_fn_named(f, "cidrnetmask", "prefix", |a, _| {
        let (_, plen, bits) = parse_cidr(s(&a[0]))?;
        if bits != 32 {
            return Err(FnError::Msg("only IPv4 networks can have a netmask".into()));
        }
        Ok(Value::string(fmt_ip(
            mask(u128::from(u32::MAX), plen, 32),
            32,
        )))
    });
    def(
        f,
        "cidrsubnet",
        vec![
            p("prefix", Type::String),
            p("newbits", Type::Number),
            p("netnum", Type::Number),
        ],
        None,
        Type::String,
        |a, _| {
            let (addr, plen, bits) = parse_cidr(s(&a[0]))?;
            let nb = int_arg(&a[1], 1)?;
            let nn = int_arg(&a[2], 2)?;
            subnet(addr, plen, bits, nb, nn).map(Value::string)
        },
    );
    def(
        f,
        "cidrsubnets",
        vec![p("prefix", Type::String)],
        Some(p("newbits", Type::Number)),
        Type::list(Type::String),
        |a, _| {
            let (addr, plen, bits) = parse_cidr(s(&a[0]))?;
            let base = mask(addr, plen, bits);
            let mut next = base;
            let mut out = Vec::new();
            for (i, x) in a[1..].iter().enumerate() {
                let nb = int_arg(x, i + 1)? as u32;
                let nl = plen + nb;
                if nl > bits {
                    return Err(FnError::Arg(
                        i + 1,
                        format!(
                            "would extend prefix to {nl} bits, which is too long for an IPv{} address",
                            if bits == 32 { 4 } else { 6 }
                        ),
                    ));
                }
                let size = 1u128 << (bits - nl);
                // Align to the new prefix length.
                let start = next.div_ceil(size) * size;
                if start - base >= 1u128 << (bits - plen) {
                    return Err(FnError::Msg(format!(
                        "not enough remaining address space for a subnet with a prefix of {nl} bits after {}",
                        out.last()
                            .map_or(String::new(), |v: &Value| s(v).to_string())
                    )));
                }
                out.push(Value::string(format!("{}/{nl}", fmt_ip(start, bits))));
                next = start + size;
            }
            Ok(Value::list(Type::String, out))
        },
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        let _ = std::fmt::Write::write_fmt(&mut s, format_args!("{x:02x}"));
        s
    })
}

fn resolve(c: &CallCtx<'_>, p: &str) -> PathBuf {
    let p = match p.strip_prefix("~/") {
        Some(rest) => PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(rest),
        None => PathBuf::from(p),
    };
    if p.is_absolute() {
        p
    } else {
        c.base_dir.join(p)
    }
}

fn read(c: &CallCtx<'_>, p: &str) -> Result<Vec<u8>, FnError> {
    std::fs::read(resolve(c, p)).map_err(|_| {
        FnError::Arg(0, format!("no file exists at {p:?}; this function works only with files that are distributed as part of the configuration source code, so if this file will be created by a resource in this configuration you must instead obtain this result from an attribute of that resource"))
    })
}

fn go_base(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        return "/".into();
    }
    t.rsplit('/').next().unwrap_or(t).to_string()
}

fn go_dir(p: &str) -> String {
    match p.rfind('/') {
        None => ".".into(),
        Some(0) => "/".into(),
        Some(i) => {
            let d = &p[..i];
            let d = d.trim_end_matches('/');
            if d.is_empty() {
                "/".into()
            } else {
                d.to_string()
            }
        }
    }
}

fn now_rfc3339() -> String {
    rfc3339(&chrono::Utc::now().fixed_offset())
}

fn rfc3339(t: &DateTime<FixedOffset>) -> String {
    if t.offset().local_minus_utc() == 0 {
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

fn parse_ts(s: &str, i: usize) -> Result<DateTime<FixedOffset>, FnError> {
    DateTime::parse_from_rfc3339(s).map_err(|_| {
        FnError::Arg(
            i,
            format!("not a valid RFC3339 timestamp: cannot use {s:?} as year"),
        )
    })
}

fn format_date(fmt: &str, t: &DateTime<FixedOffset>) -> Result<String, FnError> {
    let mut out = String::new();
    let chars: Vec<char> = fmt.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '\'' {
                out.push(chars[j]);
                j += 1;
            }
            if j >= chars.len() {
                return Err(FnError::Arg(0, "unterminated literal '".into()));
            }
            i = j + 1;
            continue;
        }
        if !c.is_ascii_alphabetic() {
            out.push(c);
            i += 1;
            continue;
        }
        let mut j = i;
        while j < chars.len() && chars[j] == c {
            j += 1;
        }
        let tok: String = chars[i..j].iter().collect();
        let off = t.offset().local_minus_utc();
        let piece = match tok.as_str() {
            "YYYY" => format!("{:04}", t.year()),
            "YY" => format!("{:02}", t.year() % 100),
            "MMMM" => t.format("%B").to_string(),
            "MMM" => t.format("%b").to_string(),
            "MM" => format!("{:02}", t.month()),
            "M" => t.month().to_string(),
            "DD" => format!("{:02}", t.day()),
            "D" => t.day().to_string(),
            "EEEE" => t.format("%A").to_string(),
            "EEE" => t.format("%a").to_string(),
            "hh" => format!("{:02}", t.hour()),
            "h" => t.hour().to_string(),
            "HH" => format!(
                "{:02}",
                if t.hour().is_multiple_of(12) {
                    12
                } else {
                    t.hour() % 12
                }
            ),
            "H" => (if t.hour().is_multiple_of(12) {
                12
            } else {
                t.hour() % 12
            })
            .to_string(),
            "AA" => (if t.hour() < 12 { "AM" } else { "PM" }).into(),
            "aa" => (if t.hour() < 12 { "am" } else { "pm" }).into(),
            "mm" => format!("{:02}", t.minute()),
            "m" => t.minute().to_string(),
            "ss" => format!("{:02}", t.second()),
            "s" => t.second().to_string(),
            "ZZZZZ" => t.format("%:z").to_string(),
            "ZZZZ" => t.format("%z").to_string(),
            "ZZZ" => {
                if off == 0 {
                    "UTC".into()
                } else {
                    t.format("%z").to_string()
                }
            }
            "Z" => {
                if off == 0 {
                    "Z".into()
                } else {
                    t.format("%:z").to_string()
                }
            }
            other => {
                return Err(FnError::Arg(
                    0,
                    format!("invalid date format verb {other:?}: unsupported format verb"),
                ));
            }
        };
        out.push_str(&piece);
        i = j;
    }
    Ok(out)
}

fn parse_cidr(s: &str) -> Result<(u128, u32, u32), FnError> {
    let bad = || FnError::Arg(0, format!("invalid CIDR address: {s}"));
    let (ip, len) = s.split_once('/').ok_or_else(bad)?;
    let plen: u32 = len.parse().map_err(|_| bad())?;
    if let Ok(v4) = ip.parse::<std::net::Ipv4Addr>() {
        if plen > 32 {
            return Err(bad());
        }
        return Ok((u128::from(u32::from(v4)), plen, 32));
    }
    let v6: std::net::Ipv6Addr = ip.parse().map_err(|_| bad())?;
    if plen > 128 {
        return Err(bad());
    }
    Ok((u128::from(v6), plen, 128))
}

fn mask(addr: u128, plen: u32, bits: u32) -> u128 {
    if plen == 0 {
        return 0;
    }
    let all = if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    let host = if bits - plen >= 128 {
        u128::MAX
    } else {
        (1u128 << (bits - plen)) - 1
    };
    addr & all & !host
}

fn fmt_ip(a: u128, bits: u32) -> String {
    if bits == 32 {
        std::net::Ipv4Addr::from(a as u32).to_string()
    } else {
        std::net::Ipv6Addr::from(a).to_string()
    }
}

fn subnet(addr: u128, plen: u32, bits: u32, nb: i64, nn: i64) -> Result<String, FnError> {
    if nb < 0 {
        return Err(FnError::Arg(1, "must not be negative".into()));
    }
    let nl = plen + nb as u32;
    if nl > bits {
        return Err(FnError::Msg(format!(
            "insufficient address space to extend prefix of {plen} by {nb}"
        )));
    }
    if nn < 0 || (nb < 127 && (nn as u128) >= (1u128 << nb)) {
        return Err(FnError::Msg(format!(
            "prefix extension of {nb} does not accommodate a subnet numbered {nn}"
        )));
    }
    let a = mask(addr, plen, bits) | ((nn as u128) << (bits - nl));
    Ok(format!("{}/{nl}", fmt_ip(a, bits)))
}
