//! `strategy.matrix` expansion with GitHub's rules: the cross product of the
//! vectors (first key outermost), then `exclude` (an entry removes every
//! combination it partially matches), then `include` (an entry extends each
//! combination whose original values it does not contradict, may overwrite
//! values an earlier include added, and becomes a combination of its own
//! when it extends none).

use crate::expr::value::{Object, Value};

/// Why a matrix cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatrixError {
    #[error("Matrix vector '{0}' does not contain any values")]
    EmptyVector(String),
    #[error("Unexpected type of value '{0}', expected type: Sequence.")]
    NotSequence(String),
    #[error("Unexpected type of value '{0}', expected type: Mapping.")]
    NotMapping(String),
    #[error("Strategy produced more than {0} jobs")]
    TooMany(usize),
}

/// GitHub's cap on one job's matrix.
pub const MAX_COMBINATIONS: usize = 256;

/// Deep equality of matrix values (objects by content, unlike `==`).
#[allow(clippy::float_cmp)] // matrix values match exactly, as GitHub compares them
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => x == y,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Array { items: x, .. }, Value::Array { items: y, .. }) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => false,
    }
}

/// Expands an evaluated `matrix` mapping (`None`: no matrix, one empty
/// combination). Combinations keep key order: vectors first, then include keys.
pub fn expand(matrix: Option<&Value>) -> Result<Vec<Object>, MatrixError> {
    let Some(m) = matrix else {
        return Ok(vec![Object::new()]);
    };
    let Some(m) = m.as_object() else {
        return Err(MatrixError::NotMapping(m.coerce_string()));
    };
    let mut vectors: Vec<(String, Vec<Value>)> = Vec::new();
    let mut include: Vec<Object> = Vec::new();
    let mut exclude: Vec<Object> = Vec::new();
    for (k, v) in m.iter() {
        let lower = k.to_ascii_lowercase();
        if lower == "include" || lower == "exclude" {
            let items = v
                .as_array()
                .ok_or_else(|| MatrixError::NotSequence(v.coerce_string()))?;
            for i in items {
                let o = i
                    .as_object()
                    .ok_or_else(|| MatrixError::NotMapping(i.coerce_string()))?
                    .clone();
                if lower == "include" {
                    include.push(o);
                } else {
                    exclude.push(o);
                }
            }
            continue;
        }
        let items = v
            .as_array()
            .ok_or_else(|| MatrixError::NotSequence(v.coerce_string()))?;
        if items.is_empty() {
            return Err(MatrixError::EmptyVector(k.clone()));
        }
        vectors.push((k.clone(), items.to_vec()));
    }
    let mut combos: Vec<Object> = if vectors.is_empty() {
        Vec::new()
    } else {
        let mut acc = vec![Object::new()];
        for (k, values) in &vectors {
            let mut next = Vec::with_capacity(acc.len() * values.len());
            for c in &acc {
                for v in values {
                    let mut c = c.clone();
                    c.insert(k.clone(), v.clone());
                    next.push(c);
                }
                if next.len() > MAX_COMBINATIONS * 16 {
                    return Err(MatrixError::TooMany(MAX_COMBINATIONS));
                }
            }
            acc = next;
        }
        acc
    };
    combos.retain(|c| {
        !exclude.iter().any(|ex| {
            ex.iter()
                .all(|(k, v)| c.get(k).is_some_and(|cv| same_or_partial(cv, v)))
        })
    });
    let original: Vec<String> = vectors
        .iter()
        .map(|(k, _)| k.to_ascii_lowercase())
        .collect();
    let base_len = combos.len();
    let mut extra: Vec<Object> = Vec::new();
    for inc in include {
        let mut matched = false;
        for c in combos.iter_mut().take(base_len) {
            let fits = inc.iter().all(|(k, v)| {
                !original.contains(&k.to_ascii_lowercase())
                    || c.get(k).is_some_and(|cv| same(cv, v))
            });
            if fits {
                matched = true;
                for (k, v) in inc.iter() {
                    c.set(k.clone(), v.clone());
                }
            }
        }
        if !matched {
            extra.push(inc);
        }
    }
    combos.extend(extra);
    if combos.len() > MAX_COMBINATIONS {
        return Err(MatrixError::TooMany(MAX_COMBINATIONS));
    }
    if combos.is_empty() {
        combos.push(Object::new());
    }
    Ok(combos)
}

/// An exclude value that is an object matches a combination's object value
/// when every key it names matches (partial match, as for top-level keys).
fn same_or_partial(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (Value::Object(h), Value::Object(w)) => w
            .iter()
            .all(|(k, v)| h.get(k).is_some_and(|hv| same_or_partial(hv, v))),
        _ => same(have, want),
    }
}

/// The display suffix GitHub adds to a matrix job's name: `(a, b)` from the
/// combination's scalar values (objects shown by their values, flattened).
pub fn display_suffix(combo: &Object) -> String {
    fn flat(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => o.values().for_each(|x| flat(x, out)),
            Value::Array { items, .. } => items.iter().for_each(|x| flat(x, out)),
            v => out.push(v.coerce_string()),
        }
    }
    let mut parts = Vec::new();
    for v in combo.values() {
        flat(v, &mut parts);
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::json;

    fn ex(src: &str) -> Vec<String> {
        expand(Some(&json::parse(src).unwrap()))
            .unwrap()
            .into_iter()
            .map(|o| Value::object(o).to_json())
            .collect()
    }

    #[test]
    fn github_docs_examples() {
        // docs.github.com "Expanding or adding matrix configurations".
        let got = ex(r#"{"fruit":["apple","pear"],"animal":["cat","dog"],
            "include":[{"color":"green"},{"color":"pink","animal":"cat"},
            {"fruit":"apple","shape":"circle"},{"fruit":"banana"},
            {"fruit":"banana","animal":"cat"}]}"#);
        assert_eq!(
            got,
            [
                r#"{"fruit":"apple","animal":"cat","color":"pink","shape":"circle"}"#,
                r#"{"fruit":"apple","animal":"dog","color":"green","shape":"circle"}"#,
                r#"{"fruit":"pear","animal":"cat","color":"pink"}"#,
                r#"{"fruit":"pear","animal":"dog","color":"green"}"#,
                r#"{"fruit":"banana"}"#,
                r#"{"fruit":"banana","animal":"cat"}"#,
            ]
        );
        let got = ex(
            r#"{"os":["macos-latest","windows-latest"],"version":[12,14,16],
            "environment":["staging","production"],
            "exclude":[{"os":"macos-latest","version":12,"environment":"production"},
            {"os":"windows-latest","version":16}]}"#,
        );
        assert_eq!(got.len(), 12 - 1 - 2);
        assert!(ex(r#"{"include":[{"a":1},{"b":2}]}"#) == [r#"{"a":1}"#, r#"{"b":2}"#]);
        assert!(matches!(
            expand(Some(&json::parse(r#"{"a":[]}"#).unwrap())),
            Err(MatrixError::EmptyVector(_))
        ));
    }
}
