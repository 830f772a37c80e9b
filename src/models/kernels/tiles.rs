//! Splitting a matrix product into tiles of output rows × output channels, run one after the
//! other or on the rayon pool.

/// Rows of one tile: the weights of a channel group are reused across these rows while they sit
/// in the cache.
pub const ROWS_PER_TILE: usize = 96;

/// A raw pointer the tiles write through, each to its own rows × channels (never overlapping).
#[derive(Clone, Copy)]
pub struct OutPtr(pub *mut f32);

impl OutPtr {
    /// The pointer (a method, so that closures capture the whole `OutPtr`, which is `Sync`).
    #[inline(always)]
    pub fn get(self) -> *mut f32 {
        self.0
    }
}

// SAFETY: an `OutPtr` is only used by `for_each_tile`'s callers, which give every tile a disjoint
// region of the output (its rows × its channel group); the slice it points into outlives the call.
unsafe impl Send for OutPtr {}
// SAFETY: see `Send`: concurrent tiles never touch the same element.
unsafe impl Sync for OutPtr {}

/// Calls `f(group, row_start, row_end)` for every channel group and chunk of rows, in parallel
/// when `parallel` (and there is more than one tile).
pub fn for_each_tile(
    rows: usize,
    groups: usize,
    parallel: bool,
    f: impl Fn(usize, usize, usize) + Sync + Send,
) {
    let chunks = rows.div_ceil(ROWS_PER_TILE).max(1);
    let tiles = chunks * groups;
    let run = |t: usize| {
        // Chunk-major: consecutive tiles share rows (the activations stay cached) and walk the
        // channel groups.
        let (chunk, group) = (t / groups, t % groups);
        let start = chunk * ROWS_PER_TILE;
        let end = (start + ROWS_PER_TILE).min(rows);
        f(group, start, end);
    };
    if parallel && tiles > 1 && rayon::current_num_threads() > 1 {
        use rayon::prelude::*;
        (0..tiles).into_par_iter().for_each(run);
    } else {
        (0..tiles).for_each(run);
    }
}
