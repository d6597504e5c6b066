//! docker-distribution core: the byte-heavy work of a registry client, with no Python in sight.
//!
//! * [`blobfile`]: a content-store ingest's file: append, hash, write back to the disk as it grows.
//! * [`digest`]: content digests (sha256/sha384/sha512), streaming digesters, file verification.
//! * [`error`]: the one error enum every operation returns; the binding maps it onto the Python hierarchy.
//! * [`compression`]: detection by magic bytes and streaming decoders.
//! * [`verify`]: readers that check size and digest at EOF.
//! * [`pipe`]: a bounded pipe so stages on different threads overlap.
//! * [`reading`]: reads that ride out `EINTR`.
//! * [`layer`]: applying, rebuilding and producing layer tars.
#![forbid(unsafe_code)]

pub mod blobfile;
pub mod compression;
pub mod digest;
pub mod error;
pub mod layer;
pub mod pipe;
pub mod reading;
pub mod verify;

pub use digest::{Algorithm, Digest, Digester};
pub use error::{Error, Result};
