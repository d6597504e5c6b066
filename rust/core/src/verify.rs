//! Readers that hash what passes through them.
//!
//! [`VerifyingReader`] checks size and digest of a stream at EOF (go-containerregistry's
//! `internal/verify`): reading past the expected size, ending short of it, or ending with another
//! digest is an error, so unverified bytes are never reported as a successful read's end.
use std::io::{self, Read};

use crate::digest::{Algorithm, Digest, Digester};
use crate::error::Error;

/// Hashes everything read; `finish` gives the digest and byte count.
pub struct HashingReader<R> {
    inner: R,
    digester: Digester,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R, algorithm: Algorithm) -> Self {
        HashingReader { inner, digester: Digester::new(algorithm) }
    }

    pub fn count(&self) -> u64 {
        self.digester.written()
    }

    pub fn finish(mut self) -> (Digest, u64, R) {
        let n = self.digester.written();
        (self.digester.finalize(), n, self.inner)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digester.update(&buf[..n]);
        Ok(n)
    }
}

/// Checks the expected size (as soon as it is exceeded) and digest (at EOF) of a stream.
pub struct VerifyingReader<R> {
    inner: R,
    digester: Digester,
    expected: Option<Digest>,
    size: Option<u64>,
    done: Option<Digest>,
}

impl<R: Read> VerifyingReader<R> {
    /// With no `expected` digest the stream is hashed with sha256 and only the size is checked.
    pub fn new(inner: R, expected: Option<Digest>, size: Option<u64>) -> Self {
        let alg = expected.as_ref().map(|d| d.algorithm()).unwrap_or(Algorithm::Sha256);
        VerifyingReader { inner, digester: Digester::new(alg), expected, size, done: None }
    }

    /// The verified digest and size, once EOF has been reached.
    pub fn result(&self) -> Option<(Digest, u64)> {
        self.done.clone().map(|d| (d, self.size.unwrap_or(0)))
    }

    pub fn count(&self) -> u64 {
        self.digester.written()
    }

    /// The algorithm the stream is hashed with.
    pub fn algorithm(&self) -> Algorithm {
        self.digester.algorithm()
    }

    /// Whether a digest or size was promised (so reading to the end proves something).
    pub fn has_expectations(&self) -> bool {
        self.expected.is_some() || self.size.is_some()
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done.is_some() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.digester.update(&buf[..n]);
            if let Some(want) = self.size {
                if self.digester.written() > want {
                    return Err(Error::SizeMismatch { expected: want, actual: self.digester.written() }.into_io());
                }
            }
            return Ok(n);
        }
        let have = self.digester.written();
        if let Some(want) = self.size {
            if have != want {
                return Err(Error::SizeMismatch { expected: want, actual: have }.into_io());
            }
        }
        let actual = self.digester.finalize();
        if let Some(want) = &self.expected {
            if &actual != want {
                return Err(Error::DigestMismatch { expected: want.to_string(), actual: actual.to_string() }.into_io());
            }
        }
        self.size = Some(have);
        self.done = Some(actual);
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain<R: Read>(mut r: R) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        r.read_to_end(&mut out).map_err(Error::from_io)?;
        Ok(out)
    }

    #[test]
    fn verifying_reader_accepts_matching_content() {
        let d = Digest::of_bytes(Algorithm::Sha256, b"hello");
        let mut r = VerifyingReader::new(&b"hello"[..], Some(d.clone()), Some(5));
        assert_eq!(drain(&mut r).unwrap(), b"hello");
        assert_eq!(r.result(), Some((d, 5)));
    }

    #[test]
    fn verifying_reader_rejects_each_kind_of_lie() {
        let d = Digest::of_bytes(Algorithm::Sha256, b"hello");
        assert!(matches!(drain(VerifyingReader::new(&b"hellO"[..], Some(d.clone()), Some(5))), Err(Error::DigestMismatch { .. })));
        assert!(matches!(drain(VerifyingReader::new(&b"hell"[..], Some(d.clone()), Some(5))), Err(Error::SizeMismatch { .. })));
        assert!(matches!(drain(VerifyingReader::new(&b"hello!"[..], Some(d), Some(5))), Err(Error::SizeMismatch { .. })));
    }
}
