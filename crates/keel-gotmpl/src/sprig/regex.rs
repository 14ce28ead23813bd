//! sprig's regex.go: `regexMatch`, `regexFind…`, `regexReplace…`,
//! `regexSplit`, `regexQuoteMeta` and their `must…` forms.

use std::collections::HashMap;

use super::{int, s, strs, vstr};
use crate::funcs::{FuncDef, Ty, def};
use crate::value::Value;

/// Go's `regexp.Compile(re)`: the pattern read with Go's RE2 syntax (ASCII
/// `\d\w\s\b`, literal `-`/`[`/`&`/`~` in classes, `\Q…\E`, octal escapes),
/// rewritten for the regex crate; Go's error text for what Go refuses.
pub(super) fn compile(re: &str) -> Result<regex::Regex, String> {
    let translated =
        translate(re).map_err(|(code, expr)| format!("error parsing regexp: {code}: `{expr}`"))?;
    regex::Regex::new(&translated).map_err(|e| {
        // The translation keeps to what both accept; a refusal here is a
        // size limit or an unusual construct.
        format!(
            "error parsing regexp: {}",
            e.to_string().lines().last().unwrap_or("")
        )
    })
}

/// Go's `regexp.MustCompile(re)`: the panic text a template reports.
pub(super) fn regex(re: &str) -> Result<regex::Regex, String> {
    compile(re).map_err(|e| format!("regexp: Compile({}): {e}", go_backquote(re)))
}

/// `quote` in Go's regexp package: backquoted when possible.
fn go_backquote(s: &str) -> String {
    if s.contains('`') || s.chars().any(|c| c.is_control() && c != '\t') {
        crate::gofmt::quote(s)
    } else {
        format!("`{s}`")
    }
}

const PERL_CLASSES: [(char, &str); 3] = [('d', "0-9"), ('w', "0-9A-Za-z_"), ('s', "\\t\\n\\f\\r ")];

type GoErr = (&'static str, String);

fn class_escape_body(c: char) -> Option<(&'static str, bool)> {
    let lower = c.to_ascii_lowercase();
    PERL_CLASSES
        .iter()
        .find(|(k, _)| *k == lower)
        .map(|(_, body)| (*body, c.is_ascii_uppercase()))
}

/// Rewrites a Go regexp for the regex crate, or returns Go's error code and
/// the offending text.
#[allow(clippy::too_many_lines)]
fn translate(re: &str) -> Result<String, GoErr> {
    let chars: Vec<char> = re.chars().collect();
    let mut out = String::with_capacity(re.len() + 8);
    let mut i = 0;
    let mut depth: Vec<usize> = Vec::new();
    // whether the previous item can take a repetition operator, and whether it is one
    let mut can_repeat = false;
    let mut last_was_repeat = false;
    let text = |a: usize, b: usize| chars[a..b.min(chars.len())].iter().collect::<String>();
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                let (piece, n) = escape_outside(&chars, i)?;
                out.push_str(&piece);
                i += n;
                can_repeat = true;
                last_was_repeat = false;
                continue;
            }
            '[' => {
                let (piece, n) = class(&chars, i)?;
                out.push_str(&piece);
                i += n;
                can_repeat = true;
                last_was_repeat = false;
                continue;
            }
            '(' => {
                if chars.get(i + 1) == Some(&'?') {
                    // (?P<name>…), (?<name>…), (?flags) and (?flags:…)
                    let rest = text(i, chars.len());
                    if rest.starts_with("(?P<") || rest.starts_with("(?<") {
                        let start = if rest.starts_with("(?P<") { 4 } else { 3 };
                        let end = rest
                            .find('>')
                            .ok_or(("invalid named capture", rest.clone()))?;
                        let name = &rest[start..end];
                        if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_')
                        {
                            return Err(("invalid named capture", rest[..=end].to_string()));
                        }
                        out.push_str(&rest[..=end]);
                        i += rest[..=end].chars().count();
                        depth.push(i);
                        can_repeat = false;
                        last_was_repeat = false;
                        continue;
                    }
                    let mut j = i + 2;
                    while j < chars.len() && (chars[j].is_ascii_alphabetic() || chars[j] == '-') {
                        j += 1;
                    }
                    let flags = text(i + 2, j);
                    let ok_flags = flags
                        .chars()
                        .all(|f| matches!(f, 'i' | 'm' | 's' | 'U' | '-'));
                    match chars.get(j) {
                        Some(')') if ok_flags && !flags.is_empty() => {
                            out.push_str(&text(i, j + 1));
                            i = j + 1;
                            continue;
                        }
                        Some(':') if ok_flags => {
                            out.push_str(&text(i, j + 1));
                            i = j + 1;
                            depth.push(i);
                            can_repeat = false;
                            last_was_repeat = false;
                            continue;
                        }
                        _ => {
                            return Err((
                                "invalid or unsupported Perl syntax",
                                text(i, (j + 1).min(i + 3)),
                            ));
                        }
                    }
                }
                out.push('(');
                depth.push(i);
                i += 1;
                can_repeat = false;
                last_was_repeat = false;
                continue;
            }
            ')' => {
                if depth.pop().is_none() {
                    return Err(("unexpected )", re.to_string()));
                }
                out.push(')');
                can_repeat = true;
                last_was_repeat = false;
            }
            '|' => {
                out.push('|');
                can_repeat = false;
                last_was_repeat = false;
            }
            '*' | '+' | '?' => {
                if last_was_repeat {
                    // `a*?` is a lazy star; anything else stacked is refused
                    let prev = out.chars().last().unwrap_or(' ');
                    if c == '?' && prev != '?' {
                        out.push('?');
                        i += 1;
                        last_was_repeat = false;
                        can_repeat = false;
                        if matches!(chars.get(i), Some('*' | '+' | '?' | '{')) {
                            return Err(("invalid nested repetition operator", text(i - 2, i + 1)));
                        }
                        continue;
                    }
                    return Err(("invalid nested repetition operator", text(i - 1, i + 1)));
                }
                if !can_repeat {
                    return Err(("missing argument to repetition operator", c.to_string()));
                }
                out.push(c);
                last_was_repeat = true;
            }
            '{' => {
                // a repeat count if it parses as one, a literal otherwise (as Go)
                let rest = text(i, chars.len());
                if let Some(end) = rest.find('}') {
                    let inner = &rest[1..end];
                    let (lo, hi) = inner
                        .split_once(',')
                        .map_or((inner, Some(inner)), |(a, b)| {
                            (a, if b.is_empty() { None } else { Some(b) })
                        });
                    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
                    if digits(lo) && hi.is_none_or(digits) {
                        let n = |s: &str| s.parse::<u32>().unwrap_or(u32::MAX);
                        let (l, h) = (n(lo), hi.map(n));
                        let op = &rest[..=end];
                        if l > 1000 || h.is_some_and(|h| h > 1000 || h < l) {
                            return Err(("invalid repeat count", op.to_string()));
                        }
                        if last_was_repeat {
                            return Err(("invalid nested repetition operator", op.to_string()));
                        }
                        if !can_repeat {
                            return Err((
                                "missing argument to repetition operator",
                                op.to_string(),
                            ));
                        }
                        out.push_str(op);
                        i += op.chars().count();
                        last_was_repeat = true;
                        continue;
                    }
                }
                out.push_str("\\{");
                can_repeat = true;
                last_was_repeat = false;
            }
            '}' => {
                out.push_str("\\}");
                can_repeat = true;
                last_was_repeat = false;
            }
            _ => {
                out.push(c);
                can_repeat = true;
                last_was_repeat = false;
            }
        }
        i += 1;
    }
    if !depth.is_empty() {
        return Err(("missing closing )", re.to_string()));
    }
    Ok(out)
}

/// An escape outside a class: what to emit and how many chars it took.
fn escape_outside(chars: &[char], i: usize) -> Result<(String, usize), GoErr> {
    let Some(&e) = chars.get(i + 1) else {
        return Err(("trailing backslash at end of expression", String::new()));
    };
    if let Some((body, neg)) = class_escape_body(e) {
        return Ok((format!("[{}{body}]", if neg { "^" } else { "" }), 2));
    }
    match e {
        'Q' => {
            let rest: String = chars[i + 2..].iter().collect();
            let (lit, n) = rest
                .find("\\E")
                .map_or((rest.as_str(), rest.chars().count()), |p| {
                    (&rest[..p], rest[..p].chars().count() + 2)
                });
            Ok((regex::escape(lit), 2 + n))
        }
        'b' | 'B' => Ok((format!("(?-u:\\{e})"), 2)),
        'A' | 'z' | 'a' | 'f' | 't' | 'n' | 'r' | 'v' => Ok((format!("\\{e}"), 2)),
        'p' | 'P' => {
            if chars.get(i + 2) == Some(&'{') {
                let end = chars[i..].iter().position(|c| *c == '}').ok_or((
                    "invalid character class range",
                    chars[i..].iter().collect::<String>(),
                ))?;
                Ok((chars[i..=i + end].iter().collect(), end + 1))
            } else if let Some(n) = chars.get(i + 2) {
                Ok((format!("\\{e}{n}"), 3))
            } else {
                Err(("invalid character class range", format!("\\{e}")))
            }
        }
        'x' => {
            if chars.get(i + 2) == Some(&'{') {
                let end = chars[i..].iter().position(|c| *c == '}').ok_or((
                    "invalid escape sequence",
                    chars[i..].iter().collect::<String>(),
                ))?;
                Ok((chars[i..=i + end].iter().collect(), end + 1))
            } else {
                let hex: String = chars[i + 2..chars.len().min(i + 4)].iter().collect();
                if hex.len() == 2 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    Ok((format!("\\x{hex}"), 4))
                } else {
                    Err(("invalid escape sequence", format!("\\x{hex}")))
                }
            }
        }
        '0'..='7' => {
            // Go: \1-\7 are backreferences (refused); \0 and \1xx octal
            let digits: String = chars[i + 1..]
                .iter()
                .take(3)
                .take_while(|c| ('0'..='7').contains(*c))
                .collect();
            if e != '0' && digits.len() < 3 {
                return Err(("invalid escape sequence", format!("\\{e}")));
            }
            let v = u32::from_str_radix(&digits, 8).unwrap_or(0);
            Ok((format!("\\x{{{v:x}}}"), 1 + digits.chars().count()))
        }
        c if c.is_ascii_punctuation() => {
            // Go escapes any punctuation literally (`\<` is `<`, not a word boundary)
            Ok((regex::escape(&c.to_string()), 2))
        }
        c => Err(("invalid escape sequence", format!("\\{c}"))),
    }
}

/// A bracketed class starting at `i`: the regex-crate form and its length.
fn class(chars: &[char], i: usize) -> Result<(String, usize), GoErr> {
    let unclosed = || ("missing closing ]", chars[i..].iter().collect::<String>());
    let mut out = String::from("[");
    let mut j = i + 1;
    if chars.get(j) == Some(&'^') {
        out.push('^');
        j += 1;
    }
    let first = j;
    // items: a single char (for ranges) or a whole sub-class
    let mut prev_char: Option<char> = None;
    loop {
        let Some(&c) = chars.get(j) else {
            return Err(unclosed());
        };
        if c == ']' && j > first {
            out.push(']');
            return Ok((out, j + 1 - i));
        }
        if c == '[' && chars.get(j + 1) == Some(&':') {
            let rest: String = chars[j..].iter().collect();
            if let Some(end) = rest.find(":]") {
                let body = &rest[..end + 2];
                out.push_str(body);
                j += body.chars().count();
                prev_char = None;
                continue;
            }
        }
        let (lit, n) = if c == '\\' {
            let Some(&e) = chars.get(j + 1) else {
                return Err(unclosed());
            };
            if let Some((body, neg)) = class_escape_body(e) {
                if neg {
                    out.push_str("[^");
                    out.push_str(body);
                    out.push(']');
                } else {
                    out.push_str(body);
                }
                j += 2;
                prev_char = None;
                continue;
            }
            if matches!(e, 'p' | 'P') {
                let (piece, n) = escape_outside(chars, j)?;
                out.push_str(&piece);
                j += n;
                prev_char = None;
                continue;
            }
            let (piece, n) = escape_outside(chars, j)?;
            let lit = match e {
                'a' => '\u{7}',
                'f' => '\u{c}',
                't' => '\t',
                'n' => '\n',
                'r' => '\r',
                'v' => '\u{b}',
                _ if piece.starts_with("\\x") => {
                    let hex = piece.trim_start_matches("\\x").trim_matches(['{', '}']);
                    u32::from_str_radix(hex, 16)
                        .ok()
                        .and_then(char::from_u32)
                        .unwrap_or('\0')
                }
                _ => piece.chars().last().unwrap_or(e),
            };
            (lit, n)
        } else {
            (c, 1)
        };
        // a range `a-z`: `-` between two single characters
        if chars.get(j + n) == Some(&'-')
            && chars.get(j + n + 1).is_some_and(|x| *x != ']')
            && !(chars.get(j + n + 1) == Some(&'\\')
                && chars
                    .get(j + n + 2)
                    .is_some_and(|x| class_escape_body(*x).is_some() || matches!(x, 'p' | 'P')))
        {
            let k = j + n + 1;
            let (hi, m) = if chars[k] == '\\' {
                let (piece, m) = escape_outside(chars, k)?;
                let hi = if piece.starts_with("\\x") {
                    let hex = piece.trim_start_matches("\\x").trim_matches(['{', '}']);
                    u32::from_str_radix(hex, 16)
                        .ok()
                        .and_then(char::from_u32)
                        .unwrap_or('\0')
                } else {
                    piece.chars().last().unwrap_or('\\')
                };
                (hi, m)
            } else if chars[k] == '[' && chars.get(k + 1) == Some(&':') {
                return Err((
                    "invalid character class range",
                    chars[j..k + 2].iter().collect(),
                ));
            } else {
                (chars[k], 1)
            };
            if hi < lit {
                return Err((
                    "invalid character class range",
                    chars[j..k + m].iter().collect(),
                ));
            }
            out.push_str(&class_char(lit));
            out.push('-');
            out.push_str(&class_char(hi));
            j = k + m;
            prev_char = None;
            continue;
        }
        let _ = prev_char;
        out.push_str(&class_char(lit));
        prev_char = Some(lit);
        j += n;
    }
}

/// One literal character inside a regex-crate class.
fn class_char(c: char) -> String {
    if matches!(c, '[' | ']' | '\\' | '-' | '^' | '&' | '~') || c.is_whitespace() || c.is_control()
    {
        if c.is_ascii() && !c.is_ascii_alphanumeric() && !c.is_control() && c != ' ' {
            return format!("\\{c}");
        }
        return format!("\\x{{{:x}}}", u32::from(c));
    }
    c.to_string()
}

/// Go's `regexp.QuoteMeta`: only `\.+*?()|[]{}^$` are escaped.
fn quote_meta(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn find_all(re: &regex::Regex, a: &[Value]) -> Result<Value, String> {
    let n = int(&a[2]);
    let it = re.find_iter(s(&a[1])).map(|m| m.as_str().to_string());
    let v: Vec<String> = if n < 0 {
        it.collect()
    } else {
        it.take(n as usize).collect()
    };
    Ok(strs(v))
}

fn find(re: &regex::Regex, a: &[Value]) -> Result<Value, String> {
    vstr(
        re.find(s(&a[1]))
            .map(|m| m.as_str().to_string())
            .unwrap_or_default(),
    )
}

fn replace(re: &regex::Regex, a: &[Value], literal: bool) -> Result<Value, String> {
    vstr(if literal {
        re.replace_all(s(&a[1]), regex::NoExpand(s(&a[2])))
            .into_owned()
    } else {
        re.replace_all(s(&a[1]), s(&a[2])).into_owned()
    })
}

fn split(re: &regex::Regex, a: &[Value]) -> Result<Value, String> {
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
}

pub(super) fn register(m: &mut HashMap<&'static str, FuncDef>) {
    use Ty::{Int, Str};
    let mut add = |n: &'static str, p: &[Ty], v: Option<Ty>, f: crate::funcs::PlainFn| {
        m.insert(n, def(p, v, f));
    };
    add("regexMatch", &[Str, Str], None, |a| {
        Ok(Value::Bool(
            compile(s(&a[0])).is_ok_and(|r| r.is_match(s(&a[1]))),
        ))
    });
    add("mustRegexMatch", &[Str, Str], None, |a| {
        Ok(Value::Bool(compile(s(&a[0]))?.is_match(s(&a[1]))))
    });
    // The plain forms panic through MustCompile; the must… forms return the error.
    add("regexFindAll", &[Str, Str, Int], None, |a| {
        find_all(&regex(s(&a[0]))?, a)
    });
    add("mustRegexFindAll", &[Str, Str, Int], None, |a| {
        find_all(&compile(s(&a[0]))?, a)
    });
    add("regexFind", &[Str, Str], None, |a| {
        find(&regex(s(&a[0]))?, a)
    });
    add("mustRegexFind", &[Str, Str], None, |a| {
        find(&compile(s(&a[0]))?, a)
    });
    add("regexReplaceAll", &[Str, Str, Str], None, |a| {
        replace(&regex(s(&a[0]))?, a, false)
    });
    add("mustRegexReplaceAll", &[Str, Str, Str], None, |a| {
        replace(&compile(s(&a[0]))?, a, false)
    });
    add("regexReplaceAllLiteral", &[Str, Str, Str], None, |a| {
        replace(&regex(s(&a[0]))?, a, true)
    });
    add("mustRegexReplaceAllLiteral", &[Str, Str, Str], None, |a| {
        replace(&compile(s(&a[0]))?, a, true)
    });
    add("regexSplit", &[Str, Str, Int], None, |a| {
        split(&regex(s(&a[0]))?, a)
    });
    add("mustRegexSplit", &[Str, Str, Int], None, |a| {
        split(&compile(s(&a[0]))?, a)
    });
    add("regexQuoteMeta", &[Str], None, |a| {
        vstr(quote_meta(s(&a[0])))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_syntax_reads_as_go() {
        // argo-cd's redis-ha: `-` after a class escape is literal in Go
        assert!(compile(r"^[\w-\.]+$").unwrap().is_match("a-b.c_d"));
        assert!(!compile(r"^[\w-\.]+$").unwrap().is_match("a b"));
        assert!(compile(r"[a-c-e]").unwrap().is_match("-"));
        assert!(
            !compile(r"^\d$").unwrap().is_match("٣"),
            "Go's \\d is ASCII"
        );
        assert!(compile(r"\Qa.b\E").unwrap().is_match("a.b"));
        assert!(!compile(r"\Qa.b\E").unwrap().is_match("axb"));
        assert!(compile(r"[[]").unwrap().is_match("["));
        assert!(compile(r"a&&b~~").unwrap().is_match("a&&b~~"));
        assert!(compile(r"\101").unwrap().is_match("A"));
        assert!(compile(r"x{2}y{,3}").unwrap().is_match("xxy{,3}"));
        assert!(compile(r"\<").unwrap().is_match("<"));
    }

    #[test]
    fn go_errors_for_what_go_refuses() {
        assert_eq!(
            compile("a(b").unwrap_err(),
            "error parsing regexp: missing closing ): `a(b`"
        );
        assert_eq!(
            compile("a)b").unwrap_err(),
            "error parsing regexp: unexpected ): `a)b`"
        );
        assert_eq!(
            compile("[a").unwrap_err(),
            "error parsing regexp: missing closing ]: `[a`"
        );
        assert_eq!(
            compile("a**").unwrap_err(),
            "error parsing regexp: invalid nested repetition operator: `**`"
        );
        assert_eq!(
            compile("*a").unwrap_err(),
            "error parsing regexp: missing argument to repetition operator: `*`"
        );
        assert_eq!(
            compile(r"\Z").unwrap_err(),
            "error parsing regexp: invalid escape sequence: `\\Z`"
        );
        assert_eq!(
            compile("[z-a]").unwrap_err(),
            "error parsing regexp: invalid character class range: `z-a`"
        );
        assert_eq!(
            compile("a{1001}").unwrap_err(),
            "error parsing regexp: invalid repeat count: `{1001}`"
        );
        assert_eq!(
            regex("a(b").unwrap_err(),
            "regexp: Compile(`a(b`): error parsing regexp: missing closing ): `a(b`"
        );
        assert_eq!(quote_meta("a.b-c"), "a\\.b-c");
    }

    proptest::proptest! {
        #[test]
        fn translation_never_panics(s in "\\PC{0,40}") {
            let _ = compile(&s);
        }
    }
}
