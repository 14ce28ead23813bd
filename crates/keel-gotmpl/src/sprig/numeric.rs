//! sprig's numeric.go and the arithmetic functions.go defines inline (`add`,
//! `sub`, …, `randInt`), with `cast`'s conversions and shopspring/decimal's
//! arithmetic for the `…f` functions.

use std::collections::HashMap;

use super::crypto::random_below;
use super::{int, s, vstr};
use crate::funcs::{FuncDef, Ty, def};
use crate::gofmt;
use crate::value::Value;

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
pub(super) fn parse_int0(s: &str) -> Option<i64> {
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

pub(super) fn until_step(start: i64, stop: i64, step: i64) -> Value {
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

#[derive(Clone, Copy)]
pub(super) enum DecOp {
    Add,
    Sub,
    Mul,
    Div,
}

/// A decimal `m × 10^e` (shopspring/decimal's representation, bounded to i128).
#[derive(Clone, Copy)]
pub(super) struct Dec {
    m: i128,
    e: i32,
}

pub(super) fn dec_from_f64(f: f64) -> Option<Dec> {
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

pub(super) fn pow10(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

pub(super) fn align(a: Dec, b: Dec) -> Option<(i128, i128, i32)> {
    if a.e >= b.e {
        Some((a.m.checked_mul(pow10((a.e - b.e) as u32)?)?, b.m, b.e))
    } else {
        Some((a.m, b.m.checked_mul(pow10((b.e - a.e) as u32)?)?, a.e))
    }
}

pub(super) fn dec_apply(a: Dec, b: Dec, op: DecOp) -> Option<Dec> {
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
pub(super) fn dec_op(first: &Value, rest: &[Value], op: DecOp) -> f64 {
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

pub(super) fn register(m: &mut HashMap<&'static str, FuncDef>) {
    use Ty::{Any, Int, Str};
    let mut add = |n: &'static str, p: &[Ty], v: Option<Ty>, f: crate::funcs::PlainFn| {
        m.insert(n, def(p, v, f));
    };
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
    add("until", &[Int], None, |a| {
        let c = int(&a[0]);
        Ok(until_step(0, c, if c < 0 { -1 } else { 1 }))
    });
    add("untilStep", &[Int, Int, Int], None, |a| {
        Ok(until_step(int(&a[0]), int(&a[1]), int(&a[2])))
    });
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
    add("randInt", &[Int, Int], None, |a| {
        let (lo, hi) = (int(&a[0]), int(&a[1]));
        if hi <= lo {
            return Err("invalid argument to Intn".into());
        }
        Ok(Value::Int(lo + random_below((hi - lo) as u64)? as i64))
    });
}
