//! The `BlobFile` class: a content-store ingest's file (append, hash, write back as it grows).
use std::path::PathBuf;

use dd_core::blobfile::BlobFile;
use pyo3::prelude::*;

use crate::digest::{self, DETACH_THRESHOLD};
use crate::errors::NativeError;

#[pyclass(module = "docker_distribution._native", name = "BlobFile")]
struct PyBlobFile {
    inner: BlobFile,
    /// named in its I/O errors, as Python's own file objects do
    path: PathBuf,
}

#[pymethods]
impl PyBlobFile {
    /// Open `path` for appending (bytes already there count and are hashed). `hashing=False`
    /// keeps bytes without hashing; `writeback` hands pages to the disk while the file grows.
    #[new]
    #[pyo3(signature = (path, /, *, hashing = true, writeback = false, algorithm = "sha256"))]
    fn new(py: Python<'_>, path: PathBuf, hashing: bool, writeback: bool, algorithm: &str) -> PyResult<Self> {
        let alg = if hashing { Some(digest::algorithm(algorithm)?) } else { None };
        let inner = py.detach(|| BlobFile::open(&path, alg, writeback)).map_err(|e| NativeError::from(e).at(&path))?;
        Ok(PyBlobFile { inner, path })
    }

    #[pyo3(signature = (data, /))]
    fn write(&mut self, py: Python<'_>, data: &[u8]) -> PyResult<usize> {
        let inner = &mut self.inner;
        let res = if data.len() >= DETACH_THRESHOLD { py.detach(|| inner.write(data)) } else { inner.write(data) };
        res.map_err(|e| self.error(e))?;
        Ok(data.len())
    }

    #[pyo3(signature = (size, /))]
    fn truncate(&mut self, py: Python<'_>, size: u64) -> PyResult<()> {
        let inner = &mut self.inner;
        py.detach(|| inner.truncate(size)).map_err(|e| self.error(e))
    }

    /// Make the whole file durable.
    fn sync(&mut self, py: Python<'_>) -> PyResult<()> {
        let inner = &mut self.inner;
        py.detach(|| inner.sync()).map_err(|e| self.error(e))
    }

    fn close(&mut self) {
        self.inner.close();
    }

    /// The digest of the bytes so far, or None without hashing.
    fn peek(&self) -> Option<String> {
        self.inner.digest().map(|d| d.to_string())
    }

    #[getter]
    fn size(&self) -> u64 {
        self.inner.size()
    }
}

impl PyBlobFile {
    fn error(&self, e: impl Into<NativeError>) -> PyErr {
        e.into().at(&self.path)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyBlobFile>()
}
