//! `relstitch bench --profile`: where an encoder's time goes, op by op.
//!
//! A `tracing` layer that records the *exclusive* time of every span (its own time minus the time
//! of the spans entered inside it), keyed by the span's name and its parent's name
//! (`self-attn/linear` is a linear layer inside BERT's self-attention). candle-transformers' BERT
//! and relstitch's encoders open a span around each op at TRACE level; the layer enables only
//! those. Times are summed over threads, so with data-parallel batches the shares are shares of
//! CPU time, and with parallel-inside-ops they are shares of wall time of the calling thread.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::span;
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// Exclusive time and number of calls of one op.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpStat {
    pub time: Duration,
    pub calls: u64,
}

struct Frame {
    id: span::Id,
    name: &'static str,
    key: String,
    start: Instant,
    children: Duration,
}

thread_local! {
    static STACK: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
}

/// The layer; clones share their totals.
#[derive(Clone, Default)]
pub struct OpProfile {
    totals: Arc<Mutex<HashMap<String, OpStat>>>,
}

impl OpProfile {
    /// Forgets everything recorded so far (e.g. the warm-up run).
    pub fn reset(&self) {
        if let Ok(mut t) = self.totals.lock() {
            t.clear();
        }
    }

    /// The ops recorded, most expensive first.
    pub fn report(&self) -> Vec<(String, OpStat)> {
        let mut v: Vec<(String, OpStat)> = self
            .totals
            .lock()
            .map(|t| t.iter().map(|(k, s)| (k.clone(), *s)).collect())
            .unwrap_or_default();
        v.sort_by_key(|e| std::cmp::Reverse(e.1.time));
        v
    }
}

impl<S> Layer<S> for OpProfile
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_enter(&self, id: &span::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let name = span.metadata().name();
        STACK.with(|s| {
            let mut stack = s.borrow_mut();
            // The parent is the span entered last on this thread (candle creates its spans when
            // a model is loaded, so their recorded parents say nothing about the forward pass).
            let key = match stack.last() {
                Some(p) => format!("{}/{name}", p.name),
                None => name.to_string(),
            };
            stack.push(Frame {
                id: id.clone(),
                name,
                key,
                start: Instant::now(),
                children: Duration::ZERO,
            })
        });
    }

    fn on_exit(&self, id: &span::Id, _ctx: Context<'_, S>) {
        let now = Instant::now();
        STACK.with(|s| {
            let mut stack = s.borrow_mut();
            let Some(pos) = stack.iter().rposition(|f| &f.id == id) else {
                return;
            };
            let frame = stack.remove(pos);
            let elapsed = now - frame.start;
            if let Some(parent) = pos.checked_sub(1).and_then(|p| stack.get_mut(p)) {
                parent.children += elapsed;
            }
            if let Ok(mut t) = self.totals.lock() {
                let e = t.entry(frame.key).or_default();
                e.time += elapsed.saturating_sub(frame.children);
                e.calls += 1;
            }
        });
    }
}

/// Prints the profile as a table: op, share of the total, milliseconds, calls.
pub fn print(profile: &[(String, OpStat)]) {
    let total: Duration = profile.iter().map(|(_, s)| s.time).sum();
    let total_s = total.as_secs_f64().max(1e-12);
    println!(
        "{:<36} {:>7} {:>10} {:>8}",
        "op (span)", "share", "ms", "calls"
    );
    for (name, s) in profile {
        println!(
            "{:<36} {:>6.1}% {:>10.1} {:>8}",
            name,
            100.0 * s.time.as_secs_f64() / total_s,
            s.time.as_secs_f64() * 1e3,
            s.calls
        );
    }
    println!("{:<36} {:>6.1}% {:>10.1}", "total", 100.0, total_s * 1e3);
}

/// Logging as [`crate::logging::init`] sets it up, plus `profile` recording the encoder's op
/// spans (TRACE level, relstitch's and candle-transformers' only).
pub fn init_logging(verbose: u8, profile: OpProfile) {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter);
    let ops = profile.with_filter(
        Targets::new()
            .with_target("relstitch", tracing::Level::TRACE)
            .with_target("candle_transformers", tracing::Level::TRACE),
    );
    tracing_subscriber::registry().with(log).with(ops).init();
}
