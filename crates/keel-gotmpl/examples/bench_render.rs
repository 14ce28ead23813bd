//! Renders the JSON-lines cases of tests/goref's input format, each parsed
//! once and executed `repeat` times, and prints the total nanoseconds — the
//! same work tests/goref does, for scripts/bench-chart.sh.

use std::io::BufRead as _;
use std::time::Instant;

use keel_gotmpl::{MissingKey, Templates, Value};

fn main() {
    let mut total: u128 = 0;
    let mut bytes = 0usize;
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("read stdin");
        let c: serde_json::Value = serde_json::from_str(&line).expect("case json");
        let tmpl = c["tmpl"].as_str().unwrap_or("");
        let ints = c["ints"].as_bool().unwrap_or(false);
        let repeat = c["repeat"].as_u64().unwrap_or(1).max(1);
        let data = Value::from_json(&c["data"], ints);
        let start = Instant::now();
        let mut t = Templates::new();
        t.missing_key = MissingKey::Zero;
        t.parse("t", tmpl).expect("parse");
        for _ in 0..repeat {
            bytes += t.execute("t", &data).expect("execute").len();
        }
        total += start.elapsed().as_nanos();
    }
    println!("{total} {bytes}");
}
