//! Two real, separately trained encoders: their relative spaces agree far better than their
//! absolute ones (the analogue of the paper's Table 1). Real texts: the `fortunes` dataset.

use relstitch::data::{Builtin, Dataset};
use relstitch::encoder::{Encoder, EncoderOptions};
use relstitch::hub::fetch::Fetcher;
use relstitch::space::anchors::{AnchorPool, AnchorSet, AnchorStrategy};
use relstitch::space::projection::{PreTransform, Projection, RelativeProjector};
use relstitch::space::similarity::compare_spaces;

#[test]
fn relative_spaces_agree_far_better_than_absolute_ones() -> anyhow::Result<()> {
    let data = Dataset::builtin(Builtin::Fortunes, &Fetcher::new()?.with_quiet(true))?;
    // 400 texts spread over the dataset (every 8th record).
    let texts: Vec<String> = data
        .records
        .iter()
        .step_by(8)
        .take(400)
        .map(|r| r.text.clone())
        .collect();
    let o = EncoderOptions::default().with_batch_size(32);
    // Both 384 wide, trained separately from different initialisations and vocabularies: absolute
    // coordinates are unrelated. (paraphrase-MiniLM-L3-v2 would be a poor control: it shares
    // all-MiniLM-L6-v2's ancestry, and their absolute spaces still retrieve each other, MRR ~0.9.)
    let a = Encoder::load("all-MiniLM-L6-v2", &o)?.embed(&texts)?;
    let b =
        Encoder::load("multilingual-e5-small", &o.clone().with_prefix("query: "))?.embed(&texts)?;
    let anchors = AnchorSet::select(
        &AnchorPool::new(texts.len()),
        128,
        &AnchorStrategy::Uniform { seed: 0 },
    )?;
    let rel = |x: &candle_core::Tensor| -> anyhow::Result<candle_core::Tensor> {
        Ok(
            RelativeProjector::fit(&anchors.latents(x)?, Projection::Cosine, PreTransform::NONE)?
                .project(x)?,
        )
    };
    let abs = compare_spaces(&a, &b, 10)?;
    let relative = compare_spaces(&rel(&a)?, &rel(&b)?, 10)?;
    eprintln!("absolute:\n{abs}\nrelative:\n{relative}");
    let (abs_mrr, rel_mrr) = (abs.mrr.unwrap_or(0.0), relative.mrr.unwrap_or(0.0));
    assert!(
        abs_mrr < 0.05,
        "absolute cross-space retrieval should be near chance: {abs_mrr}"
    );
    assert!(
        rel_mrr > 0.3 && rel_mrr > 10.0 * abs_mrr,
        "relative cross-space retrieval should work: {rel_mrr} vs {abs_mrr}"
    );
    assert!(relative.mean_cosine.unwrap_or(0.0) > 0.5, "{relative}");
    assert!(abs.mean_cosine.unwrap_or(1.0) < 0.2, "{abs}");
    // Neighbourhoods (Jaccard@10) are intrinsic: they need no shared coordinates, so both spaces
    // agree on them, well above chance (10/400 = 0.025).
    assert!(
        relative.jaccard_at_k > 0.075 && abs.jaccard_at_k > 0.075,
        "{abs}\n{relative}"
    );
    Ok(())
}
