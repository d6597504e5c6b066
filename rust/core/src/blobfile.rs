//! Blob files: the append-only file behind a content-store ingest. Every byte written is hashed
//! on the way (so committing needs no second read), and a file meant to be committed durably
//! hands its pages to the disk while it grows: past [`WRITEBACK_STEP`] bytes a helper thread
//! runs `fdatasync` on its own handle whenever another step has been written, so the final
//! [`BlobFile::sync`] waits for the tail only instead of for the whole blob (writing back 270 MB
//! costs ~0.55 s on this kind of VM disk — as long as the download itself).
//!
//! A resumed file (one that already has bytes) is hashed once when opened.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::JoinHandle;

use crate::digest::{Algorithm, Digest, Digester};
use crate::error::{Error, Result};

/// Bytes written between two hand-offs to the disk; smaller blobs never start the helper thread.
pub const WRITEBACK_STEP: u64 = 16 << 20;

/// The helper thread that writes a growing file's pages back to the disk.
struct Writeback {
    nudge: SyncSender<()>,
    thread: JoinHandle<()>,
}

impl Writeback {
    fn start(file: &File) -> Result<Writeback> {
        let handle = file.try_clone()?;
        let (nudge, nudged) = sync_channel::<()>(1);
        let thread = std::thread::Builder::new().name("dd-writeback".into()).spawn(move || {
            // an error here resurfaces in the final sync, which is the one that counts
            while nudged.recv().is_ok() {
                let _ = handle.sync_data();
            }
        })?;
        Ok(Writeback { nudge, thread })
    }

    /// Ask for another pass; one already pending covers this one too.
    fn nudge(&self) {
        let _ = self.nudge.try_send(());
    }

    /// Stop and wait for the pass in progress (so the caller's own sync starts from a quiet file).
    fn finish(self) {
        drop(self.nudge);
        let _ = self.thread.join();
    }
}

/// An open blob file. `hashing: false` keeps bytes only (for resumption; someone else verifies).
pub struct BlobFile {
    file: Option<File>,
    digester: Option<Digester>,
    size: u64,
    writeback: bool,
    helper: Option<Writeback>,
    handed: u64,
}

impl BlobFile {
    /// Open `path` for appending, creating it; bytes already there count (and are hashed).
    pub fn open(path: &Path, algorithm: Option<Algorithm>, writeback: bool) -> Result<BlobFile> {
        let file = OpenOptions::new().create(true).append(true).read(true).open(path)?;
        let size = file.metadata()?.len();
        let mut blob = BlobFile { file: Some(file), digester: None, size, writeback, helper: None, handed: size };
        if let Some(alg) = algorithm {
            blob.digester = Some(blob.hash_prefix(alg, size)?);
        }
        Ok(blob)
    }

    fn file(&self) -> Result<&File> {
        self.file.as_ref().ok_or_else(|| Error::Io(std::io::Error::other("blob file is closed")))
    }

    /// Hash the first `size` bytes of the file.
    fn hash_prefix(&self, algorithm: Algorithm, size: u64) -> Result<Digester> {
        let mut f = self.file()?.try_clone()?;
        f.seek(SeekFrom::Start(0))?;
        let mut d = Digester::new(algorithm);
        d.update_from(f.take(size))?;
        Ok(d)
    }

    /// Bytes in the file.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The digest of the bytes so far (`None` for a file opened without hashing).
    pub fn digest(&self) -> Option<Digest> {
        self.digester.as_ref().map(Digester::peek)
    }

    /// Append `data`, hash it, and hand another step of pages to the disk when one has grown.
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        self.file()?.write_all(data)?;
        if let Some(d) = self.digester.as_mut() {
            d.update(data);
        }
        self.size += data.len() as u64;
        if self.writeback && self.size - self.handed >= WRITEBACK_STEP {
            if self.helper.is_none() {
                self.helper = Some(Writeback::start(self.file()?)?);
            }
            if let Some(h) = &self.helper {
                h.nudge();
            }
            self.handed = self.size;
        }
        Ok(())
    }

    /// Cut the file to `size` bytes (and the digest with it).
    pub fn truncate(&mut self, size: u64) -> Result<()> {
        self.file()?.set_len(size)?;
        self.size = size;
        self.handed = self.handed.min(size);
        if let Some(alg) = self.digester.as_ref().map(Digester::algorithm) {
            self.digester = Some(self.hash_prefix(alg, size)?);
        }
        Ok(())
    }

    /// Make the whole file durable (data and size).
    pub fn sync(&mut self) -> Result<()> {
        if let Some(h) = self.helper.take() {
            h.finish();
        }
        self.file()?.sync_all()?;
        Ok(())
    }

    /// Close the file (the helper thread, if any, ends on its own); later writes fail.
    pub fn close(&mut self) {
        self.helper = None;
        self.file = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_writes_resumes_and_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let big = vec![7u8; (WRITEBACK_STEP as usize) * 2 + 5];
        let mut f = BlobFile::open(&path, Some(Algorithm::Sha256), true).unwrap();
        f.write(b"hello ").unwrap();
        f.write(&big).unwrap(); // starts the writeback helper
        f.sync().unwrap();
        f.close();
        assert!(f.write(b"x").is_err(), "a closed file takes no more bytes");

        let mut whole = b"hello ".to_vec();
        whole.extend_from_slice(&big);
        assert_eq!(std::fs::read(&path).unwrap(), whole);

        // reopened: the bytes already there are hashed, new ones append
        let mut f = BlobFile::open(&path, Some(Algorithm::Sha256), false).unwrap();
        assert_eq!(f.size(), whole.len() as u64);
        assert_eq!(f.digest().unwrap(), Digest::of_bytes(Algorithm::Sha256, &whole));
        f.write(b"!").unwrap();
        whole.push(b'!');
        assert_eq!(f.digest().unwrap(), Digest::of_bytes(Algorithm::Sha256, &whole));

        f.truncate(3).unwrap();
        f.write(b"p").unwrap();
        f.sync().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"help");
        assert_eq!(f.digest().unwrap(), Digest::of_bytes(Algorithm::Sha256, b"help"));

        let plain = BlobFile::open(&path, None, false).unwrap();
        assert_eq!((plain.size(), plain.digest()), (4, None));
    }
}
