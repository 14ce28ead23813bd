//! Numbers as cty has them: binary floating point with a 512-bit mantissa,
//! rounded to nearest-even after every operation, printed as the shortest
//! decimal that reads back to the same number (Go's `big.Float.Text('f', -1)`).
//! Written here because no crate offers Go's `big.Float` semantics exactly,
//! and terraform prints numbers (`1/3`, `11 % 5.1`) with those low bits.

use std::cmp::Ordering;
use std::fmt;

use num_bigint::{BigInt, BigUint, Sign};
use num_integer::Integer;
use num_traits::{One, Signed, ToPrimitive, Zero};

/// Mantissa bits, as cty's `ParseNumberVal` and arithmetic use.
const PREC: u64 = 512;
/// Decimal exponents beyond this are refused rather than expanded.
const MAX_EXP10: i64 = 4096;

/// A cty number: finite (mant × 2^exp, mant odd or zero) or an infinity.
#[derive(Clone, Debug)]
pub enum Number {
    Finite { mant: BigInt, exp: i64 },
    Inf { negative: bool },
}

impl PartialEq for Number {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Number {}

impl PartialOrd for Number {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Number {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Number::Inf { negative: a }, Number::Inf { negative: b }) => b.cmp(a),
            (Number::Inf { negative }, _) => {
                if *negative {
                    Ordering::Less
                } else {
                    Ordering::Greater
                }
            }
            (_, Number::Inf { negative }) => {
                if *negative {
                    Ordering::Greater
                } else {
                    Ordering::Less
                }
            }
            (Number::Finite { mant: a, exp: ea }, Number::Finite { mant: b, exp: eb }) => {
                let e = (*ea).min(*eb);
                let a = a << ((ea - e) as usize);
                let b = b << ((eb - e) as usize);
                a.cmp(&b)
            }
        }
    }
}

impl std::hash::Hash for Number {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match self {
            Number::Finite { mant, exp } => {
                mant.hash(state);
                exp.hash(state);
            }
            Number::Inf { negative } => negative.hash(state),
        }
    }
}

/// Rounds |m| × 2^exp (sign from `neg`) to PREC bits, nearest-even; `sticky`
/// says bits below `m` were dropped already (so a tie is not a tie).
fn round(neg: bool, m: BigUint, exp: i64, sticky: bool) -> Number {
    let bits = m.bits();
    let (mut q, mut exp) = if bits > PREC {
        let shift = bits - PREC;
        let q = &m >> shift;
        let half = m.bit(shift - 1);
        let rest = sticky || (shift > 1 && m.trailing_zeros().is_some_and(|t| t < shift - 1));
        let up = half && (rest || q.bit(0));
        (if up { q + 1u32 } else { q }, exp + shift as i64)
    } else {
        (m, exp)
    };
    if q.is_zero() {
        return Number::zero();
    }
    let tz = q.trailing_zeros().unwrap_or(0);
    q >>= tz;
    exp += tz as i64;
    let mant = BigInt::from_biguint(if neg { Sign::Minus } else { Sign::Plus }, q);
    Number::Finite { mant, exp }
}

fn finite(mant: BigInt, exp: i64) -> Number {
    let neg = mant.is_negative();
    round(neg, mant.into_parts().1, exp, false)
}

/// Error of [`Number::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseNumberError(pub String);

impl fmt::Display for ParseNumberError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseNumberError {}

impl Number {
    pub fn zero() -> Number {
        Number::Finite {
            mant: BigInt::zero(),
            exp: 0,
        }
    }

    pub fn from_i64(v: i64) -> Number {
        finite(BigInt::from(v), 0)
    }

    pub fn from_u64(v: u64) -> Number {
        finite(BigInt::from(v), 0)
    }

    pub fn from_bigint(v: BigInt) -> Number {
        finite(v, 0)
    }

    /// From an f64 result (`pow`, `log`): cty keeps those at 53 bits, so
    /// they print as the shortest decimal of the f64.
    pub fn from_f64(v: f64) -> Number {
        if v.is_finite() {
            return Number::parse(&format!("{v:e}")).unwrap_or_else(|_| Number::exact_f64(v));
        }
        Number::exact_f64(v)
    }

    /// From an f64, exactly (every finite f64 fits in 512 bits).
    pub fn exact_f64(v: f64) -> Number {
        if v.is_infinite() {
            return Number::Inf { negative: v < 0.0 };
        }
        if v == 0.0 || v.is_nan() {
            return Number::zero();
        }
        let bits = v.to_bits();
        let neg = bits >> 63 == 1;
        let e = ((bits >> 52) & 0x7ff) as i64;
        let frac = bits & ((1u64 << 52) - 1);
        let (m, exp) = if e == 0 {
            (frac, -1074)
        } else {
            (frac | (1u64 << 52), e - 1075)
        };
        round(neg, BigUint::from(m), exp, false)
    }

    /// Parses a decimal literal as HCL and cty read it: `12`, `-1.5`, `2e100`,
    /// `1.0E-3`; also `+Inf`/`-Inf` as cty's JSON does.
    pub fn parse(s: &str) -> Result<Number, ParseNumberError> {
        let bad = || ParseNumberError(format!("invalid number {s:?}"));
        match s {
            "+Inf" | "Inf" => return Ok(Number::Inf { negative: false }),
            "-Inf" => return Ok(Number::Inf { negative: true }),
            _ => {}
        }
        let (neg, rest) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let (mantissa, exp10) = match rest.find(['e', 'E']) {
            Some(i) => {
                let e: i64 = rest[i + 1..].parse().map_err(|_| bad())?;
                (&rest[..i], e)
            }
            None => (rest, 0),
        };
        let (int, frac) = match mantissa.find('.') {
            Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
            None => (mantissa, ""),
        };
        if (int.is_empty() && frac.is_empty())
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let digits = format!("{int}{frac}");
        let digits = BigUint::parse_bytes(digits.as_bytes(), 10).unwrap_or_default();
        let exp10 = exp10.saturating_sub(frac.len() as i64);
        if digits.is_zero() {
            return Ok(Number::zero());
        }
        if !(-MAX_EXP10..=MAX_EXP10).contains(&exp10) {
            return Err(ParseNumberError(format!("number {s:?} is out of range")));
        }
        Ok(if exp10 >= 0 {
            round(
                neg,
                digits * BigUint::from(10u32).pow(exp10 as u32),
                0,
                false,
            )
        } else {
            div_exact(
                neg,
                &digits,
                0,
                &BigUint::from(10u32).pow((-exp10) as u32),
                0,
            )
        })
    }

    pub fn is_zero(&self) -> bool {
        matches!(self, Number::Finite { mant, .. } if mant.is_zero())
    }

    pub fn is_negative(&self) -> bool {
        match self {
            Number::Finite { mant, .. } => mant.is_negative(),
            Number::Inf { negative } => *negative,
        }
    }

    pub fn is_infinite(&self) -> bool {
        matches!(self, Number::Inf { .. })
    }

    /// Whether the number has no fractional part.
    pub fn is_integer(&self) -> bool {
        match self {
            Number::Finite { mant, exp } => *exp >= 0 || mant.is_zero(),
            Number::Inf { .. } => false,
        }
    }

    /// The integer value, when the number is one.
    pub fn to_bigint(&self) -> Option<BigInt> {
        match self {
            Number::Finite { mant, exp } if *exp >= 0 => Some(mant << (*exp as usize)),
            Number::Finite { mant, .. } if mant.is_zero() => Some(BigInt::zero()),
            _ => None,
        }
    }

    pub fn to_i64(&self) -> Option<i64> {
        if let Number::Finite { exp, .. } = self
            && *exp > 64
        {
            return None;
        }
        self.to_bigint()?.to_i64()
    }

    /// Truncated toward zero, as Go's `big.Float.Int`.
    pub fn trunc(&self) -> Number {
        match self {
            Number::Finite { mant, exp } if *exp < 0 => {
                let sh = (-exp) as u64;
                let (neg, m) = (mant.is_negative(), mant.magnitude());
                round(neg, m >> sh, 0, false)
            }
            n => n.clone(),
        }
    }

    pub fn floor(&self) -> Number {
        let t = self.trunc();
        if self.is_negative() && t != *self {
            t.sub(&Number::from_i64(1))
        } else {
            t
        }
    }

    pub fn ceil(&self) -> Number {
        let t = self.trunc();
        if !self.is_negative() && t != *self {
            t.add(&Number::from_i64(1))
        } else {
            t
        }
    }

    pub fn to_f64(&self) -> f64 {
        match self {
            Number::Inf { negative: true } => f64::NEG_INFINITY,
            Number::Inf { negative: false } => f64::INFINITY,
            n => n.to_string().parse().unwrap_or(f64::NAN),
        }
    }

    pub fn neg(&self) -> Number {
        match self {
            Number::Finite { mant, exp } => Number::Finite {
                mant: -mant,
                exp: *exp,
            },
            Number::Inf { negative } => Number::Inf {
                negative: !negative,
            },
        }
    }

    pub fn abs(&self) -> Number {
        if self.is_negative() {
            self.neg()
        } else {
            self.clone()
        }
    }

    pub fn add(&self, o: &Number) -> Number {
        match (self, o) {
            (Number::Finite { mant: a, exp: ea }, Number::Finite { mant: b, exp: eb }) => {
                let e = (*ea).min(*eb);
                finite((a << ((ea - e) as usize)) + (b << ((eb - e) as usize)), e)
            }
            (Number::Inf { negative }, _) | (_, Number::Inf { negative }) => Number::Inf {
                negative: *negative,
            },
        }
    }

    pub fn sub(&self, o: &Number) -> Number {
        self.add(&o.neg())
    }

    pub fn mul(&self, o: &Number) -> Number {
        match (self, o) {
            (Number::Finite { mant: a, exp: ea }, Number::Finite { mant: b, exp: eb }) => {
                finite(a * b, ea + eb)
            }
            _ => Number::Inf {
                negative: self.is_negative() != o.is_negative(),
            },
        }
    }

    /// `None` for 0/0 (Go's big.Float panics there; terraform reports an error).
    pub fn div(&self, o: &Number) -> Option<Number> {
        match (self, o) {
            (Number::Finite { mant: a, exp: ea }, Number::Finite { mant: b, exp: eb }) => {
                if b.is_zero() {
                    if a.is_zero() {
                        return None;
                    }
                    return Some(Number::Inf {
                        negative: a.is_negative(),
                    });
                }
                let neg = a.is_negative() != b.is_negative();
                Some(div_exact(neg, a.magnitude(), *ea, b.magnitude(), *eb))
            }
            (Number::Inf { .. }, Number::Inf { .. }) => None,
            (Number::Inf { .. }, _) => Some(Number::Inf {
                negative: self.is_negative() != o.is_negative(),
            }),
            (_, Number::Inf { .. }) => Some(Number::zero()),
        }
    }

    /// cty's Modulo: `a - b * trunc(a / b)`; `a % 0` is `a`.
    pub fn rem(&self, o: &Number) -> Number {
        if self.is_infinite() || o.is_infinite() {
            return self.mul(o);
        }
        if o.is_zero() {
            return self.clone();
        }
        let q = self.div(o).unwrap_or_else(Number::zero).trunc();
        self.sub(&o.mul(&q))
    }

    /// Integer power for `pow`; fractional exponents go through f64 as Go's
    /// math.Pow does in terraform's `pow`.
    pub fn pow(&self, e: &Number) -> Number {
        Number::from_f64(self.to_f64().powf(e.to_f64()))
    }

    /// Exact decimal digits and decimal point position of |self|.
    fn decimal(m: &BigUint, exp: i64) -> (Vec<u8>, i64) {
        if exp >= 0 {
            let s = (m << (exp as u64)).to_str_radix(10).into_bytes();
            let dp = s.len() as i64;
            trim(s, dp)
        } else {
            let k = (-exp) as u32;
            let s = (m * BigUint::from(5u32).pow(k))
                .to_str_radix(10)
                .into_bytes();
            let dp = s.len() as i64 - i64::from(k);
            trim(s, dp)
        }
    }
}

fn trim(mut s: Vec<u8>, dp: i64) -> (Vec<u8>, i64) {
    while s.last() == Some(&b'0') {
        s.pop();
    }
    if s.is_empty() {
        return (s, 0);
    }
    (s, dp)
}

/// (a × 2^ea) / (b × 2^eb), rounded.
fn div_exact(neg: bool, a: &BigUint, ea: i64, b: &BigUint, eb: i64) -> Number {
    let k = (PREC as i64 + 3 + b.bits() as i64 - a.bits() as i64).max(0);
    let (q, r) = (a << (k as u64)).div_rem(b);
    round(neg, q, ea - eb - k, !r.is_zero())
}

/// Go's decimal rounding helpers over ASCII digits.
fn should_round_up(d: &[u8], n: usize) -> bool {
    if d[n] == b'5' && n + 1 == d.len() {
        return n > 0 && (d[n - 1] - b'0') % 2 == 1;
    }
    d[n] >= b'5'
}

fn round_up(d: &mut Vec<u8>, dp: &mut i64, n: usize) {
    let mut i = n;
    while i > 0 {
        if d[i - 1] < b'9' {
            d[i - 1] += 1;
            d.truncate(i);
            return;
        }
        i -= 1;
    }
    d.clear();
    d.push(b'1');
    *dp += 1;
}

fn round_down(d: &mut Vec<u8>, n: usize) {
    d.truncate(n);
    while d.last() == Some(&b'0') {
        d.pop();
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (mant, exp) = match self {
            Number::Inf { negative: true } => return f.write_str("-Inf"),
            Number::Inf { negative: false } => return f.write_str("+Inf"),
            Number::Finite { mant, exp } => (mant, *exp),
        };
        if mant.is_zero() {
            return f.write_str("0");
        }
        let m = mant.magnitude();
        let (mut d, mut dp) = Number::decimal(m, exp);
        // Go's roundShortest: the shortest digits inside the half-ulp interval.
        let shift = m.bits() as i64 - (PREC as i64 + 1);
        let (mm, e) = if shift < 0 {
            (m << ((-shift) as u64), exp + shift)
        } else {
            (m >> (shift as u64), exp + shift)
        };
        let (lower, _) = Number::decimal(&(&mm - 1u32), e);
        let (upper, _) = Number::decimal(&(&mm + 1u32), e);
        let inclusive = !mm.bit(1);
        let at = |v: &[u8], i: usize| v.get(i).copied().unwrap_or(b'0');
        for i in 0..d.len() {
            let (l, c, u) = (at(&lower, i), d[i], at(&upper, i));
            let okdown = l != c || inclusive && i + 1 == lower.len();
            let okup = c != u && (inclusive || c + 1 < u || i + 1 < upper.len());
            if okdown && okup {
                if should_round_up(&d, i + 1) {
                    round_up(&mut d, &mut dp, i + 1);
                } else {
                    round_down(&mut d, i + 1);
                }
                break;
            } else if okdown {
                round_down(&mut d, i + 1);
                break;
            } else if okup {
                round_up(&mut d, &mut dp, i + 1);
                break;
            }
        }
        let mut s = String::new();
        if mant.is_negative() {
            s.push('-');
        }
        if dp > 0 {
            for i in 0..dp as usize {
                s.push(char::from(at(&d, i)));
            }
        } else {
            s.push('0');
        }
        let frac_len = d.len() as i64 - dp;
        if frac_len > 0 {
            s.push('.');
            for i in 0..frac_len {
                let idx = dp + i;
                s.push(if idx < 0 {
                    '0'
                } else {
                    char::from(at(&d, idx as usize))
                });
            }
        }
        f.write_str(&s)
    }
}

impl One for Number {
    fn one() -> Self {
        Number::from_i64(1)
    }
}

impl std::ops::Mul for Number {
    type Output = Number;
    fn mul(self, o: Number) -> Number {
        Number::mul(&self, &o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Number {
        Number::parse(s).unwrap()
    }

    #[test]
    fn prints_as_terraform_console() {
        assert_eq!(
            n("1").div(&n("3")).unwrap().to_string(),
            format!("0.{}5", "3".repeat(154))
        );
        assert_eq!(
            n("2").div(&n("3")).unwrap().to_string(),
            format!("0.{}7", "6".repeat(153))
        );
        assert_eq!(n("10").div(&n("4")).unwrap().to_string(), "2.5");
        assert_eq!(n("2e100").to_string(), format!("2{}", "0".repeat(100)));
        assert_eq!(n("1.0e-3").to_string(), "0.001");
        assert_eq!(n("0.1").add(&n("0.2")).to_string(), "0.3");
        assert_eq!(n("9007199254740993").to_string(), "9007199254740993");
        assert_eq!(n("-0.5").to_string(), "-0.5");
        assert_eq!(n("1").div(&n("0")).unwrap().to_string(), "+Inf");
        assert_eq!(n("1").div(&n("10")).unwrap().to_string(), "0.1");
        assert_eq!(
            n("123456789012345678901234567890").to_string(),
            "123456789012345678901234567890"
        );
    }

    #[test]
    fn spec_suite_arithmetic() {
        let big = n("3.14159265358979323846264338327950288419716939937510582097494459");
        assert_eq!(
            big.add(&n("1")).to_string(),
            "4.14159265358979323846264338327950288419716939937510582097494459"
        );
        let want = n(&format!("0.8{}24", "0".repeat(152)));
        assert_eq!(n("11").rem(&n("5.1")), want);
        assert_eq!(n("11").rem(&n("5")).to_string(), "1");
        assert_eq!(n("-7").rem(&n("3")).to_string(), "-1");
    }

    #[test]
    fn parse_rejects_garbage() {
        for s in ["", "-", "1e", "1.2.3", "abc", "1e99999"] {
            assert!(Number::parse(s).is_err(), "{s}");
        }
        assert_eq!(n("007").to_i64(), Some(7));
        assert_eq!(n("2.5").floor().to_string(), "2");
        assert_eq!(n("-2.5").floor().to_string(), "-3");
        assert_eq!(n("2.1").ceil().to_string(), "3");
    }
}
