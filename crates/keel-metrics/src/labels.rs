//! Label sets: sorted by name, no empty values (Prometheus treats an empty
//! value as an absent label), shared cheaply between the store and queries.

use std::sync::Arc;

/// The label holding the metric name.
pub const NAME: &str = "__name__";

/// A series' identity: its labels, sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[must_use]
pub struct Labels(Arc<Vec<(String, String)>>);

impl Labels {
    /// Builds a set from pairs in any order; later duplicates win, empty
    /// values are dropped.
    pub fn new<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        let mut v: Vec<(String, String)> = Vec::new();
        for (k, val) in pairs {
            let (k, val) = (k.into(), val.into());
            v.retain(|(n, _)| *n != k);
            if !val.is_empty() {
                v.push((k, val));
            }
        }
        v.sort();
        Labels(Arc::new(v))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }

    /// The value of `name`, "" when absent (what matchers compare with).
    pub fn value(&self, name: &str) -> &str {
        self.get(name).unwrap_or("")
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Only the labels `keep` says yes to.
    pub fn filter(&self, keep: impl Fn(&str) -> bool) -> Labels {
        if self.0.iter().all(|(k, _)| keep(k)) {
            return self.clone();
        }
        Labels(Arc::new(
            self.0.iter().filter(|(k, _)| keep(k)).cloned().collect(),
        ))
    }

    pub fn without_name(&self) -> Labels {
        self.filter(|k| k != NAME)
    }

    /// This set with `name` set to `value` (removed when `value` is "").
    pub fn with(&self, name: &str, value: &str) -> Labels {
        let mut v = (*self.0).clone();
        v.retain(|(n, _)| n != name);
        if !value.is_empty() {
            v.push((name.to_string(), value.to_string()));
            v.sort();
        }
        Labels(Arc::new(v))
    }

    /// Approximate heap bytes, for the store's memory bound.
    pub fn bytes(&self) -> usize {
        self.0
            .iter()
            .map(|(k, v)| k.len() + v.len() + 48)
            .sum::<usize>()
            + 32
    }
}

impl std::fmt::Display for Labels {
    /// `name{a="b", c="d"}` as Prometheus prints series in errors.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(n) = self.get(NAME) {
            f.write_str(n)?;
        }
        f.write_str("{")?;
        let mut first = true;
        for (k, v) in self.iter().filter(|(k, _)| *k != NAME) {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{k}={v:?}")?;
        }
        f.write_str("}")
    }
}
