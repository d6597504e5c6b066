//! The single error type of the core. Each variant corresponds to one class of
//! `docker_distribution.errors`; the binding owns that mapping (`rust/py/src/errors.rs`).

use std::io;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A string that is not `algorithm:hex` with a known algorithm and the right hex length.
    #[error("invalid digest {value:?}: {reason}")]
    InvalidDigest { value: String, reason: &'static str },

    /// The algorithm is well formed but not one we can compute.
    #[error("unsupported digest algorithm {0:?}")]
    UnsupportedAlgorithm(String),

    /// Content hashed to something other than what was expected.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: String, actual: String },

    /// Content had a different length from the one expected.
    #[error("size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch { expected: u64, actual: u64 },

    #[error(transparent)]
    Io(#[from] io::Error),
}
