//! Refusing hostile layers before they are stored.
//!
//! A layer is checked as it streams in (import, load, pull) or as it is
//! written (every [`super::diff_to_layer`], so build outputs too): its
//! entries are replayed on an in-memory tree ([`LayerTree`]) that follows
//! the rules of [`super::apply_layer`] unpacking it into an empty snapshot
//! directory, the way a container will use it. Whatever that unpacking would
//! refuse, the check refuses, naming the entry: names climbing out with `..`,
//! writes through a symlink leading out of the root (absolute, or relative
//! climbing above it: an absolute symlink is fine as a symlink, only writing
//! through it is not), hardlinks to targets outside or not in the layer, and
//! malformed entries (owners, modes or times that do not parse). No file is
//! written and file data is only read past.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read};
use std::sync::mpsc;
use std::thread;

use tar::EntryType;

use super::apply::entry_meta;
use super::compression::{Compression, sniffed};
use super::safepath::{self, ResolveError};
use super::{LayerError, WHITEOUT_OPAQUE, WHITEOUT_PREFIX, entries};
use crate::digest::{Digest, HashingReader};

/// Symlink hops allowed while resolving one name (as [`safepath`] allows).
const MAX_HOPS: usize = 40;

/// What a layer that passed the check is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedLayer {
    /// How the blob is compressed.
    pub compression: Compression,
    /// The digest of the uncompressed tar, for a compressed blob (an
    /// uncompressed blob's `diff_id` is its own digest, which the caller
    /// hashes anyway).
    pub diff_id: Option<Digest>,
    /// Tar entries read.
    pub entries: u64,
}

/// Checks a layer blob (plain, gzip or zstd tar) read from `blob`, to its end.
/// [`LayerError::Read`] means it is not a readable tar (or the reader
/// failed); any other error names the entry that makes the layer hostile.
pub fn check_layer<'a, R: Read + 'a>(blob: R) -> Result<CheckedLayer, LayerError> {
    let blob = io::BufReader::with_capacity(64 * 1024, blob);
    let (compression, stream) = sniffed(blob).map_err(LayerError::Read)?;
    if compression == Compression::None {
        let entries = check_tar(stream)?;
        return Ok(CheckedLayer {
            compression,
            diff_id: None,
            entries,
        });
    }
    let mut hashing = HashingReader::new(stream);
    let entries = check_tar(&mut hashing)?;
    // `check_tar` read the tar to its end; the decompressor may hold more.
    io::copy(&mut hashing, &mut io::sink()).map_err(LayerError::Read)?;
    Ok(CheckedLayer {
        compression,
        diff_id: Some(hashing.finish().0),
        entries,
    })
}

/// Checks an uncompressed layer tar; returns its number of entries.
fn check_tar<R: Read>(tar: R) -> Result<u64, LayerError> {
    let mut tree = LayerTree::default();
    let mut count = 0u64;
    entries::walk(tar, |entry, h| {
        count += 1;
        if h.kind == EntryType::XGlobalHeader {
            return Ok(());
        }
        // Owners, modes and times must parse as unpacking parses them (after
        // the name: a name climbing out is what unpacking reports first).
        if safepath::clean(&h.name).is_some() {
            entry_meta(entry, &h.pax, &h.display_name())?;
        }
        tree.entry(&h.name, h.kind, h.link.as_deref())
    })?;
    Ok(count)
}

/// [`check_layer`] for bytes that arrive in pieces (a registry download):
/// they are handed to a thread that runs the check as they come, so the
/// layer is read once. [`LayerChecker::finish`] gives the verdict.
pub struct LayerChecker {
    tx: Option<mpsc::SyncSender<Vec<u8>>>,
    thread: Option<thread::JoinHandle<Result<CheckedLayer, LayerError>>>,
}

impl Default for LayerChecker {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerChecker {
    pub fn new() -> Self {
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(8);
        let thread = thread::spawn(move || {
            let mut r = ChannelReader {
                rx,
                cur: Vec::new(),
                pos: 0,
            };
            let verdict = check_layer(&mut r);
            // Keep taking bytes whatever the verdict, so the sender never blocks.
            let _ = io::copy(&mut r, &mut io::sink());
            verdict
        });
        LayerChecker {
            tx: Some(tx),
            thread: Some(thread),
        }
    }

    /// Hands the next bytes of the blob to the check.
    pub fn feed(&mut self, bytes: &[u8]) {
        if let Some(tx) = &self.tx
            && tx.send(bytes.to_vec()).is_err()
        {
            // The thread is gone (it panicked): `finish` reports it.
            self.tx = None;
        }
    }

    /// Ends the blob and waits for the verdict.
    pub fn finish(mut self) -> Result<CheckedLayer, LayerError> {
        self.tx = None;
        self.thread
            .take()
            .expect("finish is called once")
            .join()
            .unwrap_or_else(|_| {
                Err(LayerError::Read(io::Error::other(
                    "the layer check thread panicked",
                )))
            })
    }
}

struct ChannelReader {
    rx: mpsc::Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(next) => {
                    self.cur = next;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// What a path of the replayed tree is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir,
    Symlink(Vec<u8>),
    /// A file, device, fifo, whiteout device, or hardlink to one of them.
    Other,
}

/// The paths a layer creates, replayed entry by entry with the rules of
/// [`super::apply_layer`] in [`super::WhiteoutMode::Overlay`] on an empty
/// directory. Keys are root-relative cleaned paths joined by `/` (the root
/// itself, always a directory, is not stored).
#[derive(Debug, Default)]
pub(crate) struct LayerTree {
    nodes: BTreeMap<Vec<u8>, Node>,
}

fn join(parent: &[u8], base: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(parent.len() + 1 + base.len());
    k.extend_from_slice(parent);
    if !parent.is_empty() {
        k.push(b'/');
    }
    k.extend_from_slice(base);
    k
}

impl LayerTree {
    /// Replays one entry (`name` as written in the tar, `link` its symlink
    /// or hardlink target); an error names the entry.
    pub(crate) fn entry(
        &mut self,
        name: &[u8],
        kind: EntryType,
        link: Option<&[u8]>,
    ) -> Result<(), LayerError> {
        let shown = || String::from_utf8_lossy(name).into_owned();
        let comps =
            safepath::clean(name).ok_or_else(|| LayerError::EscapesRoot { entry: shown() })?;
        let comps: Vec<&[u8]> = comps
            .iter()
            .map(|c| std::os::unix::ffi::OsStrExt::as_bytes(c.as_os_str()))
            .collect();
        let Some((base, parents)) = comps.split_last() else {
            if kind != EntryType::Directory {
                return Err(LayerError::RootNotDirectory { entry: shown() });
            }
            return Ok(());
        };
        let parent = self
            .resolve_dir(parents, true)
            .map_err(|e| safepath::parent_error(e, &shown()))?;
        if let Some(victim) = base.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            if *base == WHITEOUT_OPAQUE.as_bytes() || victim.starts_with(WHITEOUT_PREFIX.as_bytes())
            {
                return Ok(());
            }
            if matches!(victim, b"" | b"." | b"..") {
                return Err(LayerError::InvalidWhiteout { entry: shown() });
            }
            let target = join(&parent, victim);
            self.remove(&target);
            self.nodes.insert(target, Node::Other);
            return Ok(());
        }
        let path = join(&parent, base);
        match kind {
            EntryType::Regular
            | EntryType::Continuous
            | EntryType::GNUSparse
            | EntryType::Char
            | EntryType::Block
            | EntryType::Fifo => {
                self.remove(&path);
                self.nodes.insert(path, Node::Other);
            }
            EntryType::Directory => {
                if self.nodes.get(&path) != Some(&Node::Dir) {
                    self.remove(&path);
                    self.nodes.insert(path, Node::Dir);
                }
            }
            EntryType::Symlink => {
                let target = link.ok_or_else(|| LayerError::MissingLinkName { entry: shown() })?;
                self.remove(&path);
                self.nodes.insert(path, Node::Symlink(target.to_vec()));
            }
            EntryType::Link => {
                let target = link.ok_or_else(|| LayerError::MissingLinkName { entry: shown() })?;
                let target_name = String::from_utf8_lossy(target).into_owned();
                let escape = || LayerError::HardlinkEscape {
                    entry: shown(),
                    target: target_name.clone(),
                };
                let tcomps = safepath::clean(target).ok_or_else(escape)?;
                let tcomps: Vec<&[u8]> = tcomps
                    .iter()
                    .map(|c| std::os::unix::ffi::OsStrExt::as_bytes(c.as_os_str()))
                    .collect();
                let Some((tbase, tparents)) = tcomps.split_last() else {
                    return Err(escape());
                };
                let tparent = self
                    .resolve_dir(tparents, false)
                    .map_err(|e| safepath::link_target_error(e, &shown(), &target_name))?;
                let tpath = join(&tparent, tbase);
                // A hardlink to a symlink is that symlink (link(2) does not
                // follow it), and is followed as one by later entries.
                let linked = match self.nodes.get(&tpath) {
                    Some(n @ (Node::Symlink(_) | Node::Other)) => n.clone(),
                    Some(Node::Dir) | None => {
                        return Err(LayerError::HardlinkTargetMissing {
                            entry: shown(),
                            target: target_name,
                        });
                    }
                };
                if tpath != path {
                    // Making room removes a directory at `path` with all
                    // below it, the target too: unpacking's link(2) then
                    // finds nothing.
                    if tpath.len() > path.len()
                        && tpath.starts_with(&path)
                        && tpath[path.len()] == b'/'
                        && self.nodes.get(&path) == Some(&Node::Dir)
                    {
                        return Err(LayerError::Write {
                            entry: shown(),
                            source: rustix::io::Errno::NOENT.into(),
                        });
                    }
                    self.remove(&path);
                    self.nodes.insert(path, linked);
                }
            }
            other => {
                return Err(LayerError::UnsupportedType {
                    entry: shown(),
                    kind: format!("{other:?}"),
                });
            }
        }
        Ok(())
    }

    /// Removes `path` and everything below it.
    fn remove(&mut self, path: &[u8]) {
        if self.nodes.remove(path) != Some(Node::Dir) {
            return;
        }
        let mut lo = path.to_vec();
        lo.push(b'/');
        // '0' follows '/': the range holds exactly the keys below `path`.
        let mut hi = path.to_vec();
        hi.push(b'0');
        let below: Vec<Vec<u8>> = self.nodes.range(lo..hi).map(|(k, _)| k.clone()).collect();
        for k in below {
            self.nodes.remove(&k);
        }
    }

    /// [`safepath::resolve_dir`] on the replayed tree: the directory key the
    /// components lead to, following symlinks only while they stay inside;
    /// with `create`, missing directories are made.
    fn resolve_dir(&mut self, comps: &[&[u8]], create: bool) -> Result<Vec<u8>, ResolveError> {
        // The resolved directory, component by component.
        let mut real: Vec<Vec<u8>> = Vec::new();
        let mut pending: VecDeque<Vec<u8>> = comps.iter().map(|c| c.to_vec()).collect();
        let mut hops = 0usize;
        let mut via: Option<String> = None;
        while let Some(c) = pending.pop_front() {
            match c.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    if real.pop().is_none() {
                        return Err(ResolveError::Escape {
                            link: via.unwrap_or_default(),
                        });
                    }
                    continue;
                }
                _ => {}
            }
            real.push(c);
            let key = real.join(&b'/');
            match self.nodes.get(&key) {
                Some(Node::Dir) => {}
                Some(Node::Symlink(target)) => {
                    hops += 1;
                    if hops > MAX_HOPS {
                        return Err(ResolveError::Loop);
                    }
                    let link = String::from_utf8_lossy(&key).into_owned();
                    real.pop();
                    if target.starts_with(b"/") {
                        return Err(ResolveError::Escape { link });
                    }
                    for t in target.rsplit(|&b| b == b'/') {
                        pending.push_front(t.to_vec());
                    }
                    via = Some(link);
                }
                Some(Node::Other) => {
                    return Err(ResolveError::NotDir {
                        parent: String::from_utf8_lossy(&key).into_owned(),
                    });
                }
                None if create => {
                    self.nodes.insert(key, Node::Dir);
                }
                None => return Err(ResolveError::Missing),
            }
        }
        Ok(real.join(&b'/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry: name, type, link target.
    type E<'a> = (&'a str, EntryType, Option<&'a str>);

    fn tree(entries: &[E<'_>]) -> Result<(), LayerError> {
        let mut t = LayerTree::default();
        for (name, kind, link) in entries {
            t.entry(name.as_bytes(), *kind, link.map(str::as_bytes))?;
        }
        Ok(())
    }

    use EntryType::{Directory as D, Link as H, Regular as F, Symlink as S};

    #[test]
    fn ordinary_layers_pass() {
        tree(&[
            ("etc/", D, None),
            ("etc/passwd", F, None),
            ("bin", S, Some("usr/bin")),
            ("usr/bin/sh", F, None),
            ("bin/ls", F, None),
            ("lib", S, Some("/usr/lib")),
            ("usr/lib/x/../y", F, None),
            ("sh", H, Some("usr/bin/sh")),
            ("hard-via-link", H, Some("bin/sh")),
            ("etc/.wh.gone", F, None),
            ("etc/.wh..wh..opq", F, None),
            ("./", D, None),
            ("/abs", F, None),
            ("up", S, Some("../../..")),
        ])
        .unwrap();
    }

    #[test]
    fn escapes_are_refused_naming_the_entry() {
        let cases: &[(&[E<'_>], &str)] = &[
            (&[("../../tmp/x", F, None)], "climbs out"),
            (
                &[("a", S, Some("/")), ("a/etc/x", F, None)],
                "through symlink \"a\"",
            ),
            (
                &[("a", S, Some("../..")), ("a/etc/x", F, None)],
                "through symlink \"a\"",
            ),
            (
                &[
                    ("d/b", S, Some("..")),
                    ("d/c", S, Some("b/..")),
                    ("d/c/x", F, None),
                ],
                "outside the root",
            ),
            (&[("h", H, Some("../../etc/shadow"))], "outside the root"),
            (
                &[("a", S, Some("/etc")), ("h", H, Some("a/shadow"))],
                "outside the root",
            ),
            (&[("h", H, Some("missing"))], "does not exist in the layer"),
            (&[("l", S, Some("l")), ("l/x", F, None)], "too many levels"),
            (&[("f", F, None), ("f/x", F, None)], "is not a directory"),
            (&[(".wh..", F, None)], "not a valid whiteout"),
            (&[("/", F, None)], "replaces the root"),
        ];
        for (entries, want) in cases {
            let err = tree(entries).expect_err(&format!("{entries:?} accepted"));
            let last = entries.last().unwrap().0;
            let msg = err.to_string();
            assert!(msg.contains(want), "{entries:?}: {msg}");
            assert!(
                msg.contains(last),
                "{entries:?}: {msg} does not name {last}"
            );
        }
    }

    #[test]
    fn a_later_entry_replaces_a_symlink_or_a_directory() {
        // The symlink is replaced by a directory: writing below it is fine.
        tree(&[("a", S, Some("/")), ("a/", D, None), ("a/etc/x", F, None)]).unwrap();
        // A directory replaced by a file takes its children with it.
        let err = tree(&[("d/x", F, None), ("d", F, None), ("h", H, Some("d/x"))]).unwrap_err();
        assert!(
            matches!(err, LayerError::HardlinkTargetMissing { .. }),
            "{err}"
        );
        // A hardlink replacing the directory its target is in: the target
        // goes first, so the link has nothing to point at.
        let err = tree(&[("d/x", F, None), ("d", H, Some("d/x"))]).unwrap_err();
        assert!(matches!(err, LayerError::Write { .. }), "{err}");
        // A hardlink to a symlink is a symlink: here one pointing at itself.
        let err = tree(&[
            ("d/l", S, Some("l")),
            ("l", H, Some("d/l")),
            ("l/x", F, None),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("too many levels"), "{err}");
        // A whiteout removes what it hides.
        let err = tree(&[
            ("d/x/y", F, None),
            ("d/.wh.x", F, None),
            ("h", H, Some("d/x/y")),
        ])
        .unwrap_err();
        assert!(
            matches!(err, LayerError::HardlinkTargetMissing { .. }),
            "{err}"
        );
    }

    #[test]
    fn checker_thread_reads_pieces() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1);
        h.set_cksum();
        b.append_data(&mut h, "ok", &b"abc"[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let mut c = LayerChecker::new();
        for piece in tar.chunks(100) {
            c.feed(piece);
        }
        let got = c.finish().unwrap();
        assert_eq!(got.entries, 1);
        assert_eq!(got.compression, Compression::None);
        let mut c = LayerChecker::new();
        c.feed(b"not a tar at all, and long enough to fill a header block ...");
        c.feed(&[7u8; 1024]);
        assert!(matches!(c.finish(), Err(LayerError::Read(_))));
    }
}
