//! Features newer than the Go 1.19 reference, checked against Go's documented
//! behaviour (text/template docs of Go 1.23) with hand-written expectations.

use keel_gotmpl::{Templates, Value};

fn render(t: &str, data: serde_json::Value) -> String {
    let mut s = Templates::new();
    s.parse("t", t).unwrap();
    s.execute("t", &Value::from_json(&data, true)).unwrap()
}

#[test]
fn else_with_chains() {
    // "{{with pipeline}} T1 {{else with pipeline}} T0 {{end}}": dot is set to the
    // first non-empty pipeline's value.
    let t = "{{with .a}}a={{.}}{{else with .b}}b={{.}}{{else}}none{{end}}";
    assert_eq!(render(t, serde_json::json!({"a": 1, "b": 2})), "a=1");
    assert_eq!(render(t, serde_json::json!({"a": 0, "b": 2})), "b=2");
    assert_eq!(render(t, serde_json::json!({})), "none");
    // variables declared in an else-with are scoped to it
    let t = "{{with .a}}{{else with $x := .b}}{{$x}}{{end}}";
    assert_eq!(render(t, serde_json::json!({"b": "v"})), "v");
}

#[test]
fn else_if_stays_an_if_chain() {
    let t = "{{if .a}}A{{else if .b}}B{{else with .c}}C{{end}}";
    let mut s = Templates::new();
    // `else with` only continues a `with`; after `if` it is an error, as in Go
    let e = s.parse("t", t).unwrap_err().to_string();
    assert_eq!(e, "template: t:1: unexpected <with> in input");
}

#[test]
fn incompatible_comparisons_name_the_types() {
    // Go 1.21+ (Helm 4 is built with Go 1.25); checked against helm 4.1.4 in
    // crates/keel/tests/chart_helm_diff.rs
    let mut s = Templates::new();
    s.parse("t", "{{ eq .a 3 }}").unwrap();
    let data = Value::from_json(&serde_json::json!({"a": 3.0}), false);
    let e = s.execute("t", &data).unwrap_err().to_string();
    assert!(
        e.ends_with("error calling eq: incompatible types for comparison: float64 and int"),
        "{e}"
    );
    s.parse("u", "{{ lt .a 4 }}").unwrap();
    let e = s.execute("u", &data).unwrap_err().to_string();
    assert!(
        e.ends_with("error calling lt: incompatible types for comparison: float64 and int"),
        "{e}"
    );
}
