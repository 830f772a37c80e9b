//! Logging set-up shared by the `relstitch` and `stitch-two-checkpoints` binaries.

/// `tracing` to stderr: warnings by default, `-v` info, `-vv` debug; `RUST_LOG` overrides.
pub fn init(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
