//! Content digests as the OCI image-spec defines them: `algorithm ":" encoded`.
//!
//! Only the registered algorithms are accepted (sha256, sha384, sha512) with the exact
//! lowercase-hex length each one produces. Hashing uses the `sha2` crate, which picks the
//! SHA-NI / AVX2 code paths at run time.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;

use sha2::{Digest as _, Sha256, Sha384, Sha512};

use crate::error::{Error, Result};
use crate::reading::read_once;

/// Read buffer for file hashing: large enough to amortise syscalls, small enough for the L2 cache.
const READ_BUFFER: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Sha256,
    Sha384,
    Sha512,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha384 => "sha384",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the hex encoding of this algorithm's output.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha384 => 96,
            Algorithm::Sha512 => 128,
        }
    }
}

impl FromStr for Algorithm {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "sha256" => Ok(Algorithm::Sha256),
            "sha384" => Ok(Algorithm::Sha384),
            "sha512" => Ok(Algorithm::Sha512),
            other => Err(Error::UnsupportedAlgorithm(other.to_owned())),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A validated digest. Its string form is canonical (`sha256:<64 lowercase hex>`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    pub fn parse(value: &str) -> Result<Self> {
        let invalid = |reason| Error::InvalidDigest { value: value.to_owned(), reason };
        let (alg, hex) = value.split_once(':').ok_or_else(|| invalid("missing ':' separator"))?;
        if alg.is_empty() {
            return Err(invalid("empty algorithm"));
        }
        let algorithm: Algorithm = alg.parse()?;
        if hex.len() != algorithm.hex_len() {
            return Err(invalid("wrong length for algorithm"));
        }
        if !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(invalid("encoded part must be lowercase hex"));
        }
        Ok(Digest { algorithm, hex: hex.to_owned() })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Hash a whole buffer.
    pub fn of_bytes(algorithm: Algorithm, data: &[u8]) -> Self {
        let mut d = Digester::new(algorithm);
        d.update(data);
        d.finalize()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex)
    }
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Digest::parse(s)
    }
}

#[derive(Clone)]
enum State {
    Sha256(Sha256),
    Sha384(Sha384),
    Sha512(Sha512),
}

/// Incremental hasher that also counts the bytes it has seen.
#[derive(Clone)]
pub struct Digester {
    algorithm: Algorithm,
    state: State,
    written: u64,
}

impl Digester {
    pub fn new(algorithm: Algorithm) -> Self {
        let state = match algorithm {
            Algorithm::Sha256 => State::Sha256(Sha256::new()),
            Algorithm::Sha384 => State::Sha384(Sha384::new()),
            Algorithm::Sha512 => State::Sha512(Sha512::new()),
        };
        Digester { algorithm, state, written: 0 }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn update(&mut self, data: &[u8]) {
        match &mut self.state {
            State::Sha256(h) => h.update(data),
            State::Sha384(h) => h.update(data),
            State::Sha512(h) => h.update(data),
        }
        self.written += data.len() as u64;
    }

    /// Bytes hashed so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The digest of everything seen so far; the digester is reset.
    pub fn finalize(&mut self) -> Digest {
        let hex = match &mut self.state {
            State::Sha256(h) => hex::encode(h.finalize_reset()),
            State::Sha384(h) => hex::encode(h.finalize_reset()),
            State::Sha512(h) => hex::encode(h.finalize_reset()),
        };
        self.written = 0;
        Digest { algorithm: self.algorithm, hex }
    }

    /// The digest so far, leaving the digester as it is.
    pub fn peek(&self) -> Digest {
        self.clone().finalize()
    }

    /// Hash everything `reader` yields, in large reads.
    pub fn update_from<R: Read>(&mut self, mut reader: R) -> Result<()> {
        let mut buf = vec![0u8; READ_BUFFER];
        loop {
            match read_once(&mut reader, &mut buf)? {
                0 => return Ok(()),
                n => self.update(&buf[..n]),
            }
        }
    }

    /// Hash everything `reader` yields; returns the digest and the byte count.
    pub fn digest_reader<R: Read>(algorithm: Algorithm, reader: R) -> Result<(Digest, u64)> {
        let mut d = Digester::new(algorithm);
        d.update_from(reader)?;
        let size = d.written();
        Ok((d.finalize(), size))
    }
}

/// Hash a file; returns its digest and size.
pub fn digest_file(path: &Path, algorithm: Algorithm) -> Result<(Digest, u64)> {
    Digester::digest_reader(algorithm, File::open(path)?)
}

/// Check that a file has exactly `size` bytes (when given) and hashes to `expected`.
/// The size is checked first from metadata so a wrong-length file is rejected without hashing.
pub fn verify_file(path: &Path, expected: &Digest, size: Option<u64>) -> Result<()> {
    let file = File::open(path)?;
    if let Some(want) = size {
        let have = file.metadata()?.len();
        if have != want {
            return Err(Error::SizeMismatch { expected: want, actual: have });
        }
    }
    let (actual, _) = Digester::digest_reader(expected.algorithm(), file)?;
    if &actual != expected {
        return Err(Error::DigestMismatch { expected: expected.to_string(), actual: actual.to_string() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    const EMPTY_SHA256: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn empty_input_has_the_well_known_sha256() {
        assert_eq!(Digest::of_bytes(Algorithm::Sha256, b"").to_string(), EMPTY_SHA256);
    }

    #[test]
    fn sha384_and_sha512_have_their_lengths() {
        assert_eq!(Digest::of_bytes(Algorithm::Sha384, b"abc").hex().len(), 96);
        assert_eq!(
            Digest::of_bytes(Algorithm::Sha512, b"abc").to_string(),
            "sha512:ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
    }

    #[test]
    fn parse_rejects_malformed_digests() {
        for bad in [
            "",
            "sha256",
            ":abc",
            "sha256:",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855a",
        ] {
            assert!(matches!(Digest::parse(bad), Err(Error::InvalidDigest { .. })), "{bad:?}");
        }
        assert!(matches!(Digest::parse("md5:abcd"), Err(Error::UnsupportedAlgorithm(_))));
    }

    #[test]
    fn verify_file_checks_size_then_digest() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"hello").unwrap();
        let good = Digest::of_bytes(Algorithm::Sha256, b"hello");
        verify_file(f.path(), &good, Some(5)).unwrap();
        verify_file(f.path(), &good, None).unwrap();
        assert!(matches!(
            verify_file(f.path(), &good, Some(6)),
            Err(Error::SizeMismatch { expected: 6, actual: 5 })
        ));
        let other = Digest::of_bytes(Algorithm::Sha256, b"world");
        assert!(matches!(verify_file(f.path(), &other, Some(5)), Err(Error::DigestMismatch { .. })));
    }

    proptest! {
        #[test]
        fn chunked_updates_equal_one_shot(data in proptest::collection::vec(any::<u8>(), 0..4096), cut in 0usize..4096) {
            let cut = cut.min(data.len());
            let mut d = Digester::new(Algorithm::Sha256);
            d.update(&data[..cut]);
            d.update(&data[cut..]);
            prop_assert_eq!(d.finalize(), Digest::of_bytes(Algorithm::Sha256, &data));
        }

        #[test]
        fn display_then_parse_round_trips(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            for alg in [Algorithm::Sha256, Algorithm::Sha384, Algorithm::Sha512] {
                let d = Digest::of_bytes(alg, &data);
                prop_assert_eq!(Digest::parse(&d.to_string()).unwrap(), d);
            }
        }
    }
}
