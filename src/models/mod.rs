//! Model architectures that candle-transformers does not provide.

pub mod mpnet;
