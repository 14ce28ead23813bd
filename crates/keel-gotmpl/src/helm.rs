//! Helm's additions to the function map: `toYaml`, `fromYaml`, `toJson`,
//! `fromJson`, `toToml`, `include`, `tpl`, `required`, `lookup`, …

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use crate::exec::State;
use crate::funcs::{FuncDef, Imp, Ty, def};
use crate::goyaml::yaml_to_value;
use crate::value::Value;
use crate::{MissingKey, yaml};

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn err_map(e: String) -> Value {
    let mut m = BTreeMap::new();
    m.insert("Error".to_string(), Value::string(e));
    Value::map(m)
}

/// A minimal TOML encoder in `BurntSushi`'s layout (tables after plain keys).
fn to_toml(v: &Value) -> String {
    fn scalar(v: &Value) -> Option<String> {
        Some(match v {
            Value::Bool(b) => b.to_string(),
            Value::Int(i) | Value::Int64(i) => i.to_string(),
            Value::Float(f) => {
                let s = crate::gofmt::format_float(*f, 'f', None);
                if s.contains('.') { s } else { format!("{s}.0") }
            }
            Value::Str(x) => crate::gofmt::quote(x),
            Value::List(l) => {
                let items: Option<Vec<String>> = l.iter().map(scalar).collect();
                format!("[{}]", items?.join(", "))
            }
            _ => return None,
        })
    }
    fn table(out: &mut String, prefix: &str, m: &BTreeMap<String, Value>) {
        for (k, v) in m {
            if let Some(x) = scalar(v) {
                let _ = writeln!(out, "{k} = {x}");
            }
        }
        for (k, v) in m {
            if let Value::Map(sub) = v {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                let _ = write!(out, "\n[{name}]\n");
                table(out, &name, &sub.borrow());
            }
        }
    }
    let mut out = String::new();
    if let Value::Map(m) = v {
        table(&mut out, "", &m.borrow());
    }
    out
}

fn wrap(st: &State<'_>, msg: &str) -> String {
    if st.set.helm_error_markers {
        format!("{}{msg}{}", crate::ERR_START, crate::ERR_END)
    } else {
        msg.to_string()
    }
}

/// A line of Go's slog text handler: `level=L msg=M message=V`.
fn slog_line(level: &str, msg: &str, message: &str) -> String {
    keel_go::slog::text_line(level, msg, &[("message", message)])
}

fn required(st: &mut State<'_>, a: &[Value]) -> Result<Value, String> {
    if st.set.lint_mode {
        let what = match &a[1] {
            Value::Nil | Value::Invalid => "missing required value",
            Value::Str(x) if x.is_empty() => "missing required values",
            v => return Ok(v.clone()),
        };
        st.set
            .lint_log
            .borrow_mut()
            .push(slog_line("WARN", what, s(&a[0])));
        return Ok(Value::string(String::new()));
    }
    match &a[1] {
        Value::Nil | Value::Invalid => Err(wrap(st, s(&a[0]))),
        Value::Str(x) if x.is_empty() => Err(wrap(st, s(&a[0]))),
        v => Ok(v.clone()),
    }
}

fn fail(st: &mut State<'_>, a: &[Value]) -> Result<Value, String> {
    if st.set.lint_mode {
        st.set
            .lint_log
            .borrow_mut()
            .push(slog_line("INFO", "funcMap fail", s(&a[0])));
        return Ok(Value::string(String::new()));
    }
    Err(wrap(st, s(&a[0])))
}

fn include(st: &mut State<'_>, a: &[Value]) -> Result<Value, String> {
    st.include(s(&a[0]), a[1].clone()).map(Value::string)
}

fn tpl(st: &mut State<'_>, a: &[Value]) -> Result<Value, String> {
    let text = s(&a[0]).to_string();
    let mut set = st.set.clone();
    // Helm re-injects the missingkey option into the clone (golang/go#43022).
    if set.missing_key == MissingKey::Invalid {
        set.missing_key = MissingKey::Zero;
    }
    let root = set.root_name.clone();
    set.parse(&root, &text)
        .map_err(|e| format!("cannot parse template {}: {e}", crate::gofmt::quote(&text)))?;
    let included = st.included.clone();
    let out = stacker::maybe_grow(256 * 1024, 8 * 1024 * 1024, || {
        set.execute_with(&root, a[1].clone(), included)
    })
    .map_err(|e| {
        format!(
            "error during tpl function execution for {}: {e}",
            crate::gofmt::quote(&text)
        )
    })?;
    Ok(Value::string(out.replace("<no value>", "")))
}

pub(crate) fn register(m: &mut HashMap<&'static str, FuncDef>) {
    use Ty::{Any, Str};
    m.insert(
        "toYaml",
        def(&[Any], None, |a| {
            Ok(Value::string(
                yaml::marshal(&a[0]).trim_end_matches('\n').to_string(),
            ))
        }),
    );
    m.insert("fromYaml", def(&[Str], None, |a| {
        Ok(match yaml_to_value(s(&a[0])) {
            Ok(v @ Value::Map(_)) => v,
            Ok(Value::Nil) => Value::map(BTreeMap::new()),
            Ok(v) => err_map(format!(
                "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
                json_kind(&v)
            )),
            Err(e) => err_map(e),
        })
    }));
    m.insert("fromYamlArray", def(&[Str], None, |a| {
        Ok(match yaml_to_value(s(&a[0])) {
            Ok(v @ Value::List(_)) => v,
            Ok(Value::Nil) => Value::list(Vec::new()),
            Ok(v) => Value::list(vec![Value::string(format!(
                "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal {} into Go value of type []interface {{}}",
                json_kind(&v)
            ))]),
            Err(e) => Value::list(vec![Value::string(e)]),
        })
    }));
    m.insert(
        "toJson",
        def(&[Any], None, |a| {
            Ok(Value::string(
                yaml::to_json(&a[0], None, false).unwrap_or_default(),
            ))
        }),
    );
    m.insert(
        "mustToJson",
        def(&[Any], None, |a| {
            yaml::to_json(&a[0], None, false)
                .map(Value::string)
                .ok_or_else(|| "json: unsupported value".to_string())
        }),
    );
    m.insert(
        "toPrettyJson",
        def(&[Any], None, |a| {
            Ok(Value::string(
                yaml::to_json(&a[0], Some("  "), false).unwrap_or_default(),
            ))
        }),
    );
    m.insert(
        "mustToPrettyJson",
        def(&[Any], None, |a| {
            yaml::to_json(&a[0], Some("  "), false)
                .map(Value::string)
                .ok_or_else(|| "json: unsupported value".to_string())
        }),
    );
    m.insert(
        "toRawJson",
        def(&[Any], None, |a| {
            Ok(Value::string(
                yaml::to_json(&a[0], None, true).unwrap_or_default(),
            ))
        }),
    );
    m.insert(
        "mustToRawJson",
        def(&[Any], None, |a| {
            yaml::to_json(&a[0], None, true)
                .map(Value::string)
                .ok_or_else(|| "json: unsupported value".to_string())
        }),
    );
    m.insert(
        "fromJson",
        def(&[Str], None, |a| {
            Ok(match serde_json::from_str::<serde_json::Value>(s(&a[0])) {
                Ok(v @ serde_json::Value::Object(_)) => Value::from_json(&v, false),
                Ok(serde_json::Value::Null) => Value::map(BTreeMap::new()),
                Ok(v) => err_map(format!(
                    "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
                    json_kind(&Value::from_json(&v, false))
                )),
                Err(e) => err_map(json_err(&e)),
            })
        }),
    );
    m.insert(
        "fromJsonArray",
        def(&[Str], None, |a| {
            Ok(match serde_json::from_str::<serde_json::Value>(s(&a[0])) {
                Ok(v @ serde_json::Value::Array(_)) => Value::from_json(&v, false),
                Ok(serde_json::Value::Null) => Value::list(Vec::new()),
                Ok(v) => Value::list(vec![Value::string(format!(
                    "json: cannot unmarshal {} into Go value of type []interface {{}}",
                    json_kind(&Value::from_json(&v, false))
                ))]),
                Err(e) => Value::list(vec![Value::string(json_err(&e))]),
            })
        }),
    );
    m.insert(
        "mustFromJson",
        def(&[Str], None, |a| {
            serde_json::from_str::<serde_json::Value>(s(&a[0]))
                .map(|v| Value::from_json(&v, false))
                .map_err(|e| json_err(&e))
        }),
    );
    m.insert(
        "toToml",
        def(&[Any], None, |a| Ok(Value::string(to_toml(&a[0])))),
    );
    m.insert(
        "required",
        FuncDef {
            params: vec![Str, Any],
            variadic: None,
            imp: Imp::State(required),
        },
    );
    m.insert(
        "fail",
        FuncDef {
            params: vec![Str],
            variadic: None,
            imp: Imp::State(fail),
        },
    );
    m.insert(
        "lookup",
        def(&[Str, Str, Str, Str], None, |_| {
            Ok(Value::map(BTreeMap::new()))
        }),
    );
    m.insert(
        "include",
        FuncDef {
            params: vec![Str, Any],
            variadic: None,
            imp: Imp::State(include),
        },
    );
    m.insert(
        "tpl",
        FuncDef {
            params: vec![Str, Any],
            variadic: None,
            imp: Imp::State(tpl),
        },
    );
    // Helm removes these from sprig's map: templates must not read the environment.
    m.remove("env");
    m.remove("expandenv");
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "bool",
        Value::Int(_) | Value::Int64(_) | Value::Float(_) => "number",
        Value::Str(_) => "string",
        Value::List(_) => "array",
        Value::Map(_) => "object",
        _ => "null",
    }
}

fn json_err(e: &serde_json::Error) -> String {
    if e.is_eof() {
        return "unexpected end of JSON input".into();
    }
    format!(
        "invalid character at line {} column {}",
        e.line(),
        e.column()
    )
}
