//! `relstitch stitch` (and the `stitch-two-checkpoints` binary, the same code): the encoder of one
//! checkpoint with the decoder of another, without retraining.

use std::path::PathBuf;

use clap::Args;
use relstitch::data::{read_table, Fields};
use relstitch::device::DeviceChoice;
use relstitch::encoder::{EncoderOptions, Precision};
use relstitch::space::translation::TranslationMethod;
use relstitch::task::checkpoint::{Checkpoint, Space};
use relstitch::task::stitch::{Pipeline, RelativeStitch, StitchOptions, StitchReport};

/// The one-line summary.
pub const ABOUT: &str = "Stitch two relstitch checkpoints: run the decoder (head) of B on the \
encoder of A, without retraining";

/// The long help.
pub const LONG_ABOUT: &str = "\
Stitch two relstitch checkpoints: run the decoder (head) of B on the encoder of A, without
retraining.

If B reads relative vectors (the default of `relstitch fit`: centred cosine), A's embeddings are
translated into B's encoder's space by a latent map (--translation, default Procrustes) fitted on
B's anchors and its alignment texts (up to 4,096 further training texts that `relstitch fit` keeps,
without labels) embedded by both encoders, then projected onto the anchors exactly as B was
trained.
This is the default because it is the most faithful stitch measured on every pair of catalog
encoders, anisotropic ones included (docs/RESULTS.md, stitch_robust). B's encoder is found by the
identity its checkpoint recorded (catalog name or Hub id and revision; its weights sha256 is
verified), never by a folder of the same name in the working directory; if it cannot be loaded,
the stitch falls back to zero-shot with a warning. With --zero-shot, B's anchors are embedded with
A's encoder and A's relative vectors go straight into B's head (the paper's method: B's encoder is
never needed); that is also the default for decoders fitted with --whiten, which stitch best that
way. --translate forces the translation. If B reads absolute latents, a latent translation
(--translation) is always fitted on B's anchors and alignment texts embedded by both encoders.

Before anything is evaluated, a label-free compatibility estimate made from those texts alone is
printed: the retained score it predicts (how well each encoder's neighbourhoods carry the labels
B's head gives the texts) and the share of texts B's head labels the same from both encoders, with
a warning and advice when the stitch is predicted to be poor.

With --eval, prints accuracy, macro F1 and weighted F1 of A alone, B alone and the stitch on the
same test set (--json: one object {\"encoder_checkpoint\", \"decoder_checkpoint\", \"stitched\"}).
With --out, writes the stitched model as a checkpoint that `relstitch predict` runs.

Example: relstitch stitch --encoder-from ckpt-mpnet --decoder-from ckpt-minilm --eval test.jsonl
(`stitch-two-checkpoints` takes the same flags.)";

/// Arguments of `relstitch stitch` and `stitch-two-checkpoints` (see [`LONG_ABOUT`]).
#[derive(Args, Debug)]
pub struct StitchArgs {
    /// Checkpoint whose encoder is used (A).
    #[arg(long)]
    pub encoder_from: PathBuf,
    /// Checkpoint whose decoder (head) is used (B).
    #[arg(long)]
    pub decoder_from: PathBuf,
    /// Labelled test data (.jsonl with `text` and `label`, or .csv/.tsv) to evaluate on.
    #[arg(long)]
    pub eval: Option<PathBuf>,
    /// Write the stitched checkpoint here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the evaluation as JSON (with --eval).
    #[arg(long, requires = "eval")]
    pub json: bool,
    /// Latent translation from A's space into B's encoder's space (not with --zero-shot).
    /// [default: procrustes]
    #[arg(long, value_enum)]
    pub translation: Option<TranslationMethod>,
    /// Stitch a relative decoder zero-shot, as in the paper: A embeds B's anchors and its relative
    /// vectors go straight into B's head. B's encoder is not needed, but for unwhitened decoders
    /// the stitch holds less well on hard pairs than the default translated one.
    #[arg(long, conflicts_with = "translate")]
    pub zero_shot: bool,
    /// Stitch a relative decoder through a latent translation into B's encoder's space, then B's
    /// own projection, even when B was fitted with --whiten; an error when B's encoder cannot be
    /// loaded (the default for unwhitened decoders, which falls back to zero-shot then).
    #[arg(long)]
    pub translate: bool,
    /// Where to run: auto, cpu, cuda[:N], metal[:N].
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// CPU threads, at least 1 and at most a few times the number of cores (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Arithmetic of the encoders' linear layers: f32, bf16 or int8 (CPU only). [default: what
    /// each checkpoint recorded]
    #[arg(long, value_enum)]
    pub precision: Option<Precision>,
}

pub fn run(args: StitchArgs) -> anyhow::Result<()> {
    if let Some(n) = args.threads {
        relstitch::device::set_num_threads(n)?;
    }
    let options = StitchOptions {
        encoder: EncoderOptions {
            precision: args.precision,
            ..EncoderOptions::default().with_device(args.device.parse::<DeviceChoice>()?)
        },
        translation: args.translation.unwrap_or(TranslationMethod::Procrustes),
        relative: if args.zero_shot {
            RelativeStitch::ZeroShot
        } else if args.translate {
            RelativeStitch::Translated
        } else {
            RelativeStitch::Auto
        },
        cache: true,
    };
    if let Some(out) = &args.out {
        // Refused before any embedding: an input, or a folder that may not be replaced.
        relstitch::io::refuse_overwriting_inputs(out, &[&args.encoder_from, &args.decoder_from])?;
        Checkpoint::check_destination(out)?;
    }
    let a = Checkpoint::load(&args.encoder_from)?;
    let b = Checkpoint::load(&args.decoder_from)?;
    let relative = matches!(b.config.space, Space::Relative { .. });
    if (args.translate || args.zero_shot) && !relative {
        anyhow::bail!(
            "{} only applies when the decoder checkpoint reads relative vectors; {} \
             reads {} vectors{}",
            if args.zero_shot {
                "--zero-shot"
            } else {
                "--translate"
            },
            args.decoder_from.display(),
            b.config.space.name(),
            if matches!(b.config.space, Space::Absolute) {
                ", which are always stitched through a translation (--translation)"
            } else {
                ""
            }
        );
    }
    // Whitened decoders are stitched zero-shot unless --translate says otherwise.
    let whitened = matches!(b.config.space, Space::Relative { pre_transform, .. } if pre_transform.whiten.is_some());
    if args.translation.is_some() && relative && (args.zero_shot || (whitened && !args.translate)) {
        anyhow::bail!(
            "--translation does not apply to a zero-shot stitch: {} reads relative vectors{}, \
             which a zero-shot stitch feeds without a translation ({})",
            args.decoder_from.display(),
            if args.zero_shot {
                ""
            } else {
                " after whitening, stitched zero-shot by default"
            },
            if args.zero_shot {
                "drop --zero-shot to stitch through one"
            } else {
                "add --translate to stitch through one"
            }
        );
    }
    let stitched = Pipeline::stitch(&a, &b, &options)?;
    // The label-free estimate, before any evaluation (the text report prints it at its top).
    if let Some(c) = stitched
        .compatibility()
        .filter(|_| args.eval.is_none() || args.json)
    {
        eprintln!("{c}");
    }
    if let Some(out) = &args.out {
        stitched.checkpoint().save(out)?;
        eprintln!("stitched checkpoint written to {}", out.display());
    }
    if let Some(test) = &args.eval {
        let test = read_table(test, &Fields::default())?;
        let report = StitchReport::evaluate(&a, &b, &stitched, &test, &options)?;
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            let how = match stitched.checkpoint().config.space {
                Space::Relative { .. } => "zero-shot".to_string(),
                _ => format!("through a {} translation", options.translation.name()),
            };
            println!(
                "encoder: {} ({})   decoder: {} ({}, {})   stitched {how}",
                a.config.encoder.name,
                args.encoder_from.display(),
                b.config.encoder.name,
                args.decoder_from.display(),
                b.config.space.name()
            );
            println!("{report}");
        }
    } else if args.out.is_none() {
        eprintln!("nothing to do: pass --eval TEST.jsonl and/or --out DIR");
    }
    Ok(())
}
