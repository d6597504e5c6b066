//! docker-distribution core: the byte-heavy work of a registry client, with no Python in sight.
//!
//! * [`digest`]: content digests (sha256/sha384/sha512), streaming digesters, file verification.
//! * [`error`]: the one error enum every operation returns; the binding maps it onto the Python hierarchy.
#![forbid(unsafe_code)]

pub mod digest;
pub mod error;

pub use digest::{Algorithm, Digest, Digester};
pub use error::{Error, Result};
