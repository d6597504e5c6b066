//! File writers: the small regular files of a layer, created and written on worker threads.
//!
//! A layer of many small files is bound by the one thread that parses the tar and makes each
//! file (create, write, chown, chmod, utimes, close: most of it kernel time). The parser keeps
//! everything that touches the namespace in order (directories, links, whiteouts, removals, path
//! resolution and containment) and hands each small file, path already resolved and contents
//! already read, to these workers. [`Writers::drain`] waits until every handed-over file is done;
//! the applier calls it before anything that could depend on one (a hardlink, a removal, a path
//! this layer already wrote) and at the end, so the result is the same as writing in order.
//!
//! Safety: a worker creates with `O_CREAT | O_EXCL` (a symlink planted at the name is not
//! followed) in a directory the parser has already resolved inside the root, and workers never
//! create directories or links, so they cannot redirect one another.
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};

use filetime::FileTime;

use crate::error::{Error, Result};

/// Regular files up to this size go to the workers; bigger ones are streamed by the parser.
pub const SMALL_FILE: u64 = 256 << 10;
/// Files are handed over in batches of up to this many (one wake-up per batch, not per file)...
const BATCH_FILES: usize = 64;
/// ... or of this many bytes.
const BATCH_BYTES: usize = 1 << 20;
/// Batches queued ahead of the workers (bounds memory to about `QUEUE × (BATCH_BYTES + SMALL_FILE)`).
const QUEUE: usize = 8;

/// How a regular file is created and what is set on it once written.
pub struct FileMeta {
    pub mode: u32,
    /// a mode `open` cannot give (bits the umask strips, setuid/setgid/sticky, not writable by
    /// us): created 0600, then chmodded
    pub masked: bool,
    pub owner: Option<(u32, u32)>,
    pub mtime: FileTime,
}

impl FileMeta {
    pub fn create(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new().write(true).create_new(true).mode(if self.masked { 0o600 } else { self.mode }).open(path)
    }

    /// Owner, then mode (chown clears setuid), then times.
    pub fn apply(&self, f: &File) -> io::Result<()> {
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::fchown(f, Some(uid), Some(gid))?;
        }
        if self.masked || self.owner.is_some() {
            f.set_permissions(fs::Permissions::from_mode(self.mode))?;
        }
        filetime::set_file_handle_times(f, Some(self.mtime), Some(self.mtime))
    }
}

/// One small file to create: where, its whole contents, and its metadata.
pub struct FileJob {
    pub path: PathBuf,
    pub data: Vec<u8>,
    pub meta: FileMeta,
    pub xattrs: Vec<(OsString, Vec<u8>)>,
}

impl FileJob {
    fn run(self) -> Result<()> {
        let mut f = self.meta.create(&self.path)?;
        f.write_all(&self.data)?;
        self.meta.apply(&f)?;
        for (name, value) in &self.xattrs {
            // the filesystem or our privileges may not allow it: skipping is the documented outcome
            let _ = xattr::FileExt::set_xattr(&f, name, value);
        }
        Ok(())
    }
}

#[derive(Default)]
struct State {
    pending: usize,
    error: Option<Error>,
}

type Shared = Arc<(Mutex<State>, Condvar)>;

pub struct Writers {
    batch: Vec<FileJob>,
    batch_bytes: usize,
    tx: Option<SyncSender<Vec<FileJob>>>,
    workers: Vec<JoinHandle<()>>,
    state: Shared,
}

impl Writers {
    pub fn start(count: usize) -> Result<Writers> {
        let (tx, rx) = sync_channel::<Vec<FileJob>>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let state: Shared = Arc::default();
        let mut workers = Vec::with_capacity(count);
        for i in 0..count {
            let (rx, state) = (rx.clone(), state.clone());
            workers.push(thread::Builder::new().name(format!("dd-layer-write{i}")).spawn(move || work(&rx, &state))?);
        }
        Ok(Writers { batch: Vec::new(), batch_bytes: 0, tx: Some(tx), workers, state })
    }

    /// Queue a file; fails with the first error a worker met, if any.
    pub fn submit(&mut self, job: FileJob) -> Result<()> {
        self.batch_bytes += job.data.len();
        self.batch.push(job);
        if self.batch.len() >= BATCH_FILES || self.batch_bytes >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.batch_bytes = 0;
        let batch = std::mem::take(&mut self.batch);
        {
            let mut s = self.state.0.lock().expect("writer state");
            if let Some(e) = s.error.take() {
                return Err(e);
            }
            s.pending += 1;
        }
        let tx = self.tx.as_ref().expect("writers running");
        if tx.send(batch).is_err() {
            self.state.0.lock().expect("writer state").pending -= 1; // or drain would wait for it
            return Err(Error::InvalidLayer("file writer threads stopped".into()));
        }
        Ok(())
    }

    /// Wait until every queued file is written; the first error a worker met, if any.
    pub fn drain(&mut self) -> Result<()> {
        self.flush()?;
        let (lock, cvar) = &*self.state;
        let mut s = lock.lock().expect("writer state");
        while s.pending > 0 {
            s = cvar.wait(s).expect("writer state");
        }
        s.error.take().map_or(Ok(()), Err)
    }
}

impl Drop for Writers {
    fn drop(&mut self) {
        self.tx = None; // the workers finish what is queued (an unsent batch is dropped), then stop
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn work(rx: &Mutex<Receiver<Vec<FileJob>>>, state: &Shared) {
    loop {
        let batch = match rx.lock().expect("writer queue").recv() {
            Ok(batch) => batch,
            Err(_) => return,
        };
        let failed = state.0.lock().expect("writer state").error.is_some();
        let res = if failed {
            Ok(())
        } else {
            // a panic must still count the batch as done, or the parser would wait for it forever
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| batch.into_iter().try_for_each(FileJob::run)))
                .unwrap_or_else(|_| Err(Error::InvalidLayer("a file writer thread panicked".into())))
        };
        let (lock, cvar) = &**state;
        let mut s = lock.lock().expect("writer state");
        s.pending -= 1;
        if let Err(e) = res {
            s.error.get_or_insert(e);
        }
        if s.pending == 0 {
            cvar.notify_all();
        }
    }
}
