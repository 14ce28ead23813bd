//! `.dockerignore`: Docker's pattern rules (moby `patternmatcher` and
//! `ignorefile`): Go `filepath.Match` syntax (`*`, `?`, `[…]`, `\` escapes)
//! plus `**`, `!` exceptions where the last matching pattern wins, paths
//! cleaned (`./`, leading `/` and trailing `/` dropped), `#` comments and
//! blank lines skipped. A pattern that matches a directory excludes
//! everything below it.

use crate::{Error, Location};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(char),
    /// `?`: one character except `/`.
    One,
    /// `*`: any run of characters except `/`.
    Star,
    /// `**` followed by more pattern: `(.*/)?`.
    AnyDirs,
    /// `**` at the end: `.*`.
    AnyAll,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// One compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// The cleaned pattern text without `!`.
    pub text: String,
    /// A `!` exception (re-includes what it matches).
    pub exclusion: bool,
    toks: Vec<Tok>,
}

impl Pattern {
    fn compile(text: &str, exclusion: bool) -> Result<Pattern, String> {
        let chars: Vec<char> = text.chars().collect();
        let mut toks = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            match c {
                '*' if chars.get(i) == Some(&'*') => {
                    i += 1;
                    if chars.get(i) == Some(&'/') {
                        i += 1;
                    }
                    toks.push(if i >= chars.len() {
                        Tok::AnyAll
                    } else {
                        Tok::AnyDirs
                    });
                }
                '*' => toks.push(Tok::Star),
                '?' => toks.push(Tok::One),
                '\\' => match chars.get(i) {
                    Some(&n) => {
                        i += 1;
                        toks.push(Tok::Lit(n));
                    }
                    None => toks.push(Tok::Lit('\\')),
                },
                '[' => {
                    let mut negated = false;
                    if chars.get(i) == Some(&'^') {
                        negated = true;
                        i += 1;
                    }
                    let mut ranges = Vec::new();
                    let mut first = true;
                    loop {
                        let Some(&c) = chars.get(i) else {
                            return Err("missing closing ]".to_string());
                        };
                        i += 1;
                        if c == ']' && !first {
                            break;
                        }
                        first = false;
                        let lo = if c == '\\' {
                            let Some(&n) = chars.get(i) else {
                                return Err("missing closing ]".to_string());
                            };
                            i += 1;
                            n
                        } else {
                            c
                        };
                        let mut hi = lo;
                        if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|c| *c != ']')
                        {
                            let mut h = chars[i + 1];
                            i += 2;
                            if h == '\\' {
                                let Some(&n) = chars.get(i) else {
                                    return Err("missing closing ]".to_string());
                                };
                                i += 1;
                                h = n;
                            }
                            if h < lo {
                                return Err("invalid character class range".to_string());
                            }
                            hi = h;
                        }
                        ranges.push((lo, hi));
                    }
                    toks.push(Tok::Class { negated, ranges });
                }
                ']' => return Err("unexpected ]".to_string()),
                c => toks.push(Tok::Lit(c)),
            }
        }
        Ok(Pattern {
            text: text.to_string(),
            exclusion,
            toks,
        })
    }

    /// Adds the states reachable without consuming input (skipping `*`/`**`).
    fn closure(&self, states: &mut [bool]) {
        for t in 0..self.toks.len() {
            if states[t] && matches!(self.toks[t], Tok::Star | Tok::AnyDirs | Tok::AnyAll) {
                states[t + 1] = true;
            }
        }
    }

    /// Runs the pattern's automaton over `input`; the live states after it.
    /// `states[t]`: at the start of token t; `body[t]`: inside the `.*` of an
    /// `AnyDirs` token t (which may only be skipped before it consumed anything).
    fn run(&self, input: &str) -> (Vec<bool>, Vec<bool>) {
        let n = self.toks.len();
        let mut states = vec![false; n + 1];
        let mut body = vec![false; n + 1];
        states[0] = true;
        self.closure(&mut states);
        for c in input.chars() {
            let mut next = vec![false; n + 1];
            let mut next_body = vec![false; n + 1];
            let mut any = false;
            for t in 0..n {
                if !states[t] && !body[t] {
                    continue;
                }
                let (stay, advance) = match &self.toks[t] {
                    Tok::Lit(x) => (false, *x == c),
                    Tok::One => (false, c != '/'),
                    Tok::Star => (c != '/', false),
                    Tok::AnyAll => (true, false),
                    Tok::AnyDirs => {
                        next_body[t] = true;
                        any = true;
                        (false, c == '/')
                    }
                    Tok::Class { negated, ranges } => {
                        let inside = ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c));
                        (false, inside != *negated)
                    }
                };
                if stay {
                    next[t] = true;
                    any = true;
                }
                if advance {
                    next[t + 1] = true;
                    any = true;
                }
            }
            states = next;
            body = next_body;
            if !any {
                return (states, body);
            }
            self.closure(&mut states);
        }
        (states, body)
    }

    /// Whether the whole `path` matches.
    pub fn matches(&self, path: &str) -> bool {
        self.run(path).0[self.toks.len()]
    }

    /// Whether some path starting with `prefix` could match.
    fn could_match_below(&self, prefix: &str) -> bool {
        let (s, b) = self.run(prefix);
        s.iter().chain(b.iter()).any(|x| *x)
    }
}

/// A parsed `.dockerignore`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ignore {
    pub patterns: Vec<Pattern>,
}

/// Go's `filepath.Clean` for `/`-separated paths.
pub use keel_go::path::clean;

impl Ignore {
    /// Parses a `.dockerignore` file's text; `file` names it in errors.
    pub fn parse(src: &str, file: &str) -> Result<Ignore, Error> {
        let src = src.strip_prefix('\u{feff}').unwrap_or(src);
        let mut patterns = Vec::new();
        for (i, line) in src.lines().enumerate() {
            if line.starts_with('#') {
                continue;
            }
            let mut p = line.trim();
            if p.is_empty() {
                continue;
            }
            let exclusion = p.starts_with('!');
            if exclusion {
                p = p[1..].trim();
            }
            let mut text = if p.is_empty() {
                String::new()
            } else {
                clean(p)
            };
            if text.len() > 1 && text.starts_with('/') {
                text.remove(0);
            }
            let compiled =
                Pattern::compile(&text, exclusion).map_err(|message| Error::IgnorePattern {
                    location: Location {
                        file: file.to_string(),
                        line: i + 1,
                        col: line.find(|c: char| !c.is_whitespace()).unwrap_or(0) + 1,
                    },
                    pattern: line.trim().to_string(),
                    message,
                })?;
            patterns.push(compiled);
        }
        Ok(Ignore { patterns })
    }

    /// Whether `path` (relative to the context, `/`-separated) is excluded:
    /// the last pattern matching it or one of its parent directories decides.
    /// `is_dir` does not change the answer (Docker cleans away trailing `/`,
    /// so `foo/` also matches a file `foo`); it is accepted so callers can
    /// pass what they know.
    pub fn matches(&self, path: &str, is_dir: bool) -> bool {
        let _ = is_dir;
        let file = clean(path.trim_start_matches('/'));
        let parents: Vec<&str> = match file.rfind('/') {
            Some(i) => file[..i].split('/').collect(),
            None => Vec::new(),
        };
        let mut matched = false;
        for p in &self.patterns {
            // An include cannot change an already-excluded path, nor an exception an included one.
            if p.exclusion != matched {
                continue;
            }
            let mut m = p.matches(&file);
            if !m {
                for i in 0..parents.len() {
                    if p.matches(&parents[..=i].join("/")) {
                        m = true;
                        break;
                    }
                }
            }
            if m {
                matched = !p.exclusion;
            }
        }
        matched
    }

    /// Whether anything below the (excluded) directory `dir` could be
    /// re-included by a `!` pattern; when false, a walker may skip the whole
    /// directory. Conservative: true means "maybe".
    pub fn may_reinclude_below(&self, dir: &str) -> bool {
        let dir = clean(dir.trim_start_matches('/'));
        let prefix = if dir == "." {
            String::new()
        } else {
            format!("{dir}/")
        };
        self.patterns
            .iter()
            .filter(|p| p.exclusion)
            .any(|p| p.could_match_below(&prefix) || p.matches(&dir))
    }

    /// Whether there are `!` exceptions at all.
    pub fn has_exclusions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ig(src: &str) -> Ignore {
        Ignore::parse(src, ".dockerignore").unwrap()
    }

    #[test]
    fn basics() {
        let i = ig("# comment\n\n*.md\n!README.md\n/build/\n./tmp\nnode_modules\n");
        assert!(i.matches("a.md", false));
        assert!(!i.matches("README.md", false));
        assert!(!i.matches("docs/a.md", false), "* does not cross /");
        assert!(i.matches("build", true));
        assert!(i.matches("build/x/y", false), "parent dir match");
        assert!(i.matches("tmp", true));
        assert!(i.matches("node_modules/a/b.js", false));
        assert!(
            !i.matches("src/node_modules", true),
            "patterns are anchored at the root"
        );
    }

    #[test]
    fn double_star() {
        let i = ig("**/*.go\n!keep/**\nvendor/**\n");
        assert!(i.matches("a.go", false));
        assert!(i.matches("x/y/a.go", false));
        assert!(!i.matches("keep/a.go", false));
        assert!(i.matches("vendor/a", false));
        let i = ig("a/**/b\n");
        assert!(i.matches("a/b", false));
        assert!(i.matches("a/x/y/b", false));
        assert!(!i.matches("a/xb", false));
    }

    #[test]
    fn last_match_wins() {
        let i = ig("*\n!src\nsrc/gen\n");
        assert!(i.matches("x", false));
        assert!(!i.matches("src/main.rs", false));
        assert!(i.matches("src/gen/a.rs", false));
    }

    #[test]
    fn classes_and_escapes() {
        let i = ig("file[0-9].txt\nx[^a]y\n\\*star\nq?\n");
        assert!(i.matches("file3.txt", false));
        assert!(!i.matches("filea.txt", false));
        assert!(i.matches("xby", false));
        assert!(!i.matches("xay", false));
        assert!(i.matches("*star", false));
        assert!(!i.matches("astar", false));
        assert!(i.matches("qa", false));
        assert!(!i.matches("q/", false));
        let e = Ignore::parse("ok\n  bad[\n", ".dockerignore").unwrap_err();
        assert_eq!(
            e.to_string(),
            ".dockerignore:2:3: invalid pattern \"bad[\": missing closing ]"
        );
    }

    #[test]
    fn reinclusion_below_dir() {
        let i = ig("docs\n!docs/keep.md\n");
        assert!(i.matches("docs", true));
        assert!(i.may_reinclude_below("docs"));
        assert!(!i.may_reinclude_below("other"));
        let i = ig("*\n!**/*.rs\n");
        assert!(i.may_reinclude_below("anything/deep"));
        let i = ig("target\n");
        assert!(!i.may_reinclude_below("target"));
    }

    #[test]
    fn clean_like_go() {
        assert_eq!(clean("./a//b/../c/"), "a/c");
        assert_eq!(clean("/../a"), "/a");
        assert_eq!(clean("../a"), "../a");
        assert_eq!(clean("."), ".");
    }
}
