//! Reads that ride out `EINTR`: one read, or a buffer filled up to the end of the input.
use std::io::{self, Read};

/// One `read`, repeated while it is interrupted; `Ok(0)` is the end of the input.
pub fn read_once<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Read until `buf` is full or the input ends; returns how many bytes were read.
pub fn read_full<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match read_once(r, &mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Yields `Interrupted` before every real read, and at most 3 bytes at a time.
    struct Jumpy<'a> {
        data: &'a [u8],
        interrupt: bool,
    }

    impl Read for Jumpy<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.interrupt = !self.interrupt;
            if self.interrupt {
                return Err(io::Error::from(io::ErrorKind::Interrupted));
            }
            let n = buf.len().min(3).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn interrupted_reads_are_repeated_and_short_reads_filled() {
        let mut r = Jumpy { data: b"hello world", interrupt: false };
        let mut buf = [0u8; 8];
        assert_eq!(read_once(&mut r, &mut buf).unwrap(), 3);
        assert_eq!(read_full(&mut r, &mut buf).unwrap(), 8);
        assert_eq!(&buf, b"lo world");
        assert_eq!(read_full(&mut r, &mut buf).unwrap(), 0);
    }
}
