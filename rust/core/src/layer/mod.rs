//! Layers: applying a compressed tar to a directory, rebuilding its tar, and producing new ones.
//!
//! * [`contain`]: path resolution strictly inside the target root.
//! * [`apply`]: the one-pass verify + decompress + diffID + untar pipeline.
//! * [`split`]: the record that rebuilds a diff's tar byte for byte.
//! * [`writers`]: worker threads that create a layer's small files.
//! * [`produce`]: deterministic tar + parallel compression for push.
pub mod apply;
pub mod contain;
pub mod produce;
pub mod split;
pub mod writers;
