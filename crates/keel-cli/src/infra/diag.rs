//! Terraform's diagnostic output: `Error: summary`, the location with the
//! enclosing block (`on main.tf line 6, in resource "x" "y":`), the source
//! line and the detail; boxed with `│` on a terminal, plain otherwise (as
//! terraform's `-no-color`).

use std::io::IsTerminal as _;

use keel_hcl::{Diagnostic, Diagnostics, Severity, Sources};

/// The top-level block around `line` (1-based): `resource "a" "b"`, `locals`.
fn enclosing_block(src: &str, line: usize) -> Option<String> {
    let mut current: Option<String> = None;
    let mut depth: i64 = 0;
    for (i, l) in src.lines().enumerate() {
        if i + 1 > line {
            break;
        }
        let t = l.trim_end();
        if depth == 0 && !t.starts_with([' ', '\t', '#', '/']) && t.ends_with('{') {
            current = Some(t.trim_end_matches('{').trim().to_string());
        }
        depth += t.matches('{').count() as i64 - t.matches('}').count() as i64;
        if depth <= 0 && i + 1 < line {
            depth = 0;
            current = None;
        }
    }
    current
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut out = Vec::new();
    for para in text.split('\n') {
        if para.starts_with(' ') || para.len() <= width {
            out.push(para.to_string());
            continue;
        }
        let mut line = String::new();
        for w in para.split(' ') {
            if !line.is_empty() && line.len() + 1 + w.len() > width {
                out.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(w);
        }
        out.push(line);
    }
    out
}

/// One diagnostic as terraform prints it.
pub fn render(srcs: &Sources, d: &Diagnostic, boxed: bool) -> String {
    let sev = if d.severity == Severity::Error {
        "Error"
    } else {
        "Warning"
    };
    let mut lines = vec![format!("{sev}: {}", d.summary), String::new()];
    if let Some(r) = &d.subject {
        let src = srcs.0.get(&r.filename);
        let ctx = src
            .and_then(|s| enclosing_block(s, r.start.line))
            .map(|b| format!(", in {b}"))
            .unwrap_or_default();
        lines.push(format!("  on {} line {}{ctx}:", r.filename, r.start.line));
        match src {
            Some(s) => lines.push(format!(
                "{:>4}: {}",
                r.start.line,
                s.lines().nth(r.start.line.saturating_sub(1)).unwrap_or("")
            )),
            None => lines.push("  (source code not available)".into()),
        }
        lines.push(String::new());
    }
    if d.detail.is_empty() {
        lines.pop();
    } else {
        lines.extend(wrap(&d.detail, 76));
    }
    if boxed {
        let mut out = String::from("╷\n");
        for l in lines {
            out.push_str("│ ");
            out.push_str(&l);
            out.push('\n');
        }
        out.push_str("╵\n");
        out
    } else {
        let mut out = String::from("\n");
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
        out
    }
}

/// Prints diagnostics to stderr.
pub fn print(srcs: &Sources, ds: &Diagnostics, no_color: bool) {
    let boxed = !no_color && std::io::stderr().is_terminal();
    for d in &ds.0 {
        eprint!("{}", render(srcs, d, boxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_enclosing_block() {
        let src = "locals {\n  a = 1\n  pi = 0x314F\n}\nresource \"x\" \"y\" {\n  b = 2\n}\n";
        assert_eq!(enclosing_block(src, 3).as_deref(), Some("locals"));
        assert_eq!(
            enclosing_block(src, 6).as_deref(),
            Some("resource \"x\" \"y\"")
        );
    }
}
