//! The in-memory time-series store: per series, append-only chunks of at
//! most [`CHUNK_SAMPLES`] samples (a full chunk is frozen and never moves
//! again); an inverted index from `(label, value)` to series ids for `=`
//! matchers; a retention window after which whole chunks are dropped; and a
//! bound on the number of series, past which new series are refused (as
//! Prometheus' `sample_limit`/`--storage.tsdb` limits refuse rather than
//! evict what a query may be reading).

use std::collections::{BTreeSet, HashMap};
use std::sync::RwLock;

use promql_parser::label::Matcher;

use crate::labels::Labels;

/// Samples per chunk (Prometheus' TSDB cuts chunks at 120 samples too).
pub const CHUNK_SAMPLES: usize = 120;

/// Prometheus' staleness marker: a NaN with this exact bit pattern, written
/// when a series disappears from its target, that ends the lookback of
/// instant selectors.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// Why a sample was not stored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AppendError {
    #[error("out of order sample for {series}: {t} is before {last}")]
    OutOfOrder { series: String, t: i64, last: i64 },
    #[error("duplicate sample for timestamp {t} of {series} with a different value")]
    Duplicate { series: String, t: i64 },
    #[error("series limit of {limit} reached: {series} not stored")]
    SeriesLimit { series: String, limit: usize },
}

/// Limits of a [`Store`].
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Samples older than this (ms, relative to the newest `compact` time)
    /// are dropped, a chunk at a time.
    pub retention_ms: i64,
    /// At most this many series.
    pub max_series: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            retention_ms: 15 * 24 * 3600 * 1000,
            max_series: 1_000_000,
        }
    }
}

/// One series' samples in a window, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesData {
    pub labels: Labels,
    pub samples: Vec<(i64, f64)>,
}

#[derive(Debug)]
struct Chunk {
    ts: Vec<i64>,
    vs: Vec<f64>,
}

#[derive(Debug)]
struct Series {
    labels: Labels,
    chunks: Vec<Chunk>,
}

impl Series {
    fn last(&self) -> Option<(i64, f64)> {
        let c = self.chunks.last()?;
        Some((*c.ts.last()?, *c.vs.last()?))
    }
}

#[derive(Debug, Default)]
struct Inner {
    series: HashMap<u32, Series>,
    ids: HashMap<Labels, u32>,
    /// label name -> value -> series ids.
    postings: HashMap<String, HashMap<String, BTreeSet<u32>>>,
    next_id: u32,
    samples: usize,
}

/// A thread-safe in-memory TSDB.
#[derive(Debug, Default)]
pub struct Store {
    inner: RwLock<Inner>,
    opts: Options,
}

impl Store {
    pub fn new(opts: Options) -> Self {
        Store {
            inner: RwLock::default(),
            opts,
        }
    }

    /// Appends one sample. Samples of a series must come in time order; the
    /// same timestamp again is accepted only with the same value (a repeated
    /// scrape of an explicitly timestamped sample).
    pub fn append(&self, labels: &Labels, t: i64, v: f64) -> Result<(), AppendError> {
        let mut inner = self.inner.write().expect("store lock poisoned");
        let id = if let Some(id) = inner.ids.get(labels) {
            *id
        } else {
            {
                if inner.series.len() >= self.opts.max_series {
                    return Err(AppendError::SeriesLimit {
                        series: labels.to_string(),
                        limit: self.opts.max_series,
                    });
                }
                let id = inner.next_id;
                inner.next_id = inner.next_id.wrapping_add(1);
                inner.ids.insert(labels.clone(), id);
                for (k, val) in labels.iter() {
                    inner
                        .postings
                        .entry(k.to_string())
                        .or_default()
                        .entry(val.to_string())
                        .or_default()
                        .insert(id);
                }
                inner.series.insert(
                    id,
                    Series {
                        labels: labels.clone(),
                        chunks: Vec::new(),
                    },
                );
                id
            }
        };
        let s = inner.series.get_mut(&id).expect("indexed series exists");
        if let Some((last, lv)) = s.last() {
            if t < last {
                return Err(AppendError::OutOfOrder {
                    series: labels.to_string(),
                    t,
                    last,
                });
            }
            if t == last {
                return if lv.to_bits() == v.to_bits() {
                    Ok(())
                } else {
                    Err(AppendError::Duplicate {
                        series: labels.to_string(),
                        t,
                    })
                };
            }
        }
        if s.chunks.last().is_none_or(|c| c.ts.len() >= CHUNK_SAMPLES) {
            if let Some(full) = s.chunks.last_mut() {
                full.ts.shrink_to_fit();
                full.vs.shrink_to_fit();
            }
            s.chunks.push(Chunk {
                ts: Vec::with_capacity(CHUNK_SAMPLES),
                vs: Vec::with_capacity(CHUNK_SAMPLES),
            });
        }
        let c = s.chunks.last_mut().expect("a chunk was just ensured");
        c.ts.push(t);
        c.vs.push(v);
        inner.samples += 1;
        Ok(())
    }

    /// Drops chunks wholly older than `now - retention` and series left
    /// without samples.
    pub fn compact(&self, now_ms: i64) {
        let cutoff = now_ms - self.opts.retention_ms;
        let mut inner = self.inner.write().expect("store lock poisoned");
        let mut dropped = 0;
        let mut empty = Vec::new();
        for (id, s) in &mut inner.series {
            let keep_from = s
                .chunks
                .iter()
                .position(|c| c.ts.last().is_some_and(|t| *t >= cutoff))
                .unwrap_or(s.chunks.len());
            dropped += s.chunks[..keep_from]
                .iter()
                .map(|c| c.ts.len())
                .sum::<usize>();
            s.chunks.drain(..keep_from);
            if s.chunks.is_empty() {
                empty.push(*id);
            }
        }
        inner.samples -= dropped;
        for id in empty {
            let Some(s) = inner.series.remove(&id) else {
                continue;
            };
            inner.ids.remove(&s.labels);
            for (k, v) in s.labels.iter() {
                if let Some(vals) = inner.postings.get_mut(k) {
                    if let Some(ids) = vals.get_mut(v) {
                        ids.remove(&id);
                        if ids.is_empty() {
                            vals.remove(v);
                        }
                    }
                    if vals.is_empty() {
                        inner.postings.remove(k);
                    }
                }
            }
        }
    }

    /// Number of series and samples held.
    pub fn stats(&self) -> (usize, usize) {
        let inner = self.inner.read().expect("store lock poisoned");
        (inner.series.len(), inner.samples)
    }

    /// The series matching all `matchers` (and, when `or` is not empty, all
    /// matchers of at least one of its groups) with their samples in
    /// `[mint, maxt]`. Series without samples there are left out.
    pub fn select(
        &self,
        matchers: &[Matcher],
        or: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Vec<SeriesData> {
        let inner = self.inner.read().expect("store lock poisoned");
        let mut out = Vec::new();
        for id in candidates(&inner, matchers, or) {
            let s = &inner.series[&id];
            if !matches(&s.labels, matchers, or) {
                continue;
            }
            let mut samples = Vec::new();
            for c in &s.chunks {
                let (Some(first), Some(last)) = (c.ts.first(), c.ts.last()) else {
                    continue;
                };
                if *last < mint || *first > maxt {
                    continue;
                }
                let lo = c.ts.partition_point(|t| *t < mint);
                let hi = c.ts.partition_point(|t| *t <= maxt);
                samples.extend(
                    c.ts[lo..hi]
                        .iter()
                        .copied()
                        .zip(c.vs[lo..hi].iter().copied()),
                );
            }
            if !samples.is_empty() {
                out.push(SeriesData {
                    labels: s.labels.clone(),
                    samples,
                });
            }
        }
        out
    }

    /// Label sets of the series matching one of `selectors` (all when empty).
    pub fn series(&self, selectors: &[(Vec<Matcher>, Vec<Vec<Matcher>>)]) -> Vec<Labels> {
        let inner = self.inner.read().expect("store lock poisoned");
        let mut out: Vec<Labels> = inner
            .series
            .values()
            .filter(|s| {
                selectors.is_empty() || selectors.iter().any(|(m, or)| matches(&s.labels, m, or))
            })
            .map(|s| s.labels.clone())
            .collect();
        out.sort();
        out
    }

    /// All label names, sorted.
    pub fn label_names(&self) -> Vec<String> {
        let inner = self.inner.read().expect("store lock poisoned");
        let mut v: Vec<String> = inner.postings.keys().cloned().collect();
        v.sort();
        v
    }

    /// All values of label `name`, sorted.
    pub fn label_values(&self, name: &str) -> Vec<String> {
        let inner = self.inner.read().expect("store lock poisoned");
        let mut v: Vec<String> = inner
            .postings
            .get(name)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        v.sort();
        v
    }
}

/// Series ids worth checking: the intersection of the postings of the
/// `=` matchers with a non-empty value (the only ones an index answers
/// exactly), else every series.
fn candidates(inner: &Inner, matchers: &[Matcher], or: &[Vec<Matcher>]) -> Vec<u32> {
    use promql_parser::label::MatchOp;
    let mut set: Option<BTreeSet<u32>> = None;
    if or.is_empty() {
        for m in matchers {
            if m.op == MatchOp::Equal && !m.value.is_empty() {
                let ids = inner
                    .postings
                    .get(&m.name)
                    .and_then(|vals| vals.get(&m.value));
                let Some(ids) = ids else {
                    return Vec::new();
                };
                set = Some(match set {
                    None => ids.clone(),
                    Some(s) => s.intersection(ids).copied().collect(),
                });
            }
        }
    }
    if let Some(s) = set {
        s.into_iter().collect()
    } else {
        let mut all: Vec<u32> = inner.series.keys().copied().collect();
        all.sort_unstable();
        all
    }
}

/// Whether `labels` satisfy the matchers; an absent label has value "".
pub fn matches(labels: &Labels, matchers: &[Matcher], or: &[Vec<Matcher>]) -> bool {
    matchers.iter().all(|m| m.is_match(labels.value(&m.name)))
        && (or.is_empty()
            || or
                .iter()
                .any(|g| g.iter().all(|m| m.is_match(labels.value(&m.name)))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use promql_parser::label::MatchOp;

    fn l(name: &str, job: &str) -> Labels {
        Labels::new([("__name__", name), ("job", job)])
    }

    #[test]
    fn chunks_retention_and_index() {
        let s = Store::new(Options {
            retention_ms: 1000,
            max_series: 2,
        });
        for t in 0..300 {
            s.append(&l("a", "x"), t * 10, t as f64).unwrap();
        }
        s.append(&l("b", "y"), 5, 1.0).unwrap();
        assert_eq!(s.stats(), (2, 301));
        // A third series is refused, the first two keep taking samples.
        assert!(matches!(
            s.append(&l("c", "z"), 5, 1.0),
            Err(AppendError::SeriesLimit { limit: 2, .. })
        ));
        assert!(matches!(
            s.append(&l("a", "x"), 10, 1.0),
            Err(AppendError::OutOfOrder { .. })
        ));
        assert_eq!(s.append(&l("a", "x"), 2990, 299.0), Ok(()));
        assert!(matches!(
            s.append(&l("a", "x"), 2990, 1.0),
            Err(AppendError::Duplicate { .. })
        ));
        let eq = Matcher::new(MatchOp::Equal, "job", "x");
        let got = s.select(std::slice::from_ref(&eq), &[], 100, 130);
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].samples,
            vec![(100, 10.0), (110, 11.0), (120, 12.0), (130, 13.0)]
        );
        // Retention drops whole chunks: the first (0..1190 ms) ends before
        // 2990 - 1000; the second (1200..2390) reaches past it and stays
        // whole, as does the third; series b is gone.
        s.compact(2990);
        assert_eq!(s.stats(), (1, 180));
        assert_eq!(s.select(&[eq], &[], 0, 3000)[0].samples[0], (1200, 120.0));
        assert_eq!(s.label_values("job"), vec!["x"]);
        assert_eq!(s.label_names(), vec!["__name__", "job"]);
    }
}
