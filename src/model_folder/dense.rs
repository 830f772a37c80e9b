//! The `Dense` module of a sentence-transformers pipeline: a linear layer (and an activation)
//! applied to the pooled sentence vector, as `sentence_transformers.models.Dense` does
//! (`2_Dense/config.json` and `2_Dense/model.safetensors`, or `pytorch_model.bin`).

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::{Error, Result};

/// The activation a `Dense` module applies after its linear layer (`activation_function` in its
/// config.json, a `torch.nn` class name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DenseActivation {
    /// `torch.nn.Identity` (also what `null` means).
    Identity,
    /// `torch.nn.Tanh`, sentence-transformers' default.
    Tanh,
    /// `torch.nn.ReLU`.
    Relu,
    /// `torch.nn.Sigmoid`.
    Sigmoid,
    /// `torch.nn.GELU` (the exact, erf form).
    Gelu,
}

impl DenseActivation {
    /// Reads a `torch.nn` class name such as `torch.nn.modules.activation.Tanh`; `None` for
    /// another.
    pub fn from_torch_name(name: &str) -> Option<Self> {
        match name.rsplit('.').next().unwrap_or(name) {
            "Identity" => Some(Self::Identity),
            "Tanh" => Some(Self::Tanh),
            "ReLU" => Some(Self::Relu),
            "Sigmoid" => Some(Self::Sigmoid),
            "GELU" => Some(Self::Gelu),
            _ => None,
        }
    }

    fn apply(self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Identity => Ok(x.clone()),
            Self::Tanh => x.tanh(),
            Self::Relu => x.relu(),
            Self::Sigmoid => candle_nn::ops::sigmoid(x),
            Self::Gelu => x.gelu_erf(),
        }
    }
}

/// A `Dense` module's config.json.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenseConfig {
    /// The module's folder (e.g. `2_Dense`), relative to the model folder.
    pub path: PathBuf,
    /// Input width.
    pub in_features: usize,
    /// Output width.
    pub out_features: usize,
    /// Whether the linear layer has a bias.
    pub bias: bool,
    /// The activation after it.
    pub activation: DenseActivation,
    /// Whether the input is added back (`use_residual`, projected when the widths differ).
    pub residual: bool,
}

#[derive(serde::Deserialize)]
struct DenseFile {
    in_features: usize,
    out_features: usize,
    #[serde(default = "yes")]
    bias: bool,
    /// Absent: sentence-transformers' default, Tanh. `null`: Identity.
    #[serde(default = "tanh_name")]
    activation_function: Option<String>,
    #[serde(default)]
    use_residual: bool,
}

fn yes() -> bool {
    true
}

fn tanh_name() -> Option<String> {
    Some("torch.nn.modules.activation.Tanh".into())
}

impl DenseConfig {
    /// Reads `<dir>/<module>/config.json`.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Json`] when it cannot be read or parsed; [`Error::ModelFolder`]
    /// for an activation relstitch does not run or a zero width.
    pub fn read(dir: &Path, module: &str) -> Result<Self> {
        let path = dir.join(module).join("config.json");
        let file: DenseFile = super::st_files::read_json(&path)?;
        let activation = match &file.activation_function {
            None => DenseActivation::Identity,
            Some(name) => DenseActivation::from_torch_name(name).ok_or_else(|| Error::ModelFolder {
                path: path.clone(),
                reason: format!(
                    "Dense activation `{name}` is not supported (relstitch runs Identity, Tanh, ReLU, Sigmoid and GELU)"
                ),
            })?,
        };
        if file.in_features == 0 || file.out_features == 0 {
            return Err(Error::ModelFolder {
                path,
                reason: "in_features and out_features must be at least 1".into(),
            });
        }
        Ok(Self {
            path: PathBuf::from(module),
            in_features: file.in_features,
            out_features: file.out_features,
            bias: file.bias,
            activation,
            residual: file.use_residual,
        })
    }
}

/// What a loaded `Dense` module contributes to an encoder's identity.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DenseIdentity {
    /// The module's folder inside the model folder.
    pub path: PathBuf,
    /// Input width.
    pub in_features: usize,
    /// Output width.
    pub out_features: usize,
    /// The activation.
    pub activation: DenseActivation,
    /// Whether the input is added back.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub residual: bool,
    /// The sha256 of its weights file.
    pub weights_sha256: String,
}

/// A loaded `Dense` module.
#[derive(Debug, Clone)]
pub struct DenseLayer {
    weight: Tensor,
    bias: Option<Tensor>,
    residual: Option<Tensor>,
    config: DenseConfig,
    weights_sha256: String,
}

impl DenseLayer {
    /// Loads the weights of the module `config` describes from `dir/<config.path>/`
    /// (`model.safetensors`, else `pytorch_model.bin`; tensors `linear.weight`, `linear.bias`,
    /// `residual.weight`) onto `device`.
    ///
    /// # Errors
    /// [`Error::ModelFolder`] when there is no weights file, a tensor is missing or its shape does
    /// not fit the config; [`Error::Io`] when the file cannot be read or hashed.
    pub fn load(dir: &Path, config: &DenseConfig, device: &Device) -> Result<Self> {
        let folder = dir.join(&config.path);
        let safetensors = folder.join("model.safetensors");
        let pth = folder.join("pytorch_model.bin");
        let (file, tensors) = if safetensors.is_file() {
            let t = candle_core::safetensors::load(&safetensors, &Device::Cpu);
            (safetensors, t.map(|m| m.into_iter().collect::<Vec<_>>()))
        } else if pth.is_file() {
            let t = candle_core::pickle::read_all(&pth);
            (pth, t)
        } else {
            return Err(Error::ModelFolder {
                path: folder,
                reason: "the Dense module has no model.safetensors (or pytorch_model.bin); fix or re-download the model folder".into(),
            });
        };
        let bad = |reason: String| Error::ModelFolder {
            path: file.clone(),
            reason,
        };
        let tensors = tensors.map_err(|e| bad(format!("cannot read the Dense weights ({e})")))?;
        let get = |name: &str, shape: &[usize]| -> Result<Tensor> {
            let t = tensors
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t)
                .ok_or_else(|| bad(format!("has no tensor `{name}`")))?;
            if t.dims() != shape {
                return Err(bad(format!(
                    "`{name}` is {:?} but config.json says {shape:?}",
                    t.dims()
                )));
            }
            t.to_dtype(candle_core::DType::F32)
                .and_then(|t| t.to_device(device))
                .map_err(|e| bad(format!("cannot load `{name}` ({e})")))
        };
        let (n, k) = (config.out_features, config.in_features);
        let weight = get("linear.weight", &[n, k])?;
        let bias = if config.bias {
            Some(get("linear.bias", &[n])?)
        } else {
            None
        };
        let residual = if config.residual && n != k {
            Some(get("residual.weight", &[n, k])?)
        } else {
            None
        };
        let weights_sha256 = crate::io::sha256_file(&file)?;
        Ok(Self {
            weight,
            bias,
            residual,
            config: config.clone(),
            weights_sha256,
        })
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        self.config.out_features
    }

    /// What it contributes to an encoder's identity.
    pub fn identity(&self) -> DenseIdentity {
        DenseIdentity {
            path: self.config.path.clone(),
            in_features: self.config.in_features,
            out_features: self.config.out_features,
            activation: self.config.activation,
            residual: self.config.residual,
            weights_sha256: self.weights_sha256.clone(),
        }
    }

    /// `activation(x Wᵀ + b)` (plus the residual when the module has one).
    ///
    /// # Shapes
    /// - `x`: `[n, in_features]` f32; returns `[n, out_features]`
    ///
    /// # Errors
    /// A [`candle_core::Error`] when `x` does not have `in_features` columns.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (_, k) = x.dims2()?;
        if k != self.config.in_features {
            candle_core::bail!(
                "Dense module {}: input has {k} columns, expected {}",
                self.config.path.display(),
                self.config.in_features
            );
        }
        let mut y = x.matmul(&self.weight.t()?)?;
        if let Some(b) = &self.bias {
            y = y.broadcast_add(b)?;
        }
        let mut y = self.config.activation.apply(&y)?;
        if self.config.residual {
            y = match &self.residual {
                Some(r) => (y + x.matmul(&r.t()?)?)?,
                None => (y + x)?,
            };
        }
        Ok(y)
    }
}
