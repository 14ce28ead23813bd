//! Compose's variable substitution (`${VAR}`, `$VAR`, `${VAR:-d}`, `${VAR-d}`,
//! `${VAR:?e}`, `${VAR?e}`, `${VAR:+x}`, `${VAR+x}`, `$$`), following
//! compose-go's template package: defaults and alternatives are themselves
//! substituted (nesting), and a `$` that starts nothing stays literal.

/// Why a template could not be substituted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterpError {
    /// `${...}` that is not a valid substitution.
    Invalid(String),
    /// `${VAR:?msg}` / `${VAR?msg}` with VAR missing.
    Required { var: String, message: String },
}

impl std::fmt::Display for InterpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InterpError::Invalid(t) => write!(f, "invalid interpolation format for {t:?}"),
            InterpError::Required { var, message } if message.is_empty() => {
                write!(f, "required variable {var} is missing a value")
            }
            InterpError::Required { var, message } => {
                write!(f, "required variable {var} is missing a value: {message}")
            }
        }
    }
}

fn is_name_start(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}
fn is_name_char(c: char) -> bool {
    c == '_' || c.is_ascii_alphanumeric()
}

/// Substitutes every variable in `s`; `lookup` returns `None` for unset.
pub fn interpolate(
    s: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, InterpError> {
    interpolate_noting(s, lookup, &|_| {})
}

/// [`interpolate`], calling `unset` with each variable substituted plainly
/// (`$V`, `${V}`: no default, no error) that `lookup` does not know, for
/// docker compose's "variable is not set" warning.
#[allow(clippy::many_single_char_names)] // i/j/c/n/s index one scan; names would not help.
pub fn interpolate_noting(
    s: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &dyn Fn(&str),
) -> Result<String, InterpError> {
    if !s.contains('$') {
        return Ok(s.to_string());
    }
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '$' {
            out.push(c);
            i += 1;
            continue;
        }
        match chars.get(i + 1) {
            Some('$') => {
                out.push('$');
                i += 2;
            }
            Some(&n) if is_name_start(n) => {
                let mut j = i + 1;
                while j < chars.len() && is_name_char(chars[j]) {
                    j += 1;
                }
                let name: String = chars[i + 1..j].iter().collect();
                let value = lookup(&name);
                if value.is_none() {
                    unset(&name);
                }
                out.push_str(&value.unwrap_or_default());
                i = j;
            }
            Some('{') => {
                // Find the matching close brace, counting nested `${`.
                let mut depth = 1;
                let mut j = i + 2;
                while j < chars.len() {
                    if chars[j] == '$' && chars.get(j + 1) == Some(&'{') {
                        depth += 1;
                        j += 2;
                        continue;
                    }
                    if chars[j] == '}' {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    j += 1;
                }
                if j >= chars.len() {
                    return Err(InterpError::Invalid(s.to_string()));
                }
                let inner: String = chars[i + 2..j].iter().collect();
                out.push_str(&braced(&inner, s, lookup, unset)?);
                i = j + 1;
            }
            _ => {
                out.push('$');
                i += 1;
            }
        }
    }
    Ok(out)
}

fn braced(
    inner: &str,
    whole: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &dyn Fn(&str),
) -> Result<String, InterpError> {
    let name_end = inner
        .char_indices()
        .find(|&(k, c)| {
            !(if k == 0 {
                is_name_start(c)
            } else {
                is_name_char(c)
            })
        })
        .map_or(inner.len(), |(k, _)| k);
    let name = &inner[..name_end];
    if name.is_empty() {
        return Err(InterpError::Invalid(whole.to_string()));
    }
    let rest = &inner[name_end..];
    let value = lookup(name);
    if rest.is_empty() {
        if value.is_none() {
            unset(name);
        }
        return Ok(value.unwrap_or_default());
    }
    let (colon, rest) = match rest.strip_prefix(':') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let mut it = rest.chars();
    let op = it
        .next()
        .ok_or_else(|| InterpError::Invalid(whole.to_string()))?;
    let arg = it.as_str();
    // With a colon, an empty value counts as unset.
    let set = match &value {
        Some(v) => !(colon && v.is_empty()),
        None => false,
    };
    match op {
        '-' => {
            if set {
                Ok(value.unwrap_or_default())
            } else {
                interpolate_noting(arg, lookup, unset)
            }
        }
        '+' => {
            if set {
                interpolate_noting(arg, lookup, unset)
            } else {
                Ok(String::new())
            }
        }
        '?' => {
            if set {
                Ok(value.unwrap_or_default())
            } else {
                Err(InterpError::Required {
                    var: name.to_string(),
                    message: interpolate_noting(arg, lookup, unset)?,
                })
            }
        }
        _ => Err(InterpError::Invalid(whole.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "A" => Some("a".into()),
            "EMPTY" => Some(String::new()),
            "N" => Some("nested".into()),
            _ => None,
        }
    }
    fn i(s: &str) -> Result<String, InterpError> {
        interpolate(s, &env)
    }

    #[test]
    fn forms() {
        assert_eq!(i("${A}-$A-$$A-$").unwrap(), "a-a-$A-$");
        assert_eq!(
            i("${U:-d}|${EMPTY:-d}|${EMPTY-d}|${U-d}").unwrap(),
            "d|d||d"
        );
        assert_eq!(i("${A:+x}|${EMPTY:+x}|${EMPTY+x}|${U+x}").unwrap(), "x||x|");
        assert_eq!(i("${U:-${N}}|${U:-${U2:-deep}}").unwrap(), "nested|deep");
        assert_eq!(i("$5 and ${A}b").unwrap(), "$5 and ab");
        assert_eq!(i("${A?x}").unwrap(), "a");
    }

    #[test]
    fn unset_plain_variables_are_noted() {
        let seen = std::cell::RefCell::new(Vec::new());
        let note = |k: &str| seen.borrow_mut().push(k.to_string());
        interpolate_noting(
            "$U1 ${U2} ${U3:-d} ${U4-d} ${A} ${U5:+x} ${U6:-$U7}",
            &env,
            &note,
        )
        .unwrap();
        assert_eq!(*seen.borrow(), ["U1", "U2", "U7"]);
    }

    #[test]
    fn errors() {
        assert_eq!(
            i("${U:?need it}").unwrap_err().to_string(),
            "required variable U is missing a value: need it"
        );
        assert!(matches!(i("${EMPTY:?}"), Err(InterpError::Required { .. })));
        assert_eq!(i("${EMPTY?}").unwrap(), "");
        assert!(matches!(i("${A"), Err(InterpError::Invalid(_))));
        assert!(matches!(i("${}"), Err(InterpError::Invalid(_))));
        assert!(matches!(i("${A*b}"), Err(InterpError::Invalid(_))));
    }
}
