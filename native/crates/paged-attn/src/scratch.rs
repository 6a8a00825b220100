//! Per-thread buffers of the attention kernels, kept from call to call so a step does not
//! allocate. A kernel takes them out of the thread-local and puts them back: used inside a
//! `with` closure, they would be reached from code that does not inherit the caller's target
//! features.

use std::cell::RefCell;

/// Per-thread buffers: scores of one query, one block of keys or values in f32, the query in
/// f16 precision.
#[derive(Default)]
pub(crate) struct Scratch {
    pub(crate) scores: Vec<f32>,
    pub(crate) block: Vec<f32>,
    pub(crate) q: Vec<f32>,
    /// Per query of an item: (first key, end key, output row offset).
    pub(crate) ranges: Vec<(usize, usize, usize)>,
    pub(crate) offsets: Vec<usize>,
    /// `[n_queries, 8, head_dim]` lane accumulators of the outputs.
    pub(crate) lanes: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// This thread's buffers, taken out for one call.
pub(crate) fn take() -> Scratch {
    SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()))
}

/// Puts them back for the next call.
pub(crate) fn give_back(scratch: Scratch) {
    SCRATCH.with(|s| *s.borrow_mut() = scratch);
}
