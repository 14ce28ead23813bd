//! Argo's `successCondition` / `failureCondition`: expressions of
//! expr-lang/expr (through the `expr-lang` crate, its maintained Rust port)
//! over `result`, with the functions Argo adds (`asInt`, `asFloat`,
//! `isNaN`, `isInf`, `isNil`, `default`), and how a measurement's phase
//! follows from the two conditions (Argo's `utils/evaluate`).

use ::expr::{Context, Environment, Value};

use super::Phase;

/// The value a provider measured, as the expression sees it.
pub type Measured = Value;

/// A JSON document as `result` (numbers stay integers when they are).
pub fn from_json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(from_json).collect()),
        serde_json::Value::Object(m) => {
            Value::Map(m.iter().map(|(k, v)| (k.clone(), from_json(v))).collect())
        }
    }
}

fn one(name: &str, args: Vec<Value>) -> ::expr::Result<Value> {
    let mut args = args;
    if args.len() != 1 {
        return Err(::expr::Error::ExprError(format!(
            "{name}() takes exactly one argument"
        )));
    }
    Ok(args.pop().unwrap_or(Value::Nil))
}

fn err<T>(msg: String) -> ::expr::Result<T> {
    Err(::expr::Error::ExprError(msg))
}

/// Go's `int64(x)` of a float: truncation, saturating like Rust's `as`.
#[allow(clippy::cast_possible_truncation)]
fn trunc(f: f64) -> i64 {
    f as i64
}

#[allow(clippy::cast_precision_loss)]
fn environment(result: &Value) -> Environment<'static> {
    let mut env = Environment::new();
    env.add_function("asInt", |c| match one("asInt", c.args)? {
        Value::Integer(i) => Ok(Value::Integer(i)),
        Value::Float(f) => Ok(Value::Integer(trunc(f))),
        Value::String(s) => match s.parse::<i64>() {
            Ok(i) => Ok(Value::Integer(i)),
            Err(_) => err(format!("strconv.ParseInt: parsing {s:?}: invalid syntax")),
        },
        other => err(format!("asInt() not supported on {other}")),
    });
    env.add_function("asFloat", |c| match one("asFloat", c.args)? {
        Value::Integer(i) => Ok(Value::Float(i as f64)),
        Value::Float(f) => Ok(Value::Float(f)),
        Value::String(s) => match s.trim().parse::<f64>() {
            Ok(f) => Ok(Value::Float(f)),
            Err(_) => err(format!("strconv.ParseFloat: parsing {s:?}: invalid syntax")),
        },
        other => err(format!("asFloat() not supported on {other}")),
    });
    env.add_function("isNaN", |c| match one("isNaN", c.args)? {
        Value::Float(f) => Ok(Value::Bool(f.is_nan())),
        Value::Integer(_) => Ok(Value::Bool(false)),
        other => err(format!("isNaN() takes a float64, not {other}")),
    });
    env.add_function("isInf", |c| match one("isInf", c.args)? {
        Value::Float(f) => Ok(Value::Bool(f.is_infinite())),
        Value::Integer(_) => Ok(Value::Bool(false)),
        other => err(format!("isInf() takes a float64, not {other}")),
    });
    // As Argo's: both look at the measured result whatever their argument.
    let nil = matches!(result, Value::Nil);
    env.add_function("isNil", move |_| Ok(Value::Bool(nil)));
    let r = result.clone();
    env.add_function("default", move |c| {
        if c.args.len() != 2 {
            return err("default() takes exactly two arguments".into());
        }
        Ok(if nil {
            c.args.into_iter().nth(1).unwrap_or(Value::Nil)
        } else {
            r.clone()
        })
    });
    env
}

/// Evaluates one condition; errors as Argo words them where it can.
pub fn condition(result: &Value, cond: &str) -> Result<bool, String> {
    let env = environment(result);
    let mut ctx = Context::default();
    ctx.insert("result", result.clone());
    let program = ::expr::compile(cond).map_err(|e| e.to_string())?;
    match env.run(&program, &ctx) {
        Ok(Value::Bool(b)) => Ok(b),
        Ok(v) => Err(format!("expected bool, but got {}", type_name(&v))),
        Err(e) => Err(e.to_string()),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Integer(_) => "int",
        Value::Float(_) => "float64",
        Value::String(_) => "string",
        Value::Nil => "nil",
        Value::Array(_) => "[]interface {}",
        Value::Map(_) | Value::KeyedMap(_) => "map[string]interface {}",
        _ => "value",
    }
}

/// The phase of a measurement whose value is `result` (Argo's
/// `EvaluateResult`): with neither condition, Successful; with only one,
/// the other is its negation; failure wins over success; neither true is
/// Inconclusive. An evaluation error is the measurement's Error.
pub fn evaluate(result: &Value, success: &str, failure: &str) -> Result<Phase, String> {
    let eval = |what: &str, cond: &str| {
        condition(result, cond).map_err(|e| {
            let empty = match result {
                Value::Nil => true,
                Value::Array(a) => a.is_empty(),
                _ => false,
            };
            if empty {
                format!("could not evaluate {what} \"{cond}\": metric result is nil or empty: no data returned from the metric provider")
            } else {
                format!("could not evaluate {what} \"{cond}\": {e}")
            }
        })
    };
    let mut ok = !success.is_empty() && eval("successCondition", success)?;
    let mut bad = !failure.is_empty() && eval("failureCondition", failure)?;
    match (success.is_empty(), failure.is_empty()) {
        (true, true) => return Ok(Phase::Successful),
        (false, true) => bad = !ok,
        (true, false) => ok = !bad,
        (false, false) => {}
    }
    Ok(if bad {
        Phase::Failed
    } else if ok {
        Phase::Successful
    } else {
        Phase::Inconclusive
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cond(result: &serde_json::Value, c: &str) -> Result<bool, String> {
        condition(&from_json(result), c)
    }

    /// Argo's evaluate tests, as read in `utils/evaluate/evaluate_test.go`.
    #[test]
    fn argos_cases() {
        let t = json!(true);
        assert_eq!(cond(&t, "result == true"), Ok(true));
        assert_eq!(cond(&t, "result == false"), Ok(false));
        assert_eq!(cond(&t, "1"), Err("expected bool, but got int".to_string()));
        assert!(cond(&t, "invalidVariable").is_err());
        let apdex = json!({"service_apdex": {"label": null, "values": {"values": [2.0, 2.0]}}});
        assert_eq!(
            cond(&apdex, "all(result.service_apdex.values.values, {# > 1})"),
            Ok(true)
        );
        let floats = Value::Array(vec![Value::Float(2.0), Value::Float(2.0)]);
        assert_eq!(condition(&floats, "2 in result"), Ok(true));
        assert_eq!(condition(&Value::Float(5.0), "result > 1"), Ok(true));
        assert!(cond(&json!("1.1"), "asInt(result) == 1.1").is_err());
        for (input, e) in [
            (json!("1"), "asInt(result) == 1"),
            (json!(1), "asInt(result) == 1"),
            (json!(1.123), "asInt(result) == 1"),
            (json!("1.1"), "asFloat(result) == 1.1"),
            (json!("1.1"), "asFloat(result) >= 1.1"),
            (json!("1.1"), "asFloat(result) <= 1.1"),
            (json!(1.1), "asFloat(result) == 1.1"),
            (json!(1), "asFloat(result) == 1"),
            (json!(1), "asFloat(result) >= 1"),
        ] {
            assert_eq!(cond(&input, e), Ok(true), "{input} {e}");
        }
        let e = cond(&json!("NotANum"), "asFloat(result) == 1.1").unwrap_err();
        assert!(e.contains("strconv.ParseFloat"), "{e}");
        // Argo's compiler refuses float == string; expr-lang compares them
        // unequal: the condition is never true either way.
        assert_ne!(cond(&json!("1.1"), "asFloat(result) == \"1.1\""), Ok(true));
    }

    #[test]
    fn argo_functions_and_operators() {
        let v = Value::Array(vec![Value::Float(0.97), Value::Float(0.99)]);
        assert_eq!(condition(&v, "result[0] >= 0.95"), Ok(true));
        assert_eq!(condition(&v, "len(result) > 0 && result[1] < 1"), Ok(true));
        assert_eq!(
            condition(&v, "not (len(result) == 0) and result[0] * 100 > 90"),
            Ok(true)
        );
        assert_eq!(condition(&v, "all(result, {# > 0.98})"), Ok(false));
        assert_eq!(condition(&v, "any(result, {# > 0.98}) or false"), Ok(true));
        let nan = Value::Array(vec![Value::Float(f64::NAN)]);
        assert_eq!(condition(&nan, "isNaN(result[0])"), Ok(true));
        assert_eq!(
            condition(&Value::Float(f64::INFINITY), "isInf(result)"),
            Ok(true)
        );
        assert_eq!(condition(&Value::Nil, "default(result, 5) == 5"), Ok(true));
        assert_eq!(
            condition(&Value::Float(1.0), "default(result, 5) == 1"),
            Ok(true)
        );
        assert_eq!(condition(&Value::Nil, "isNil(result)"), Ok(true));
        let s = from_json(&json!({"status": "ok", "version": "v2"}));
        assert_eq!(
            condition(&s, "result.status == 'ok' && result.version startsWith 'v'"),
            Ok(true)
        );
        assert_eq!(condition(&s, "result.status in ['ok', 'good']"), Ok(true));
        assert_eq!(condition(&s, "result.status contains 'k'"), Ok(true));
    }

    /// Argo's `EvaluateResult` table: which of the two conditions wins.
    #[test]
    fn phase_from_conditions() {
        let r = Value::Bool(true);
        assert_eq!(evaluate(&r, "true", "false"), Ok(Phase::Successful));
        assert_eq!(evaluate(&r, "true", "true"), Ok(Phase::Failed));
        assert_eq!(evaluate(&r, "false", "false"), Ok(Phase::Inconclusive));
        assert_eq!(evaluate(&r, "", "false"), Ok(Phase::Successful));
        assert_eq!(evaluate(&r, "false", ""), Ok(Phase::Failed));
        assert_eq!(evaluate(&r, "", ""), Ok(Phase::Successful));
        let e = evaluate(&r, "a == true", "true").unwrap_err();
        assert!(
            e.starts_with("could not evaluate successCondition \"a == true\""),
            "{e}"
        );
        let e = evaluate(&r, "true", "invalidVar == true").unwrap_err();
        assert!(e.contains("could not evaluate failureCondition"), "{e}");
        let e = evaluate(&Value::Array(vec![]), "result[0] >= 0.95", "").unwrap_err();
        assert!(e.contains("metric result is nil or empty"), "{e}");
    }

    proptest::proptest! {
        /// Conditions come from users: no input panics the controller.
        #[test]
        fn never_panics(cond in "\\PC{0,40}", n in proptest::num::f64::ANY) {
            let _ = condition(&Value::Array(vec![Value::Float(n)]), &cond);
            let _ = evaluate(&Value::Float(n), &cond, &cond);
        }

        #[test]
        fn never_panics_on_expr_like_input(
            cond in "(result|asInt|asFloat|isNaN|default|len|all|\\(|\\)|\\[|\\]|\\{|\\}|#|[0-9.]+|'[a-z]*'|==|>=|<|&&|\\|\\||!|\\+|-|\\*|/|%|,| ){0,16}"
        ) {
            let _ = condition(&Value::Array(vec![Value::Float(1.5), Value::Integer(0)]), &cond);
        }
    }
}
