use proptest::prelude::*;
use serde_json::json;

use super::*;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

fn eval_src(src: &str, this: &Json) -> Result<Value, String> {
    rt().block_on(evaluate(src, vec![("self", from_json(this))]))
}

#[test]
fn integers_stay_int_and_kubernetes_functions_work() {
    let obj = json!({"replicas": 3, "ratio": 0.5, "items": [1, 2, 3], "name": "web-01"});
    for (src, want) in [
        ("self.replicas + 1 == 4", true),
        ("self.ratio < 1.0", true),
        ("self.items.isSorted() && self.items.sum() == 6", true),
        ("self.items.min() == 1 && self.items.max() == 3", true),
        ("self.name.find('[0-9]+') == '01'", true),
        ("self.name.findAll('[a-z]') == ['w', 'e', 'b']", true),
        ("self.name.lowerAscii().startsWith('web')", true),
        ("has(self.missing)", false),
        ("self.items.all(x, x > 0)", true),
        ("quantity('1Gi').isGreaterThan(quantity('1000Mi'))", true),
        ("quantity('500m').compareTo(quantity('0.5')) == 0", true),
        (
            "quantity('2k').asInteger() == 2000 && isQuantity('1Ki') && !isQuantity('1KB')",
            true,
        ),
        ("quantity('1.5').isInteger()", false),
    ] {
        assert_eq!(eval_src(src, &obj), Ok(Value::Bool(want)), "{src}");
    }
    assert_eq!(
        eval_src("self.missing == 1", &obj),
        Err("no such key: missing".into())
    );
}

#[test]
fn compile_refuses_undeclared_variables_and_bad_syntax() {
    let e = run_sync(|| compile("self.x > other", &["self"]).err()).unwrap();
    assert_eq!(
        e.as_deref(),
        Some(
            "compilation failed: ERROR: <input>:1:10: undeclared reference to 'other' (in container '')\n | self.x > other\n | .........^"
        )
    );
    // Comprehension variables are bound, not free.
    assert!(run_sync(|| compile("self.all(x, x > 0)", &["self"]).is_ok()).unwrap());
    let e = run_sync(|| compile("self.x >", &["self"]).err())
        .unwrap()
        .unwrap();
    assert!(
        e.starts_with("compilation failed: ERROR: <input>:1:9: Syntax error"),
        "{e}"
    );
}

#[test]
fn compile_refuses_unknown_functions_even_on_branches_not_taken() {
    // cel-rust alone fails these only when evaluation reaches the call.
    for (src, name) in [
        ("false && nope(self)", "nope"),
        ("self.x > 0 || self.y.notAFunction()", "notAFunction"),
        ("self.all(x, x.sizeOf() > 0)", "sizeOf"),
    ] {
        let e = run_sync(|| compile(src, &["self"]).err()).unwrap();
        let e = e.unwrap_or_else(|| panic!("{src} compiled"));
        assert!(
            e.contains(&format!(
                "undeclared reference to '{name}' (in container '')"
            )),
            "{src}: {e}"
        );
    }
    // What Kubernetes' libraries and cel-rust's standard and strings ones declare.
    for src in [
        "size(self.items) > 0 && self.items.size() > 0",
        "self.name.startsWith('a') && self.name.endsWith('b') && self.name.contains('c')",
        "self.name.matches('^a') && self.name.lowerAscii() == self.name.upperAscii()",
        "self.name.split('-').size() == 2 && self.name.replace('a', 'b') != ''",
        "int(self.n) + 1 == 2 && string(1) == '1' && double(1) == 1.0",
        "has(self.x) && self.items.exists(i, i == 1) && self.items.map(i, i * 2) == [2]",
        "timestamp('2024-01-01T00:00:00Z') < timestamp('2025-01-01T00:00:00Z')",
        "duration('1h') > duration('1m') && self.items.isSorted() && self.items.sum() > 0",
        "quantity('1Gi').isGreaterThan(quantity('1Mi')) && isQuantity('1') && isURL('/x')",
        "self.name.find('a') == 'a' && self.name.findAll('a').size() > 0",
        "type(self) == map && dyn(1) == 1",
    ] {
        let r = run_sync(|| compile(src, &["self"]).err()).unwrap();
        assert_eq!(r, None, "{src}");
    }
}

#[test]
fn hostile_expressions_are_refused_not_fatal() {
    // Each of these overflowed a 2 MiB stack in cel-rust before the limits.
    let deep_parens = format!("{}1{}", "(".repeat(500), ")".repeat(500));
    let long_sum = vec!["1"; 4000].join("+");
    let too_long = vec!["1"; 6000].join("+");
    let nested = format!("{}x{}", "[1].map(x, ".repeat(5), ")".repeat(5));
    assert!(eval_src(&deep_parens, &json!({})).is_err());
    assert_eq!(eval_src(&long_sum, &json!({})), Ok(Value::Int(4000)));
    assert!(
        eval_src(&too_long, &json!({}))
            .unwrap_err()
            .contains("more than the 10000")
    );
    assert!(
        eval_src(&nested, &json!({}))
            .unwrap_err()
            .contains("nest 5 deep")
    );
}

#[test]
fn runaway_evaluation_is_cut_off() {
    // 3 nested comprehensions over 400 elements: 64 million steps.
    let items: Vec<i64> = (0..400).collect();
    let src = "self.all(a, self.all(b, self.all(c, a + b + c >= 0)))";
    let e = eval_src(src, &json!(items)).unwrap_err();
    assert_eq!(e, "operation cancelled: actual cost limit exceeded");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Arbitrary text never panics the compiler or the evaluator.
    #[test]
    fn arbitrary_text_never_panics(src in "\\PC{0,80}") {
        let _ = eval_src(&src, &json!({"a": [1, "x", null], "b": {"c": 1.5}}));
    }

    /// CEL-looking token soup (operators, brackets, macros) never panics.
    #[test]
    fn token_soup_never_panics(tokens in prop::collection::vec(prop::sample::select(vec![
        "self", ".", "a", "b", "c", "(", ")", "[", "]", "{", "}", ":", ",", "+", "-", "*", "/", "%",
        "==", "!=", "<", ">=", "&&", "||", "!", "?", "1", "0", "-9223372036854775808", "2.5",
        "'s'", "b'x'", "null", "true", "has(", "all(x,", "map(x,", "exists_one(x,", "size(",
        "int(", "string(", "x", "in", "matches(", "'[a-'", ".find(", "isSorted()", "sum()",
        "min()", "max()", "lists.range(", "split(", "substring(", "charAt(", "dyn(", "type(",
    ]), 0..40)) {
        let src = tokens.join(" ");
        let _ = eval_src(&src, &json!({"a": [1, 2], "b": "text", "c": {"d": [true]}}));
    }
}

fn schema() -> Json {
    json!({
        "type": "object",
        "properties": {"spec": {
            "type": "object",
            "x-kubernetes-validations": [
                {"rule": "self.min <= self.max", "messageExpression": "'min ' + string(self.min) + ' over max'"},
                {"rule": "self.name == oldSelf.name", "message": "name is immutable", "reason": "FieldValueForbidden", "fieldPath": ".name"},
            ],
            "properties": {
                "min": {"type": "integer"}, "max": {"type": "integer"}, "name": {"type": "string"},
                "ports": {
                    "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                    "items": {"type": "object", "properties": {"name": {"type": "string"}, "port": {"type": "integer"}},
                        "x-kubernetes-validations": [{"rule": "self.port == oldSelf.port", "message": "port is immutable"}]},
                },
                "tags": {"type": "array", "items": {"type": "string", "x-kubernetes-validations": [{"rule": "self.size() < 4"}]}},
            },
        }},
    })
}

fn causes(obj: &Json, old: Option<&Json>) -> Vec<String> {
    rt().block_on(rules::check(&schema(), obj, old))
        .into_iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect()
}

#[test]
fn crd_rules_at_every_level_with_transition_rules() {
    let ok = json!({"spec": {"min": 1, "max": 2, "name": "a", "ports": [{"name": "http", "port": 80}], "tags": ["x"]}});
    assert_eq!(causes(&ok, None), Vec::<String>::new());
    let bad = json!({"spec": {"min": 3, "max": 2, "name": "b", "ports": [{"name": "http", "port": 81}, {"name": "new", "port": 1}], "tags": ["x", "long-tag"]}});
    // Without an old object the transition rules do not run.
    assert_eq!(
        causes(&bad, None),
        [
            r#"spec: Invalid value: "object": min 3 over max"#,
            r#"spec.tags[1]: Invalid value: "string": failed rule: self.size() < 4"#,
        ]
    );
    // On update they run where the old value correlates (ports by name).
    assert_eq!(
        causes(&bad, Some(&ok)),
        [
            r#"spec: Invalid value: "object": min 3 over max"#,
            "spec.name: Forbidden: name is immutable",
            r#"spec.ports[0]: Invalid value: "object": port is immutable"#,
            r#"spec.tags[1]: Invalid value: "string": failed rule: self.size() < 4"#,
        ]
    );
    // Ratcheting: an update that keeps a failing value as it was passes.
    let stored = json!({"spec": {"min": 3, "max": 2, "name": "a"}});
    let touched = json!({"spec": {"min": 3, "max": 2, "name": "a", "tags": ["x"]}});
    assert_eq!(causes(&stored, Some(&stored)), Vec::<String>::new());
    assert_eq!(
        causes(&touched, Some(&stored)),
        [r#"spec: Invalid value: "object": min 3 over max"#]
    );
    // An evaluation error names the rule, as kube-apiserver does.
    let e = causes(&json!({"spec": {"min": 1}}), None);
    assert_eq!(
        e,
        [
            r#"spec: Invalid value: "object": no such key: max evaluating rule: self.min <= self.max"#
        ]
    );
}

#[test]
fn crd_rules_that_do_not_compile_are_refused() {
    let mut s = schema();
    s["properties"]["spec"]["x-kubernetes-validations"][0]["rule"] = json!("self.min <=");
    s["properties"]["spec"]["properties"]["tags"]["items"]["x-kubernetes-validations"][0]["rule"] =
        json!("oldSelf == self");
    let crd = json!({"spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": s}}]}});
    let got: Vec<String> = rules::check_crd(&crd)
        .into_iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect();
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(got[0].starts_with(r#"spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule: Invalid value: apiextensions.ValidationRule{Rule:"self.min <=", Message:"", MessageExpression:"'min ' + string(self.min) + ' over max'", Reason:(*apiextensions.FieldValueErrorReason)(nil), FieldPath:"", OptionalOldSelf:(*bool)(nil)}: compilation failed: ERROR: <input>:1:12: Syntax error"#), "{}", got[0]);
    assert!(
        got[1].contains("properties[tags].items.x-kubernetes-validations[0].rule")
            && got[1]
                .contains("oldSelf cannot be used on the uncorrelatable portion of the schema"),
        "{}",
        got[1]
    );
}

#[test]
fn optional_old_self_needs_a_rule_reading_old_self() {
    let mut s = schema();
    s["properties"]["spec"]["x-kubernetes-validations"][0]["optionalOldSelf"] = json!(true);
    let crd = json!({"spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": s}}]}});
    let got: Vec<String> = rules::check_crd(&crd)
        .into_iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect();
    assert_eq!(
        got,
        [
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].optionalOldSelf: Invalid value: true: may not be set if oldSelf is not used in rule"
        ],
    );
}

#[test]
fn formats_type_values_and_is_url() {
    // Rules from the traefik and Argo CRDs of the chart corpus.
    let s = json!({"type": "object", "properties": {
        "timeout": {"type": "string", "format": "duration",
            "x-kubernetes-validations": [{"rule": "self >= duration('1s') && self <= duration('1h')"}]},
        "since": {"type": "string", "format": "date-time",
            "x-kubernetes-validations": [{"rule": "self > timestamp('2020-01-01T00:00:00Z')"}]},
        "url": {"type": "string", "x-kubernetes-validations": [{"rule": "isURL(self) && self.startsWith('https://')"}]},
    }});
    let check = |v: Json| -> Vec<String> {
        rt().block_on(rules::check(&s, &v, None))
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    };
    assert!(
        check(
            json!({"timeout": "90s", "since": "2024-05-01T10:00:00Z", "url": "https://x.example/a"})
        )
        .is_empty()
    );
    assert_eq!(
        check(json!({"timeout": "2h", "since": "2019-05-01T10:00:00Z", "url": "not a url"})),
        [
            r#"since: Invalid value: "string": failed rule: self > timestamp('2020-01-01T00:00:00Z')"#,
            r#"timeout: Invalid value: "string": failed rule: self >= duration('1s') && self <= duration('1h')"#,
            r#"url: Invalid value: "string": failed rule: isURL(self) && self.startsWith('https://')"#,
        ]
    );
    for (u, ok) in [
        ("https://a.b/c?d#e", true),
        ("/abs/path", true),
        ("mailto:x@y", true),
        ("rel/path", false),
        ("http://a b", false),
        ("", false),
    ] {
        assert_eq!(is_url(u), ok, "{u}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Any object, old or new, checked against a schema full of rules gives
    /// causes, never a panic.
    #[test]
    fn any_object_against_rules_never_panics(
        new in json_value(3),
        old in prop::option::of(json_value(3)),
    ) {
        let obj = json!({"spec": new});
        let old = old.map(|o| json!({"spec": o}));
        let _ = rt().block_on(rules::check(&schema(), &obj, old.as_ref()));
    }
}

fn json_value(depth: u32) -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::from),
        any::<i64>().prop_map(Json::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Json::from),
        "[a-z0-9 ]{0,6}".prop_map(Json::from),
    ];
    leaf.prop_recursive(depth, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Json::from),
            prop::collection::btree_map(
                prop::sample::select(vec!["min", "max", "name", "ports", "tags", "port", "x"]),
                inner,
                0..5,
            )
            .prop_map(|m| Json::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}
