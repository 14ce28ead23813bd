//! Container logs in Docker's json-file format: one JSON object per line,
//! `{"log":"...","stream":"stdout","time":"RFC3339Nano"}`. As docker's
//! json-file driver: kept whole by default; with `max-size` rotated when the
//! file passes it, `max-file` files kept (`<name>.1` the newest old one).

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Result, write_err};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub log: String,
    pub stream: String,
    pub time: DateTime<Utc>,
}

/// Appends entries, splitting input into lines, rotating at `max_size`.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: Option<u64>,
    /// Files kept, the current one included (at least 1).
    max_file: u32,
    /// Partial line per stream (0 stdout, 1 stderr), flushed at newline or EOF.
    partial: [Vec<u8>; 2],
}

impl LogWriter {
    pub fn open(path: &Path, max_size: Option<u64>, max_file: u32) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(write_err(path))?;
        let size = file.metadata().map_or(0, |m| m.len());
        Ok(LogWriter {
            path: path.to_path_buf(),
            file,
            size,
            max_size,
            max_file: max_file.max(1),
            partial: [Vec::new(), Vec::new()],
        })
    }

    /// Feeds raw output of `stream` (0 stdout, 1 stderr).
    pub fn write(&mut self, stream: usize, data: &[u8]) -> Result<()> {
        self.partial[stream].extend_from_slice(data);
        while let Some(pos) = self.partial[stream].iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial[stream].drain(..=pos).collect();
            self.entry(stream, &line)?;
        }
        // Very long lines are split like Docker does (16 KiB).
        while self.partial[stream].len() >= 16 * 1024 {
            let chunk: Vec<u8> = self.partial[stream].drain(..16 * 1024).collect();
            self.entry(stream, &chunk)?;
        }
        Ok(())
    }

    /// Writes out what is left of unterminated lines.
    pub fn flush(&mut self) -> Result<()> {
        for s in 0..2 {
            if !self.partial[s].is_empty() {
                let rest = std::mem::take(&mut self.partial[s]);
                self.entry(s, &rest)?;
            }
        }
        Ok(())
    }

    fn entry(&mut self, stream: usize, line: &[u8]) -> Result<()> {
        let e = serde_json::json!({
            "log": String::from_utf8_lossy(line),
            "stream": if stream == 0 { "stdout" } else { "stderr" },
            "time": Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true),
        });
        let mut bytes = serde_json::to_vec(&e).expect("log entry serializes");
        bytes.push(b'\n');
        if self
            .max_size
            .is_some_and(|max| self.size > 0 && self.size + bytes.len() as u64 > max)
        {
            self.rotate()?;
        }
        self.file.write_all(&bytes).map_err(write_err(&self.path))?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> Result<()> {
        // `.N-1` → `.N`, …, current → `.1`; with one file the current one
        // starts over.
        for n in (1..self.max_file).rev() {
            let from = if n == 1 {
                self.path.clone()
            } else {
                rotated(&self.path, n - 1)
            };
            if from.exists() {
                let to = rotated(&self.path, n);
                fs::rename(&from, &to).map_err(write_err(&to))?;
            }
        }
        self.file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&self.path)
            .map_err(write_err(&self.path))?;
        self.size = 0;
        Ok(())
    }
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Parses one line; malformed lines (a torn write) are skipped.
pub fn parse_line(line: &str) -> Option<Entry> {
    serde_json::from_str(line).ok()
}

/// Every entry, oldest first, including the rotated files.
pub fn read_all(path: &Path) -> Vec<Entry> {
    let mut out = Vec::new();
    // docker's max-file is small; a bound keeps a scan finite.
    let old = (1..=u32::from(u16::MAX))
        .take_while(|n| rotated(path, *n).exists())
        .last()
        .unwrap_or(0);
    let files = (1..=old)
        .rev()
        .map(|n| rotated(path, n))
        .chain(std::iter::once(path.to_path_buf()));
    for p in files {
        if let Ok(f) = File::open(&p) {
            for line in BufReader::new(f).lines().map_while(std::result::Result::ok) {
                if let Some(e) = parse_line(&line) {
                    out.push(e);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_streams_and_rotation() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c-json.log");
        let mut w = LogWriter::open(&p, Some(300), 2).unwrap();
        w.write(0, b"hello\nwor").unwrap();
        w.write(1, b"oops\n").unwrap();
        w.write(0, b"ld\n").unwrap();
        w.write(0, b"tail").unwrap();
        w.flush().unwrap();
        let all = read_all(&p);
        let logs: Vec<(&str, &str)> = all
            .iter()
            .map(|e| (e.log.as_str(), e.stream.as_str()))
            .collect();
        assert_eq!(
            logs,
            vec![
                ("hello\n", "stdout"),
                ("oops\n", "stderr"),
                ("world\n", "stdout"),
                ("tail", "stdout")
            ]
        );
        // Past the cap, the file rotates and both halves are read back in order.
        for i in 0..20 {
            w.write(0, format!("line {i}\n").as_bytes()).unwrap();
        }
        assert!(rotated(&p, 1).exists());
        assert!(!rotated(&p, 2).exists());
        assert!(fs::metadata(&p).unwrap().len() <= 300);
        let all = read_all(&p);
        assert_eq!(all.last().unwrap().log, "line 19\n");
    }

    /// Issue 15.11: logs were capped at 10 MiB plus one old file whatever
    /// the user asked; docker's json-file keeps everything unless max-size.
    #[test]
    fn unbounded_by_default_and_max_file_kept() {
        let dir = tempfile::tempdir().unwrap();
        let all_log = dir.path().join("all.log");
        let mut w = LogWriter::open(&all_log, None, 1).unwrap();
        for i in 0..2000 {
            w.write(0, format!("line {i}\n").as_bytes()).unwrap();
        }
        assert!(!rotated(&all_log, 1).exists());
        assert_eq!(read_all(&all_log).len(), 2000);
        let q = dir.path().join("three.log");
        let mut w = LogWriter::open(&q, Some(200), 3).unwrap();
        for i in 0..100 {
            w.write(0, format!("line {i}\n").as_bytes()).unwrap();
        }
        assert!(rotated(&q, 2).exists() && !rotated(&q, 3).exists());
        let all = read_all(&q);
        // Oldest first, contiguous, ending with the newest line.
        let n: Vec<usize> = all
            .iter()
            .map(|e| e.log.trim().trim_start_matches("line ").parse().unwrap())
            .collect();
        assert!(n.windows(2).all(|w| w[1] == w[0] + 1), "{n:?}");
        assert_eq!(*n.last().unwrap(), 99);
        // One file: the log starts over at the cap.
        let r = dir.path().join("one.log");
        let mut w = LogWriter::open(&r, Some(200), 1).unwrap();
        for i in 0..100 {
            w.write(0, format!("line {i}\n").as_bytes()).unwrap();
        }
        assert!(!rotated(&r, 1).exists());
        assert!(fs::metadata(&r).unwrap().len() <= 200);
    }
}
