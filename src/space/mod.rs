//! Latent-space maths, from absolute latents to relative ones and between spaces.
//!
//! - [`anchors`]: the fixed samples every relative representation is measured against;
//! - [`projection`]: absolute latents → relative latents (cosine, Euclidean, L1, L∞, sparse top-k,
//!   aggregated), with the pre-transforms (centring, standardisation) fitted on the anchors;
//! - [`translation`]: a map from one encoder's absolute space into another's, fitted on parallel
//!   anchors (Procrustes, linear, affine);
//! - [`similarity`]: how alike two spaces are (CKA, k-NN Jaccard, retrieval, mean cosine);
//! - [`relative_file`]: the file `relstitch relative` writes, and anchor specs (`rows:0..300`, files).

pub mod anchors;
pub(crate) mod linalg;
pub mod projection;
pub mod relative_file;
pub mod similarity;
pub(crate) mod tensor;
pub mod translation;
