//! Glob matching: Go's `filepath.Match` (for .helmignore) and gobwas/glob with
//! `/` as separator (for `.Files.Glob`, where `**` crosses directories).

/// Matches `name` against `pattern`. `double_star` enables `**` and `{a,b}`.
pub fn matches(pattern: &str, name: &str, double_star: bool) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    m(&p, &n, double_star)
}

fn m(p: &[char], n: &[char], ds: bool) -> bool {
    if p.is_empty() {
        return n.is_empty();
    }
    match p[0] {
        '*' => {
            if ds && p.get(1) == Some(&'*') {
                let rest = &p[2..];
                return (0..=n.len()).any(|i| m(rest, &n[i..], ds));
            }
            let rest = &p[1..];
            for i in 0..=n.len() {
                if m(rest, &n[i..], ds) {
                    return true;
                }
                if i < n.len() && n[i] == '/' {
                    break;
                }
            }
            false
        }
        '?' => !n.is_empty() && n[0] != '/' && m(&p[1..], &n[1..], ds),
        '[' => {
            let Some(close) = p.iter().skip(1).position(|c| *c == ']').map(|i| i + 1) else {
                return false;
            };
            if n.is_empty() || n[0] == '/' {
                return false;
            }
            let class = &p[1..close];
            let (neg, class) = match class.first() {
                Some('^' | '!') => (true, &class[1..]),
                _ => (false, class),
            };
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == '-' {
                    if class[i] <= n[0] && n[0] <= class[i + 2] {
                        hit = true;
                    }
                    i += 3;
                } else {
                    if class[i] == n[0] {
                        hit = true;
                    }
                    i += 1;
                }
            }
            hit != neg && m(&p[close + 1..], &n[1..], ds)
        }
        '{' if ds => {
            let Some(close) = p.iter().position(|c| *c == '}') else {
                return false;
            };
            let inner: String = p[1..close].iter().collect();
            inner.split(',').any(|alt| {
                let mut q: Vec<char> = alt.chars().collect();
                q.extend_from_slice(&p[close + 1..]);
                m(&q, n, ds)
            })
        }
        '\\' if p.len() > 1 => !n.is_empty() && n[0] == p[1] && m(&p[2..], &n[1..], ds),
        c => !n.is_empty() && n[0] == c && m(&p[1..], &n[1..], ds),
    }
}

/// Parsed .helmignore rules (Helm's pkg/ignore).
#[derive(Debug, Default, Clone)]
pub struct Ignore {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    pattern: String,
    negate: bool,
    must_dir: bool,
}

impl Ignore {
    pub fn parse(text: &str) -> Ignore {
        let mut ig = Ignore::default();
        for line in text.lines() {
            ig.add(line);
        }
        // Helm's AddDefaults: hidden files in templates/ are never templates.
        ig.add("templates/.?*");
        ig
    }

    fn add(&mut self, line: &str) {
        let mut p = line.trim();
        if p.is_empty() || p.starts_with('#') {
            return;
        }
        let negate = p.starts_with('!');
        if negate {
            p = &p[1..];
        }
        let must_dir = p.ends_with('/');
        let p = p.trim_end_matches('/');
        self.rules.push(Rule {
            pattern: p.to_string(),
            negate,
            must_dir,
        });
    }

    /// Whether `path` (relative, `/`-separated) is ignored.
    pub fn ignored(&self, path: &str, is_dir: bool) -> bool {
        if path.is_empty() || path == "." {
            return false;
        }
        for r in &self.rules {
            let hit = rule_match(&r.pattern, path);
            if r.negate {
                if r.must_dir && !is_dir {
                    return true;
                }
                if !hit {
                    return true;
                }
                continue;
            }
            if r.must_dir && !is_dir {
                continue;
            }
            if hit {
                return true;
            }
        }
        false
    }
}

fn rule_match(pattern: &str, path: &str) -> bool {
    if let Some(p) = pattern.strip_prefix('/') {
        return matches(p, path, false);
    }
    if pattern.contains('/') {
        return matches(pattern, path, false);
    }
    let base = path.rsplit('/').next().unwrap_or(path);
    matches(pattern, base, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(matches("*.yaml", "a.yaml", false));
        assert!(!matches("*.yaml", "d/a.yaml", false));
        assert!(matches("files/**", "files/a/b.txt", true));
        assert!(matches("files/*.{txt,conf}", "files/x.conf", true));
        let ig = Ignore::parse("*.tmp\n.git/\n# c\n");
        assert!(ig.ignored("x/a.tmp", false));
        assert!(ig.ignored(".git", true));
        assert!(ig.ignored("templates/.hidden", false));
        assert!(!ig.ignored("templates/a.yaml", false));
    }
}
