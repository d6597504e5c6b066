//! Layer apply / produce / rebuild: functions over paths, and streaming classes fed or drained
//! by Python in large chunks. All waiting and work happens with the GIL released.
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use dd_core::digest::Digest;
use dd_core::error::Error;
use dd_core::layer::apply::{apply_layer, Applied, ApplyOptions, Limits, Mode};
use dd_core::layer::produce::{produce, produce_counting, Codec, Produced, Source, DEFAULT_GZIP_LEVEL, DEFAULT_ZSTD_LEVEL};
use dd_core::layer::split::TarStream;
use dd_core::pipe::{pipe, ChunkWriter, PipeReader, PipeWriter};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::{NativeError, NativeResult};

/// Chunks in flight between Python and the native threads.
const DEPTH: usize = 8;
const CHUNK: usize = 1 << 20;

/// What applying a layer produced, by name (a positional tuple would let `diff_id` and `digest`
/// trade places unnoticed: both are digest strings).
#[pyclass(name = "Applied", module = "docker_distribution._native", frozen, get_all)]
pub struct AppliedResult {
    diff_id: String,
    digest: String,
    size: u64,
    uncompressed_size: u64,
    entries: u64,
    content_size: u64,
    compression: &'static str,
}

/// What producing a layer wrote, by name.
#[pyclass(name = "Produced", module = "docker_distribution._native", frozen, get_all)]
pub struct ProducedResult {
    digest: String,
    size: u64,
    diff_id: String,
    uncompressed_size: u64,
}

fn applied(a: Applied) -> AppliedResult {
    AppliedResult {
        diff_id: a.diff_id.to_string(),
        digest: a.digest.to_string(),
        size: a.size,
        uncompressed_size: a.uncompressed_size,
        entries: a.entries,
        content_size: a.content_size,
        compression: a.compression.name(),
    }
}

fn produced(p: Produced) -> ProducedResult {
    ProducedResult { digest: p.digest.to_string(), size: p.size, diff_id: p.diff_id.to_string(), uncompressed_size: p.uncompressed_size }
}

fn options(mode: &str, split: Option<PathBuf>, digest: Option<&str>, size: Option<u64>, max_bytes: Option<u64>,
           max_entries: Option<u64>) -> NativeResult<ApplyOptions> {
    let mode = match (mode, split) {
        ("diff", Some(split)) => Mode::Diff { split },
        ("rootfs", None) => Mode::Rootfs,
        _ => return Err(NativeError(Error::InvalidLayer("mode must be 'diff' (with split) or 'rootfs'".into()))),
    };
    let mut limits = Limits::default();
    if let Some(b) = max_bytes {
        limits.max_bytes = b;
    }
    if let Some(e) = max_entries {
        limits.max_entries = e;
    }
    Ok(ApplyOptions { mode, expected_digest: digest.map(Digest::parse).transpose()?, expected_size: size, limits })
}

fn codec(name: &str, level: Option<i32>) -> NativeResult<Codec> {
    Ok(match name {
        "gzip" => Codec::Gzip { level: level.unwrap_or(DEFAULT_GZIP_LEVEL) },
        "zstd" => Codec::Zstd { level: level.unwrap_or(DEFAULT_ZSTD_LEVEL) },
        "none" => Codec::None,
        other => return Err(NativeError(Error::UnsupportedCompression(if other == "xz" { "xz" } else { "unknown" }))),
    })
}

fn source(dir: Option<PathBuf>, diff: Option<(PathBuf, PathBuf)>, mtime: Option<u64>) -> NativeResult<Source> {
    match (dir, diff) {
        (Some(path), None) => Ok(Source::Dir { path, mtime }),
        (None, Some((root, split))) => Ok(Source::Tar(Box::new(TarStream::open(&root, &split)?))),
        _ => Err(NativeError(Error::InvalidLayer("give exactly one of source_dir or source_diff".into()))),
    }
}

fn threads(t: Option<usize>) -> usize {
    t.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}

#[pyfunction]
#[pyo3(signature = (path, target, /, *, mode, split = None, digest = None, size = None, max_bytes = None, max_entries = None))]
#[allow(clippy::too_many_arguments)]
fn apply_layer_file(py: Python<'_>, path: PathBuf, target: PathBuf, mode: &str, split: Option<PathBuf>, digest: Option<&str>,
                    size: Option<u64>, max_bytes: Option<u64>, max_entries: Option<u64>) -> PyResult<AppliedResult> {
    let opts = options(mode, split, digest, size, max_bytes, max_entries)?;
    let f = py.detach(|| File::open(&path)).map_err(|e| NativeError::from(e).at(&path))?;
    py.detach(|| apply_layer(f, &target, &opts)).map(applied).map_err(|e| NativeError(e).at(&target))
}

/// A layer applied from bytes Python feeds in (an HTTP body, chunk by chunk).
#[pyclass(module = "docker_distribution._native")]
struct LayerApplier {
    tx: Mutex<Option<PipeWriter>>,
    worker: Worker<Applied>,
    /// named in an I/O error of the worker (a full disk, say)
    target: PathBuf,
}

#[pymethods]
impl LayerApplier {
    #[new]
    #[pyo3(signature = (target, /, *, mode, split = None, digest = None, size = None, max_bytes = None, max_entries = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(target: PathBuf, mode: &str, split: Option<PathBuf>, digest: Option<&str>, size: Option<u64>,
           max_bytes: Option<u64>, max_entries: Option<u64>) -> NativeResult<Self> {
        let opts = options(mode, split, digest, size, max_bytes, max_entries)?;
        let (tx, rx) = pipe(DEPTH);
        let dir = target.clone();
        let worker = std::thread::Builder::new()
            .name("dd-layer-apply".into())
            .spawn(move || apply_layer(rx, &dir, &opts))
            .map_err(|e| NativeError(Error::Io(e)))?;
        Ok(LayerApplier { tx: Mutex::new(Some(tx)), worker: Mutex::new(Some(worker)), target })
    }

    /// Hand over the next bytes of the (compressed) layer. Raises once the applier has failed.
    #[pyo3(signature = (data, /))]
    fn feed(&self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        let guard = self.tx.lock().expect("applier lock");
        let Some(tx) = guard.as_ref() else { return Err(NativeError(Error::Cancelled).into()) };
        // the copy too is made without the GIL (the caller's bytes object is immutable and alive)
        match py.detach(|| tx.send(data.to_vec())) {
            Ok(()) => Ok(()),
            Err(_) => {
                drop(guard);
                // the worker stopped: surface its error
                Err(self.join(py).err().unwrap_or_else(|| NativeError(Error::Cancelled).into()))
            }
        }
    }

    /// End of input: wait for the layer to be verified and written; returns its digests.
    fn finish(&self, py: Python<'_>) -> PyResult<AppliedResult> {
        if let Some(tx) = self.tx.lock().expect("applier lock").take() {
            tx.close();
        }
        self.join(py).map(applied)
    }

    /// Give up: the worker stops and removes what it staged.
    fn abort(&self, py: Python<'_>) {
        if let Some(tx) = self.tx.lock().expect("applier lock").take() {
            tx.fail("aborted".into());
        }
        let _ = self.join(py);
    }
}

type Worker<T> = Mutex<Option<JoinHandle<dd_core::error::Result<T>>>>;

/// Wait (without the GIL) for a worker thread's result; a second call reports `Cancelled`.
fn join_worker<T: Send>(worker: &Worker<T>, py: Python<'_>) -> NativeResult<T> {
    let handle = worker.lock().expect("worker lock").take();
    let Some(handle) = handle else { return Err(NativeError(Error::Cancelled)) };
    py.detach(|| handle.join())
        .map_err(|_| NativeError(Error::InvalidLayer("layer worker panicked".into())))?
        .map_err(NativeError)
}

impl LayerApplier {
    fn join(&self, py: Python<'_>) -> PyResult<Applied> {
        join_worker(&self.worker, py).map_err(|e| e.at(&self.target))
    }
}

#[pyfunction]
#[pyo3(signature = (dest, /, *, source_dir = None, source_diff = None, compression = "gzip", level = None, threads = None, mtime = None))]
#[allow(clippy::too_many_arguments)]
fn produce_layer_file(py: Python<'_>, dest: PathBuf, source_dir: Option<PathBuf>, source_diff: Option<(PathBuf, PathBuf)>,
                      compression: &str, level: Option<i32>, threads: Option<usize>, mtime: Option<u64>) -> NativeResult<ProducedResult> {
    let codec = codec(compression, level)?;
    let src = source(source_dir, source_diff, mtime)?;
    let n = self::threads(threads);
    py.detach(|| {
        let mut out = std::io::BufWriter::with_capacity(CHUNK, File::create(&dest)?);
        let p = produce(src, codec, n, &mut out)?;
        std::io::Write::flush(&mut out)?;
        Ok(produced(p))
    })
}

/// A layer produced on native threads and drained by Python chunk by chunk (for uploads).
#[pyclass(module = "docker_distribution._native")]
struct LayerProducer {
    rx: Mutex<PipeReader>,
    worker: Worker<Produced>,
    tar_bytes: Arc<AtomicU64>,
}

#[pymethods]
impl LayerProducer {
    #[new]
    #[pyo3(signature = (*, source_dir = None, source_diff = None, compression = "gzip", level = None, threads = None, mtime = None))]
    fn new(source_dir: Option<PathBuf>, source_diff: Option<(PathBuf, PathBuf)>, compression: &str, level: Option<i32>,
           threads: Option<usize>, mtime: Option<u64>) -> NativeResult<Self> {
        let codec = codec(compression, level)?;
        let src = source(source_dir, source_diff, mtime)?;
        let n = self::threads(threads);
        let (tx, rx) = pipe(DEPTH);
        let tar_bytes = Arc::new(AtomicU64::new(0));
        let counter = tar_bytes.clone();
        let worker = std::thread::Builder::new()
            .name("dd-layer-produce".into())
            .spawn(move || {
                let mut w = ChunkWriter::new(tx, CHUNK);
                match produce_counting(src, codec, n, &mut w, counter) {
                    Ok(p) => {
                        w.close()?;
                        Ok(p)
                    }
                    Err(e) => {
                        w.fail(e.to_string());
                        Err(e)
                    }
                }
            })
            .map_err(|e| NativeError(Error::Io(e)))?;
        Ok(LayerProducer { rx: Mutex::new(rx), worker: Mutex::new(Some(worker)), tar_bytes })
    }

    /// The next compressed chunk, or None at the end.
    fn read_chunk<'py>(&self, py: Python<'py>) -> NativeResult<Option<Bound<'py, PyBytes>>> {
        let mut guard = self.rx.lock().expect("producer lock");
        let rx: &mut PipeReader = &mut guard;
        match py.detach(|| rx.next_chunk()) {
            Ok(Some(chunk)) => Ok(Some(PyBytes::new(py, &chunk))),
            Ok(None) => Ok(None),
            Err(_) => {
                drop(guard);
                Err(self.join(py).err().unwrap_or(NativeError(Error::Cancelled)))
            }
        }
    }

    /// Bytes of the uncompressed tar consumed so far (ahead of the chunks read by at most the
    /// blocks in flight).
    #[getter]
    fn tar_bytes(&self) -> u64 {
        self.tar_bytes.load(Ordering::Relaxed)
    }

    /// Digest, size and diffID once every chunk was read.
    fn result(&self, py: Python<'_>) -> NativeResult<ProducedResult> {
        self.join(py).map(produced)
    }
}

impl LayerProducer {
    fn join(&self, py: Python<'_>) -> NativeResult<Produced> {
        join_worker(&self.worker, py)
    }
}

/// The exact tar of a diff directory, rebuilt from its tar-split record; a readable file object.
#[pyclass(module = "docker_distribution._native")]
struct TarReader {
    inner: Mutex<TarStream>,
}

#[pymethods]
impl TarReader {
    #[new]
    #[pyo3(signature = (root, split, /))]
    fn new(root: PathBuf, split: PathBuf) -> NativeResult<Self> {
        Ok(TarReader { inner: Mutex::new(TarStream::open(&root, &split)?) })
    }

    #[pyo3(signature = (size = -1, /))]
    fn read<'py>(&self, py: Python<'py>, size: i64) -> NativeResult<Bound<'py, PyBytes>> {
        let mut guard = self.inner.lock().expect("tar reader lock");
        let inner: &mut TarStream = &mut guard;
        let data = py.detach(|| -> std::io::Result<Vec<u8>> {
            use std::io::Read;
            let mut out = Vec::new();
            if size < 0 {
                inner.read_to_end(&mut out)?;
            } else {
                inner.take(size as u64).read_to_end(&mut out)?;
            }
            Ok(out)
        })?;
        Ok(PyBytes::new(py, &data))
    }
}

/// Flatten a stored diff (its files plus tar-split record) onto a root filesystem.
#[pyfunction]
#[pyo3(signature = (diff, split, target, /))]
fn apply_diff(py: Python<'_>, diff: PathBuf, split: PathBuf, target: PathBuf) -> NativeResult<u64> {
    py.detach(|| {
        let stream = TarStream::open(&diff, &split)?;
        let opts = ApplyOptions { mode: Mode::Rootfs, expected_digest: None, expected_size: None, limits: Limits::default() };
        Ok(apply_layer(stream, &target, &opts)?.entries)
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(apply_diff, m)?)?;
    m.add_function(wrap_pyfunction!(apply_layer_file, m)?)?;
    m.add_function(wrap_pyfunction!(produce_layer_file, m)?)?;
    m.add_class::<LayerApplier>()?;
    m.add_class::<LayerProducer>()?;
    m.add_class::<TarReader>()?;
    m.add_class::<AppliedResult>()?;
    m.add_class::<ProducedResult>()?;
    m.add("DEFAULT_GZIP_LEVEL", DEFAULT_GZIP_LEVEL)?;
    m.add("DEFAULT_ZSTD_LEVEL", DEFAULT_ZSTD_LEVEL)?;
    Ok(())
}
