//! Heads on top of latent spaces: [`decoder`]s trained with candle-nn, [`checkpoint`]s that store
//! them with everything needed to reproduce them, [`stitch`] (fit a checkpoint, run it, and stitch
//! the encoder of one checkpoint to the decoder of another) and the classification [`scores`].

pub mod checkpoint;
pub mod decoder;
pub mod scores;
pub mod stitch;
