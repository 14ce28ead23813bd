//! Diagnostics in terraform's form: severity, summary, detail and the source
//! range (file, line, column, byte), rendered with the source line as
//! terraform's CLI prints them.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// A position in a source file: 1-based line and column, 0-based byte.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
    pub byte: usize,
}

/// A range of source text.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Range {
    pub filename: Arc<str>,
    pub start: Pos,
    pub end: Pos,
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{},{}",
            self.filename, self.start.line, self.start.column
        )
    }
}

impl Range {
    /// Both ranges' extent (same file assumed).
    pub fn to(&self, other: &Range) -> Range {
        Range {
            filename: self.filename.clone(),
            start: self.start,
            end: other.end,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found in configuration or during evaluation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub summary: String,
    pub detail: String,
    pub subject: Option<Range>,
}

impl Diagnostic {
    pub fn error(
        summary: impl Into<String>,
        detail: impl Into<String>,
        subject: Option<Range>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Error,
            summary: summary.into(),
            detail: detail.into(),
            subject,
        }
    }

    pub fn warning(
        summary: impl Into<String>,
        detail: impl Into<String>,
        subject: Option<Range>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            summary: summary.into(),
            detail: detail.into(),
            subject,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(r) = &self.subject {
            write!(f, "{r}: ")?;
        }
        write!(f, "{}", self.summary)?;
        if !self.detail.is_empty() {
            write!(f, "; {}", self.detail)?;
        }
        Ok(())
    }
}

/// A list of diagnostics; an error when any has error severity.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }
    pub fn extend(&mut self, o: Diagnostics) {
        self.0.extend(o.0);
    }
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity == Severity::Error)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn error(
        summary: impl Into<String>,
        detail: impl Into<String>,
        subject: Option<Range>,
    ) -> Self {
        Diagnostics(vec![Diagnostic::error(summary, detail, subject)])
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

/// Source texts by file name, for rendering snippets.
#[derive(Clone, Debug, Default)]
pub struct Sources(pub BTreeMap<Arc<str>, Arc<str>>);

impl Sources {
    pub fn add(&mut self, name: &str, text: &str) {
        self.0.insert(Arc::from(name), Arc::from(text));
    }

    /// Renders as terraform does with `-no-color`:
    /// a box of `│` lines with the summary, the location, the source line and the detail.
    pub fn render(&self, d: &Diagnostic) -> String {
        let mut out = String::from("╷\n");
        let sev = match d.severity {
            Severity::Error => "Error",
            Severity::Warning => "Warning",
        };
        out.push_str(&format!("│ {sev}: {}\n", d.summary));
        if let Some(r) = &d.subject {
            out.push_str("│ \n");
            out.push_str(&format!("│   on {} line {}:\n", r.filename, r.start.line));
            match self.0.get(&r.filename) {
                Some(src) => {
                    let line = src
                        .lines()
                        .nth(r.start.line.saturating_sub(1))
                        .unwrap_or("");
                    out.push_str(&format!("│ {:>4}: {}\n", r.start.line, line));
                }
                None => out.push_str("│   (source code not available)\n"),
            }
        }
        if !d.detail.is_empty() {
            out.push_str("│ \n");
            for l in d.detail.lines() {
                out.push_str(&format!("│ {l}\n"));
            }
        }
        out.push_str("╵\n");
        out
    }

    pub fn render_all(&self, ds: &Diagnostics) -> String {
        ds.0.iter().map(|d| self.render(d)).collect::<String>()
    }
}
