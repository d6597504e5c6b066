//! The one place where core errors become Python exceptions. The classes live in
//! `docker_distribution.errors`; this crate never defines exception types of its own.
use pyo3::exceptions::PyOSError;
use pyo3::PyErr;

pyo3::import_exception!(docker_distribution.errors, DigestMismatchError);
pyo3::import_exception!(docker_distribution.errors, SizeMismatchError);
pyo3::import_exception!(docker_distribution.errors, InvalidDigestError);
pyo3::import_exception!(docker_distribution.errors, UnsupportedDigestAlgorithmError);

/// Newtype so that `?` can turn a core error into a `PyErr` (orphan rule).
pub struct NativeError(pub dd_core::Error);

impl From<dd_core::Error> for NativeError {
    fn from(e: dd_core::Error) -> Self {
        NativeError(e)
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
            Io(err) => PyOSError::new_err((err.raw_os_error().unwrap_or(0), err.to_string())),
        }
    }
}

pub type NativeResult<T> = Result<T, NativeError>;
