//! `docker_distribution._native`: glue between Python and `dd_core`.
//!
//! Arguments are extracted first, then the bulk work runs with the GIL released
//! (`py.detach`). Errors are raised as the classes of `docker_distribution.errors`.
use pyo3::prelude::*;

mod blobfile;
mod digest;
mod errors;
mod layer;

#[pymodule(gil_used = false)]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    blobfile::register(m)?;
    digest::register(m)?;
    layer::register(m)?;
    Ok(())
}
