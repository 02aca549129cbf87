//! CPU cache hints for the pure core: the one piece of `src/dpdk/` that is
//! built without the `dpdk` feature too, so that the core and its benchmarks
//! use the same prefetching as the worker.
//!
//! [`prefetch`] is the instruction DPDK's `rte_prefetch0` emits: it starts
//! loading the cache line holding a value into all cache levels and returns
//! at once. It is only a hint: it never faults, changes no memory and no
//! register the program can see, so it is safe to call on any reference.
//! Unlike a plain load it does not hold a slot in the reorder buffer until
//! the line arrives, so a burst can have every one of its table lookups in
//! flight at the same time.

/// Starts loading the cache line that holds `*r` (all cache levels).
#[inline(always)]
pub fn prefetch<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint with no architectural effect: it cannot
    // fault (not even on an invalid address) and writes nothing. `r` is a
    // live reference anyway. SSE, which the intrinsic needs, is part of the
    // x86_64 baseline.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((r as *const T).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // Elsewhere no hint: the lookup loads the line when it needs it.
        let _ = r;
    }
}
