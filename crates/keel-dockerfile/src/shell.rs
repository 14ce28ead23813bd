//! Shell-word expansion as `BuildKit`'s shell lexer (`frontend/dockerfile/shell`)
//! does it: `$v`, `${v}`, `${v:-x}`, `${v:+x}`, `${v-x}`, `${v+x}`,
//! `${v:?err}`, `${v?err}`, the pattern forms `${v#p}`, `${v##p}`, `${v%p}`,
//! `${v%%p}`, `${v/p/r}`, `${v//p/r}` (`*` and `?` wildcards), single and
//! double quotes, the escape token, and
//! word splitting of unquoted expansion results.

use std::collections::{BTreeMap, HashMap};

use crate::Error;

/// Where variable values come from during expansion.
pub trait EnvLookup {
    /// The value of `name`, or `None` when it is unset (set-but-empty is `Some("")`).
    fn lookup(&self, name: &str) -> Option<String>;
}

impl<S: std::hash::BuildHasher> EnvLookup for HashMap<String, String, S> {
    fn lookup(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl EnvLookup for BTreeMap<String, String> {
    fn lookup(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// `KEY=value` pairs; the last definition of a key wins, as in `BuildKit`'s `EnvsFromSlice`.
impl EnvLookup for [(String, String)] {
    fn lookup(&self, name: &str) -> Option<String> {
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

impl EnvLookup for Vec<(String, String)> {
    fn lookup(&self, name: &str) -> Option<String> {
        self.as_slice().lookup(name)
    }
}

/// An environment with nothing set.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEnv;

impl EnvLookup for NoEnv {
    fn lookup(&self, _name: &str) -> Option<String> {
        None
    }
}

/// Lexer switches; the defaults are what Dockerfile instructions use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// The escape token: `\` or `` ` `` (the `escape` parser directive).
    pub escape: char,
    /// Keep quote characters in the result.
    pub raw_quotes: bool,
    /// Keep escape tokens in the result.
    pub raw_escapes: bool,
    /// Leave references to unset variables as written (`$x`, `${x:-y}`).
    pub skip_unset_env: bool,
    /// Treat quotes as ordinary characters (only `$` is special).
    pub skip_process_quotes: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            escape: '\\',
            raw_quotes: false,
            raw_escapes: false,
            skip_unset_env: false,
            skip_process_quotes: false,
        }
    }
}

impl Options {
    /// Default options with another escape token.
    pub fn with_escape(escape: char) -> Self {
        Options {
            escape,
            ..Options::default()
        }
    }
}

/// Expands `word` into one string (quotes removed, variables substituted, no splitting).
pub fn expand(word: &str, env: &dyn EnvLookup, options: &Options) -> Result<String, Error> {
    process(word, env, *options).map(|(w, _)| w)
}

/// Expands `word` and splits it into words the way `BuildKit` does for
/// instructions that take several arguments (unquoted whitespace, including
/// whitespace produced by unquoted `$` expansions, separates words).
pub fn expand_words(
    word: &str,
    env: &dyn EnvLookup,
    options: &Options,
) -> Result<Vec<String>, Error> {
    process(word, env, *options).map(|(_, ws)| ws)
}

fn process(
    word: &str,
    env: &dyn EnvLookup,
    options: Options,
) -> Result<(String, Vec<String>), Error> {
    let mut sw = ShellWord {
        chars: word.chars().collect(),
        pos: 0,
        env,
        opts: options,
        depth: 0,
    };
    sw.process_stop_on(None).map_err(|message| Error::Expand {
        word: word.to_string(),
        message,
    })
}

#[derive(Default)]
struct Splitter {
    current: String,
    done: Vec<String>,
    in_word: bool,
}

impl Splitter {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() && self.in_word {
            if !self.current.is_empty() {
                self.done.push(std::mem::take(&mut self.current));
                self.in_word = false;
            }
        } else if !ch.is_whitespace() {
            self.add_raw_char(ch);
        }
    }
    fn add_raw_char(&mut self, ch: char) {
        self.current.push(ch);
        self.in_word = true;
    }
    fn add_string(&mut self, s: &str) {
        for ch in s.chars() {
            self.add_char(ch);
        }
    }
    fn add_raw_string(&mut self, s: &str) {
        self.current.push_str(s);
        self.in_word = true;
    }
    fn finish(mut self) -> Vec<String> {
        if !self.current.is_empty() {
            self.done.push(std::mem::take(&mut self.current));
        }
        self.done
    }
}

/// Nested `${a:-${b:-...}}` deeper than this is refused rather than risking the stack.
const MAX_DEPTH: usize = 200;

struct ShellWord<'a> {
    chars: Vec<char>,
    pos: usize,
    env: &'a dyn EnvLookup,
    opts: Options,
    depth: usize,
}

type Res<T> = Result<T, String>;

impl ShellWord<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn process_stop_on(&mut self, stop: Option<char>) -> Res<(String, Vec<String>)> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("substitution nested too deeply".to_string());
        }
        let r = self.process_stop_on_inner(stop);
        self.depth -= 1;
        r
    }

    fn process_stop_on_inner(&mut self, stop: Option<char>) -> Res<(String, Vec<String>)> {
        let mut result = String::new();
        let mut words = Splitter::default();
        while let Some(ch) = self.peek() {
            if stop == Some(ch) {
                self.next();
                return Ok((result, words.finish()));
            }
            let special = match ch {
                '$' => true,
                '\'' | '"' => !self.opts.skip_process_quotes,
                _ => false,
            };
            if special {
                let tmp = match ch {
                    '\'' => self.single_quote()?,
                    '"' => self.double_quote()?,
                    _ => self.dollar()?,
                };
                result.push_str(&tmp);
                if ch == '$' {
                    words.add_string(&tmp);
                } else {
                    words.add_raw_string(&tmp);
                }
                continue;
            }
            let mut ch = self.next().unwrap_or_default();
            if ch == self.opts.escape {
                if self.opts.raw_escapes {
                    words.add_raw_char(ch);
                    result.push(ch);
                }
                // An escape at the end of the word is dropped.
                match self.next() {
                    None => break,
                    Some(c) => ch = c,
                }
                words.add_raw_char(ch);
            } else {
                words.add_char(ch);
            }
            result.push(ch);
        }
        if let Some(stop) = stop {
            return Err(format!(
                "unexpected end of statement while looking for matching {stop}"
            ));
        }
        Ok((result, words.finish()))
    }

    fn single_quote(&mut self) -> Res<String> {
        // Everything up to the next ' is literal; ' cannot be escaped inside.
        let mut result = String::new();
        let open = self.next().unwrap_or('\'');
        if self.opts.raw_quotes {
            result.push(open);
        }
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .to_string(),
                    );
                }
                Some('\'') => {
                    if self.opts.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn double_quote(&mut self) -> Res<String> {
        // Literal except `$` and the escape token, which only escapes `"`, `$` and itself.
        let mut result = String::new();
        let open = self.next().unwrap_or('"');
        if self.opts.raw_quotes {
            result.push(open);
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .to_string(),
                    );
                }
                Some('"') => {
                    self.next();
                    if self.opts.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let v = self.dollar()?;
                    result.push_str(&v);
                }
                Some(_) => {
                    let mut ch = self.next().unwrap_or_default();
                    if ch == self.opts.escape {
                        if self.opts.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == self.opts.escape => {
                                ch = c;
                                self.next();
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn get_env(&self, name: &str) -> Option<String> {
        self.env.lookup(name)
    }

    fn dollar(&mut self) -> Res<String> {
        self.next(); // the '$'
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.opts.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.next(); // the '{'
        match self.peek() {
            None => return Err("syntax error: missing '}'".to_string()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".to_string()),
            Some(_) => {}
        }
        let name = self.name();
        let ch = self.next();
        match ch {
            Some('}') => Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.opts.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some(c @ ('?' | '-' | '+')) => {
                let word = self.modifier_word()?;
                let value = self.get_env(&name);
                if value.is_none() && self.opts.skip_unset_env {
                    return Ok(format!("${{{name}{c}{word}}}"));
                }
                match c {
                    '-' => Ok(value.unwrap_or(word)),
                    '+' => Ok(if value.is_some() { word } else { String::new() }),
                    _ => match value {
                        Some(v) => Ok(v),
                        None => Err(format!(
                            "{name}: {}",
                            if word.is_empty() {
                                "is not allowed to be unset"
                            } else {
                                &word
                            }
                        )),
                    },
                }
            }
            Some(':') => {
                let modifier = self.next();
                let word = self.modifier_word()?;
                let value = self.get_env(&name);
                let m = modifier.map(String::from).unwrap_or_default();
                match modifier {
                    Some('+') => {
                        if value.is_none() && self.opts.skip_unset_env {
                            return Ok(format!("${{{name}:{m}{word}}}"));
                        }
                        Ok(match value {
                            Some(v) if !v.is_empty() => word,
                            _ => String::new(),
                        })
                    }
                    Some('-') => {
                        if value.is_none() && self.opts.skip_unset_env {
                            return Ok(format!("${{{name}:{m}{word}}}"));
                        }
                        Ok(match value {
                            Some(v) if !v.is_empty() => v,
                            _ => word,
                        })
                    }
                    Some('?') => match value {
                        None if self.opts.skip_unset_env => Ok(format!("${{{name}:{m}{word}}}")),
                        None => Err(format!(
                            "{name}: {}",
                            if word.is_empty() {
                                "is not allowed to be unset"
                            } else {
                                &word
                            }
                        )),
                        Some(v) if v.is_empty() => Err(format!(
                            "{name}: {}",
                            if word.is_empty() {
                                "is not allowed to be empty"
                            } else {
                                &word
                            }
                        )),
                        Some(v) => Ok(v),
                    },
                    _ => Err(format!("unsupported modifier ({m}) in substitution")),
                }
            }
            Some(c @ ('#' | '%')) => {
                let longest = self.peek() == Some(c);
                if longest {
                    self.next();
                }
                let pattern = self.pattern_word(&['}'])?.0;
                let value = self.get_env(&name);
                if value.is_none() && self.opts.skip_unset_env {
                    let op = if longest {
                        format!("{c}{c}")
                    } else {
                        c.to_string()
                    };
                    return Ok(format!("${{{name}{op}{pattern}}}"));
                }
                let mut value: Vec<char> = value.unwrap_or_default().chars().collect();
                let mut pat = glob_tokens(&pattern);
                // A suffix match is a prefix match of both reversed.
                if c == '%' {
                    value.reverse();
                    pat.reverse();
                }
                let ends = glob_ends(&pat, &value);
                let cut = if longest {
                    ends.iter().rposition(|e| *e)
                } else {
                    ends.iter().position(|e| *e)
                };
                let mut kept: Vec<char> = value[cut.unwrap_or(0)..].to_vec();
                if c == '%' {
                    kept.reverse();
                }
                Ok(kept.into_iter().collect())
            }
            Some('/') => {
                let all = self.peek() == Some('/');
                if all {
                    self.next();
                }
                let (pattern, stop) = self.pattern_word(&['/', '}'])?;
                let replacement = if stop == '/' {
                    self.modifier_word()?
                } else {
                    String::new()
                };
                let value = self.get_env(&name);
                if value.is_none() && self.opts.skip_unset_env {
                    let op = if all { "//" } else { "/" };
                    return Ok(format!("${{{name}{op}{pattern}/{replacement}}}"));
                }
                let value: Vec<char> = value.unwrap_or_default().chars().collect();
                Ok(replace_glob(
                    &value,
                    &glob_tokens(&pattern),
                    &replacement,
                    all,
                ))
            }
            _ => Err("missing ':' in substitution".to_string()),
        }
    }

    /// A glob pattern word up to one of `stops`, escapes kept so that `\*`
    /// stays a literal star; returns the word and the stop character.
    fn pattern_word(&mut self, stops: &[char]) -> Res<(String, char)> {
        let saved = self.opts.raw_escapes;
        self.opts.raw_escapes = true;
        let mut out = String::new();
        let r = loop {
            match self.peek() {
                None => break Err("syntax error: missing '}'".to_string()),
                Some(c) if stops.contains(&c) => {
                    self.next();
                    break Ok((std::mem::take(&mut out), c));
                }
                Some('$') => match self.dollar() {
                    Ok(v) => out.push_str(&v),
                    Err(e) => break Err(e),
                },
                Some(c) => {
                    self.next();
                    out.push(c);
                    if c == self.opts.escape
                        && let Some(n) = self.next()
                    {
                        out.push(n);
                    }
                }
            }
        };
        self.opts.raw_escapes = saved;
        r
    }

    /// The word of a `${name<op>word}` form, up to the closing brace.
    fn modifier_word(&mut self) -> Res<String> {
        match self.process_stop_on(Some('}')) {
            Ok((w, _)) => Ok(w),
            Err(_) if self.peek().is_none() => Err("syntax error: missing '}'".to_string()),
            Err(e) => Err(e),
        }
    }

    /// A variable name: letters, digits and `_`; or a run of digits
    /// (positional); or one special parameter character.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    self.next();
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return ch.to_string();
            }
            if !ch.is_alphanumeric() && ch != '_' {
                break;
            }
            self.next();
            name.push(ch);
        }
        name
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Glob {
    Lit(char),
    One,
    Any,
}

/// Shell pattern tokens: `*`, `?`, `\x` (literal x), everything else literal.
fn glob_tokens(pattern: &str) -> Vec<Glob> {
    let mut out = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        out.push(match c {
            '*' => Glob::Any,
            '?' => Glob::One,
            '\\' | '`' => match chars.next() {
                Some(n) => Glob::Lit(n),
                None => Glob::Lit(c),
            },
            c => Glob::Lit(c),
        });
    }
    out
}

/// `ends[j]`: whether the pattern matches `s[..j]`, for every `j` in one pass.
fn glob_ends(pat: &[Glob], s: &[char]) -> Vec<bool> {
    let mut ok = vec![false; s.len() + 1];
    ok[0] = true;
    for p in pat {
        let mut next = vec![false; s.len() + 1];
        for j in 0..=s.len() {
            next[j] = match p {
                Glob::Any => ok[j] || (j > 0 && next[j - 1]),
                Glob::One => j > 0 && ok[j - 1],
                Glob::Lit(c) => j > 0 && ok[j - 1] && s[j - 1] == *c,
            };
        }
        ok = next;
    }
    ok
}

/// `${v/p/r}` (first) and `${v//p/r}` (all): longest match at the leftmost position.
fn replace_glob(value: &[char], pat: &[Glob], replacement: &str, all: bool) -> String {
    let mut out = String::new();
    let mut i = 0;
    let mut replaced = false;
    while i < value.len() {
        if !pat.is_empty() && (all || !replaced) {
            // Longest non-empty match starting at i.
            let ends = glob_ends(pat, &value[i..]);
            if let Some(len) = ends.iter().rposition(|e| *e).filter(|l| *l > 0) {
                out.push_str(replacement);
                i += len;
                replaced = true;
                continue;
            }
        }
        out.push(value[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Vec<(String, String)> {
        vec![("A".into(), "a b".into()), ("E".into(), String::new())]
    }

    #[test]
    fn dash_and_plus_without_colon_distinguish_unset_from_empty() {
        let o = Options::default();
        assert_eq!(expand("${E-x}", &env(), &o).unwrap(), "");
        assert_eq!(expand("${U-x}", &env(), &o).unwrap(), "x");
        assert_eq!(expand("${E+x}", &env(), &o).unwrap(), "x");
        assert_eq!(expand("${U+x}", &env(), &o).unwrap(), "");
        assert_eq!(expand("${E:-x}", &env(), &o).unwrap(), "x");
        assert_eq!(expand("${E:+x}", &env(), &o).unwrap(), "");
    }

    #[test]
    fn question_mark_errors_carry_the_message() {
        let o = Options::default();
        let e = expand("${U:?need it}", &env(), &o).unwrap_err().to_string();
        assert_eq!(e, "failed to process \"${U:?need it}\": U: need it");
        let e = expand("${E:?}", &env(), &o).unwrap_err().to_string();
        assert!(e.ends_with("E: is not allowed to be empty"), "{e}");
        assert_eq!(expand("${E?}", &env(), &o).unwrap(), "");
    }

    #[test]
    fn backtick_escape() {
        let o = Options::with_escape('`');
        assert_eq!(expand("a`$A", &env(), &o).unwrap(), "a$A");
        assert_eq!(expand("c:\\dir", &env(), &o).unwrap(), "c:\\dir");
    }

    #[test]
    fn unquoted_expansion_splits() {
        let o = Options::default();
        assert_eq!(
            expand_words("x$A \"$A\"", &env(), &o).unwrap(),
            vec!["xa", "b", "a b"]
        );
    }

    #[test]
    fn skip_unset_keeps_references() {
        let o = Options {
            skip_unset_env: true,
            ..Options::default()
        };
        assert_eq!(
            expand("$U ${U} ${U:-d} $A", &env(), &o).unwrap(),
            "$U ${U} ${U:-d} a b"
        );
    }

    #[test]
    fn pattern_substitutions() {
        let env = vec![("V".to_string(), "v1.2.3-rc.tar.gz".to_string())];
        let o = Options::default();
        let x = |w: &str| expand(w, &env, &o).unwrap();
        assert_eq!(x("${V#v}"), "1.2.3-rc.tar.gz");
        assert_eq!(x("${V#*.}"), "2.3-rc.tar.gz");
        assert_eq!(x("${V##*.}"), "gz");
        assert_eq!(x("${V%.*}"), "v1.2.3-rc.tar");
        assert_eq!(x("${V%%.*}"), "v1");
        assert_eq!(x("${V/./_}"), "v1_2.3-rc.tar.gz");
        assert_eq!(x("${V//./_}"), "v1_2_3-rc_tar_gz");
        assert_eq!(x("${V/\\*/x}"), "v1.2.3-rc.tar.gz");
        assert_eq!(x("${V/-rc}"), "v1.2.3.tar.gz");
        assert_eq!(x("${U#x}"), "");
        assert!(expand("${V#x", &env, &o).is_err());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let w = "${a:-".repeat(5000) + &"}".repeat(5000);
        assert!(expand(&w, &NoEnv, &Options::default()).is_err());
    }
}
