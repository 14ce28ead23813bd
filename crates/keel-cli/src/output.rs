//! Terminal output helpers: Docker-style tables, sizes, relative times, and
//! `-o json|yaml` rendering.

use std::io::IsTerminal;

use clap::ValueEnum;
use serde::Serialize;

/// How a command prints objects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Json,
    Yaml,
}

/// Prints a serializable value as JSON or YAML.
pub fn print_structured<T: Serialize>(v: &T, f: Format) -> anyhow::Result<()> {
    match f {
        Format::Json | Format::Table => println!("{}", serde_json::to_string_pretty(v)?),
        Format::Yaml => print!("{}", serde_yaml_ng::to_string(v)?),
    }
    Ok(())
}

/// Renders rows as `docker`'s tabwriter does: columns padded to the widest cell plus three spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let n = cells.len();
        for (i, c) in cells.into_iter().enumerate() {
            out.push_str(c);
            if i + 1 < n {
                out.push_str(&" ".repeat(widths[i] - c.chars().count() + 3));
            }
        }
        out.push('\n');
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
    out
}

/// Decimal sizes with three significant digits, as `docker images` prints
/// them (`4.26MB`): go-units' `HumanSizeWithPrecision(size, 3)`.
#[allow(clippy::cast_precision_loss)] // for display only: three digits are shown
pub fn human_size(bytes: u64) -> String {
    keel_go::units::human_size_with_precision(bytes as f64, 3)
}

/// Docker's `HumanDuration` of whole seconds, used as "… ago".
pub fn human_duration(secs: i64) -> String {
    keel_go::units::human_duration(secs.saturating_mul(1_000_000_000))
}

/// "2 weeks ago" for an RFC 3339 timestamp; "N/A" when unknown.
pub fn ago(rfc3339: Option<&str>) -> String {
    rfc3339
        .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
        .map_or_else(
            || "N/A".to_string(),
            |t| {
                let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds();
                format!("{} ago", human_duration(secs))
            },
        )
}

/// Whether stderr is a terminal (progress bars) and colour is allowed.
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(4_261_234), "4.26MB");
        assert_eq!(human_size(1_000), "1kB");
        assert_eq!(human_size(12_345_678), "12.3MB");
        assert_eq!(human_size(523_000_000), "523MB");
    }

    /// Regression: Go's `%.3g` rounds 999.5 up to `1e+03`, and docker prints
    /// `1e+03kB` for sizes from 999,500 to 999,999 bytes; keel printed `1000kB`.
    #[test]
    fn sizes_round_like_go() {
        assert_eq!(human_size(999_999), "1e+03kB");
        assert_eq!(human_size(999_499), "999kB");
    }

    #[test]
    fn durations_like_docker() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(30), "30 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(3600 * 3), "3 hours");
        assert_eq!(human_duration(3600 * 24 * 15), "2 weeks");
    }

    /// Regression: go-units rounds hours to the nearest one (`Up 2 hours`
    /// after 90 minutes); keel truncated them (`About an hour`).
    #[test]
    fn hours_round_like_docker() {
        assert_eq!(human_duration(90 * 60), "2 hours");
        assert_eq!(human_duration(89 * 60), "About an hour");
        assert_eq!(human_duration(47 * 3600 + 1800), "2 days");
    }

    #[test]
    fn table_pads_three_spaces() {
        let t = table(&["A", "BB"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A     BB\nxyz   1\n");
    }
}
