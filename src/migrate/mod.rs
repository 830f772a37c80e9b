//! Moving a vector index to a new embedding model without re-embedding the corpus.
//!
//! An index of documents embedded by an old model A is moved to a new model B by re-embedding only
//! a sample of *anchor* texts with both models and fitting a map from A's space to B's
//! ([`MigrationMap`]). The whole index then goes through the map ([`MigrationMap::apply_file`],
//! streamed, so memory stays flat), or, the other way round, the new model's queries are brought
//! back to the old index (`--inverse`). [`MigrationMap::evaluate`] says whether it is safe: the
//! recall the migrated index keeps against re-embedding everything.
//!
//! Methods ([`MigrationMethod`]): Procrustes, affine and linear least squares (closed form, from
//! [`crate::space::translation`]), `lowrank` and `mlp` residual adapters trained with candle-nn,
//! and `relative`, the paper's zero-shot route that fits nothing: both sides become similarities
//! to the anchors.
//!
//! ```no_run
//! # fn main() -> relstitch::Result<()> {
//! use relstitch::migrate::{ApplyOptions, EvalOptions, MigrationMap, MigrationMethod, MigrationOptions};
//! use relstitch::{AnchorSet, Encoder, EncoderOptions};
//!
//! let old = Encoder::load("all-MiniLM-L6-v2", &EncoderOptions::default())?;
//! let new = Encoder::load("all-mpnet-base-v2", &EncoderOptions::default())?;
//! let texts = relstitch::io::read_texts("anchors.txt".as_ref(), "text")?; // 1,000 corpus texts
//! let anchors = AnchorSet::from_texts(&texts)?;
//! let options = MigrationOptions::default().with_method(MigrationMethod::Affine);
//! let mut map = MigrationMap::fit(&old, &new, &anchors, &options)?;
//! map.save("map-minilm-to-mpnet".as_ref())?;
//! // The old index (written by `relstitch embed` with MiniLM) into MPNet's space, in chunks:
//! map.apply_file("index-minilm.safetensors".as_ref(), "index-mpnet.safetensors".as_ref(), &ApplyOptions::default())?;
//! // Is it safe? Queries embedded by MPNet against the migrated documents vs re-embedded ones.
//! println!("{}", map.evaluate("eval.jsonl".as_ref(), &EvalOptions::default())?);
//! # Ok(()) }
//! ```

mod adapter;
mod apply;
mod eval;
mod map;
mod method;
mod plan;
mod unpaired;

pub use adapter::AdapterReport;
pub use apply::{check_identity, ApplyOptions, ApplySummary, Reembed};
pub use eval::{
    ranks, read_eval_data, split_eval_rows, ConfidenceCheck, EvalOptions, EvalRow, MigrationEval,
    RetrievalScores,
};
pub use map::{
    CvScores, Direction, FitDiagnostics, MapAnchors, MapConfig, MigrationMap, FORMAT,
    FORMAT_VERSION,
};
pub use method::{AdapterTraining, MigrationMethod, MigrationOptions, MIN_TRAINED_ANCHORS};
pub use plan::{
    plan, predict_curve, Budget, CurvePoint, LearningCurve, MigrationPlan, PlanOptions,
};

/// Parses a share of rows: `10%`, `2.5 %` or a fraction such as `0.1`.
///
/// # Errors
/// [`crate::Error::InvalidArgument`] for anything else, or a share outside `(0, 1]`.
pub fn parse_share(s: &str) -> crate::Result<f64> {
    let t = s.trim();
    let (v, pct) = match t.strip_suffix('%') {
        Some(p) => (p.trim(), true),
        None => (t, false),
    };
    let v: f64 = v.parse().map_err(|_| {
        crate::Error::invalid(
            "share",
            format!("`{s}`: write a percentage such as 10% or a fraction such as 0.1"),
        )
    })?;
    let v = if pct { v / 100.0 } else { v };
    if !(v > 0.0 && v <= 1.0) {
        return Err(crate::Error::invalid(
            "share",
            format!("`{s}` is not in (0, 100] %"),
        ));
    }
    Ok(v)
}
