//! `terraform fmt`'s layout (hclwrite's formatter plus terraform's own
//! rewrites): two-space indentation by nesting, `=` of consecutive one-line
//! attributes and trailing comments aligned, one space around `=` and `:`,
//! inside `{ … }`, none before `)`/`]`, quoted block labels; in block bodies
//! only (not object constructors) `"${x}"` unwrapped to `x`, and a
//! `variable`'s legacy type (`"string"`, `list`) written in today's syntax.
//! Comments, heredoc bodies and the file's trailing newlines are kept.
//! Line-based, not a port of hclwrite's token formatter: the differential
//! test against terraform fmt (keel-hcl's conformance suite) keeps it honest.

/// Formats HCL source text.
pub fn format(src: &str) -> String {
    let src = unwrap_multiline_interpolations(src);
    let lines: Vec<&str> = src.split('\n').collect();
    let mut out: Vec<String> = Vec::new();
    let mut depth: i64 = 0;
    let mut heredoc: Option<String> = None;
    // What each open bracket level is: a block body (with the block's type)
    // or an expression; terraform rewrites attributes of block bodies only.
    let mut bodies: Vec<Option<String>> = Vec::new();
    for raw in &lines {
        if let Some(end) = &heredoc {
            if raw.trim() == end {
                heredoc = None;
                let t = raw.trim();
                // `<<-` bodies may be indented; the closing marker keeps the body's indentation rule.
                out.push(format!(
                    "{}{t}",
                    if raw.starts_with(' ') {
                        "  ".repeat(depth.max(0) as usize)
                    } else {
                        String::new()
                    }
                ));
            } else {
                out.push((*raw).to_string());
            }
            continue;
        }
        let t = raw.trim();
        if t.is_empty() {
            out.push(String::new());
            continue;
        }
        let (opens, closes, starts_closing) = brackets(t);
        // A line that closes more than it opens is itself dedented.
        let this_depth = if starts_closing || closes > opens {
            depth - 1
        } else {
            depth
        };
        let body = bodies.last().cloned().unwrap_or(Some(String::new()));
        let line = normalize(t, body.as_deref());
        out.push(format!("{}{line}", "  ".repeat(this_depth.max(0) as usize)));
        // hclwrite indents one level per line that opens brackets, however many.
        let net = (opens - closes).signum();
        depth += net;
        if net > 0 {
            bodies.push(block_type(&line));
        } else if net < 0 {
            bodies.pop();
        }
        if let Some(i) = t.find("<<") {
            let rest = t[i + 2..].trim_start_matches('-');
            let id: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !id.is_empty() && !in_string(t, i) {
                heredoc = Some(id);
            }
        }
    }
    align(&mut out);
    align_comments(&mut out);
    // The file ends as it did: hclwrite keeps trailing newlines.
    out.join("\n")
}

/// The type of the block a (normalized) line opens, if it opens one.
fn block_type(line: &str) -> Option<String> {
    let code = split_comment(line).0.trim_end();
    if !code.ends_with('{') || assignment_eq(code).is_some() || code.contains('=') {
        return None;
    }
    let kind = code.split_whitespace().next()?;
    kind.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        .then(|| kind.to_string())
}

/// (code, trailing comment) of a line: the comment starts at `#` or `//`
/// outside strings (an empty comment part when there is none).
fn split_comment(l: &str) -> (&str, &str) {
    match scan(l).2 {
        Some(at) => l.split_at(at),
        None => (l, ""),
    }
}

/// hclwrite's spacing inside a line's code: a space inside `{ ... }` (not
/// `{}`), around `:` (not `::`), none before `)` or `]`. Strings are left
/// as they are.
fn spacing(code: &str) -> String {
    let cs: Vec<char> = code.chars().collect();
    let mut out = String::with_capacity(code.len() + 8);
    let mut quoted = false;
    let mut esc = false;
    let mut interp = 0;
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        if quoted {
            match c {
                _ if esc => esc = false,
                '\\' => esc = true,
                '$' | '%' if cs.get(i + 1) == Some(&'{') => {
                    interp += 1;
                    out.push(c);
                    out.push('{');
                    i += 2;
                    continue;
                }
                '}' if interp > 0 => interp -= 1,
                '"' if interp == 0 => quoted = false,
                _ => {}
            }
            out.push(c);
            i += 1;
            continue;
        }
        match c {
            '"' => {
                quoted = true;
                out.push(c);
            }
            '{' => {
                out.push(c);
                let next = cs[i + 1..].iter().find(|x| **x != ' ');
                if next.is_some_and(|n| *n != '}') {
                    out.push(' ');
                    while cs.get(i + 1) == Some(&' ') {
                        i += 1;
                    }
                }
            }
            '}' | ')' | ']' => {
                while out.ends_with(' ') {
                    out.pop();
                }
                if c == '}' && !out.is_empty() && !out.ends_with('{') {
                    out.push(' ');
                }
                out.push(c);
            }
            ':' if cs.get(i + 1) == Some(&':') => {
                out.push_str("::");
                i += 1;
            }
            ':' if i > 0 && cs[i - 1] == ':' => out.push(c),
            ':' => {
                while out.ends_with(' ') {
                    out.pop();
                }
                out.push_str(" : ");
                while cs.get(i + 1) == Some(&' ') {
                    i += 1;
                }
            }
            _ => out.push(c),
        }
        i += 1;
    }
    out.truncate(out.trim_end().len());
    out
}

/// Aligns trailing comments of consecutive lines that have one, as
/// hclwrite's formatter does (one space after the longest code).
fn align_comments(lines: &mut [String]) {
    let mut i = 0;
    while i < lines.len() {
        let has = |l: &str| {
            let (code, comment) = split_comment(l);
            !comment.is_empty() && !code.trim().is_empty()
        };
        if !has(&lines[i]) {
            i += 1;
            continue;
        }
        let mut j = i;
        let mut width = 0;
        while j < lines.len() && has(&lines[j]) {
            width = width.max(split_comment(&lines[j]).0.trim_end().chars().count());
            j += 1;
        }
        for l in &mut lines[i..j] {
            let (code, comment) = split_comment(l);
            let code = code.trim_end();
            let pad = width - code.chars().count() + 1;
            *l = format!("{code}{}{comment}", " ".repeat(pad));
        }
        i = j;
    }
}

/// `= "${ a ?\n b }"` (a whole string that is one interpolation spanning
/// lines) becomes `= (a ?\n b)`, as terraform 0.12's upgrade rules do.
fn unwrap_multiline_interpolations(src: &str) -> String {
    let b: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == '='
            && b.get(i + 1) == Some(&' ')
            && b.get(i + 2) == Some(&'"')
            && b.get(i + 3) == Some(&'$')
            && b.get(i + 4) == Some(&'{')
        {
            // Find the matching `}` of this interpolation.
            let mut j = i + 5;
            let mut depth = 1;
            let mut quoted = false;
            let mut esc = false;
            while j < b.len() && depth > 0 {
                let c = b[j];
                if quoted {
                    match c {
                        _ if esc => esc = false,
                        '\\' => esc = true,
                        '"' => quoted = false,
                        _ => {}
                    }
                } else {
                    match c {
                        '"' => quoted = true,
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                }
                j += 1;
            }
            if depth == 0 && b.get(j) == Some(&'"') {
                let inner: String = b[i + 5..j - 1].iter().collect();
                if inner.contains('\n') {
                    let t = inner.trim();
                    out.push_str("= ");
                    if wrapped_in_parens(t) {
                        out.push_str(t);
                    } else {
                        out.push('(');
                        out.push_str(t);
                        out.push(')');
                    }
                    i = j + 1;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Whether `t` is one parenthesized group: `(...)` with the first `(` closing at the end.
fn wrapped_in_parens(t: &str) -> bool {
    if !t.starts_with('(') || !t.ends_with(')') {
        return false;
    }
    let mut depth = 0;
    for (i, c) in t.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 && i + 1 != t.len() {
                    return false;
                }
            }
            _ => {}
        }
    }
    true
}

fn in_string(t: &str, pos: usize) -> bool {
    let mut quoted = false;
    let mut esc = false;
    for (i, c) in t.char_indices() {
        if i >= pos {
            break;
        }
        match c {
            _ if esc => esc = false,
            '\\' if quoted => esc = true,
            '"' => quoted = !quoted,
            _ => {}
        }
    }
    quoted
}

/// (opening brackets, closing brackets, whether the line starts with a closer),
/// outside strings and comments.
fn brackets(t: &str) -> (i64, i64, bool) {
    let (o, c, _) = scan(t);
    let starts = t.starts_with(['}', ']', ')']);
    (o, c, starts)
}

/// One pass over a line's code: (opening brackets, closing brackets, byte
/// offset of a trailing `#` or `//` comment), strings and their `${ }`
/// interpolations (whose own quotes do not end the string) skipped.
fn scan(t: &str) -> (i64, i64, Option<usize>) {
    let (mut o, mut c) = (0, 0);
    let mut quoted = false;
    let mut esc = false;
    let mut interp = 0;
    let chars: Vec<(usize, char)> = t.char_indices().collect();
    let next = |i: usize| chars.get(i + 1).map(|x| x.1);
    let mut i = 0;
    while i < chars.len() {
        let (at, ch) = chars[i];
        if quoted {
            match ch {
                _ if esc => esc = false,
                '\\' => esc = true,
                '$' | '%' if next(i) == Some('{') => {
                    interp += 1;
                    i += 1;
                }
                '}' if interp > 0 => interp -= 1,
                '"' if interp == 0 => quoted = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        match ch {
            '"' => quoted = true,
            '#' => return (o, c, Some(at)),
            '/' if next(i) == Some('/') => return (o, c, Some(at)),
            '/' if next(i) == Some('*') => {
                while i + 1 < chars.len() && !(chars[i].1 == '*' && chars[i + 1].1 == '/') {
                    i += 1;
                }
            }
            '{' | '[' | '(' => o += 1,
            '}' | ']' | ')' => c += 1,
            _ => {}
        }
        i += 1;
    }
    (o, c, None)
}

/// One line: `key=value` → `key = value`, block labels quoted, `"${x}"` → `x`.
fn normalize(t: &str, body: Option<&str>) -> String {
    if t.starts_with(['#', '/']) {
        return t.to_string();
    }
    let (code, comment) = split_comment(t);
    if !comment.is_empty() && !code.trim().is_empty() {
        return format!("{} {comment}", normalize(code.trim_end(), body));
    }
    let t = &spacing(&no_space_after_open(t));
    // Block header: `ident label label {`.
    let is_header = |h: &str| {
        let ident = |w: &str| {
            w.chars()
                .next()
                .is_some_and(|c| c.is_alphabetic() || c == '_')
                && w.chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        };
        let mut words = h.split_whitespace();
        words.next().is_some_and(ident)
            && words.all(|w| ident(w) || (w.len() >= 2 && w.starts_with('"') && w.ends_with('"')))
    };
    if let Some(h) = t.strip_suffix("{}")
        && !t.contains('=')
        && is_header(&strip_inline_comments(h.trim()))
    {
        return format!(
            "{} {{}}",
            normalize(&format!("{} {{", h.trim()), body).trim_end_matches(" {")
        );
    }
    if t.ends_with('{')
        && !t.contains('=')
        && is_header(&strip_inline_comments(t.trim_end_matches('{').trim()))
    {
        let head = t.trim_end_matches('{').trim();
        let head = strip_inline_comments(head);
        let mut parts = head.split_whitespace();
        if let Some(kind) = parts.next() {
            let labels: Vec<String> = parts
                .map(|p| {
                    if p.starts_with('"') {
                        p.to_string()
                    } else {
                        format!("\"{p}\"")
                    }
                })
                .collect();
            if labels.is_empty() {
                return format!("{kind} {{");
            }
            return format!("{kind} {} {{", labels.join(" "));
        }
    }
    if let Some(eq) = assignment_eq(t) {
        let key = t[..eq].trim_end();
        let mut val = t[eq + 1..].trim_start().to_string();
        if body.is_none() {
            return format!("{key} = {val}");
        }
        if let Some(inner) = val.strip_prefix("\"${").and_then(|v| v.strip_suffix("}\""))
            && !inner.contains("${")
            && !inner.contains('"')
            && !inner.contains('}')
        {
            val = inner.to_string();
        }
        if key == "type" && body == Some("variable") {
            val = match val.as_str() {
                "\"string\"" => "string".into(),
                "\"list\"" => "list(string)".into(),
                "\"map\"" => "map(string)".into(),
                "list" => "list(any)".into(),
                "map" => "map(any)".into(),
                "set" => "set(any)".into(),
                v => v.to_string(),
            };
        }
        return format!("{key} = {val}");
    }
    t.clone()
}

/// `( {` → `({`: no space after an opening bracket (outside strings).
fn no_space_after_open(t: &str) -> String {
    let mut out = String::with_capacity(t.len());
    let mut quoted = false;
    let mut prev_open = false;
    for c in t.chars() {
        if c == '"' {
            quoted = !quoted;
        }
        if !quoted && prev_open && c == ' ' {
            continue;
        }
        prev_open = !quoted && matches!(c, '(' | '[');
        out.push(c);
    }
    out
}

fn strip_inline_comments(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("/*") {
        out.push_str(&rest[..i]);
        if let Some(j) = rest[i..].find("*/") {
            rest = &rest[i + j + 2..];
        } else {
            rest = "";
            break;
        }
    }
    out.push_str(rest);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The `=` of `ident = value` (not `==`, not inside a string).
fn assignment_eq(t: &str) -> Option<usize> {
    let key_end = if let Some(q) = t.strip_prefix('"') {
        // A quoted key (an object's `"q r" = 1`) may hold anything.
        let mut esc = false;
        let close = q.char_indices().find_map(|(i, c)| {
            let end = !esc && c == '"';
            esc = !esc && c == '\\';
            end.then_some(i)
        })?;
        close + 2
    } else {
        // `foo.bar = x`: provider references as keys of a `providers` map.
        t.find(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '"' | '.')))?
    };
    let rest = &t[key_end..];
    let off = rest.len() - rest.trim_start().len();
    let i = key_end + off;
    (t[i..].starts_with('=') && !t[i..].starts_with("==")).then_some(i)
}

/// Aligns `=` in runs of consecutive one-line attributes at the same indentation.
fn align(lines: &mut [String]) {
    let mut i = 0;
    while i < lines.len() {
        let Some((ind, _)) = attr_line(&lines[i]) else {
            i += 1;
            continue;
        };
        let mut j = i;
        let mut width = 0;
        while j < lines.len() {
            match attr_line(&lines[j]) {
                Some((d, k)) if d == ind => {
                    width = width.max(k.len());
                    j += 1;
                }
                _ => break,
            }
        }
        for l in &mut lines[i..j] {
            if let Some(eq) = assignment_eq(l.trim_start()) {
                let t = l.trim_start().to_string();
                let key = t[..eq].trim_end();
                let val = t[eq + 1..].trim_start();
                *l = format!("{}{key:width$} = {val}", " ".repeat(ind));
            }
        }
        i = j.max(i + 1);
    }
}

/// (indentation, key) of a complete one-line attribute.
fn attr_line(l: &str) -> Option<(usize, String)> {
    let t = l.trim_start();
    let ind = l.len() - t.len();
    let eq = assignment_eq(t)?;
    let (o, c, _) = brackets(t);
    if o != c || t.contains("<<") {
        return None;
    }
    Some((ind, t[..eq].trim_end().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indents_and_aligns() {
        let src = "resource foo bar {\nname=\"x\"\n  longer_name = 1\nnested {\na = 1\n}\n}\n";
        assert_eq!(
            format(src),
            "resource \"foo\" \"bar\" {\n  name        = \"x\"\n  longer_name = 1\n  nested {\n    a = 1\n  }\n}\n"
        );
    }

    #[test]
    fn a_hash_inside_an_interpolated_string_is_no_comment() {
        // What terraform fmt prints for it.
        let src = "a = \"x${b ? \"#\" : \"\"}\" # note\nlonger = 1 # n\n";
        assert_eq!(
            format(src),
            "a      = \"x${b ? \"#\" : \"\"}\" # note\nlonger = 1                  # n\n"
        );
    }

    #[test]
    fn quoted_keys_align_too() {
        let src = "x = [1, {\n\"q r\" = 3\nz = 2\n\"a\\\"b\" = 1\n}]\n";
        assert_eq!(
            format(src),
            "x = [1, {\n  \"q r\"  = 3\n  z      = 2\n  \"a\\\"b\" = 1\n}]\n"
        );
    }
}
