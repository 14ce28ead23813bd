//! Which events a workflow answers: `on` with GitHub's filter patterns for
//! branches, tags and paths (`*` within a segment, `**` across, `?` and `+`
//! quantify the previous character, `[..]` classes, `!` negates; the last
//! matching pattern decides).

use regex::Regex;

use crate::workflow::{Event, Workflow};

/// A compiled filter pattern.
#[derive(Debug)]
pub struct Pattern {
    negated: bool,
    re: Regex,
}

impl Pattern {
    pub fn new(p: &str) -> Pattern {
        let (negated, body) = match p.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, p),
        };
        let mut re = String::from("^");
        let chars: Vec<char> = body.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            match c {
                '*' if chars.get(i + 1) == Some(&'*') => {
                    re.push_str(".*");
                    i += 1;
                }
                '*' => re.push_str("[^/]*"),
                '?' | '+' => re.push(c),
                '[' => match chars[i..].iter().position(|&x| x == ']') {
                    Some(end) if end > 1 => {
                        let class: String = chars[i + 1..i + end].iter().collect();
                        re.push('[');
                        re.push_str(&class.replace('\\', "\\\\").replace('[', "\\["));
                        re.push(']');
                        i += end;
                    }
                    _ => re.push_str("\\["),
                },
                '\\' if i + 1 < chars.len() => {
                    i += 1;
                    re.push_str(&regex::escape(&chars[i].to_string()));
                }
                c => re.push_str(&regex::escape(&c.to_string())),
            }
            i += 1;
        }
        re.push('$');
        let re = Regex::new(&re).unwrap_or_else(|_| {
            Regex::new(&format!("^{}$", regex::escape(body))).expect("escaped pattern compiles")
        });
        Pattern { negated, re }
    }

    pub fn is_match(&self, s: &str) -> bool {
        self.re.is_match(s)
    }
}

/// Whether `name` is selected by an ordered include list (negations allowed).
pub fn selected(patterns: &[String], name: &str) -> bool {
    let mut result = false;
    for p in patterns {
        let p = Pattern::new(p);
        if p.is_match(name) {
            result = !p.negated;
        }
    }
    result
}

/// What happened, for trigger matching.
#[derive(Debug, Clone, Default)]
pub struct Trigger {
    pub event: String,
    /// `refs/heads/x` or `refs/tags/x` (push); the base branch's ref for
    /// pull requests.
    pub git_ref: String,
    /// Files the push or pull request changed (`None`: unknown, path
    /// filters then pass).
    pub changed: Option<Vec<String>>,
    /// `pull_request` activity type (`opened`, `synchronize`, …).
    pub action: Option<String>,
}

fn ref_ok(e: &Event, git_ref: &str, tags_allowed: bool) -> bool {
    let (branch, tag) = if let Some(b) = git_ref.strip_prefix("refs/heads/") {
        (Some(b), None)
    } else if let Some(t) = git_ref.strip_prefix("refs/tags/") {
        (None, Some(t))
    } else {
        (Some(git_ref), None)
    };
    let has_branch = e.branches.is_some() || e.branches_ignore.is_some();
    let has_tag = tags_allowed && (e.tags.is_some() || e.tags_ignore.is_some());
    if let Some(b) = branch {
        if !has_branch {
            return !has_tag;
        }
        if let Some(p) = &e.branches {
            return selected(p, b);
        }
        if let Some(p) = &e.branches_ignore {
            return !selected(p, b);
        }
    }
    if let Some(t) = tag {
        if !has_tag {
            return !has_branch;
        }
        if let Some(p) = &e.tags {
            return selected(p, t);
        }
        if let Some(p) = &e.tags_ignore {
            return !selected(p, t);
        }
    }
    true
}

fn paths_ok(e: &Event, changed: Option<&[String]>) -> bool {
    let Some(files) = changed else { return true };
    if let Some(p) = &e.paths {
        return files.iter().any(|f| selected(p, f));
    }
    if let Some(p) = &e.paths_ignore {
        return !files.iter().all(|f| selected(p, f));
    }
    true
}

/// Whether `wf` runs for `t`.
pub fn triggers(wf: &Workflow, t: &Trigger) -> bool {
    let Some(e) = wf.on.get(&t.event) else {
        return false;
    };
    match t.event.as_str() {
        "push" => ref_ok(e, &t.git_ref, true) && paths_ok(e, t.changed.as_deref()),
        "pull_request" | "pull_request_target" => {
            let types_ok = match (&e.types, &t.action) {
                (Some(types), Some(a)) => types.iter().any(|x| x == a),
                (None, Some(a)) => matches!(a.as_str(), "opened" | "synchronize" | "reopened"),
                _ => true,
            };
            types_ok && ref_ok(e, &t.git_ref, false) && paths_ok(e, t.changed.as_deref())
        }
        _ => match (&e.types, &t.action) {
            (Some(types), Some(a)) => types.iter().any(|x| x == a),
            _ => true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wf(on: &str) -> Workflow {
        crate::workflow::parse(
            "w.yml",
            &format!("on:\n{on}\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo\n"),
        )
        .unwrap()
    }

    fn push(r: &str, files: Option<&[&str]>) -> Trigger {
        Trigger {
            event: "push".into(),
            git_ref: r.into(),
            changed: files.map(|f| f.iter().map(|s| (*s).to_string()).collect()),
            action: None,
        }
    }

    #[test]
    fn patterns() {
        assert!(selected(&["feature/*".into()], "feature/a"));
        assert!(!selected(&["feature/*".into()], "feature/a/b"));
        assert!(selected(&["feature/**".into()], "feature/a/b"));
        assert!(selected(&["v2*".into()], "v2.1"));
        assert!(selected(&["v[12].[0-9]+.[0-9]+".into()], "v1.10.3"));
        assert!(selected(&["*.jsx?".into()], "a.js"));
        assert!(selected(&["*.jsx?".into()], "a.jsx"));
        let p: Vec<String> = vec!["releases/**".into(), "!releases/**-alpha".into()];
        assert!(selected(&p, "releases/10"));
        assert!(!selected(&p, "releases/10-alpha"));
    }

    #[test]
    fn branch_tag_and_path_filters() {
        let w = wf("  push:\n    branches: [main]\n    paths: ['src/**']");
        assert!(triggers(&w, &push("refs/heads/main", Some(&["src/a.rs"]))));
        assert!(!triggers(
            &w,
            &push("refs/heads/main", Some(&["README.md"]))
        ));
        assert!(!triggers(&w, &push("refs/heads/dev", Some(&["src/a.rs"]))));
        // Only branches defined: tag pushes do not run it.
        assert!(!triggers(&w, &push("refs/tags/v1", None)));
        let w = wf("  push:\n    tags: ['v*']");
        assert!(triggers(&w, &push("refs/tags/v1", None)));
        assert!(!triggers(&w, &push("refs/heads/main", None)));
        let w = wf("  push:\n    paths-ignore: ['docs/**']");
        assert!(!triggers(&w, &push("refs/heads/x", Some(&["docs/a.md"]))));
        assert!(triggers(
            &w,
            &push("refs/heads/x", Some(&["docs/a.md", "b.rs"]))
        ));
        let w = wf("  pull_request:\n    branches: [main]");
        let mut t = push("refs/heads/main", None);
        t.event = "pull_request".into();
        assert!(triggers(&w, &t));
        assert!(!triggers(&w, &push("refs/heads/main", None)));
    }
}
