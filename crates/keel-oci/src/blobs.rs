//! Content-addressed blob store: `<root>/oci/blobs/sha256/<hex>`.
//!
//! Writes go to a temp file in the same filesystem, are hashed while written,
//! fsynced and renamed into place, so a blob is either absent or complete.
//! Several keel processes may write the same blob at once: the content is the
//! same, so whichever rename lands last wins harmlessly. Reads verify the digest.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use crate::digest::{Digest, HashingWriter, VerifyingReader};
use crate::error::{IoContext, OciError, Result};

/// Blobs on disk.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
    tmp: PathBuf,
}

/// What a write did.
#[derive(Debug, Clone)]
pub struct PutResult {
    pub digest: Digest,
    pub size: u64,
    /// False when the blob was already present (nothing new on disk).
    pub created: bool,
}

const COPY_BUF: usize = 1 << 20;

impl BlobStore {
    /// Opens (creating directories as needed) the blob store under `oci_dir`.
    pub fn open_dir(oci_dir: &Path) -> Result<Self> {
        let dir = oci_dir.join("blobs").join("sha256");
        let tmp = oci_dir.join("tmp");
        fs::create_dir_all(&dir).io("create", &dir)?;
        fs::create_dir_all(&tmp).io("create", &tmp)?;
        Ok(BlobStore { dir, tmp })
    }

    pub fn path(&self, d: &Digest) -> PathBuf {
        self.dir.join(d.hex())
    }

    pub fn has(&self, d: &Digest) -> bool {
        self.path(d).is_file()
    }

    pub fn size(&self, d: &Digest) -> Result<u64> {
        let p = self.path(d);
        match fs::metadata(&p) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(OciError::BlobMissing(d.to_string()))
            }
            Err(e) => Err(e).io("stat", p),
        }
    }

    /// Stores bytes held in memory.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<PutResult> {
        let digest = Digest::of(bytes);
        if self.has(&digest) {
            return Ok(PutResult {
                digest,
                size: bytes.len() as u64,
                created: false,
            });
        }
        self.put_reader(bytes, Some(&digest))
    }

    /// Streams a reader into the store. With `expected`, content hashing to
    /// anything else is refused and nothing is kept.
    pub fn put_reader(&self, mut r: impl Read, expected: Option<&Digest>) -> Result<PutResult> {
        let mut w = self.writer()?;
        copy_large(&mut r, &mut w).io("write blob to", &self.tmp)?;
        w.commit(expected)
    }

    /// A writer for a blob whose content arrives in pieces (e.g. from the network).
    pub fn writer(&self) -> Result<BlobWriter> {
        let tmp = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(&self.tmp)
            .io("create temp file in", &self.tmp)?;
        Ok(BlobWriter {
            store: self.clone(),
            w: HashingWriter::new(io::BufWriter::with_capacity(COPY_BUF, tmp)),
        })
    }

    fn commit_tmp(
        &self,
        tmp: tempfile::NamedTempFile,
        digest: Digest,
        size: u64,
        expected: Option<&Digest>,
        check_existing: bool,
    ) -> Result<PutResult> {
        if let Some(exp) = expected
            && *exp != digest
        {
            return Err(OciError::DigestMismatch {
                what: "blob".into(),
                expected: exp.to_string(),
                actual: digest.to_string(),
            });
        }
        let dest = self.path(&digest);
        // A blob already there is kept as is, unless asked to check it: a
        // damaged one is then replaced (atomically) by ours.
        if dest.is_file() && (!check_existing || self.intact(&digest)) {
            return Ok(PutResult {
                digest,
                size,
                created: false,
            });
        }
        tmp.as_file().sync_all().io("fsync", tmp.path())?;
        tmp.persist(&dest)
            .map_err(|e| e.error)
            .io("rename blob into", &dest)?;
        sync_dir(&self.dir)?;
        Ok(PutResult {
            digest,
            size,
            created: true,
        })
    }

    /// Whether the stored blob `d` is present and hashes to `d`.
    pub fn intact(&self, d: &Digest) -> bool {
        self.open(d)
            .and_then(|mut r| copy_large(&mut r, &mut io::sink()).io("read", self.path(d)))
            .is_ok()
    }

    /// Opens a blob for reading; the reader fails at EOF if the content was corrupted.
    pub fn open(&self, d: &Digest) -> Result<VerifyingReader<BufReader<File>>> {
        let p = self.path(d);
        let f = match File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(OciError::BlobMissing(d.to_string()));
            }
            Err(e) => return Err(e).io("open", p),
        };
        Ok(VerifyingReader::new(
            BufReader::with_capacity(COPY_BUF, f),
            d.clone(),
        ))
    }

    /// Reads a (small) blob completely, verifying its digest.
    pub fn read(&self, d: &Digest) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.open(d)?
            .read_to_end(&mut out)
            .io("read", self.path(d))?;
        Ok(out)
    }

    /// Every blob present.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir).io("list", &self.dir)? {
            let e = e.io("list", &self.dir)?;
            if let Ok(d) = Digest::parse(&format!("sha256:{}", e.file_name().to_string_lossy())) {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Removes a blob; returns the bytes freed (0 if it was already gone).
    pub fn remove(&self, d: &Digest) -> Result<u64> {
        let p = self.path(d);
        let size = fs::metadata(&p).map_or(0, |m| m.len());
        match fs::remove_file(&p) {
            Ok(()) => Ok(size),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e).io("remove", p),
        }
    }

    /// Removes temp files left by crashed writers.
    pub fn clean_tmp(&self) -> Result<u64> {
        let mut freed = 0;
        for e in fs::read_dir(&self.tmp).io("list", &self.tmp)? {
            let e = e.io("list", &self.tmp)?;
            freed += e.metadata().map_or(0, |m| m.len());
            let _ = fs::remove_file(e.path());
        }
        Ok(freed)
    }

    /// Scratch space on the same filesystem as the blobs (renames stay atomic).
    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }
}

/// A blob being written; nothing is visible in the store until [`BlobWriter::commit`].
pub struct BlobWriter {
    store: BlobStore,
    w: HashingWriter<io::BufWriter<tempfile::NamedTempFile>>,
}

impl BlobWriter {
    /// Makes the blob visible (fsync + rename), checking `expected` if given.
    pub fn commit(self, expected: Option<&Digest>) -> Result<PutResult> {
        self.finish()?.commit(expected)
    }

    /// Ends the write: the content is complete and hashed, not yet visible.
    pub fn finish(self) -> Result<FinishedBlob> {
        let (buf, digest, size) = self.w.finish();
        let tmp = buf
            .into_inner()
            .map_err(io::IntoInnerError::into_error)
            .io("write blob to", &self.store.tmp)?;
        Ok(FinishedBlob {
            store: self.store,
            tmp,
            digest,
            size,
        })
    }
}

/// A completely written blob whose digest is known, waiting to be made
/// visible; dropped, it leaves nothing behind.
#[derive(Debug)]
pub struct FinishedBlob {
    store: BlobStore,
    tmp: tempfile::NamedTempFile,
    digest: Digest,
    size: u64,
}

impl FinishedBlob {
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Makes the blob visible (fsync + rename), checking `expected` if given.
    pub fn commit(self, expected: Option<&Digest>) -> Result<PutResult> {
        self.store
            .commit_tmp(self.tmp, self.digest, self.size, expected, false)
    }

    /// Like [`FinishedBlob::commit`], but a blob of that digest already in
    /// the store is re-hashed and replaced when damaged, so the caller may
    /// rely on its content.
    pub fn commit_checked(self) -> Result<PutResult> {
        self.store
            .commit_tmp(self.tmp, self.digest, self.size, None, true)
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.w.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

/// `io::copy` with a 1 MiB buffer: far fewer syscalls for layer-sized blobs.
pub(crate) fn copy_large(r: &mut impl Read, w: &mut impl Write) -> io::Result<u64> {
    let mut buf = vec![0u8; COPY_BUF];
    let mut total = 0;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// A reader that writes everything read through it to `out` (a blob being
/// stored while something else reads it). A failed write fails the read and
/// is kept in `write_error`, so the caller can tell it from a bad input.
pub(crate) struct Tee<'a, R, W> {
    inner: R,
    out: &'a mut W,
    pub write_error: Option<io::Error>,
    pub count: u64,
}

impl<'a, R: Read, W: Write> Tee<'a, R, W> {
    pub fn new(inner: R, out: &'a mut W) -> Self {
        Tee {
            inner,
            out,
            write_error: None,
            count: 0,
        }
    }
}

impl<R: Read, W: Write> Read for Tee<'_, R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.write_error.is_some() {
            return Err(io::Error::other("writing the blob failed"));
        }
        let n = self.inner.read(buf)?;
        if let Err(e) = self.out.write_all(&buf[..n]) {
            let kind = e.kind();
            self.write_error = Some(e);
            return Err(io::Error::new(kind, "writing the blob failed"));
        }
        self.count += n as u64;
        Ok(n)
    }
}

/// fsync a directory so a rename in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|f| f.sync_all()).io("fsync", dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_read_verify() {
        let t = tempfile::tempdir().unwrap();
        let s = BlobStore::open_dir(t.path()).unwrap();
        let r = s.put_bytes(b"hello").unwrap();
        assert!(r.created);
        assert!(!s.put_bytes(b"hello").unwrap().created);
        assert_eq!(s.read(&r.digest).unwrap(), b"hello");
        // Corrupt on disk: reading fails instead of returning bad data.
        fs::write(s.path(&r.digest), b"hellx").unwrap();
        assert!(s.read(&r.digest).is_err());
        // A mismatching expected digest keeps nothing.
        let other = Digest::of(b"other");
        assert!(matches!(
            s.put_reader(&b"data"[..], Some(&other)),
            Err(OciError::DigestMismatch { .. })
        ));
        assert!(!s.has(&Digest::of(b"data")));
        assert_eq!(fs::read_dir(s.tmp_dir()).unwrap().count(), 0);
    }
}
