//! The trained residual adapters of `lowrank` and `mlp`, with candle-nn (AdamW, `VarMap`).
//!
//! Both work in the standard-scaled spaces: `xs` is the source scaled with its anchors' statistics,
//! `y0s` the Procrustes base map's output scaled with the target anchors' statistics, and the
//! adapter adds a residual to `y0s`:
//!
//! - `lowrank`: `y0s + xs · U · V` (`U`: `[d_s, r]`, `V`: `[r, d_t]`, `V` starts at zero);
//! - `mlp`: `y0s + gelu(xs · W1 + b1) · W2 + b2` (`W2`, `b2` start at zero).
//!
//! Training starts from the base map exactly and minimises the mean squared error to the scaled
//! target anchors, with early stopping on a held-out share of the anchors.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Optimizer, VarMap};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::method::{AdapterTraining, MigrationMethod};
use crate::error::CandleContext;
use crate::{Error, Result};

/// What training an adapter did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterReport {
    /// Epochs run.
    pub epochs_run: usize,
    /// The epoch whose weights were kept (1-based; 0: the base map itself was best).
    pub best_epoch: usize,
    /// Mean squared error (scaled target space) on the training anchors at the end.
    pub train_loss: f64,
    /// The same on the held-out anchors for the kept weights, when there were any.
    pub val_loss: Option<f64>,
    /// The held-out error of the base (Procrustes) map alone, for comparison.
    pub base_val_loss: Option<f64>,
    /// Training anchors.
    pub train_size: usize,
    /// Held-out anchors.
    pub val_size: usize,
}

/// The adapter's residual for `method` with weights `w` (names `u`, `v` or `w1`, `b1`, `w2`,
/// `b2`), added to `y0s`.
///
/// # Shapes
/// - `xs`: `[n, d_s]`, `y0s`: `[n, d_t]`; returns `[n, d_t]`.
pub(crate) fn forward(
    method: &MigrationMethod,
    w: &HashMap<String, Tensor>,
    xs: &Tensor,
    y0s: &Tensor,
) -> candle_core::Result<Tensor> {
    let get = |k: &str| {
        w.get(k)
            .ok_or_else(|| candle_core::Error::Msg(format!("adapter weight `{k}` is missing")))
    };
    match method {
        MigrationMethod::LowRank { .. } => y0s + xs.matmul(get("u")?)?.matmul(get("v")?)?,
        MigrationMethod::Mlp { .. } => {
            let h = xs.matmul(get("w1")?)?.broadcast_add(get("b1")?)?.gelu()?;
            y0s + h.matmul(get("w2")?)?.broadcast_add(get("b2")?)?
        }
        other => Err(candle_core::Error::Msg(format!(
            "{} has no trained adapter",
            other.name()
        ))),
    }
}

/// The adapter's weights and their shapes, seeded.
fn init(
    method: &MigrationMethod,
    ds: usize,
    dt: usize,
    seed: u64,
) -> Result<Vec<(&'static str, Tensor)>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut uniform = |rows: usize, cols: usize, fan_in: usize| -> Result<Tensor> {
        let bound = 1.0 / (fan_in as f32).sqrt();
        let v: Vec<f32> = (0..rows * cols)
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        Tensor::from_vec(v, (rows, cols), &Device::Cpu).context(|| "initialising".into())
    };
    let zeros = |shape: (usize, usize)| {
        Tensor::zeros(shape, DType::F32, &Device::Cpu).context(|| "initialising".into())
    };
    Ok(match *method {
        MigrationMethod::LowRank { rank } => {
            vec![("u", uniform(ds, rank, ds)?), ("v", zeros((rank, dt))?)]
        }
        MigrationMethod::Mlp { hidden } => vec![
            ("w1", uniform(ds, hidden, ds)?),
            ("b1", uniform(1, hidden, ds)?),
            ("w2", zeros((hidden, dt))?),
            ("b2", zeros((1, dt))?),
        ],
        other => {
            return Err(Error::invalid(
                "adapter",
                format!("{} has no trained adapter", other.name()),
            ))
        }
    })
}

/// Trains the adapter of `method` on the scaled anchors.
///
/// # Shapes
/// - `xs`: `[n, d_s]`, `y0s`, `ys`: `[n, d_t]`, f32 on the CPU.
pub(crate) fn train(
    method: &MigrationMethod,
    xs: &Tensor,
    y0s: &Tensor,
    ys: &Tensor,
    options: &AdapterTraining,
    progress: bool,
) -> Result<(HashMap<String, Tensor>, AdapterReport)> {
    options.validate()?;
    let ctx = || format!("training the {} adapter", method.name());
    let (n, ds) = xs.dims2().context(ctx)?;
    let dt = ys.dim(1).context(ctx)?;
    let mut rows: Vec<usize> = (0..n).collect();
    rows.shuffle(&mut ChaCha8Rng::seed_from_u64(options.seed ^ 0x6d69_6772));
    let n_val = ((n as f64) * options.val_fraction).round() as usize;
    let n_val = if options.val_fraction > 0.0 {
        n_val.clamp(2, n / 2)
    } else {
        0
    };
    let (val_idx, train_idx) = rows.split_at(n_val);
    let take = |t: &Tensor, idx: &[usize]| -> Result<Tensor> {
        let i = Tensor::from_vec(
            idx.iter().map(|&i| i as u32).collect::<Vec<_>>(),
            idx.len(),
            &Device::Cpu,
        )
        .context(ctx)?;
        t.index_select(&i, 0).context(ctx)
    };
    let val = if val_idx.is_empty() {
        None
    } else {
        Some((take(xs, val_idx)?, take(y0s, val_idx)?, take(ys, val_idx)?))
    };
    let varmap = VarMap::new();
    {
        let mut data = varmap
            .data()
            .lock()
            .map_err(|_| Error::invalid("adapter weights", "the weight map lock is poisoned"))?;
        for (name, t) in init(method, ds, dt, options.seed)? {
            data.insert(name.to_string(), Var::from_tensor(&t).context(ctx)?);
        }
    }
    let snapshot = |vm: &VarMap| -> Result<HashMap<String, Tensor>> {
        let data = vm
            .data()
            .lock()
            .map_err(|_| Error::invalid("adapter weights", "the weight map lock is poisoned"))?;
        data.iter()
            .map(|(k, v)| Ok((k.clone(), v.as_tensor().copy().context(ctx)?)))
            .collect()
    };
    let vars: Vec<Var> = {
        let data = varmap
            .data()
            .lock()
            .map_err(|_| Error::invalid("adapter weights", "the weight map lock is poisoned"))?;
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        names.into_iter().map(|k| data[k].clone()).collect()
    };
    let mut opt = candle_nn::AdamW::new(
        vars,
        candle_nn::ParamsAdamW {
            lr: options.learning_rate,
            weight_decay: options.weight_decay,
            ..Default::default()
        },
    )
    .context(ctx)?;
    let mse = |w: &HashMap<String, Tensor>, x: &Tensor, y0: &Tensor, y: &Tensor| {
        forward(method, w, x, y0)
            .and_then(|p| (p - y)?.sqr()?.mean_all())
            .context(ctx)
    };
    let scalar = |t: Tensor| t.to_scalar::<f32>().map(f64::from).context(ctx);
    let current = |vm: &VarMap| -> Result<HashMap<String, Tensor>> {
        let data = vm
            .data()
            .lock()
            .map_err(|_| Error::invalid("adapter weights", "the weight map lock is poisoned"))?;
        Ok(data
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect())
    };
    let base_val_loss = match &val {
        Some((_, vy0, vy)) => Some(scalar(
            (vy0 - vy).and_then(|d| d.sqr()?.mean_all()).context(ctx)?,
        )?),
        None => None,
    };
    let mut best = (
        base_val_loss.unwrap_or(f64::INFINITY),
        0usize,
        snapshot(&varmap)?,
    );
    let mut since_best = 0usize;
    let mut epochs_run = 0;
    let mut train_loss = f64::NAN;
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed.wrapping_add(1));
    let mut order = train_idx.to_vec();
    let bar = crate::progress::bar(options.epochs as u64, "training the adapter", progress);
    for epoch in 1..=options.epochs {
        epochs_run = epoch;
        order.shuffle(&mut rng);
        let (mut total, mut steps) = (0.0, 0usize);
        for batch in order.chunks(options.batch_size) {
            let w = current(&varmap)?;
            let loss = mse(&w, &take(xs, batch)?, &take(y0s, batch)?, &take(ys, batch)?)?;
            opt.backward_step(&loss).context(ctx)?;
            total += scalar(loss)?;
            steps += 1;
        }
        train_loss = total / steps.max(1) as f64;
        if !train_loss.is_finite() {
            return Err(Error::invalid(
                "adapter training",
                format!("the loss became {train_loss} at epoch {epoch}; lower the learning rate"),
            ));
        }
        bar.inc(1);
        let Some((vx, vy0, vy)) = &val else {
            best = (f64::INFINITY, epoch, snapshot(&varmap)?);
            continue;
        };
        let v = scalar(mse(&current(&varmap)?, vx, vy0, vy)?)?;
        if v < best.0 - 1e-7 {
            best = (v, epoch, snapshot(&varmap)?);
            since_best = 0;
        } else {
            since_best += 1;
            if since_best >= options.patience {
                break;
            }
        }
    }
    bar.finish_and_clear();
    let (val_loss, best_epoch, weights) = best;
    Ok((
        weights,
        AdapterReport {
            epochs_run,
            best_epoch,
            train_loss,
            val_loss: val.as_ref().map(|_| val_loss),
            base_val_loss,
            train_size: train_idx.len(),
            val_size: val_idx.len(),
        },
    ))
}
