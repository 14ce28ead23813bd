//! Reading a layer tar entry by entry, the one way [`super::apply_layer`] and
//! [`super::check_layer`] both read it: names and link targets come from our
//! own parse of the PAX records when there are any (see [`Tap`]), pre-POSIX
//! directories are recognised by their trailing slash, and the stream is read
//! to its end so that a decompressor or digest around it sees everything.

use std::borrow::Cow;
use std::cell::RefCell;
use std::io::{self, Read};
use std::rc::Rc;

use tar::EntryType;

use super::LayerError;

/// What keel reads from one entry's headers.
pub(super) struct Header {
    /// The name as written (PAX `path` first), not yet cleaned.
    pub name: Vec<u8>,
    /// Symlink or hardlink target (PAX `linkpath` first).
    pub link: Option<Vec<u8>>,
    /// The entry type; a regular file whose name ends in `/` is a directory.
    pub kind: EntryType,
    /// The entry's PAX records, parsed by their length prefix.
    pub pax: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Header {
    /// The name for messages.
    pub fn display_name(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

/// The reader type entries of [`walk`] read their data from.
pub(super) type TapReader<R> = Tap<io::BufReader<R>>;

/// Calls `f` for every entry of the tar `tar` with its [`Header`]; the
/// entry's unread data is skipped afterwards. The stream is then read to its
/// end (padding after the end marker, a compressed stream's trailer).
pub(super) fn walk<R: Read>(
    tar: R,
    mut f: impl FnMut(&mut tar::Entry<'_, TapReader<R>>, Header) -> Result<(), LayerError>,
) -> Result<(), LayerError> {
    // Headers are read 512 bytes at a time: buffer them. Big reads of file
    // data bypass the buffer.
    let tap = Rc::new(RefCell::new(TapState::default()));
    let mut archive = tar::Archive::new(Tap {
        inner: io::BufReader::with_capacity(64 * 1024, tar),
        state: Rc::clone(&tap),
    });
    let mut entries = archive.entries().map_err(LayerError::Read)?;
    loop {
        tap.borrow_mut().start_capture();
        let next = entries.next();
        tap.borrow_mut().capturing = false;
        let Some(entry) = next else { break };
        let mut entry = entry.map_err(LayerError::Read)?;
        let raw_pax = tap.borrow().pax_before(entry.raw_header_position());
        let header = read_header(&mut entry, raw_pax.as_deref())?;
        f(&mut entry, header)?;
        // Consume what the entry did not (data of links, dirs...), so the
        // next capture starts right after this entry's data.
        io::copy(&mut entry, &mut io::sink()).map_err(LayerError::Read)?;
    }
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(LayerError::Read)?;
    Ok(())
}

fn read_header<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    raw_pax: Option<&[u8]>,
) -> Result<Header, LayerError> {
    // Our own parse of the PAX records when we have them (see `Tap`); the
    // tar crate's otherwise.
    let pax: Vec<(Vec<u8>, Vec<u8>)> = match raw_pax {
        Some(raw) => parse_pax(raw).ok_or_else(|| {
            LayerError::Read(io::Error::new(
                io::ErrorKind::InvalidData,
                "malformed pax extended header",
            ))
        })?,
        None => match entry.pax_extensions().map_err(LayerError::Read)? {
            Some(exts) => exts
                .map(|e| e.map(|e| (e.key_bytes().to_vec(), e.value_bytes().to_vec())))
                .collect::<io::Result<_>>()
                .map_err(LayerError::Read)?,
            None => Vec::new(),
        },
    };
    let pax_value = |key: &[u8]| {
        pax.iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let name = pax_value(b"path").unwrap_or_else(|| entry.path_bytes().into_owned());
    let link = pax_value(b"linkpath").or_else(|| entry.link_name_bytes().map(Cow::into_owned));
    let mut kind = entry.header().entry_type();
    // Pre-POSIX tars mark directories only by a trailing slash.
    if kind == EntryType::Regular && name.ends_with(b"/") {
        kind = EntryType::Directory;
    }
    Ok(Header {
        name,
        link,
        kind,
        pax,
    })
}

/// Reading the raw PAX records ourselves: the tar crate splits PAX records
/// at `\n` instead of using their length prefix, which breaks binary xattr
/// values (`security.capability`, user data) that contain a newline. The
/// tap records what the crate reads while it looks for the next entry (its
/// extended headers and the entry's header); `pax_before` then walks those
/// 512-byte blocks to the `x` header's data.
#[derive(Default)]
struct TapState {
    /// Bytes consumed so far (an archive offset).
    pos: u64,
    capturing: bool,
    /// Archive offset of `buf[0]`.
    start: u64,
    buf: Vec<u8>,
    /// Captured more than `TAP_LIMIT`: fall back to the crate's parse.
    overflow: bool,
}

/// Extended headers beyond this are left to the tar crate.
const TAP_LIMIT: usize = 16 << 20;

impl TapState {
    fn start_capture(&mut self) {
        self.buf.clear();
        self.start = self.pos;
        self.overflow = false;
        self.capturing = true;
    }

    /// The raw data of the PAX `x` header preceding the entry whose header
    /// is at archive offset `header_pos`, if there is one and the captured
    /// blocks add up.
    fn pax_before(&self, header_pos: u64) -> Option<Vec<u8>> {
        if self.overflow {
            return None;
        }
        let mut at = self.start.div_ceil(512) * 512;
        let mut pax = None;
        while at < header_pos {
            let off = usize::try_from(at - self.start).ok()?;
            let h = self.buf.get(off..off + 512)?;
            let size = tar_number(&h[124..136])?;
            if h[156] == b'x' {
                let len = usize::try_from(size).ok()?;
                pax = Some(self.buf.get(off + 512..off + 512 + len)?.to_vec());
            }
            at = at.checked_add(512)?.checked_add(size.div_ceil(512) * 512)?;
        }
        if at == header_pos { pax } else { None }
    }
}

pub(super) struct Tap<R> {
    inner: R,
    state: Rc<RefCell<TapState>>,
}

impl<R: Read> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut s = self.state.borrow_mut();
        s.pos += n as u64;
        if s.capturing && !s.overflow {
            if s.buf.len() + n > TAP_LIMIT {
                s.overflow = true;
                s.buf = Vec::new();
            } else {
                s.buf.extend_from_slice(&buf[..n]);
            }
        }
        Ok(n)
    }
}

/// A tar numeric field: octal (space/NUL padded) or GNU base-256.
fn tar_number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let digits: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(u8::is_ascii_digit)
        .collect();
    if digits.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(std::str::from_utf8(&digits).ok()?, 8).ok()
}

/// PAX records (`"<len> <key>=<value>\n"`), using the length prefix so that
/// values may hold any byte. `None` when malformed.
fn parse_pax(mut data: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let sp = data.iter().position(|b| *b == b' ')?;
        let len: usize = std::str::from_utf8(&data[..sp]).ok()?.parse().ok()?;
        if len <= sp + 1 || len > data.len() {
            return None;
        }
        let rec = data[sp + 1..len].strip_suffix(b"\n")?;
        let eq = rec.iter().position(|b| *b == b'=')?;
        out.push((rec[..eq].to_vec(), rec[eq + 1..].to_vec()));
        data = &data[len..];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::{parse_pax, tar_number};

    #[test]
    fn parses_pax_records_by_length() {
        // A binary value with a newline inside, as security.capability can be.
        let value = b"a\nb\0c";
        let rec = format!("{} SCHILY.xattr.user.k=", 3 + 20 + value.len() + 1);
        let mut data = rec.into_bytes();
        data.extend_from_slice(value);
        data.push(b'\n');
        data.extend_from_slice(b"12 path=a/b\n");
        let recs = parse_pax(&data).unwrap();
        assert_eq!(recs[0].0, b"SCHILY.xattr.user.k");
        assert_eq!(recs[0].1, value);
        assert_eq!(recs[1], (b"path".to_vec(), b"a/b".to_vec()));
        for bad in [&b"x"[..], b"99 a=b\n", b"3 a=b\n", b"6 ab\n", b"7 a=bc"] {
            assert!(
                parse_pax(bad).is_none(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(parse_pax(b""), Some(vec![]));
    }

    #[test]
    fn parses_tar_numbers() {
        assert_eq!(tar_number(b"00000001750\0"), Some(0o1750));
        assert_eq!(tar_number(b"     1750 \0"), Some(0o1750));
        assert_eq!(tar_number(b"\0\0\0\0"), Some(0));
        assert_eq!(
            tar_number(&[0x80, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]),
            Some(1 << 32)
        );
        assert_eq!(tar_number(&[0xff; 12]), None);
    }
}
