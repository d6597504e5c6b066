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
            Cancelled => OperationCancelledError::new_err(()),
            Io(err) => PyOSError::new_err((err.raw_os_error().unwrap_or(0), err.to_string())),
        }
    }
}

pub type NativeResult<T> = Result<T, NativeError>;
