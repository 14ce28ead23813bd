//! Secret masking for everything a run writes (logs, outputs, summaries,
//! artifacts). Each secret is registered with the forms a step can print it
//! in: the literal value, each line of a multi-line value, base64 at the three
//! byte alignments it can take inside a longer encoding (the runner's
//! approach, ADR 0297: padding and the characters that depend on neighbouring
//! bytes are cut), JSON-escaped, URL-encoded and shell-quoted forms.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

/// Shorter derived forms (a 1-byte secret's base64 fragment) would mask
/// ordinary text; GitHub's runner skips them too.
const MIN_DERIVED: usize = 4;

/// The set of strings to hide, longest first.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    values: Vec<String>,
}

fn shell_backslash(v: &str) -> String {
    let mut out = String::new();
    for c in v.chars() {
        if !(c.is_ascii_alphanumeric() || "_-./=,:@%+".contains(c)) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl Masker {
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&mut self, s: String, min: usize) {
        if s.len() >= min && !self.values.contains(&s) {
            self.values.push(s);
        }
    }

    /// Registers a secret and its derived forms.
    pub fn add(&mut self, secret: &str) {
        let secret = secret.trim_end_matches(['\r', '\n']);
        if secret.trim().is_empty() {
            return;
        }
        self.add_one(secret);
        if secret.contains('\n') {
            for line in secret.lines() {
                let line = line.trim_end_matches('\r');
                if !line.trim().is_empty() {
                    self.add_one(line);
                }
            }
        }
        self.values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }

    fn add_one(&mut self, v: &str) {
        self.push(v.to_string(), 1);
        let bytes = v.as_bytes();
        self.push(STANDARD.encode(bytes), MIN_DERIVED);
        for shift in 0..3usize {
            let mut buf = vec![0u8; shift];
            buf.extend_from_slice(bytes);
            let enc = STANDARD_NO_PAD.encode(&buf);
            let skip = [0, 2, 3][shift];
            let full = buf.len() * 8 / 6;
            if full > skip {
                self.push(enc[skip..full].to_string(), MIN_DERIVED);
            }
        }
        let mut json = String::new();
        crate::expr::value::json_quote(v, &mut json);
        self.push(json[1..json.len() - 1].to_string(), MIN_DERIVED);
        self.push(
            utf8_percent_encode(v, NON_ALPHANUMERIC).to_string(),
            MIN_DERIVED,
        );
        self.push(v.replace('\'', "'\\''"), MIN_DERIVED);
        self.push(shell_backslash(v), MIN_DERIVED);
        self.push(
            v.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('$', "\\$")
                .replace('`', "\\`"),
            MIN_DERIVED,
        );
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with every registered form replaced by `***`.
    pub fn mask(&self, text: &str) -> String {
        if self.values.is_empty() {
            return text.to_string();
        }
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        for v in &self.values {
            for (i, _) in text.match_indices(v.as_str()) {
                ranges.push((i, i + v.len()));
            }
        }
        if ranges.is_empty() {
            return text.to_string();
        }
        ranges.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        let mut i = 0;
        while i < ranges.len() {
            let (start, mut end) = ranges[i];
            while i + 1 < ranges.len() && ranges[i + 1].0 <= end {
                end = end.max(ranges[i + 1].1);
                i += 1;
            }
            if start >= at {
                out.push_str(&text[at..start]);
                out.push_str("***");
                at = end;
            } else if end > at {
                at = end;
            }
            i += 1;
        }
        out.push_str(&text[at..]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_is_hidden() {
        let mut m = Masker::new();
        let s = "p@ss w\"ord'$1";
        m.add(s);
        let b64 = STANDARD.encode(s);
        assert_eq!(m.mask(&format!("x {s} y")), "x *** y");
        assert_eq!(m.mask(&b64), "***");
        for prefix in ["a", "ab", "abc", "user:"] {
            let enc = STANDARD.encode(format!("{prefix}{s}\n"));
            assert!(m.mask(&enc).contains("***"), "{prefix}: {enc}");
            let enc_masked = m.mask(&enc);
            assert!(enc_masked.len() < enc.len(), "{enc} {enc_masked}");
        }
        let json = serde_json::to_string(s).unwrap();
        assert_eq!(m.mask(&json), "\"***\"");
        let url = utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
        assert_eq!(m.mask(&url), "***");
        assert_eq!(m.mask("'p@ss w\"ord'\\''$1'"), "'***'");
        let mut m = Masker::new();
        m.add("line one\nline two\n");
        assert_eq!(m.mask("a line two b"), "a *** b");
    }
}
