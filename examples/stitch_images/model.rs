//! The small CNNs of the image study: an encoder, a bottleneck (absolute or relative) and a decoder
//! (a reconstruction decoder or a classification head), trained end to end with candle-nn.
//!
//! The relative bottleneck follows Moschella et al. (ICLR 2023, Sec. 5.1): at every step the anchor
//! images go through the encoder together with the batch, each latent becomes its cosine similarity
//! to every anchor latent, and the decoder reads that vector after a LayerNorm. The absolute twin
//! is the same network except that the decoder reads the latent itself (also after a LayerNorm).

use anyhow::Result;
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{layer_norm, linear, Linear, Optimizer, VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What the decoder reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Space {
    /// The encoder's latent, `[n, latent]`.
    Absolute,
    /// Cosine similarities of the latent to the anchors' latents, `[n, anchors]`.
    Relative,
}

impl Space {
    pub fn name(self) -> &'static str {
        match self {
            Space::Absolute => "absolute",
            Space::Relative => "relative",
        }
    }
}

/// What the model is trained to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Reconstruct the 28×28 image (MSE), an autoencoder.
    Reconstruct,
    /// Predict one of `classes` labels (cross-entropy), a classifier.
    Classify { classes: usize },
}

impl Task {
    pub fn kind(self) -> &'static str {
        match self {
            Task::Reconstruct => "autoencoder",
            Task::Classify { .. } => "classifier",
        }
    }
}

/// Sizes of the networks.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Arch {
    /// Width of the encoder's output (the absolute latent).
    pub latent: usize,
    /// Number of anchors (width of the relative representation).
    pub anchors: usize,
    /// Hidden width of the decoders' first layer.
    pub hidden: usize,
}

/// conv 1→16 (stride 2) → ReLU → conv 16→32 (stride 2) → ReLU → linear 32·7·7 → latent.
///
/// # Shapes
/// `[n, 1, 28, 28]` → `[n, latent]`.
pub struct Encoder {
    c1: Conv3x3,
    c2: Conv3x3,
    fc: Linear,
}

impl Encoder {
    fn load(vb: VarBuilder, arch: &Arch) -> candle_core::Result<Self> {
        Ok(Self {
            c1: Conv3x3::new(1, 16, 28, vb.pp("conv1"))?,
            c2: Conv3x3::new(16, 32, 14, vb.pp("conv2"))?,
            fc: linear(32 * 7 * 7, arch.latent, vb.pp("fc"))?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let h = self.c1.forward(x)?.relu()?;
        let h = self.c2.forward(&h)?.relu()?.flatten_from(1)?;
        self.fc.forward(&h)
    }
}

/// The decoder: LayerNorm on its input, linear → hidden → ReLU, then either the reconstruction
/// path (linear → 512 → ReLU → linear → 784 → sigmoid, reshaped to an image) or the
/// classification path (linear → classes).
///
/// The reconstruction decoder is a multilayer perceptron rather than a transposed CNN: on CPU a
/// convolutional decoder cost ~20× more per step than the whole rest of the model, and which
/// decoder reads the bottleneck does not change what stitching tests (the bottleneck).
///
/// # Shapes
/// `[n, input]` → `[n, 1, 28, 28]` or `[n, classes]`.
pub struct Decoder {
    /// LayerNorm weight and bias. Applied with `candle_nn::ops::layer_norm_slow`: candle-nn
    /// 0.11's `LayerNorm` module runs a fused op without a backward pass, so no gradient would
    /// reach the encoder (or the norm's own parameters) through it.
    norm: (Tensor, Tensor),
    fc1: Linear,
    body: DecoderBody,
}

enum DecoderBody {
    Reconstruct { fc2: Linear, fc3: Linear },
    Classify { out: Linear },
}

impl Decoder {
    fn load(vb: VarBuilder, input: usize, task: Task, arch: &Arch) -> candle_core::Result<Self> {
        let body = match task {
            Task::Reconstruct => DecoderBody::Reconstruct {
                fc2: linear(arch.hidden, 512, vb.pp("fc2"))?,
                fc3: linear(512, 28 * 28, vb.pp("fc3"))?,
            },
            Task::Classify { classes } => DecoderBody::Classify {
                out: linear(arch.hidden, classes, vb.pp("out"))?,
            },
        };
        Ok(Self {
            norm: {
                let ln = layer_norm(input, 1e-5, vb.pp("norm"))?;
                let bias = ln
                    .bias()
                    .cloned()
                    .ok_or_else(|| candle_core::Error::Msg("layer norm without bias".into()))?;
                (ln.weight().clone(), bias)
            },
            fc1: linear(input, arch.hidden, vb.pp("fc1"))?,
            body,
        })
    }

    pub fn forward(&self, z: &Tensor) -> candle_core::Result<Tensor> {
        let z = candle_nn::ops::layer_norm_slow(z, &self.norm.0, &self.norm.1, 1e-5)?;
        let h = self.fc1.forward(&z)?.relu()?;
        match &self.body {
            DecoderBody::Reconstruct { fc2, fc3 } => {
                let n = h.dim(0)?;
                let h = fc2.forward(&h)?.relu()?;
                candle_nn::ops::sigmoid(&fc3.forward(&h)?)?.reshape((n, 1, 28, 28))
            }
            DecoderBody::Classify { out } => out.forward(&h),
        }
    }
}

/// A 3×3 convolution with stride 2 and zero padding 1, computed as a gather (im2col through
/// `index_select`) and a matrix product, so that its backward pass is a scatter-add and matrix
/// products (candle's CPU `conv_transpose2d`, which its conv2d backward uses, is a naive loop).
/// Weights are `[c_out, c_in·9]`, i.e. candle's `[c_out, c_in, 3, 3]` flattened.
///
/// # Shapes
/// `[n, c_in, s, s]` → `[n, c_out, s/2, s/2]`.
pub struct Conv3x3 {
    weight: Tensor,
    bias: Tensor,
    /// For each output pixel and kernel tap, the input pixel (or `s·s`, the zero slot).
    index: Tensor,
    c_in: usize,
    c_out: usize,
    size_in: usize,
    size_out: usize,
}

impl Conv3x3 {
    fn new(c_in: usize, c_out: usize, size_in: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        let weight = vb.get((c_out, c_in * 9), "weight")?;
        let bias = vb.get(c_out, "bias")?;
        let size_out = size_in / 2;
        let zero = (size_in * size_in) as u32;
        let mut index = Vec::with_capacity(size_out * size_out * 9);
        for oy in 0..size_out {
            for ox in 0..size_out {
                for dy in 0..3 {
                    for dx in 0..3 {
                        // Position on the zero-padded input.
                        let (py, px) = (2 * oy + dy, 2 * ox + dx);
                        index.push(if py == 0 || px == 0 || py > size_in || px > size_in {
                            zero
                        } else {
                            ((py - 1) * size_in + px - 1) as u32
                        });
                    }
                }
            }
        }
        let index = Tensor::new(index.as_slice(), vb.device())?;
        Ok(Self {
            weight,
            bias,
            index,
            c_in,
            c_out,
            size_in,
            size_out,
        })
    }

    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let n = x.dim(0)?;
        let (s, so) = (self.size_in, self.size_out);
        let x = x.reshape((n, self.c_in, s * s))?;
        let x = Tensor::cat(&[&x, &x.narrow(2, 0, 1)?.zeros_like()?], 2)?;
        let patches = x
            .index_select(&self.index, 2)? // [n, c_in, so·so·9]
            .reshape((n, self.c_in, so * so, 9))?
            .permute((0, 2, 1, 3))?
            .reshape((n * so * so, self.c_in * 9))?;
        patches
            .matmul(&self.weight.t()?)?
            .broadcast_add(&self.bias)?
            .reshape((n, so * so, self.c_out))?
            .permute((0, 2, 1))?
            .reshape((n, self.c_out, so, so))
    }
}

/// Cosine similarity of each row of `x` to each row of `anchors`.
///
/// # Shapes
/// `x`: `[n, d]`, `anchors`: `[a, d]` → `[n, a]`.
pub fn relative(x: &Tensor, anchors: &Tensor) -> candle_core::Result<Tensor> {
    let unit = |t: &Tensor| -> candle_core::Result<Tensor> {
        let norm = t
            .sqr()?
            .sum_keepdim(D::Minus1)?
            .sqrt()?
            .clamp(1e-8, f64::MAX)?;
        t.broadcast_div(&norm)
    };
    unit(x)?.matmul(&unit(anchors)?.t()?)
}

/// One trained model: encoder + decoder, with the space its decoder reads.
pub struct Model {
    pub encoder: Encoder,
    pub decoder: Decoder,
    pub space: Space,
    pub task: Task,
    _vars: VarMap,
}

impl Model {
    /// A freshly initialised model; weights are drawn from a ChaCha generator seeded with `seed`,
    /// uniform in ±1/√fan_in like PyTorch's defaults (LayerNorms at 1 and 0).
    pub fn new(space: Space, task: Task, arch: &Arch, seed: u64, device: &Device) -> Result<Self> {
        let vars = VarMap::new();
        let vb = VarBuilder::from_varmap(&vars, DType::F32, device);
        let encoder = Encoder::load(vb.pp("encoder"), arch)?;
        let input = match space {
            Space::Absolute => arch.latent,
            Space::Relative => arch.anchors,
        };
        let decoder = Decoder::load(vb.pp("decoder"), input, task, arch)?;
        seed_vars(&vars, seed)?;
        Ok(Self {
            encoder,
            decoder,
            space,
            task,
            _vars: vars,
        })
    }

    /// What the decoder reads for `latents`, given the anchors' latents from the same encoder.
    ///
    /// # Shapes
    /// `latents`: `[n, latent]`, `anchor_latents`: `[a, latent]` → `[n, latent]` or `[n, a]`.
    pub fn bottleneck(
        &self,
        latents: &Tensor,
        anchor_latents: &Tensor,
    ) -> candle_core::Result<Tensor> {
        match self.space {
            Space::Absolute => Ok(latents.clone()),
            Space::Relative => relative(latents, anchor_latents),
        }
    }
}

/// Overwrites every variable with seeded values, in name order so the result depends only on the
/// seed.
fn seed_vars(vars: &VarMap, seed: u64) -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let data = vars
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned var map"))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let fill = if name.contains(".norm.") {
            let v = if name.ends_with("weight") { 1.0 } else { 0.0 };
            vec![v; var.elem_count()]
        } else {
            // The fan-in of the layer: from the weight's shape (a bias borrows its weight's).
            let w = name.trim_end_matches("bias").to_string() + "weight";
            let wd = data
                .get(&w)
                .map(|v| v.dims().to_vec())
                .unwrap_or(dims.clone());
            let fan_in: usize = wd.iter().skip(1).product::<usize>().max(1);
            let bound = 1.0 / (fan_in as f32).sqrt();
            (0..var.elem_count())
                .map(|_| rng.random_range(-bound..bound))
                .collect()
        };
        var.set(&Tensor::from_vec(fill, dims, var.device())?)?;
    }
    Ok(())
}

/// How to train one model.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainOptions {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    /// Seeds the batch order (the weights are seeded by [`Model::new`]).
    pub seed: u64,
}

/// Trains `model` on `images` (`[n, 1, 28, 28]`) and `labels` (`[n]`, only for classifiers), with
/// the anchor images `anchors` (`[a, 1, 28, 28]`) passing through the encoder at every step.
/// Calls `step` after each batch with the batch loss. Returns the last epoch's mean loss.
pub fn train(
    model: &Model,
    images: &Tensor,
    labels: &Tensor,
    anchors: &Tensor,
    options: &TrainOptions,
    mut step: impl FnMut(f32),
) -> Result<f32> {
    let n = images.dim(0)?;
    let n_anchors = anchors.dim(0)?;
    let mut opt = candle_nn::AdamW::new(
        model._vars.all_vars(),
        candle_nn::ParamsAdamW {
            lr: options.learning_rate,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed ^ 0x0ba7_c4e5);
    let mut last = 0.0;
    for _ in 0..options.epochs {
        let mut order: Vec<u32> = (0..n as u32).collect();
        for i in (1..order.len()).rev() {
            let j = rng.random_range(0..=i);
            order.swap(i, j);
        }
        let (mut sum, mut count) = (0.0f32, 0usize);
        for chunk in order.chunks(options.batch_size) {
            let idx = Tensor::new(chunk, images.device())?;
            let x = images.index_select(&idx, 0)?;
            let b = chunk.len();
            // The batch and the anchors in one encoder pass.
            let z = model.encoder.forward(&Tensor::cat(&[&x, anchors], 0)?)?;
            let (zx, za) = (z.narrow(0, 0, b)?, z.narrow(0, b, n_anchors)?);
            let out = model.decoder.forward(&model.bottleneck(&zx, &za)?)?;
            let loss = match model.task {
                Task::Reconstruct => candle_nn::loss::mse(&out, &x)?,
                Task::Classify { .. } => {
                    candle_nn::loss::cross_entropy(&out, &labels.index_select(&idx, 0)?)?
                }
            };
            opt.backward_step(&loss)?;
            let l = loss.to_scalar::<f32>()?;
            sum += l * b as f32;
            count += b;
            step(l);
        }
        last = sum / count.max(1) as f32;
    }
    Ok(last)
}

/// Encodes `images` in batches (no gradients kept).
///
/// # Shapes
/// `[n, 1, 28, 28]` → `[n, latent]`.
pub fn encode(encoder: &Encoder, images: &Tensor, batch: usize) -> Result<Tensor> {
    let n = images.dim(0)?;
    let mut parts = Vec::new();
    for start in (0..n).step_by(batch) {
        let len = batch.min(n - start);
        parts.push(encoder.forward(&images.narrow(0, start, len)?)?.detach());
    }
    Ok(Tensor::cat(&parts, 0)?)
}

/// Decodes bottleneck vectors in batches (no gradients kept).
pub fn decode(decoder: &Decoder, z: &Tensor, batch: usize) -> Result<Tensor> {
    let n = z.dim(0)?;
    let mut parts = Vec::new();
    for start in (0..n).step_by(batch) {
        let len = batch.min(n - start);
        parts.push(decoder.forward(&z.narrow(0, start, len)?)?.detach());
    }
    Ok(Tensor::cat(&parts, 0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gather convolution equals candle's conv2d with stride 2 and padding 1.
    #[test]
    fn conv3x3_matches_candle() -> Result<()> {
        let dev = Device::Cpu;
        let vars = VarMap::new();
        let vb = VarBuilder::from_varmap(&vars, DType::F32, &dev);
        let conv = Conv3x3::new(3, 5, 8, vb.pp("conv"))?;
        seed_vars(&vars, 7)?;
        let x = Tensor::randn(0f32, 1.0, (2, 3, 8, 8), &dev)?;
        let k = conv.weight.reshape((5, 3, 3, 3))?;
        let want = x
            .conv2d(&k, 1, 2, 1, 1)?
            .broadcast_add(&conv.bias.reshape((1, 5, 1, 1))?)?;
        let diff = (conv.forward(&x)? - want)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-5, "{diff}");
        Ok(())
    }
}

#[cfg(test)]
mod profile {
    use super::*;

    /// `cargo test --release --example stitch_images -- --ignored --nocapture profile`
    #[test]
    #[ignore]
    fn profile_steps() -> Result<()> {
        let dev = Device::Cpu;
        let arch = Arch {
            latent: 32,
            anchors: 500,
            hidden: 128,
        };
        let x = Tensor::rand(0f32, 1.0, (1024, 1, 28, 28), &dev)?;
        let y = Tensor::zeros(1024, DType::U32, &dev)?;
        let a = Tensor::rand(0f32, 1.0, (500, 1, 28, 28), &dev)?;
        for task in [Task::Classify { classes: 10 }, Task::Reconstruct] {
            let m = Model::new(Space::Relative, task, &arch, 0, &dev)?;
            let o = TrainOptions {
                epochs: 1,
                batch_size: 256,
                learning_rate: 1e-3,
                seed: 0,
            };
            let t = std::time::Instant::now();
            train(&m, &x, &y, &a, &o, |_| {})?;
            eprintln!("{task:?}: {:.3} s/step", t.elapsed().as_secs_f64() / 4.0);
            let t = std::time::Instant::now();
            let z = m
                .encoder
                .forward(&Tensor::cat(&[&x.narrow(0, 0, 256)?, &a], 0)?)?;
            eprintln!("  encoder fwd 756: {:.3} s", t.elapsed().as_secs_f64());
            let t = std::time::Instant::now();
            let r = m.bottleneck(&z.narrow(0, 0, 256)?, &z.narrow(0, 256, 500)?)?;
            let out = m.decoder.forward(&r)?;
            eprintln!("  decoder fwd 256: {:.3} s", t.elapsed().as_secs_f64());
            let t = std::time::Instant::now();
            let _g = out.sqr()?.mean_all()?.backward()?;
            eprintln!("  backward: {:.3} s", t.elapsed().as_secs_f64());
        }
        Ok(())
    }
}

#[cfg(test)]
mod grad_check {
    use super::*;

    /// Gradients through the gather convolution equal those through candle's conv2d.
    #[test]
    fn conv3x3_gradients_match_candle() -> Result<()> {
        let dev = Device::Cpu;
        let vars = VarMap::new();
        let vb = VarBuilder::from_varmap(&vars, DType::F32, &dev);
        let conv = Conv3x3::new(3, 5, 8, vb.pp("conv"))?;
        seed_vars(&vars, 7)?;
        let x = candle_core::Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 8, 8), &dev)?)?;
        let k = conv.weight.reshape((5, 3, 3, 3))?;
        let ours = conv.forward(x.as_tensor())?.sqr()?.sum_all()?.backward()?;
        let theirs = x
            .as_tensor()
            .conv2d(&k, 1, 2, 1, 1)?
            .broadcast_add(&conv.bias.reshape((1, 5, 1, 1))?)?
            .sqr()?
            .sum_all()?
            .backward()?;
        for (what, t) in [
            ("weight", &conv.weight),
            ("bias", &conv.bias),
            ("x", x.as_tensor()),
        ] {
            let (a, b) = (ours.get(t), theirs.get(t));
            let (Some(a), Some(b)) = (a, b) else {
                anyhow::bail!("no gradient for {what}");
            };
            let diff = (a - b.reshape(a.shape())?)?
                .abs()?
                .max_all()?
                .to_scalar::<f32>()?;
            let scale = a.abs()?.max_all()?.to_scalar::<f32>()?;
            eprintln!("{what}: max diff {diff} (max {scale})");
            assert!(diff <= 1e-3 * scale.max(1.0), "{what}: {diff}");
        }
        Ok(())
    }
}
