//! The one place where core errors become Python exceptions. The classes live in
//! `docker_distribution.errors`; this crate never defines exception types of its own.
use pyo3::exceptions::PyOSError;
use pyo3::PyErr;

pyo3::import_exception!(docker_distribution.errors, DigestMismatchError);
pyo3::import_exception!(docker_distribution.errors, SizeMismatchError);
pyo3::import_exception!(docker_distribution.errors, InvalidDigestError);
pyo3::import_exception!(docker_distribution.errors, UnsupportedDigestAlgorithmError);
pyo3::import_exception!(docker_distribution.errors, UnsupportedCompressionError);
pyo3::import_exception!(docker_distribution.errors, CorruptLayerError);
pyo3::import_exception!(docker_distribution.errors, PathEscapeError);
pyo3::import_exception!(docker_distribution.errors, LayerLimitError);
pyo3::import_exception!(docker_distribution.errors, NotPermittedError);
pyo3::import_exception!(docker_distribution.errors, OperationCancelledError);
pyo3::import_exception!(docker_distribution.errors, CorruptStoreError);

/// Newtype so that `?` can turn a core error into a `PyErr` (orphan rule).
pub struct NativeError(pub dd_core::Error);

impl From<dd_core::Error> for NativeError {
    fn from(e: dd_core::Error) -> Self {
        NativeError(e)
    }
}

impl From<std::io::Error> for NativeError {
    fn from(e: std::io::Error) -> Self {
        NativeError(dd_core::Error::from_io(e))
    }
}

impl From<NativeError> for PyErr {
    fn from(NativeError(e): NativeError) -> PyErr {
        use dd_core::Error::*;
        match e {
            InvalidDigest { value, reason } => InvalidDigestError::new_err((value, reason)),
            UnsupportedAlgorithm(alg) => UnsupportedDigestAlgorithmError::new_err((alg,)),
            DigestMismatch { expected, actual } => DigestMismatchError::new_err((expected, actual)),
            SizeMismatch { expected, actual } => SizeMismatchError::new_err((expected, actual)),
            UnsupportedCompression(name) => UnsupportedCompressionError::new_err((name,)),
            e @ Decompression { .. } => CorruptLayerError::new_err((e.to_string(),)),
            e @ InvalidLayer(_) => CorruptLayerError::new_err((e.to_string(),)),
            PathEscape { path } => PathEscapeError::new_err((path,)),
            LimitExceeded { what, limit } => LayerLimitError::new_err((what, limit)),
            NotPermitted(what) => NotPermittedError::new_err((what,)),
            e @ CorruptRecord { .. } => CorruptStoreError::new_err((e.to_string(),)),
            Cancelled => OperationCancelledError::new_err(()),
            Io(err) => os_error(&err, None),
        }
    }
}

impl NativeError {
    /// As the `PyErr` above, but an I/O error names `path`, as Python's own `open` does
    /// (`[Errno 2] No such file or directory: 'x'`, a `FileNotFoundError`).
    pub fn at(self, path: &std::path::Path) -> PyErr {
        match self.0 {
            dd_core::Error::Io(err) => os_error(&err, Some(path)),
            other => NativeError(other).into(),
        }
    }
}

/// `OSError(errno, strerror[, filename])`, which Python turns into the matching subclass; the
/// strerror without Rust's " (os error N)" suffix.
fn os_error(err: &std::io::Error, path: Option<&std::path::Path>) -> PyErr {
    let text = err.to_string();
    let errno = err.raw_os_error().unwrap_or(0);
    let strerror = text.strip_suffix(&format!(" (os error {errno})")).unwrap_or(&text).to_string();
    match path {
        Some(p) => PyOSError::new_err((errno, strerror, p.as_os_str().to_os_string())),
        None => PyOSError::new_err((errno, strerror)),
    }
}

pub type NativeResult<T> = Result<T, NativeError>;
