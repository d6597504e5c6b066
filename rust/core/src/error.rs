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

    /// A layer compressed with something we do not decode (bzip2, xz).
    #[error("unsupported compression: {0}")]
    UnsupportedCompression(&'static str),

    /// The compressed stream is corrupt, truncated, or followed by garbage.
    #[error("invalid {format} stream: {reason}")]
    Decompression { format: &'static str, reason: String },

    /// A layer entry that would land outside the target directory.
    #[error("layer entry {path:?} escapes the target directory")]
    PathEscape { path: String },

    /// A tar archive the applier cannot accept (bad header, unsupported entry, ...).
    #[error("invalid layer: {0}")]
    InvalidLayer(String),

    /// A configured limit on uncompressed bytes or entries was exceeded.
    #[error("layer exceeds the {what} limit of {limit}")]
    LimitExceeded { what: &'static str, limit: u64 },

    /// Something only root may do (device nodes), attempted without privileges.
    #[error("{0}: operation requires root")]
    NotPermitted(String),

    /// A tar-split record (the layer store's own file) that does not read back.
    #[error("corrupt tar-split record {path}: {reason}")]
    CorruptRecord { path: String, reason: String },

    /// The feeding side went away or asked to stop.
    #[error("cancelled")]
    Cancelled,

    #[error(transparent)]
    Io(#[from] io::Error),
}

impl Error {
    /// Recover a core error that travelled through an `io::Error` (readers in a pipeline can only
    /// return `io::Error`, so they wrap ours in it).
    pub fn from_io(e: io::Error) -> Error {
        if e.get_ref().map(|inner| inner.is::<Error>()).unwrap_or(false) {
            let inner = e.into_inner().expect("checked above");
            return *inner.downcast::<Error>().expect("checked above");
        }
        Error::Io(e)
    }

    /// Wrap in an `io::Error` so it can pass through `Read`/`Write`.
    pub fn into_io(self) -> io::Error {
        match self {
            Error::Io(e) => e,
            other => io::Error::other(other),
        }
    }
}
