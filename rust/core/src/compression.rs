//! Compression detection by magic bytes (as moby does; the media type is not trusted) and the
//! streaming decoders.
//!
//! gzip: ISA-L's inflate (isal-rs), multi-member (so trailing garbage is an error, as with Go's
//! reader); it decodes `big` in 1.0 s of CPU where zlib-rs takes 1.6 s.
//! zstd: the reference library, which also skips skippable frames. bzip2 and xz are recognised
//! and refused with [`Error::UnsupportedCompression`].
use std::io::{self, BufReader, Read};

use crate::error::{Error, Result};
use crate::reading::read_full;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Bzip2,
    Xz,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Bzip2 => "bzip2",
            Compression::Xz => "xz",
        }
    }

    /// moby's order: bzip2, gzip, xz, zstd (incl. a skippable frame), else uncompressed.
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x42, 0x5A, 0x68]) {
            Compression::Bzip2
        } else if head.starts_with(&[0x1F, 0x8B, 0x08]) {
            Compression::Gzip
        } else if head.starts_with(&[0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00]) {
            Compression::Xz
        } else if head.starts_with(&[0x28, 0xB5, 0x2F, 0xFD]) || is_skippable_frame(head) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

fn is_skippable_frame(head: &[u8]) -> bool {
    head.len() >= 8 && (u32::from_le_bytes([head[0], head[1], head[2], head[3]]) & 0xFFFF_FFF0) == 0x184D_2A50
}

/// Read buffer in front of the decoders.
const BUFFER: usize = 256 * 1024;

/// Peek at the stream, detect its compression, and return a reader of the decompressed bytes.
pub fn decompress<'a, R: Read + 'a>(mut input: R) -> Result<(Compression, Box<dyn Read + 'a>)> {
    let mut head = [0u8; 10];
    let got = read_full(&mut input, &mut head).map_err(Error::from_io)?;
    let kind = Compression::detect(&head[..got]);
    let buffered = BufReader::with_capacity(BUFFER, io::Cursor::new(head[..got].to_vec()).chain(input));
    let reader: Box<dyn Read + 'a> = match kind {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(Decoded { inner: isal::read::GzipDecoder::new(Filled(buffered)), format: "gzip" }),
        Compression::Zstd => {
            let dec = zstd::stream::read::Decoder::with_buffer(buffered).map_err(Error::Io)?;
            Box::new(Decoded { inner: dec, format: "zstd" })
        }
        Compression::Bzip2 | Compression::Xz => return Err(Error::UnsupportedCompression(kind.name())),
    };
    Ok((kind, reader))
}

/// Reads until the buffer is full or the input ends. isal-rs's decoder takes a step that yields
/// no output twice in a row for corrupt input, which short reads (a network chunk's last bytes)
/// could also cause; full reads leave that to real corruption and the end of the input.
struct Filled<R>(R);

impl<R: Read> Read for Filled<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read_full(&mut self.0, buf)
    }
}

/// Turns decoder errors into [`Error::Decompression`] so callers can tell corrupt input from I/O.
struct Decoded<D> {
    inner: D,
    format: &'static str,
}

impl<D: Read> Read for Decoded<D> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            if e.get_ref().map(|i| i.is::<Error>()).unwrap_or(false) {
                return e; // one of ours from further down (digest, limits): pass it through
            }
            let reason = match e.kind() {
                io::ErrorKind::UnexpectedEof => "unexpected end of stream".to_string(),
                _ => e.to_string(),
            };
            Error::Decompression { format: self.format, reason }.into_io()
        })
    }
}
