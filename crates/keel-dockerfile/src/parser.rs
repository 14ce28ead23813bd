//! The line-level Dockerfile parser: parser directives, continuation lines,
//! comments, heredocs, and the per-instruction argument shapes of `BuildKit`'s
//! `frontend/dockerfile/parser` (the raw [`Node`] tree that `BuildKit`'s
//! `Dump` prints as S-expressions).

use std::fmt::Write as _;

use crate::shell::{self, NoEnv, Options};
use crate::{Error, Location};

/// Instructions the parser knows, in upper case.
pub const INSTRUCTIONS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Parser directives found at the top of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    /// `# escape=` (default `\`).
    pub escape: char,
    /// `# syntax=` when given.
    pub syntax: Option<String>,
    /// `# check=` when given.
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            escape: '\\',
            syntax: None,
            check: None,
        }
    }
}

/// Where an instruction sits: 1-based lines (inclusive) and the 1-based column
/// of its keyword on the first line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start_line: usize,
    pub end_line: usize,
    pub col: usize,
}

/// A heredoc attached to an instruction (`<<EOF` … `EOF`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word with quotes removed.
    pub name: String,
    /// The lines between the instruction and the delimiter, newlines included,
    /// before any tab stripping.
    pub content: String,
    /// False when any part of the delimiter was quoted (`<<"EOF"`): no expansion.
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from every content line.
    pub chomp: bool,
    /// The file descriptor prefix (`3<<EOF`), 0 when absent.
    pub fd: u32,
}

impl Heredoc {
    /// The content as the instruction sees it (leading tabs stripped for `<<-`).
    pub fn text(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        let mut out = String::with_capacity(self.content.len());
        for line in self.content.split_inclusive('\n') {
            out.push_str(line.trim_start_matches('\t'));
        }
        out
    }
}

/// The arguments of a raw node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Args {
    /// A flat list of values (`BuildKit`'s `Next` chain).
    Words(Vec<String>),
    /// ONBUILD's wrapped instruction.
    Sub(Box<Node>),
}

/// One instruction as `BuildKit`'s parser reads it, before its arguments are interpreted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The keyword as written (`run`, `RUN`, …).
    pub keyword: String,
    /// `--flag[=value]` words before the arguments, without interpretation.
    pub flags: Vec<String>,
    pub args: Args,
    /// The arguments were a JSON array (exec form).
    pub json: bool,
    /// The arguments text after the flags (continuations joined).
    pub rest: String,
    pub heredocs: Vec<Heredoc>,
    /// The logical line (continuations joined).
    pub original: String,
    pub span: Span,
    /// Comment lines directly above the instruction.
    pub comments: Vec<String>,
}

impl Node {
    /// The keyword in upper case.
    pub fn name(&self) -> String {
        self.keyword.to_ascii_uppercase()
    }

    /// The argument values (empty for ONBUILD).
    pub fn words(&self) -> &[String] {
        match &self.args {
            Args::Words(w) => w,
            Args::Sub(_) => &[],
        }
    }

    /// `BuildKit`'s S-expression form of this node, without the outer parentheses.
    pub fn dump(&self) -> String {
        let mut s = self.keyword.to_lowercase();
        if !self.flags.is_empty() {
            s.push_str(" [");
            let quoted: Vec<String> = self.flags.iter().map(|f| go_quote(f)).collect();
            s.push_str(&quoted.join(" "));
            s.push(']');
        }
        match &self.args {
            Args::Words(words) => {
                for w in words {
                    s.push(' ');
                    s.push_str(&go_quote(w));
                }
            }
            Args::Sub(sub) => {
                let _ = write!(s, " ({})", sub.dump());
            }
        }
        s.trim().to_string()
    }
}

/// A parsed file: its directives and instructions in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ast {
    pub directives: Directives,
    pub nodes: Vec<Node>,
}

impl Ast {
    /// `BuildKit`'s `Dump` of the whole file: one `(…)` line per instruction.
    pub fn dump(&self) -> String {
        let mut s = String::new();
        for n in &self.nodes {
            let _ = writeln!(s, "({})", n.dump());
        }
        s
    }
}

/// Go's `strconv.Quote` (error texts quote words as `BuildKit` does).
pub use keel_go::quote as go_quote;

struct Lines<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Iterator for Lines<'a> {
    /// A line with its newline kept (heredoc content needs it).
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        if self.pos >= self.src.len() {
            return None;
        }
        let rest = &self.src[self.pos..];
        let end = rest.find('\n').map_or(rest.len(), |i| i + 1);
        self.pos += end;
        Some(&rest[..end])
    }
}

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

struct DirectiveParser {
    done: bool,
    seen: Vec<String>,
}

impl DirectiveParser {
    /// `# name = value` while only directives have been seen so far.
    fn parse_line(&mut self, line: &str, d: &mut Directives) -> Result<(), String> {
        if self.done {
            return Ok(());
        }
        let Some((name, value)) = directive_match(line) else {
            self.done = true;
            return Ok(());
        };
        let name = name.to_ascii_lowercase();
        if !matches!(name.as_str(), "syntax" | "escape" | "check") {
            self.done = true;
            return Ok(());
        }
        if self.seen.contains(&name) {
            return Err(format!("only one {name} parser directive can be used"));
        }
        self.seen.push(name.clone());
        match name.as_str() {
            "escape" => {
                if value != "`" && value != "\\" {
                    return Err(format!(
                        "invalid escape token '{value}' does not match ` or \\"
                    ));
                }
                d.escape = value.chars().next().unwrap_or('\\');
            }
            "syntax" => d.syntax = Some(value.to_string()),
            _ => d.check = Some(value.to_string()),
        }
        Ok(())
    }
}

/// `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`
fn directive_match(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('#')?.trim_start();
    let name_len = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(rest.len(), |(i, _)| i);
    if name_len == 0 {
        return None;
    }
    let name = &rest[..name_len];
    let value = rest[name_len..].trim_start().strip_prefix('=')?.trim();
    if value.is_empty() {
        return None;
    }
    Some((name, value))
}

/// A line ends in a continuation when it ends with the escape token (plus
/// blanks) that is not itself escaped; returns the line without it.
fn trim_continuation(line: &str, escape: char) -> (String, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    if let Some(before) = trimmed.strip_suffix(escape)
        && !before.ends_with(escape)
    {
        return (before.to_string(), false);
    }
    (line.to_string(), true)
}

/// Splits off the keyword; `[\t\v\f\r ]+` separates it from the rest.
fn split_keyword(line: &str) -> (&str, &str) {
    let line = line.trim();
    let is_ws = |c: char| matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ');
    match line.find(is_ws) {
        Some(i) => (&line[..i], line[i..].trim_start_matches(is_ws)),
        None => (line, ""),
    }
}

#[derive(PartialEq)]
enum Phase {
    Spaces,
    Word,
    Quote,
}

/// Leading `--flag` words; returns (rest, flags). Mirrors `extractBuilderFlags`.
fn extract_flags(line: &str) -> (String, Vec<String>) {
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut quote = '\0';
    let mut phase = Phase::Spaces;
    let mut i = 0;
    loop {
        let at_end = i >= chars.len();
        let ch = if at_end { '\0' } else { chars[i].1 };
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                i += 1;
                continue;
            }
            if ch != '-' || chars.get(i + 1).map(|c| c.1) != Some('-') {
                return (line[chars[i].0..].to_string(), words);
            }
            phase = Phase::Word;
        }
        if at_end {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if word == "--" {
                    return (line[chars[i].0..].to_string(), words);
                }
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                word.clear();
                blank_ok = false;
                i += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                i += 1;
                continue;
            }
            let mut c = ch;
            if ch == '\\' {
                if i + 1 == chars.len() {
                    i += 1;
                    continue;
                }
                i += 1;
                c = chars[i].1;
            }
            word.push(c);
            i += 1;
            continue;
        }
        // Phase::Quote
        if ch == quote {
            phase = Phase::Word;
            i += 1;
            continue;
        }
        let mut c = ch;
        if ch == '\\' {
            if i + 1 == chars.len() {
                phase = Phase::Word;
                i += 1;
                continue;
            }
            i += 1;
            c = chars[i].1;
        }
        word.push(c);
        i += 1;
    }
    (String::new(), words)
}

/// Space-separated words keeping quotes and escapes (`BuildKit`'s `parseWords`).
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut i = 0;
    loop {
        let at_end = i >= chars.len();
        let mut ch = if at_end { '\0' } else { chars[i] };
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                i += 1;
                continue;
            }
            phase = Phase::Word;
        }
        if at_end {
            if blank_ok || !word.is_empty() {
                words.push(word);
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                i += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                if i + 1 == chars.len() {
                    i += 1;
                    continue;
                }
                word.push(ch);
                i += 1;
                ch = chars[i];
            }
            word.push(ch);
            i += 1;
            continue;
        }
        // Phase::Quote
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == escape && quote != '\'' {
            if i + 1 == chars.len() {
                phase = Phase::Word;
                i += 1;
                continue;
            }
            i += 1;
            word.push(ch);
            ch = chars[i];
        }
        word.push(ch);
        i += 1;
    }
    words
}

/// `[\t\v\f\r ]+`-separated fields (regexp Split semantics; no empty fields
/// since `rest` is trimmed).
fn split_ws(rest: &str) -> Vec<String> {
    rest.split(['\t', '\x0b', '\x0c', '\r', ' '])
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

enum JsonResult {
    Ok(Vec<String>),
    NotJson,
    NotStrings,
}

fn parse_json(rest: &str) -> JsonResult {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return JsonResult::NotJson;
    }
    match serde_json::from_str::<Vec<serde_json::Value>>(rest) {
        Err(_) => JsonResult::NotJson,
        Ok(values) => {
            let mut out = Vec::with_capacity(values.len());
            for v in values {
                match v {
                    serde_json::Value::String(s) => out.push(s),
                    _ => return JsonResult::NotStrings,
                }
            }
            JsonResult::Ok(out)
        }
    }
}

const NOT_STRING_ARRAY: &str =
    "when using JSON array syntax, arrays must be comprised of strings only";

fn maybe_json(rest: &str) -> Result<(Vec<String>, bool), String> {
    if rest.is_empty() {
        return Ok((Vec::new(), false));
    }
    match parse_json(rest) {
        JsonResult::Ok(w) => Ok((w, true)),
        JsonResult::NotStrings => Err(NOT_STRING_ARRAY.to_string()),
        JsonResult::NotJson => Ok((vec![rest.to_string()], false)),
    }
}

fn maybe_json_to_list(rest: &str) -> Result<(Vec<String>, bool), String> {
    match parse_json(rest) {
        JsonResult::Ok(w) => Ok((w, true)),
        JsonResult::NotStrings => Err(NOT_STRING_ARRAY.to_string()),
        JsonResult::NotJson => Ok((split_ws(rest), false)),
    }
}

fn name_val(rest: &str, key: &str, escape: char) -> Result<Vec<String>, String> {
    let words = parse_words(rest, escape);
    if words.is_empty() {
        return Ok(Vec::new());
    }
    if !words[0].contains('=') {
        // Old form: `KEY name value…`, the value is the rest of the line verbatim.
        let is_ws = |c: char| matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ');
        let Some(i) = rest.find(is_ws) else {
            return Err(format!("{key} must have two arguments"));
        };
        let value = rest[i..].trim_start_matches(is_ws);
        return Ok(vec![
            rest[..i].to_string(),
            value.to_string(),
            String::new(),
        ]);
    }
    let mut out = Vec::new();
    for w in words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(format!(
                "Syntax error - can't find = in {}. Must be of the form: name=value",
                go_quote(&w)
            ));
        };
        out.extend([k.to_string(), v.to_string(), "=".to_string()]);
    }
    Ok(out)
}

fn health(rest: &str) -> Result<(Vec<String>, bool), String> {
    let sep = rest.find(char::is_whitespace).unwrap_or(rest.len());
    if sep == 0 {
        return Ok((Vec::new(), false));
    }
    let typ = &rest[..sep];
    let cmd = rest[sep..].trim_start();
    let (mut words, json) = maybe_json(cmd)?;
    words.insert(0, typ.to_string());
    Ok((words, json))
}

/// Builds the node for one logical line; `Err((message, column))`.
fn node_from_line(
    line: &str,
    escape: char,
    col: usize,
    depth: usize,
) -> Result<Node, (String, usize, Option<String>)> {
    let (keyword, after) = split_keyword(line);
    let (rest, flags) = extract_flags(after);
    let rest = rest.trim().to_string();
    let upper = keyword.to_ascii_uppercase();
    let e = |m: String| (m, col, None);
    let (args, json) = match upper.as_str() {
        "ADD" | "COPY" | "VOLUME" => maybe_json_to_list(&rest).map_err(e)?,
        "ARG" => (parse_words(&rest, escape), false),
        "CMD" | "ENTRYPOINT" | "RUN" | "SHELL" => maybe_json(&rest).map_err(e)?,
        "ENV" | "LABEL" => (name_val(&rest, &upper, escape).map_err(e)?, false),
        "EXPOSE" | "FROM" => (split_ws(&rest), false),
        "HEALTHCHECK" => health(&rest).map_err(e)?,
        "MAINTAINER" | "STOPSIGNAL" | "USER" | "WORKDIR" => {
            let w = if rest.is_empty() {
                Vec::new()
            } else {
                vec![rest.clone()]
            };
            (w, false)
        }
        "ONBUILD" => {
            if rest.is_empty() {
                (Vec::new(), false)
            } else {
                if depth > 0 {
                    return Err(e("ONBUILD ONBUILD isn't allowed".to_string()));
                }
                let sub_col = col + line.trim_start().len() - rest.len();
                let mut sub = node_from_line(&rest, escape, sub_col, depth + 1)?;
                sub.span.col = sub_col;
                return Ok(Node {
                    keyword: keyword.to_string(),
                    flags,
                    args: Args::Sub(Box::new(sub)),
                    json: false,
                    rest,
                    heredocs: Vec::new(),
                    original: line.to_string(),
                    span: Span::default(),
                    comments: Vec::new(),
                });
            }
        }
        _ => {
            let hint = closest_instruction(&upper).map(|s| {
                format!(
                    "did you mean {s}? known instructions: {}",
                    INSTRUCTIONS.join(", ")
                )
            });
            return Err((format!("unknown instruction: {keyword}"), col, hint));
        }
    };
    Ok(Node {
        keyword: keyword.to_string(),
        flags,
        args: Args::Words(args),
        json,
        rest,
        heredocs: Vec::new(),
        original: line.to_string(),
        span: Span::default(),
        comments: Vec::new(),
    })
}

/// The known instruction with the smallest edit distance to `word`.
pub fn closest_instruction(word: &str) -> Option<&'static str> {
    INSTRUCTIONS
        .iter()
        .map(|k| (levenshtein(k, word), *k))
        .min()
        .map(|(_, k)| k)
}

/// Optimal string alignment distance (edits plus adjacent transpositions, so
/// `RNU` is one step from `RUN`).
fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().take(64).collect();
    let b: Vec<char> = b.chars().take(64).collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

fn can_contain_heredoc(node: &Node) -> bool {
    let node = match &node.args {
        Args::Sub(sub) => sub,
        Args::Words(_) => node,
    };
    matches!(node.name().as_str(), "ADD" | "COPY" | "RUN") && !node.json
}

/// Heredoc delimiters on an instruction line (`BuildKit`'s `heredocsFromLine`).
fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, String> {
    let raw = Options {
        raw_quotes: true,
        raw_escapes: true,
        ..Options::default()
    };
    let words = shell::expand_words(line, &NoEnv, &raw).unwrap_or_default();
    let mut docs = Vec::new();
    for w in words {
        if let Some(h) = parse_heredoc(&w)? {
            docs.push(h);
        }
    }
    Ok(docs)
}

/// `^(\d*)<<(-?)([^<]*)$` plus the quoting check of `BuildKit`'s `heredocFromMatch`.
pub(crate) fn parse_heredoc(word: &str) -> Result<Option<Heredoc>, String> {
    let digits = word.chars().take_while(char::is_ascii_digit).count();
    let Some(after) = word[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match after.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, after),
    };
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let fd = word[..digits].parse::<u32>().unwrap_or(0);
    let opts = Options {
        skip_unset_env: true,
        ..Options::default()
    };
    let words = shell::expand_words(rest, &NoEnv, &opts).map_err(|e| e.to_string())?;
    if words.len() != 1 {
        return Ok(None);
    }
    let raw_opts = Options {
        raw_quotes: true,
        ..opts
    };
    let raw = shell::expand_words(rest, &NoEnv, &raw_opts).map_err(|e| e.to_string())?;
    if raw.len() != 1 {
        return Err(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        ));
    }
    let quotes = |s: &str| s.chars().filter(|c| *c == '\'' || *c == '"').count();
    Ok(Some(Heredoc {
        expand: quotes(&words[0]) == quotes(&raw[0]),
        name: words[0].clone(),
        content: String::new(),
        chomp,
        fd,
    }))
}

/// Parses a Dockerfile. `file` names it in error locations.
pub fn parse(src: &str, file: &str) -> Result<Ast, Error> {
    let err = |line: usize, col: usize, message: String, hint: Option<String>| Error::Dockerfile {
        location: Location {
            file: file.to_string(),
            line,
            col,
        },
        message,
        hint,
    };
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    let mut directives = Directives::default();
    let mut dp = DirectiveParser {
        done: false,
        seen: Vec::new(),
    };
    let mut lines = Lines { src, pos: 0 };
    let mut current = 0usize;
    let mut comments: Vec<String> = Vec::new();
    let mut nodes = Vec::new();

    while let Some(raw) = lines.next() {
        let no_nl = trim_newline(raw);
        if is_comment(no_nl) {
            let c = no_nl.trim_start()[1..].trim();
            if c.is_empty() {
                comments.clear();
            } else {
                comments.push(c.to_string());
            }
        }
        let stripped = no_nl.trim_start();
        dp.parse_line(stripped, &mut directives)
            .map_err(|m| err(current + 1, 1, m, None))?;
        current += 1;
        let start_line = current;
        let col = no_nl.chars().count() - stripped.chars().count() + 1;
        let content = if is_comment(stripped) { "" } else { stripped };
        let (mut line, mut end) = trim_continuation(content, directives.escape);
        if end && line.is_empty() {
            continue;
        }
        while !end {
            let Some(raw) = lines.next() else { break };
            let no_nl = trim_newline(raw);
            dp.parse_line(no_nl, &mut directives)
                .map_err(|m| err(current + 1, 1, m, None))?;
            current += 1;
            if is_comment(no_nl) {
                continue;
            }
            if no_nl.trim_start().is_empty() {
                // Empty continuation lines are skipped (BuildKit warns about them).
                continue;
            }
            let (cont, e) = trim_continuation(no_nl, directives.escape);
            line.push_str(&cont);
            end = e;
        }

        if line.trim().is_empty() {
            // Only escape tokens and blank continuation lines: nothing to parse.
            continue;
        }
        let mut node = node_from_line(&line, directives.escape, col, 0)
            .map_err(|(m, c, h)| err(start_line, c, m, h))?;

        if can_contain_heredoc(&node) && line.contains("<<") {
            let docs = heredocs_from_line(&line).map_err(|m| err(start_line, col, m, None))?;
            for mut doc in docs {
                let mut terminated = false;
                for raw in lines.by_ref() {
                    current += 1;
                    let mut candidate = trim_newline(raw);
                    if doc.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == doc.name {
                        terminated = true;
                        break;
                    }
                    doc.content.push_str(raw);
                }
                if !terminated {
                    return Err(err(
                        start_line,
                        col,
                        format!("unterminated heredoc {}", go_quote(&doc.name)),
                        Some(format!(
                            "end the heredoc with a line containing only {}",
                            doc.name
                        )),
                    ));
                }
                node.heredocs.push(doc);
            }
        }
        node.span = Span {
            start_line,
            end_line: current,
            col,
        };
        node.comments = std::mem::take(&mut comments);
        nodes.push(node);
    }
    if nodes.is_empty() {
        return Err(err(
            current.max(1),
            1,
            "file with no instructions".to_string(),
            None,
        ));
    }
    Ok(Ast { directives, nodes })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(src: &str) -> Node {
        parse(src, "Dockerfile").unwrap().nodes.remove(0)
    }

    fn fail(src: &str) -> String {
        parse(src, "Dockerfile").unwrap_err().to_string()
    }

    #[test]
    fn heredoc_basic_and_several() {
        let n = one("RUN <<EOF\necho hi\nEOF\n");
        assert_eq!(n.heredocs.len(), 1);
        assert_eq!(n.heredocs[0].name, "EOF");
        assert_eq!(n.heredocs[0].content, "echo hi\n");
        assert!(n.heredocs[0].expand);
        assert_eq!(
            n.span,
            Span {
                start_line: 1,
                end_line: 3,
                col: 1
            }
        );

        let ast = parse("FROM a\nCOPY <<A <<B /dst/\na\nA\nb\nB\nRUN x\n", "D").unwrap();
        let c = &ast.nodes[1];
        assert_eq!(c.words(), ["<<A", "<<B", "/dst/"]);
        assert_eq!(
            c.heredocs
                .iter()
                .map(|h| h.content.as_str())
                .collect::<Vec<_>>(),
            ["a\n", "b\n"]
        );
        assert_eq!(ast.nodes[2].span.start_line, 7);
    }

    #[test]
    fn heredoc_chomp_and_quoted() {
        let n = one("RUN <<-\"EOF\" sh\n\techo $x\n\t\tend\n\tEOF\n");
        let h = &n.heredocs[0];
        assert!(h.chomp);
        assert!(!h.expand);
        assert_eq!(h.name, "EOF");
        assert_eq!(h.text(), "echo $x\nend\n");
        let n = one("RUN 3<<'E' cat\nx\nE\n");
        assert_eq!(n.heredocs[0].fd, 3);
        assert!(!n.heredocs[0].expand);
    }

    #[test]
    fn heredoc_not_in_exec_form() {
        let n = one("RUN [\"cat\", \"<<EOF\"]\n");
        assert!(n.heredocs.is_empty());
    }

    #[test]
    fn unterminated_heredoc() {
        let e = fail("FROM a\n  RUN <<EOF\necho\n");
        assert_eq!(e, "Dockerfile:2:3: unterminated heredoc \"EOF\"");
    }

    #[test]
    fn unknown_instruction_with_hint() {
        let e = parse("FROM a\n\n   RNU echo\n", "x/Dockerfile").unwrap_err();
        assert_eq!(e.to_string(), "x/Dockerfile:3:4: unknown instruction: RNU");
        assert!(
            e.hint().unwrap().starts_with("did you mean RUN?"),
            "{:?}",
            e.hint()
        );
    }

    #[test]
    fn bad_json_array_is_an_error() {
        assert_eq!(
            fail("CMD [\"a\", 1]"),
            "Dockerfile:1:1: when using JSON array syntax, arrays must be comprised of strings only"
        );
    }

    #[test]
    fn directives_only_at_top() {
        let ast = parse(
            "# syntax=docker/dockerfile:1\n# check=skip=all\n# escape=`\nFROM a\n# escape=\\\n",
            "D",
        )
        .unwrap();
        assert_eq!(ast.directives.escape, '`');
        assert_eq!(
            ast.directives.syntax.as_deref(),
            Some("docker/dockerfile:1")
        );
        assert_eq!(ast.directives.check.as_deref(), Some("skip=all"));
        let e = fail("# escape=`\n# escape=\\\nFROM a\n");
        assert_eq!(
            e,
            "Dockerfile:2:1: only one escape parser directive can be used"
        );
        assert!(fail("# escape=x\nFROM a").contains("invalid escape token"));
    }

    #[test]
    fn comments_inside_continuations_and_comment_capture() {
        let ast = parse("# about a\nFROM a\nRUN a \\\n# inner\n  b\n", "D").unwrap();
        assert_eq!(ast.nodes[0].comments, ["about a"]);
        assert_eq!(ast.nodes[1].words(), ["a   b"]);
        assert_eq!(
            ast.nodes[1].span,
            Span {
                start_line: 3,
                end_line: 5,
                col: 1
            }
        );
    }

    #[test]
    fn env_without_value_fails_with_location() {
        assert_eq!(
            fail("FROM a\nENV PATH\n"),
            "Dockerfile:2:1: ENV must have two arguments"
        );
    }

    #[test]
    fn crlf_bom_and_backtick_escape() {
        let ast = parse(
            "\u{feff}# escape=`\r\nFROM a\r\nRUN echo `\r\n  c:\\dir\r\n",
            "D",
        )
        .unwrap();
        assert_eq!(ast.dump(), "(from \"a\")\n(run \"echo   c:\\\\dir\")\n");
        assert_eq!(
            ast.nodes[1].span,
            Span {
                start_line: 3,
                end_line: 4,
                col: 1
            }
        );
    }

    #[test]
    fn lone_escape_lines_and_empty_continuations() {
        let ast = parse("FROM a\nRUN a \\\n\n   \n  b\n\\\n", "D").unwrap();
        assert_eq!(ast.dump(), "(from \"a\")\n(run \"a   b\")\n");
        assert_eq!(ast.nodes[1].span.end_line, 5);
    }

    #[test]
    fn raw_forms_of_every_instruction() {
        let src = "ARG A B=1\nFROM --platform=linux/amd64 img AS s\nRUN --network=none [\"a\"]\nCMD c d\n\
LABEL a=b c=\"d e\"\nEXPOSE 80 443/udp\nENV K V W\nADD --chown=1 a b\nCOPY [\"a b\", \"/c\"]\n\
ENTRYPOINT [\"e\"]\nVOLUME /v /w\nUSER u\nWORKDIR /w\nONBUILD ADD . /\nSTOPSIGNAL 9\n\
HEALTHCHECK --retries=2 CMD [\"h\"]\nSHELL [\"sh\", \"-c\"]\nMAINTAINER m n\n";
        let ast = parse(src, "D").unwrap();
        let want = "(arg \"A\" \"B=1\")\n(from [\"--platform=linux/amd64\"] \"img\" \"AS\" \"s\")\n\
(run [\"--network=none\"] \"a\")\n(cmd \"c d\")\n(label \"a\" \"b\" \"=\" \"c\" \"\\\"d e\\\"\" \"=\")\n\
(expose \"80\" \"443/udp\")\n(env \"K\" \"V W\" \"\")\n(add [\"--chown=1\"] \"a\" \"b\")\n(copy \"a b\" \"/c\")\n\
(entrypoint \"e\")\n(volume \"/v\" \"/w\")\n(user \"u\")\n(workdir \"/w\")\n(onbuild (add \".\" \"/\"))\n\
(stopsignal \"9\")\n(healthcheck [\"--retries=2\"] \"CMD\" \"h\")\n(shell \"sh\" \"-c\")\n(maintainer \"m n\")\n";
        assert_eq!(ast.dump(), want);
        assert!(ast.nodes[2].json);
        assert!(!ast.nodes[3].json);
    }

    #[test]
    fn go_quote_matches_go() {
        assert_eq!(go_quote("a\u{0}\u{7f}\u{a0}♥"), "\"a\\x00\\x7f\\u00a0♥\"");
    }

    /// Regression: unassigned and private-use code points were printed
    /// as they are; Go's `IsPrint` says no and `Quote` escapes them.
    #[test]
    fn go_quote_escapes_what_go_does_not_print() {
        assert_eq!(go_quote("\u{378}\u{e000}"), "\"\\u0378\\ue000\"");
    }
}
