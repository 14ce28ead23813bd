//! The time controllers with schedules read, behind a trait so tests can
//! drive it: [`SystemClock`] in production; [`FileClock`] (chosen by the
//! `KEEL_TEST_CLOCK_FILE` environment variable of `keel server`) reads an
//! RFC 3339 timestamp from a file the test rewrites.

use std::path::PathBuf;
use std::sync::Arc;

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> jiff::Timestamp;

    /// Whether time moves by itself (a fake clock jumps whenever the test
    /// says, so its readers poll it).
    fn is_fake(&self) -> bool {
        false
    }
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::now()
    }
}

/// Time read from a file holding one RFC 3339 timestamp (the system's
/// clock while the file is missing or unreadable).
#[derive(Debug, Clone)]
pub struct FileClock(pub PathBuf);

impl Clock for FileClock {
    fn now(&self) -> jiff::Timestamp {
        std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(jiff::Timestamp::now)
    }

    fn is_fake(&self) -> bool {
        true
    }
}

/// The clock `keel server` uses: a [`FileClock`] when
/// `KEEL_TEST_CLOCK_FILE` names a file (a test hook), else the system's.
pub fn from_env() -> Arc<dyn Clock> {
    match std::env::var_os("KEEL_TEST_CLOCK_FILE") {
        Some(p) if !p.is_empty() => {
            tracing::warn!(file = ?p, "using a test clock for scheduled controllers");
            Arc::new(FileClock(PathBuf::from(p)))
        }
        _ => Arc::new(SystemClock),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_clock_reads_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("now");
        let c = FileClock(f.clone());
        assert!(c.now() > "2020-01-01T00:00:00Z".parse().unwrap());
        std::fs::write(&f, "2030-05-01T10:00:00Z\n").unwrap();
        assert_eq!(c.now(), "2030-05-01T10:00:00Z".parse().unwrap());
        assert!(c.is_fake() && !SystemClock.is_fake());
    }
}
