//! The engine never panics on arbitrary template text or data shapes.

#![allow(clippy::unreadable_literal)]

use keel_gotmpl::{Templates, Value};
use proptest::prelude::*;

fn data() -> Value {
    Value::from_json(
        &serde_json::json!({"a":1,"s":"x","l":[1,"b",null],"m":{"k":{"z":[]}},"n":null,"f":2.5}),
        true,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn arbitrary_text(s in "\\PC{0,60}") {
        let mut t = Templates::new();
        if t.parse("t", &s).is_ok() {
            let _ = t.execute("t", &data());
        }
    }

    #[test]
    fn action_soup(parts in proptest::collection::vec(prop_oneof![
        Just("{{"), Just("}}"), Just("{{-"), Just("-}}"), Just(" "), Just("."), Just(".a"), Just(".l"), Just(".m.k"),
        Just("$"), Just("$x"), Just(":="), Just("="), Just("|"), Just("("), Just(")"), Just("if"), Just("else"),
        Just("end"), Just("range"), Just("with"), Just("define"), Just("template"), Just("block"), Just("\"t\""),
        Just("break"), Just("continue"), Just("nil"), Just("1"), Just("-1.5e3"), Just("'c'"), Just("`r`"),
        Just("printf"), Just("\"%v%d%s\""), Just("index"), Just("slice"), Just("len"), Just("eq"), Just("lt"),
        Just("and"), Just("or"), Just("not"), Just("toYaml"), Just("include"), Just("tpl"), Just("default"),
        Just("dict"), Just("list"), Just("set"), Just("substr"), Just("trunc"), Just("required"), Just("/*"), Just("*/"),
        Just(","), Just("x\n"), Just("0x1F"), Just("1_0"), Just("repeat"), Just("until"), Just("b64dec"),
    ], 0..40)) {
        let s: String = parts.concat();
        let mut t = Templates::new();
        if t.parse("t", &s).is_ok() {
            let _ = t.execute("t", &data());
        }
    }
}

#[test]
fn include_recursion_is_an_error_not_a_crash() {
    // Deep recursion needs a big stack, as Helm's Go goroutines have.
    let h = std::thread::Builder::new()
        .stack_size(512 << 20)
        .spawn(|| {
            let mut t = Templates::new();
            t.parse(
                "t",
                "{{define \"r\"}}{{include \"r\" .}}{{end}}{{include \"r\" .}}",
            )
            .unwrap();
            t.execute("t", &Value::Nil).unwrap_err().to_string()
        })
        .unwrap();
    let msg = h.join().unwrap();
    assert!(
        msg.starts_with("template: t:1:"),
        "{}",
        &msg[..200.min(msg.len())]
    );
    assert!(
        msg.contains(
            "rendering template has a nested reference name: r: unable to execute template"
        ),
        "{}",
        &msg[msg.len().saturating_sub(300)..]
    );
}

#[test]
fn helm_functions() {
    let mut t = Templates::new();
    t.missing_key = keel_gotmpl::MissingKey::Zero;
    t.parse(
        "t",
        "{{define \"x\"}}[{{.}}]{{end}}{{include \"x\" 5 | upper}} {{tpl \"{{.a}}-{{.nope}}\" .}} {{required \"need s\" .s}} {{lookup \"v1\" \"Pod\" \"ns\" \"n\" | len}} {{.big}}",
    )
    .unwrap();
    let d = Value::from_json(
        &serde_json::json!({"a":1,"s":"x","big":12345678901_i64}),
        true,
    );
    assert_eq!(t.execute("t", &d).unwrap(), "[5] 1- x 0 12345678901");
    t.parse("r", "{{required \"value s is required\" .nope}}")
        .unwrap();
    let e = t.execute("r", &d).unwrap_err().to_string();
    assert_eq!(
        e,
        "template: r:1:2: executing \"r\" at <required \"value s is required\" .nope>: error calling required: value s is required"
    );
    t.parse("u", "{{ .Values.x | nope }}").unwrap_err();
    let e = Templates::new()
        .parse("u", "{{ nope }}")
        .unwrap_err()
        .to_string();
    assert_eq!(e, "template: u:1: function \"nope\" not defined");
}

#[test]
fn deep_nesting_does_not_overflow() {
    let depth = 1000;
    let text = format!("{{{{{}1{}}}}}", "(".repeat(depth), ")".repeat(depth));
    let mut t = Templates::new();
    t.parse("t", &text).unwrap();
    assert_eq!(t.execute("t", &Value::Nil).unwrap(), "1");
    let text = format!("{{{{{}}}}}", "(print ".repeat(900) + "2" + &")".repeat(900));
    t.parse("u", &text).unwrap();
    assert_eq!(t.execute("u", &Value::Nil).unwrap(), "2");
    let text = format!("{{{{{}1{}}}}}", "(".repeat(1001), ")".repeat(1001));
    let e = t.parse("v", &text).unwrap_err().to_string();
    assert_eq!(
        e,
        "template: v:1: parenthesized pipelines nested deeper than 1000"
    );
    let n = 5000;
    let text = "{{if 1}}{{range $i := list 1}}".repeat(n) + "x" + &"{{end}}{{end}}".repeat(n);
    t.parse("w", &text).unwrap();
    assert_eq!(t.execute("w", &Value::Nil).unwrap(), "x");
}
