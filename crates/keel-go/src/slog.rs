//! Go's `log/slog` text handler, as Helm 4 configures it (no time key):
//! `level=WARN msg="upgrade failed" name=x error="…"`.

use crate::strconv::{is_print, quote};

/// slog's `needsQuoting`: empty, or an ASCII byte JSON would escape (`"`,
/// controls; the backslash excepted), a space or `=`, or a rune that is not
/// printable (U+FFFD, what Go decodes bad UTF-8 to, included).
pub fn needs_quoting(s: &str) -> bool {
    s.is_empty()
        || s.chars().any(|c| {
            if c.is_ascii() {
                c != '\\' && (c == ' ' || c == '=' || c == '"' || c < ' ')
            } else {
                c == '\u{fffd}' || c.is_whitespace() || !is_print(c)
            }
        })
}

/// A key or value as the text handler writes it: as is, or `strconv.Quote`d.
pub fn text(s: &str) -> String {
    if needs_quoting(s) {
        quote(s)
    } else {
        s.to_string()
    }
}

/// One record: `level=LEVEL msg=MSG` then each `key=value`, no newline.
pub fn text_line(level: &str, msg: &str, attrs: &[(&str, &str)]) -> String {
    let mut out = format!("level={level} msg={}", text(msg));
    for (k, v) in attrs {
        out.push(' ');
        out.push_str(&text(k));
        out.push('=');
        out.push_str(&text(v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_quoted_as_go_quotes_them() {
        // slog's rules; Go 1.19 here has no slog to compare with, so
        // chart_releases.rs checks whole lines against Helm 4.1.4's own
        assert_eq!(
            text_line(
                "WARN",
                "upgrade failed",
                &[("name", "r2"), ("error", "a \"b\" && c")]
            ),
            r#"level=WARN msg="upgrade failed" name=r2 error="a \"b\" && c""#
        );
        assert_eq!(text(""), r#""""#);
        assert_eq!(text(r"a\b"), r"a\b");
        assert_eq!(text("a=b"), r#""a=b""#);
        assert_eq!(text("a\tb"), r#""a\tb""#);
        assert_eq!(text("\u{7f}"), "\u{7f}");
        assert_eq!(text("日本"), "日本");
        assert_eq!(text("\u{a0}"), r#""\u00a0""#);
        assert_eq!(text("x\u{fffd}"), "\"x\u{fffd}\"");
        assert_eq!(
            text_line(
                "ERROR",
                "release name check failed",
                &[("error", r"^[a-z](\.x)$")]
            ),
            r#"level=ERROR msg="release name check failed" error=^[a-z](\.x)$"#
        );
    }
}
