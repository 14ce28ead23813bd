//! The exposition parser never panics, whatever a target sends, and reads
//! back what a well-formed body says.

// Values are compared exactly where the rule gives an exact result.
#![allow(clippy::float_cmp, clippy::doc_markdown, clippy::cast_precision_loss)]

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn never_panics_on_bytes(body in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = keel_metrics::exposition::parse(&body);
    }

    #[test]
    fn never_panics_on_near_valid_text(body in "[a-z_{}=\",#\\\\ \t\n\r.0-9eE+-]{0,200}") {
        let _ = keel_metrics::exposition::parse(body.as_bytes());
    }

    #[test]
    fn round_trips(name in "[a-zA-Z_:][a-zA-Z0-9_:]{0,10}", value in "[ -~]{0,12}", v in any::<f64>(), ts in any::<i64>()) {
        let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
        let shown = if v.is_nan() { "NaN".to_string() } else if v.is_infinite() { if v > 0.0 { "+Inf".into() } else { "-Inf".into() } } else { format!("{v:e}") };
        let body = format!("# TYPE {name} gauge\n{name}{{l=\"{escaped}\"}} {shown} {ts}\n");
        let s = keel_metrics::exposition::parse(body.as_bytes()).unwrap();
        prop_assert_eq!(s.len(), 1);
        prop_assert_eq!(s[0].labels.value("l"), value.as_str());
        prop_assert_eq!(s[0].labels.value("__name__"), name.as_str());
        prop_assert!(s[0].value.to_bits() == v.to_bits() || (v.is_nan() && s[0].value.is_nan()));
        prop_assert_eq!(s[0].timestamp, Some(ts));
    }
}
