//! Digest functions and the streaming `Digester` class.
use std::path::PathBuf;

use dd_core::digest::{self, Algorithm, Digest, Digester};
use pyo3::prelude::*;

use crate::errors::{NativeError, NativeResult};

/// Below this many bytes, releasing and re-taking the GIL costs more than hashing.
pub(crate) const DETACH_THRESHOLD: usize = 64 * 1024;

pub(crate) fn algorithm(name: &str) -> NativeResult<Algorithm> {
    Ok(name.parse::<Algorithm>()?)
}

#[pyclass(module = "docker_distribution._native", name = "Digester")]
struct PyDigester {
    inner: Digester,
}

#[pymethods]
impl PyDigester {
    #[new]
    #[pyo3(signature = (algorithm = "sha256"))]
    fn new(algorithm: &str) -> NativeResult<Self> {
        Ok(PyDigester { inner: Digester::new(self::algorithm(algorithm)?) })
    }

    #[pyo3(signature = (data, /))]
    fn update(&mut self, py: Python<'_>, data: &[u8]) {
        if data.len() >= DETACH_THRESHOLD {
            let inner = &mut self.inner;
            py.detach(|| inner.update(data));
        } else {
            self.inner.update(data);
        }
    }

    /// The canonical digest string of everything seen so far; resets the digester.
    fn finalize(&mut self) -> String {
        self.inner.finalize().to_string()
    }

    /// The digest so far, without resetting.
    fn peek(&self) -> String {
        self.inner.peek().to_string()
    }

    #[getter]
    fn algorithm(&self) -> &'static str {
        self.inner.algorithm().name()
    }

    #[getter]
    fn written(&self) -> u64 {
        self.inner.written()
    }
}

#[pyfunction]
#[pyo3(signature = (value, /))]
fn parse_digest(value: &str) -> NativeResult<(&'static str, String)> {
    let d = Digest::parse(value)?;
    Ok((d.algorithm().name(), d.hex().to_owned()))
}

#[pyfunction]
#[pyo3(signature = (data, /, algorithm = "sha256"))]
fn digest_bytes(py: Python<'_>, data: &[u8], algorithm: &str) -> NativeResult<String> {
    let alg = self::algorithm(algorithm)?;
    let d = if data.len() >= DETACH_THRESHOLD {
        py.detach(|| Digest::of_bytes(alg, data))
    } else {
        Digest::of_bytes(alg, data)
    };
    Ok(d.to_string())
}

#[pyfunction]
#[pyo3(signature = (path, /, algorithm = "sha256"))]
fn digest_file(py: Python<'_>, path: PathBuf, algorithm: &str) -> PyResult<(String, u64)> {
    let alg = self::algorithm(algorithm)?;
    let (d, size) = py.detach(|| digest::digest_file(&path, alg)).map_err(|e| NativeError::from(e).at(&path))?;
    Ok((d.to_string(), size))
}

#[pyfunction]
#[pyo3(signature = (path, digest, /, size = None))]
fn verify_file(py: Python<'_>, path: PathBuf, digest: &str, size: Option<u64>) -> PyResult<()> {
    let expected = Digest::parse(digest).map_err(NativeError::from)?;
    py.detach(|| digest::verify_file(&path, &expected, size)).map_err(|e| NativeError::from(e).at(&path))?;
    Ok(())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyDigester>()?;
    m.add_function(wrap_pyfunction!(parse_digest, m)?)?;
    m.add_function(wrap_pyfunction!(digest_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(digest_file, m)?)?;
    m.add_function(wrap_pyfunction!(verify_file, m)?)?;
    Ok(())
}
