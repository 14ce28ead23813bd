//! Layer compression sniffing: layers arrive gzip'd, zstd'd or plain, and the
//! media type is not always trustworthy (docker-archive has none), so the
//! magic bytes decide.

use std::io::{self, Read};

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

impl Compression {
    /// Recognises the compression from the first bytes of a blob (at least 4
    /// are needed for zstd; fewer bytes mean "not compressed").
    pub fn detect(magic: &[u8]) -> Compression {
        if magic.starts_with(&GZIP_MAGIC) {
            Compression::Gzip
        } else if magic.starts_with(&ZSTD_MAGIC) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Wraps a reader, sniffing gzip/zstd magic, yielding the uncompressed tar.
pub fn decompressed<'a, R: Read + 'a>(r: R) -> io::Result<Box<dyn Read + 'a>> {
    Ok(sniffed(r)?.1)
}

/// [`decompressed`], also telling what the magic said.
pub(crate) fn sniffed<'a, R: Read + 'a>(mut r: R) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    // Read the magic by hand (a BufReader may return fewer bytes than asked)
    // and put it back in front of the stream.
    let mut magic = [0u8; 4];
    let mut n = 0;
    while n < magic.len() {
        match r.read(&mut magic[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let head = io::Cursor::new(magic[..n].to_vec());
    let stream = head.chain(r);
    let kind = Compression::detect(&magic[..n]);
    Ok((
        kind,
        match kind {
            Compression::None => Box::new(stream),
            // Multi-member gzip is legal and some tools write it.
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(stream)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(stream)?),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn detects_magic() {
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(Compression::detect(&ZSTD_MAGIC), Compression::Zstd);
        assert_eq!(Compression::detect(b"hello"), Compression::None);
        assert_eq!(Compression::detect(&[0x28, 0xb5]), Compression::None);
        assert_eq!(Compression::detect(&[]), Compression::None);
    }

    #[test]
    fn round_trips_all_kinds() {
        let data: Vec<u8> = (0..100_000u32).flat_map(u32::to_le_bytes).collect();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        let gz = gz.finish().unwrap();
        let zs = zstd::stream::encode_all(&data[..], 1).unwrap();
        for blob in [data.clone(), gz, zs] {
            let mut out = Vec::new();
            decompressed(io::Cursor::new(blob))
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, data);
        }
        // Short and empty inputs pass through untouched.
        for blob in [vec![], vec![0x1f], b"abc".to_vec()] {
            let mut out = Vec::new();
            decompressed(io::Cursor::new(blob.clone()))
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, blob);
        }
    }
}
