//! The `BlobFile` class: a content-store ingest's file (append, hash, write back as it grows).
use std::path::PathBuf;

use dd_core::blobfile::BlobFile;
use pyo3::prelude::*;

use crate::digest::{self, DETACH_THRESHOLD};
use crate::errors::NativeResult;

#[pyclass(module = "docker_distribution._native", name = "BlobFile")]
struct PyBlobFile {
    inner: BlobFile,
}

#[pymethods]
impl PyBlobFile {
    /// Open `path` for appending (bytes already there count and are hashed). `hashing=False`
    /// keeps bytes without hashing; `writeback` hands pages to the disk while the file grows.
    #[new]
    #[pyo3(signature = (path, /, *, hashing = true, writeback = false, algorithm = "sha256"))]
    fn new(py: Python<'_>, path: PathBuf, hashing: bool, writeback: bool, algorithm: &str) -> NativeResult<Self> {
        let alg = if hashing { Some(digest::algorithm(algorithm)?) } else { None };
        let inner = py.detach(|| BlobFile::open(&path, alg, writeback))?;
        Ok(PyBlobFile { inner })
    }

    #[pyo3(signature = (data, /))]
    fn write(&mut self, py: Python<'_>, data: &[u8]) -> NativeResult<usize> {
        if data.len() >= DETACH_THRESHOLD {
            let inner = &mut self.inner;
            py.detach(|| inner.write(data))?;
        } else {
            self.inner.write(data)?;
        }
        Ok(data.len())
    }

    #[pyo3(signature = (size, /))]
    fn truncate(&mut self, py: Python<'_>, size: u64) -> NativeResult<()> {
        let inner = &mut self.inner;
        Ok(py.detach(|| inner.truncate(size))?)
    }

    /// Make the whole file durable.
    fn sync(&mut self, py: Python<'_>) -> NativeResult<()> {
        let inner = &mut self.inner;
        Ok(py.detach(|| inner.sync())?)
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

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyBlobFile>()
}
