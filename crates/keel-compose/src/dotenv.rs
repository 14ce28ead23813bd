//! The `.env` / `env_file` format as compose-go reads it: `KEY=VALUE`, an
//! optional `export ` prefix, single quotes (literal, may span lines), double
//! quotes (escapes, may span lines, substitution), unquoted values trimmed and
//! cut at ` #`, substitution in unquoted and double-quoted values, and a bare
//! `KEY` taking its value from the lookup.

use crate::interp::{InterpError, interpolate};

/// A problem in an env file, with its 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DotenvError {
    pub line: usize,
    pub message: String,
}

/// Parses `src`; `lookup` resolves variables not defined earlier in the file.
pub fn parse(
    src: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, DotenvError> {
    let mut vars: Vec<(String, String)> = Vec::new();
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    let lines: Vec<&str> = src.split('\n').collect();
    let mut i = 0;
    while i < lines.len() {
        let lineno = i + 1;
        let line = lines[i].trim_end_matches('\r');
        i += 1;
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let t = t.strip_prefix("export ").map_or(t, str::trim_start);
        let err = |m: &str| DotenvError {
            line: lineno,
            message: m.to_string(),
        };
        let Some(eq) = t.find('=') else {
            let key = t.trim();
            check_key(key).map_err(|m| err(&m))?;
            let found = vars
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .or_else(|| lookup(key));
            if let Some(v) = found {
                vars.push((key.to_string(), v));
            }
            continue;
        };
        let key = t[..eq].trim();
        check_key(key).map_err(|m| err(&m))?;
        let rest = t[eq + 1..].trim_start();
        let look = |name: &str| -> Option<String> {
            vars.iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .or_else(|| lookup(name))
        };
        let value = if let Some(q) = rest.chars().next().filter(|c| *c == '\'' || *c == '"') {
            // Collect up to the closing quote, across lines.
            let mut body = String::new();
            let mut cur = rest[1..].to_string();
            let closed = loop {
                if let Some(end) = find_close(&cur, q) {
                    body.push_str(&cur[..end]);
                    let after = cur[end + 1..].trim();
                    if !after.is_empty() && !after.starts_with('#') {
                        return Err(err("unexpected characters after the closing quote"));
                    }
                    break true;
                }
                body.push_str(&cur);
                if i >= lines.len() {
                    break false;
                }
                body.push('\n');
                cur = lines[i].trim_end_matches('\r').to_string();
                i += 1;
            };
            if !closed {
                return Err(err("unterminated quoted value"));
            }
            if q == '\'' {
                body
            } else {
                let unescaped = unescape(&body);
                interpolate(&unescaped, &look).map_err(|e| interp_err(lineno, &e))?
            }
        } else {
            let v = match rest.find(" #").or_else(|| rest.find("\t#")) {
                Some(c) => &rest[..c],
                None if rest.starts_with('#') => "",
                None => rest,
            };
            interpolate(v.trim(), &look).map_err(|e| interp_err(lineno, &e))?
        };
        vars.push((key.to_string(), value));
    }
    // Later definitions win; keep the last one, in first-definition order.
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in vars {
        if let Some(e) = out.iter_mut().find(|(x, _)| *x == k) {
            e.1 = v;
        } else {
            out.push((k, v));
        }
    }
    Ok(out)
}

fn interp_err(line: usize, e: &InterpError) -> DotenvError {
    DotenvError {
        line,
        message: e.to_string(),
    }
}

fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("missing variable name".into());
    }
    if key
        .chars()
        .any(|c| c.is_whitespace() || c == '\'' || c == '"')
    {
        return Err(format!("invalid variable name {key:?}"));
    }
    Ok(())
}

/// Index of the closing quote `q` in `s` (a backslash escapes it in double quotes).
fn find_close(s: &str, q: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if q == '"' && escaped {
            escaped = false;
            continue;
        }
        if q == '"' && c == '\\' {
            escaped = true;
            continue;
        }
        if c == q {
            return Some(i);
        }
    }
    None
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('"') => out.push('"'),
            Some('$') => out.push_str("$$"),
            Some(o) => {
                out.push('\\');
                out.push(o);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<(String, String)> {
        parse(s, &|k| (k == "HOME").then(|| "/home/u".to_string())).unwrap()
    }

    #[test]
    fn format_rules() {
        let got = p(concat!(
            "# comment\n",
            "A=plain value # comment\n",
            "export B=b\n",
            "C='single ${A} # kept'\n",
            "D=\"double\\n${A} \\\"q\\\"\"\n",
            "E=\n",
            "F=\"multi\nline\"\n",
            "G=x#notcomment\n",
            "H=${HOME}/x\n",
            "HOME\n",
            "UNSET\n",
            "I=\"\\$HOME\"\n",
        ));
        let m: std::collections::HashMap<_, _> = got.into_iter().collect();
        assert_eq!(m["A"], "plain value");
        assert_eq!(m["B"], "b");
        assert_eq!(m["C"], "single ${A} # kept");
        assert_eq!(m["D"], "double\nplain value \"q\"");
        assert_eq!(m["E"], "");
        assert_eq!(m["F"], "multi\nline");
        assert_eq!(m["G"], "x#notcomment");
        assert_eq!(m["H"], "/home/u/x");
        assert_eq!(m["HOME"], "/home/u");
        assert!(!m.contains_key("UNSET"));
        assert_eq!(m["I"], "$HOME");
    }

    #[test]
    fn errors_name_line() {
        let e = parse("A=1\nB=\"open\n", &|_| None).unwrap_err();
        assert_eq!(e.line, 2);
        let e = parse("A=1\n=2\n", &|_| None).unwrap_err();
        assert_eq!(e.line, 2);
    }
}
