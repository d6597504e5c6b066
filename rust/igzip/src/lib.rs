//! ISA-L's stateless deflate at level 1 (igzip), as one safe call: each call makes one complete
//! gzip member of its input. This crate is the workspace's only `unsafe` code, kept to the FFI.
//!
//! Why not isal-rs's `compress_into`: it builds the `isal_zstream` and an `isal_hufftables` from
//! `MaybeUninit::uninit()` and calls `assume_init()` on both. ISA-L's stateless init writes only
//! some of the stream's fields, and for the default Huffman table it never writes the table it is
//! handed at all (it points the stream at its own static table), so isal-rs declares
//! uninitialised bytes initialised: undefined behaviour in code we link. Here the stream is
//! all zeroes before ISA-L's init (every field is an integer or a raw pointer, for which zero is
//! a valid value), no table is passed, and the level buffer belongs to the compressor and is
//! zeroed before every block, so one call's output depends on its input alone.
use std::fmt;

use isal_sys::igzip_lib as isal;

/// The level buffer ISA-L recommends for level 1 (`ISAL_DEF_LVL1_DEFAULT`, 276 KiB).
const LEVEL_BUF: usize = isal::ISAL_DEF_LVL1_DEFAULT as usize;

/// ISA-L refused the block: its return code (e.g. `STATELESS_OVERFLOW` when `output` is too small).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error(pub i32);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            isal::STATELESS_OVERFLOW => write!(f, "ISA-L deflate: the output buffer is too small"),
            code => write!(f, "ISA-L deflate failed (code {code})"),
        }
    }
}

impl std::error::Error for Error {}

/// A level-1 gzip compressor: its stream state and level buffer, reused from block to block.
pub struct GzipLevel1 {
    stream: Box<isal::isal_zstream>,
    level_buf: Vec<u8>,
}

impl Default for GzipLevel1 {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: the raw pointers in the stream point into the caller's slices only during `compress`
// (which takes `&mut self`) and are cleared before it returns; between calls the struct owns
// nothing but plain memory.
unsafe impl Send for GzipLevel1 {}

impl GzipLevel1 {
    pub fn new() -> Self {
        // SAFETY: isal_zstream is a C struct of integers, arrays of integers and raw pointers:
        // all-zero bytes are a valid value of it.
        let stream = unsafe { Box::<isal::isal_zstream>::new_zeroed().assume_init() };
        GzipLevel1 { stream, level_buf: vec![0u8; LEVEL_BUF] }
    }

    /// The most bytes one member of `len` input bytes can take: stored blocks cost 5 bytes per
    /// 64 KiB, and the gzip header and trailer fit in the slack.
    pub fn bound(len: usize) -> usize {
        len + len / 64 + 4096
    }

    /// Compress `input` into `output` as one gzip member; returns how many bytes of `output` it
    /// took. `output` of [`GzipLevel1::bound`] bytes always suffices.
    pub fn compress(&mut self, input: &[u8], output: &mut [u8]) -> Result<usize, Error> {
        let avail_in = u32::try_from(input.len()).map_err(|_| Error(isal::ISAL_INVALID_OPERATION))?;
        let avail_out = u32::try_from(output.len()).unwrap_or(u32::MAX);
        self.level_buf.fill(0);
        let s: &mut isal::isal_zstream = &mut self.stream;
        // SAFETY: `s` is a valid, exclusively borrowed stream; ISA-L only writes into it.
        unsafe {
            std::ptr::write_bytes(s as *mut isal::isal_zstream, 0, 1);
            isal::isal_deflate_stateless_init(s);
        }
        s.level = 1;
        s.level_buf = self.level_buf.as_mut_ptr();
        s.level_buf_size = LEVEL_BUF as u32;
        s.gzip_flag = isal::IGZIP_GZIP as u16;
        s.flush = isal::NO_FLUSH as u16;
        s.end_of_stream = 1;
        // ISA-L reads next_in and writes next_out; it never writes through next_in
        s.next_in = input.as_ptr() as *mut u8;
        s.avail_in = avail_in;
        s.next_out = output.as_mut_ptr();
        s.avail_out = avail_out;
        // SAFETY: the pointers and lengths describe live slices borrowed for this call, and the
        // level buffer is ours and `LEVEL_BUF` bytes long.
        let code = unsafe { isal::isal_deflate_stateless(s) };
        let written = s.total_out as usize;
        s.next_in = std::ptr::null_mut();
        s.next_out = std::ptr::null_mut();
        s.level_buf = std::ptr::null_mut();
        if code != isal::COMP_OK as i32 {
            return Err(Error(code));
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample(n: usize, seed: u32) -> Vec<u8> {
        (0..n as u32).map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 24) as u8 & 0x3f).collect()
    }

    fn gunzip(b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(b).read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn a_member_decodes_to_its_input() {
        let mut c = GzipLevel1::new();
        for data in [Vec::new(), b"a".to_vec(), sample(1 << 20, 7), vec![0u8; 300_000]] {
            let mut out = vec![0u8; GzipLevel1::bound(data.len())];
            let n = c.compress(&data, &mut out).unwrap();
            assert_eq!(gunzip(&out[..n]), data);
        }
    }

    #[test]
    fn the_output_depends_on_the_input_alone() {
        // one compressor reused after other inputs, a fresh one, and a dirty output buffer
        let data = sample(1 << 20, 1);
        let mut fresh = GzipLevel1::new();
        let mut want = vec![0u8; GzipLevel1::bound(data.len())];
        let n = fresh.compress(&data, &mut want).unwrap();
        want.truncate(n);
        let mut reused = GzipLevel1::new();
        for seed in 2..6 {
            let other = sample(1 << 20, seed);
            let mut scratch = vec![0xa5u8; GzipLevel1::bound(other.len())];
            reused.compress(&other, &mut scratch).unwrap();
            let mut out = scratch; // holds the other member's bytes
            let m = reused.compress(&data, &mut out).unwrap();
            assert!(out[..m] == want[..], "a reused compressor gave other bytes");
        }
    }

    #[test]
    fn too_small_an_output_is_an_error() {
        let data = sample(1 << 16, 3);
        let mut out = vec![0u8; 64];
        let err = GzipLevel1::new().compress(&data, &mut out).unwrap_err();
        assert_eq!(err, Error(isal::STATELESS_OVERFLOW));
    }
}
