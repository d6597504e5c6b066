//! A bounded in-memory pipe between threads, so decoding and file writing overlap.
//!
//! The writer side sends owned chunks; the reader side implements `Read`. Memory is bounded by
//! `capacity` chunks. An error on either side reaches the other: a dropped writer without
//! `close()` is a truncated stream, and a dropped reader makes `send` fail with `Cancelled`.
use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use crate::error::Error;

enum Msg {
    Data(Vec<u8>),
    End,
    Fail(String),
}

pub struct PipeWriter {
    tx: SyncSender<Msg>,
}

pub struct PipeReader {
    rx: Receiver<Msg>,
    current: Vec<u8>,
    pos: usize,
    ended: bool,
    /// where chunks go once read, for the writer side to fill again (see [`PipeReader::recycling`])
    recycle: Option<SyncSender<Vec<u8>>>,
}

pub fn pipe(capacity: usize) -> (PipeWriter, PipeReader) {
    let (tx, rx) = sync_channel(capacity);
    (PipeWriter { tx }, PipeReader { rx, current: Vec::new(), pos: 0, ended: false, recycle: None })
}

impl PipeWriter {
    pub fn send(&self, chunk: Vec<u8>) -> Result<(), Error> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.tx.send(Msg::Data(chunk)).map_err(|_| Error::Cancelled)
    }

    /// A clean end of stream.
    pub fn close(self) {
        let _ = self.tx.send(Msg::End);
    }

    /// End the stream with an error the reader will see.
    pub fn fail(self, reason: String) {
        let _ = self.tx.send(Msg::Fail(reason));
    }
}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Msg::Data(d)) => {
                    let used = std::mem::replace(&mut self.current, d);
                    self.pos = 0;
                    if let Some(back) = &self.recycle {
                        if used.capacity() > 0 {
                            let _ = back.try_send(used); // a full pool: the chunk is freed instead
                        }
                    }
                }
                Ok(Msg::End) => {
                    self.ended = true;
                    return Ok(0);
                }
                Ok(Msg::Fail(reason)) => return Err(io::Error::other(reason)),
                Err(_) => return Err(Error::Cancelled.into_io()),
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// `Write` into a pipe in chunks of about `chunk` bytes (for producers feeding an uploader).
pub struct ChunkWriter {
    tx: Option<PipeWriter>,
    buf: Vec<u8>,
    chunk: usize,
}

impl ChunkWriter {
    pub fn new(tx: PipeWriter, chunk: usize) -> ChunkWriter {
        ChunkWriter { tx: Some(tx), buf: Vec::with_capacity(chunk), chunk }
    }

    fn send_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(self.chunk));
        self.tx.as_ref().ok_or_else(|| Error::Cancelled.into_io())?.send(data).map_err(Error::into_io)
    }

    /// Flush and end the stream cleanly.
    pub fn close(mut self) -> io::Result<()> {
        self.send_buf()?;
        if let Some(tx) = self.tx.take() {
            tx.close();
        }
        Ok(())
    }

    /// End the stream with an error.
    pub fn fail(mut self, reason: String) {
        if let Some(tx) = self.tx.take() {
            tx.fail(reason);
        }
    }
}

impl io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= self.chunk {
            self.send_buf()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl PipeReader {
    /// Send each chunk, once read, to `back`, so the writer side can fill it again instead of
    /// allocating (and zeroing) a fresh one per chunk.
    pub fn recycling(mut self, back: SyncSender<Vec<u8>>) -> PipeReader {
        self.recycle = Some(back);
        self
    }

    /// The next chunk as sent (no copying into a caller's buffer); `None` at a clean end.
    pub fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        if self.pos < self.current.len() {
            let rest = self.current.split_off(self.pos);
            self.current.clear();
            self.pos = 0;
            return Ok(Some(rest));
        }
        if self.ended {
            return Ok(None);
        }
        match self.rx.recv() {
            Ok(Msg::Data(d)) => Ok(Some(d)),
            Ok(Msg::End) => {
                self.ended = true;
                Ok(None)
            }
            Ok(Msg::Fail(reason)) => Err(io::Error::other(reason)),
            Err(_) => Err(Error::Cancelled.into_io()),
        }
    }
}
