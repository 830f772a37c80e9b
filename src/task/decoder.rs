//! Decoders: the classification heads trained on (relative or absolute) latents with candle-nn.
//!
//! The paper's head starts with a LayerNorm on the input vector, then a Linear layer; the MLP
//! variant adds a hidden layer with normalisation between layers. Training is AdamW on cross-entropy
//! with early stopping on a validation split, and is deterministic for a given seed on CPU (weights
//! are initialised from a seeded ChaCha generator, batches shuffled by it).

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{
    layer_norm, linear, LayerNorm, LayerNormConfig, Linear, Module, Optimizer, VarBuilder, VarMap,
};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::CandleContext;
use crate::task::scores::{score, Scores};
use crate::{Error, Result};

/// The shape of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HeadKind {
    /// LayerNorm, then Linear (the paper's).
    Linear,
    /// LayerNorm, Linear to `hidden`, GELU, LayerNorm, Linear.
    Mlp {
        /// Width of the hidden layer.
        hidden: usize,
    },
}

/// Everything needed to rebuild a head from its weights.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadConfig {
    /// The head's shape.
    pub kind: HeadKind,
    /// Width of the input vectors (number of anchors for relative heads).
    pub input_dim: usize,
    /// Number of classes.
    pub num_classes: usize,
}

/// A classification head.
#[derive(Debug, Clone)]
pub struct Head {
    config: HeadConfig,
    norm: LayerNorm,
    layers: Vec<Linear>,
    hidden_norm: Option<LayerNorm>,
}

const LN_EPS: f64 = 1e-5;

/// The widest layer [`HeadConfig::validate`] accepts (input, hidden or classes): 2²⁴, far above any
/// embedding or anchor count, far below an allocation that cannot succeed.
pub const MAX_HEAD_WIDTH: usize = 1 << 24;

impl HeadConfig {
    /// Checks the sizes: input width, hidden width and classes at least 1 (2 classes), each at
    /// most [`MAX_HEAD_WIDTH`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the size and what to use instead.
    pub fn validate(&self) -> Result<()> {
        let width = |what: &str, v: usize, min: usize, fix: &str| {
            if v < min || v > MAX_HEAD_WIDTH {
                Err(Error::invalid(
                    what,
                    format!("{v}: must be between {min} and {MAX_HEAD_WIDTH}; {fix}"),
                ))
            } else {
                Ok(())
            }
        };
        width(
            "head input width",
            self.input_dim,
            1,
            "the head needs vectors with at least one dimension (relative heads: at least 2 anchors)",
        )?;
        width(
            "number of classes",
            self.num_classes,
            2,
            "a classifier needs at least two labels",
        )?;
        self.kind.validate()
    }
}

impl HeadKind {
    /// Checks the hidden width of [`HeadKind::Mlp`]: between 1 and [`MAX_HEAD_WIDTH`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the width.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Self::Mlp { hidden } if hidden == 0 || hidden > MAX_HEAD_WIDTH => Err(Error::invalid(
                "hidden width (--hidden)",
                format!(
                    "{hidden}: must be between 1 and {MAX_HEAD_WIDTH}; use e.g. 256, or the \
                     linear head"
                ),
            )),
            _ => Ok(()),
        }
    }
}

impl Head {
    /// Builds the head from `vb` (names: `norm`, `fc0`, `hidden_norm`, `fc1`).
    pub fn load(vb: VarBuilder, config: &HeadConfig) -> candle_core::Result<Self> {
        if let Err(e) = config.validate() {
            candle_core::bail!("{e}");
        }
        let ln = LayerNormConfig {
            eps: LN_EPS,
            ..Default::default()
        };
        let norm = layer_norm(config.input_dim, ln, vb.pp("norm"))?;
        let (layers, hidden_norm) = match config.kind {
            HeadKind::Linear => (
                vec![linear(config.input_dim, config.num_classes, vb.pp("fc0"))?],
                None,
            ),
            HeadKind::Mlp { hidden } => (
                vec![
                    linear(config.input_dim, hidden, vb.pp("fc0"))?,
                    linear(hidden, config.num_classes, vb.pp("fc1"))?,
                ],
                Some(layer_norm(hidden, ln, vb.pp("hidden_norm"))?),
            ),
        };
        Ok(Self {
            config: config.clone(),
            norm,
            layers,
            hidden_norm,
        })
    }

    /// The head's configuration.
    pub fn config(&self) -> &HeadConfig {
        &self.config
    }

    /// Class logits.
    ///
    /// # Shapes
    /// - `x`: `[n, input_dim]` f32; returns `[n, num_classes]`
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (_, d) = x.dims2()?;
        if d != self.config.input_dim {
            candle_core::bail!(
                "head expects vectors of width {}, got {d}",
                self.config.input_dim
            );
        }
        let mut h = differentiable_norm(&self.norm, x)?;
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h)?;
            if i + 1 < self.layers.len() {
                h = h.gelu_erf()?;
                if let Some(n) = &self.hidden_norm {
                    h = differentiable_norm(n, &h)?;
                }
            }
        }
        Ok(h)
    }

    /// Class probabilities (softmax of the logits).
    ///
    /// # Shapes
    /// - `x`: `[n, input_dim]`; returns `[n, num_classes]`
    pub fn probabilities(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::softmax_last_dim(&self.forward(x)?)
    }
}

/// `norm` applied with candle's unfused LayerNorm, which has a backward pass: the fused op that
/// `LayerNorm::forward` uses on contiguous inputs has none, so gradients would stop at the norm
/// (leaving its scale and shift, and every layer before a hidden norm, untrained).
fn differentiable_norm(norm: &LayerNorm, x: &Tensor) -> candle_core::Result<Tensor> {
    match norm.bias() {
        Some(bias) => candle_nn::ops::layer_norm_slow(x, norm.weight(), bias, LN_EPS as f32),
        None => norm.forward(x),
    }
}

/// Fills `varmap` with seeded initial weights for a head of `config`: LayerNorms at (1, 0), Linear
/// layers uniform in ±1/√fan_in like PyTorch's defaults.
fn seeded_vars(
    varmap: &VarMap,
    config: &HeadConfig,
    seed: u64,
    device: &Device,
) -> candle_core::Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut shapes: Vec<(String, Vec<usize>, f32)> = vec![
        ("norm.weight".into(), vec![config.input_dim], f32::NAN),
        ("norm.bias".into(), vec![config.input_dim], 0.0),
    ];
    let dims: Vec<(usize, usize)> = match config.kind {
        HeadKind::Linear => vec![(config.input_dim, config.num_classes)],
        HeadKind::Mlp { hidden } => {
            shapes.push(("hidden_norm.weight".into(), vec![hidden], f32::NAN));
            shapes.push(("hidden_norm.bias".into(), vec![hidden], 0.0));
            vec![(config.input_dim, hidden), (hidden, config.num_classes)]
        }
    };
    let mut data = varmap
        .data()
        .lock()
        .map_err(|_| candle_core::Error::Msg("poisoned var map".into()))?;
    for (name, shape, value) in shapes {
        let v = if value.is_nan() { 1.0 } else { value };
        data.insert(name, Var::from_tensor(&Tensor::full(v, shape, device)?)?);
    }
    for (i, (fan_in, fan_out)) in dims.into_iter().enumerate() {
        let bound = 1.0 / (fan_in as f32).sqrt();
        let w: Vec<f32> = (0..fan_in * fan_out)
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        let b: Vec<f32> = (0..fan_out)
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        data.insert(
            format!("fc{i}.weight"),
            Var::from_tensor(&Tensor::from_vec(w, (fan_out, fan_in), device)?)?,
        );
        data.insert(
            format!("fc{i}.bias"),
            Var::from_tensor(&Tensor::from_vec(b, fan_out, device)?)?,
        );
    }
    Ok(())
}

/// How to train a head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    /// Maximum passes over the training set.
    pub epochs: usize,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Samples per step.
    pub batch_size: usize,
    /// Seed of initialisation, validation split and shuffling.
    pub seed: u64,
    /// Fraction of the training set held out for early stopping (stratified).
    pub val_fraction: f64,
    /// Epochs without validation improvement before stopping.
    pub patience: usize,
    /// Shows a progress bar.
    #[serde(skip)]
    pub progress: bool,
}

impl TrainOptions {
    /// Checks the options: at least 1 epoch and 1 sample per step, a finite positive learning
    /// rate, a finite non-negative weight decay and a validation fraction in `[0, 0.9)`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the option, its value and a sensible one.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(Error::invalid(
                "epochs",
                "0: train for at least 1 epoch (default 40)",
            ));
        }
        if self.batch_size == 0 {
            return Err(Error::invalid(
                "training batch size",
                "0: use at least 1 sample per step (default 32)",
            ));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(Error::invalid(
                "learning rate",
                format!(
                    "{}: must be finite and positive (default 1e-3)",
                    self.learning_rate
                ),
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(Error::invalid(
                "weight decay",
                format!(
                    "{}: must be finite and not negative (default 0.01)",
                    self.weight_decay
                ),
            ));
        }
        if !(0.0..0.9).contains(&self.val_fraction) {
            return Err(Error::invalid(
                "validation fraction",
                format!(
                    "{}: must be in [0, 0.9) (0 trains on everything without early stopping; \
                     default 0.1)",
                    self.val_fraction
                ),
            ));
        }
        Ok(())
    }
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            epochs: 40,
            learning_rate: 1e-3,
            weight_decay: 0.01,
            batch_size: 32,
            seed: 0,
            val_fraction: 0.1,
            patience: 5,
            progress: false,
        }
    }
}

/// What training did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// Epochs run.
    pub epochs_run: usize,
    /// The epoch whose weights were kept (1-based).
    pub best_epoch: usize,
    /// Final training loss (mean over the last epoch).
    pub train_loss: f64,
    /// Validation scores of the kept weights.
    pub validation: Option<Scores>,
    /// Training samples (after the validation split).
    pub train_size: usize,
    /// Validation samples.
    pub val_size: usize,
}

/// A trained head and its weights, ready to save.
pub struct TrainedHead {
    /// The head.
    pub head: Head,
    /// Its weights by name (what `model.safetensors` holds).
    pub weights: HashMap<String, Tensor>,
    /// What training did.
    pub report: TrainReport,
}

/// A stratified, seeded split of sample indices into (train, validation).
pub fn stratified_split(labels: &[usize], fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_5911);
    let mut by_class: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (i, &l) in labels.iter().enumerate() {
        by_class.entry(l).or_default().push(i);
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (_, mut idx) in by_class {
        idx.shuffle(&mut rng);
        let k = ((idx.len() as f64) * fraction).round() as usize;
        let k = if fraction > 0.0 && idx.len() >= 2 {
            k.clamp(1, idx.len() - 1)
        } else {
            0
        };
        val.extend_from_slice(&idx[..k]);
        train.extend_from_slice(&idx[k..]);
    }
    train.sort_unstable();
    val.sort_unstable();
    (train, val)
}

/// Predicted class of each row of `x`.
///
/// # Shapes
/// - `x`: `[n, input_dim]`; returns n class indices
pub fn predict_classes(head: &Head, x: &Tensor) -> Result<Vec<usize>> {
    let idx = head
        .forward(x)
        .and_then(|l| l.argmax(D::Minus1))
        .and_then(|a| a.to_vec1::<u32>())
        .context(|| "running the head".into())?;
    Ok(idx.into_iter().map(|i| i as usize).collect())
}

/// Trains a head on `x` with class indices `labels`.
///
/// # Errors
/// [`Error::InvalidArgument`] for labels that do not match `x`, fewer than 2 classes, invalid
/// [`TrainOptions`] or head sizes ([`HeadConfig::validate`]: e.g. an MLP with `hidden: 0`),
/// non-finite inputs, or a loss that diverges.
///
/// # Shapes
/// - `x`: `[n, d]` f32 (any device); `labels`: n indices below `num_classes`
pub fn train_head(
    x: &Tensor,
    labels: &[usize],
    kind: HeadKind,
    num_classes: usize,
    options: &TrainOptions,
) -> Result<TrainedHead> {
    let (n, d) = x.dims2().context(|| "training inputs".into())?;
    if n != labels.len() {
        return Err(Error::invalid(
            "training labels",
            format!("{} labels for {n} samples", labels.len()),
        ));
    }
    if num_classes < 2 {
        return Err(Error::invalid(
            "labels",
            "need at least two classes to train a classifier",
        ));
    }
    if let Some(bad) = labels.iter().find(|&&l| l >= num_classes) {
        return Err(Error::invalid(
            "labels",
            format!("class index {bad} out of range for {num_classes} classes"),
        ));
    }
    options.validate()?;
    let config = HeadConfig {
        kind,
        input_dim: d,
        num_classes,
    };
    config.validate()?;
    crate::io::check_finite(x, "training inputs")?;
    let device = x.device().clone();
    let (train_idx, val_idx) = stratified_split(labels, options.val_fraction, options.seed);
    if train_idx.is_empty() {
        return Err(Error::invalid(
            "training set",
            "empty after the validation split",
        ));
    }
    let varmap = VarMap::new();
    seeded_vars(&varmap, &config, options.seed, &device)
        .context(|| "initialising the head".into())?;
    let head = Head::load(
        VarBuilder::from_varmap(&varmap, DType::F32, &device),
        &config,
    )
    .context(|| "building the head".into())?;
    let params = candle_nn::ParamsAdamW {
        lr: options.learning_rate,
        weight_decay: options.weight_decay,
        ..Default::default()
    };
    // AdamW updates each parameter independently, so the order of the vars does not matter. The
    // input LayerNorm stays at (1, 0): the Linear after it absorbs any scale and shift, so training
    // them would only add redundant parameters (and change what earlier versions trained).
    let trained_vars: Vec<Var> = {
        let data = varmap
            .data()
            .lock()
            .map_err(|_| Error::invalid("head weights", "the weight map lock is poisoned"))?;
        data.iter()
            .filter(|(name, _)| !name.starts_with("norm."))
            .map(|(_, v)| v.clone())
            .collect()
    };
    let mut opt =
        candle_nn::AdamW::new(trained_vars, params).context(|| "creating the optimiser".into())?;
    let gather = |idx: &[usize]| -> candle_core::Result<(Tensor, Tensor)> {
        let i = Tensor::from_vec(
            idx.iter().map(|&i| i as u32).collect::<Vec<_>>(),
            idx.len(),
            &device,
        )?;
        let y = Tensor::from_vec(
            idx.iter().map(|&i| labels[i] as u32).collect::<Vec<_>>(),
            idx.len(),
            &device,
        )?;
        Ok((x.index_select(&i, 0)?, y))
    };
    let (val_x, _) = if val_idx.is_empty() {
        (None, None)
    } else {
        let (vx, vy) = gather(&val_idx).context(|| "validation split".into())?;
        (Some(vx), Some(vy))
    };
    let val_truth: Vec<usize> = val_idx.iter().map(|&i| labels[i]).collect();
    let snapshot = |vm: &VarMap| -> candle_core::Result<HashMap<String, Tensor>> {
        let data = vm
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("poisoned var map".into()))?;
        data.iter()
            .map(|(k, v)| Ok((k.clone(), v.as_tensor().copy()?)))
            .collect()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed.wrapping_add(1));
    let mut order = train_idx.clone();
    let mut best: Option<(f64, usize, HashMap<String, Tensor>, Scores)> = None;
    let mut since_best = 0usize;
    let mut epochs_run = 0usize;
    let mut train_loss = f64::NAN;
    let bar = crate::progress::bar(options.epochs as u64, "training", options.progress);
    for epoch in 1..=options.epochs {
        epochs_run = epoch;
        order.shuffle(&mut rng);
        let mut total = 0.0;
        let mut steps = 0usize;
        for batch in order.chunks(options.batch_size) {
            let loss = gather(batch)
                .and_then(|(bx, by)| candle_nn::loss::cross_entropy(&head.forward(&bx)?, &by))
                .context(|| format!("training step, epoch {epoch}"))?;
            opt.backward_step(&loss)
                .context(|| format!("optimiser step, epoch {epoch}"))?;
            total += loss
                .to_scalar::<f32>()
                .context(|| "reading the loss".into())? as f64;
            steps += 1;
        }
        train_loss = total / steps.max(1) as f64;
        if !train_loss.is_finite() {
            return Err(Error::invalid("training", format!("the loss became {train_loss} at epoch {epoch}; lower the learning rate or check the inputs")));
        }
        bar.inc(1);
        let Some(vx) = &val_x else { continue };
        let s = score(&val_truth, &predict_classes(&head, vx)?, num_classes)?;
        // Early stopping on validation weighted F1; ties go to the earlier epoch.
        if best
            .as_ref()
            .is_none_or(|(b, ..)| s.weighted_f1 > *b + 1e-9)
        {
            best = Some((
                s.weighted_f1,
                epoch,
                snapshot(&varmap).context(|| "saving the best weights".into())?,
                s,
            ));
            since_best = 0;
        } else {
            since_best += 1;
            if since_best >= options.patience {
                break;
            }
        }
    }
    bar.finish_and_clear();
    let (best_epoch, weights, validation) = match best {
        Some((_, e, w, s)) => (e, w, Some(s)),
        None => (
            epochs_run,
            snapshot(&varmap).context(|| "saving the weights".into())?,
            None,
        ),
    };
    let vb = VarBuilder::from_tensors(weights.clone(), DType::F32, &device);
    let head = Head::load(vb, &config).context(|| "rebuilding the best head".into())?;
    Ok(TrainedHead {
        head,
        weights,
        report: TrainReport {
            epochs_run,
            best_epoch,
            train_loss,
            validation,
            train_size: train_idx.len(),
            val_size: val_idx.len(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_sizes_and_options_are_typed_errors_not_panics() -> anyhow::Result<()> {
        let x = Tensor::randn(0f32, 1., (20, 4), &Device::Cpu)?;
        let labels: Vec<usize> = (0..20).map(|i| i % 2).collect();
        let ok = TrainOptions {
            epochs: 1,
            ..TrainOptions::default()
        };
        let refused = |r: Result<TrainedHead>, needle: &str| -> anyhow::Result<()> {
            match r {
                Err(e @ Error::InvalidArgument { .. }) => {
                    let msg = e.to_string();
                    anyhow::ensure!(msg.contains(needle), "`{msg}` does not mention `{needle}`");
                    Ok(())
                }
                Err(e) => anyhow::bail!("expected InvalidArgument about {needle}, got {e}"),
                Ok(_) => anyhow::bail!("expected InvalidArgument about {needle}, got a head"),
            }
        };
        // `--head mlp --hidden 0` used to panic in the weight initialisation.
        refused(
            train_head(&x, &labels, HeadKind::Mlp { hidden: 0 }, 2, &ok),
            "hidden width (--hidden): 0",
        )?;
        refused(
            train_head(&x, &labels, HeadKind::Mlp { hidden: usize::MAX }, 2, &ok),
            "hidden width",
        )?;
        let empty = Tensor::zeros((20, 0), DType::F32, &Device::Cpu)?;
        refused(
            train_head(&empty, &labels, HeadKind::Linear, 2, &ok),
            "head input width",
        )?;
        let with = |f: fn(&mut TrainOptions)| {
            let mut o = ok.clone();
            f(&mut o);
            o
        };
        for (o, needle) in [
            (with(|o| o.epochs = 0), "epochs"),
            (with(|o| o.batch_size = 0), "batch size"),
            (with(|o| o.learning_rate = 0.0), "learning rate"),
            (with(|o| o.learning_rate = -1e-3), "learning rate"),
            (with(|o| o.learning_rate = f64::NAN), "learning rate"),
            (with(|o| o.learning_rate = f64::INFINITY), "learning rate"),
            (with(|o| o.weight_decay = f64::NAN), "weight decay"),
            (with(|o| o.val_fraction = 1.5), "validation fraction"),
            (with(|o| o.val_fraction = -0.1), "validation fraction"),
            (with(|o| o.val_fraction = f64::NAN), "validation fraction"),
        ] {
            refused(train_head(&x, &labels, HeadKind::Linear, 2, &o), needle)?;
        }
        // A head whose config.json says `hidden: 0` is refused when it is built, too.
        let config = HeadConfig {
            kind: HeadKind::Mlp { hidden: 0 },
            input_dim: 4,
            num_classes: 2,
        };
        let vb = VarBuilder::zeros(DType::F32, &Device::Cpu);
        assert!(Head::load(vb, &config).is_err());
        // Sensible options still train.
        train_head(&x, &labels, HeadKind::Mlp { hidden: 3 }, 2, &ok)?;
        Ok(())
    }

    #[test]
    fn every_layer_of_an_mlp_head_trains() -> anyhow::Result<()> {
        // Two classes told apart by the sign of the first coordinate.
        let (n, d) = (64, 6);
        let mut v = Vec::with_capacity(n * d);
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let c = i % 2;
            labels.push(c);
            for j in 0..d {
                v.push(if j == 0 {
                    c as f32 * 2.0 - 1.0
                } else {
                    ((i * 7 + j * 3) % 5) as f32 * 0.1
                });
            }
        }
        let x = Tensor::from_vec(v, (n, d), &Device::Cpu)?;
        let kind = HeadKind::Mlp { hidden: 8 };
        let options = TrainOptions {
            epochs: 5,
            val_fraction: 0.0,
            ..TrainOptions::default()
        };
        let trained = train_head(&x, &labels, kind, 2, &options)?;
        let config = HeadConfig {
            kind,
            input_dim: d,
            num_classes: 2,
        };
        let init = VarMap::new();
        seeded_vars(&init, &config, options.seed, &Device::Cpu)?;
        let init = init.data().lock().map_err(|e| anyhow::anyhow!("{e}"))?;
        // The input norm is frozen at (1, 0) on purpose; everything after it trains, including the
        // first Linear, which sits before the hidden norm.
        for name in ["fc0.weight", "hidden_norm.weight", "fc1.weight"] {
            let before = init
                .get(name)
                .ok_or_else(|| anyhow::anyhow!("no initial {name}"))?
                .as_tensor()
                .clone();
            let after = trained
                .weights
                .get(name)
                .ok_or_else(|| anyhow::anyhow!("no trained {name}"))?;
            let change = (after - &before)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(change > 1e-4, "{name} did not train (max change {change})");
        }
        Ok(())
    }
}
