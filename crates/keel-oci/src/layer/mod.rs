//! Placeholder until the layer module lands from its branch: the agreed API
//! surface the rest of the crate compiles against.

use std::io::{self, Read};

/// Layer compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn detect(magic: &[u8]) -> Compression {
        if magic.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Layer errors.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("io: {0}")]
    Io(#[from] io::Error),
}

/// Wraps a reader, sniffing gzip/zstd magic, yielding the uncompressed tar.
pub fn decompressed<R: Read + 'static>(r: R) -> io::Result<Box<dyn Read>> {
    let mut r = io::BufReader::new(r);
    let magic = io::BufRead::fill_buf(&mut r)?.to_vec();
    Ok(match Compression::detect(&magic) {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
    })
}
