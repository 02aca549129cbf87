//! CPU cache and TLB hints for the pure core: the one piece of `src/dpdk/`
//! that is built without the `dpdk` feature too, so that the core and its
//! benchmarks use the same prefetching and page sizes as the worker.
//!
//! [`HugeArray`] holds the flow table's large arrays on transparent huge
//! pages where the kernel grants them (see there).
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

/// A fixed-size array of plain values for large tables (the flow table's
/// slab and index) on transparent huge pages where the kernel grants them.
///
/// Arrays of at least [`HUGE_PAGE`] bytes are allocated aligned to 2 MiB
/// (their size rounded up to a multiple of it) and marked with
/// `madvise(MADV_HUGEPAGE)` before they are first touched, so that with
/// THP in `madvise` (or `always`) mode the kernel backs them with 2 MiB
/// pages: a table of tens of megabytes then needs a few dozen TLB entries
/// instead of thousands, and random lookups stop paying a page walk each.
/// Where `madvise` fails (THP disabled, another OS) the array stays on
/// ordinary pages; nothing else changes. Smaller arrays are ordinary heap
/// allocations.
pub struct HugeArray<T: Copy> {
    ptr: std::ptr::NonNull<T>,
    len: usize,
    /// The layout it was allocated with; size 0: nothing allocated.
    layout: std::alloc::Layout,
}

/// The huge page size aimed at (x86_64 and aarch64 with 4 KiB base pages).
pub const HUGE_PAGE: usize = 2 << 20;

impl<T: Copy> HugeArray<T> {
    /// `len` copies of `value`.
    pub fn new(len: usize, value: T) -> HugeArray<T> {
        use std::alloc::{alloc, handle_alloc_error, Layout};
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .expect("array size overflows");
        let huge = bytes >= HUGE_PAGE;
        let layout = if huge {
            Layout::from_size_align(bytes.next_multiple_of(HUGE_PAGE), HUGE_PAGE)
        } else {
            Layout::array::<T>(len)
        }
        .expect("array layout");
        if layout.size() == 0 {
            return HugeArray {
                ptr: std::ptr::NonNull::dangling(),
                len,
                layout,
            };
        }
        // SAFETY: the layout has a non-zero size (checked above).
        let raw = unsafe { alloc(layout) };
        let Some(ptr) = std::ptr::NonNull::new(raw.cast::<T>()) else {
            handle_alloc_error(layout)
        };
        if huge {
            advise_huge(raw, layout.size());
        }
        for i in 0..len {
            // SAFETY: `i < len` and the allocation holds `len` values of `T`
            // (its size is at least `len * size_of::<T>()` and its alignment
            // at least `align_of::<T>()`: HUGE_PAGE is a multiple of any
            // type's alignment). `write` does not read the uninitialised
            // value it replaces; `T: Copy` has no drop.
            unsafe { ptr.as_ptr().add(i).write(value) };
        }
        HugeArray { ptr, len, layout }
    }

    /// Bytes held (the allocation, rounding included).
    pub fn allocated_bytes(&self) -> usize {
        self.layout.size()
    }
}

/// Asks the kernel for transparent huge pages on `len` bytes at `p` (2 MiB
/// aligned). A failure only means ordinary pages.
#[cfg(target_os = "linux")]
fn advise_huge(p: *mut u8, len: usize) {
    // SAFETY: `p..p + len` is one live allocation of ours; MADV_HUGEPAGE
    // changes how the kernel backs it, not its contents or validity.
    let _ = unsafe { libc::madvise(p.cast::<libc::c_void>(), len, libc::MADV_HUGEPAGE) };
}

#[cfg(not(target_os = "linux"))]
fn advise_huge(_p: *mut u8, _len: usize) {}

impl<T: Copy> std::ops::Deref for HugeArray<T> {
    type Target = [T];
    #[inline(always)]
    fn deref(&self) -> &[T] {
        // SAFETY: `ptr` points at `len` initialised values of `T` (written
        // in `new`), or is dangling with `len` zero-sized or zero values;
        // the borrow of `self` keeps the allocation alive.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> std::ops::DerefMut for HugeArray<T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`; `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> Drop for HugeArray<T> {
    fn drop(&mut self) {
        if self.layout.size() != 0 {
            // SAFETY: allocated in `new` with exactly this layout, and freed
            // only here.
            unsafe { std::alloc::dealloc(self.ptr.as_ptr().cast::<u8>(), self.layout) };
        }
    }
}

// SAFETY: a HugeArray owns its values like a Box<[T]>: moving it to another
// thread moves them, and shared references only read.
unsafe impl<T: Copy + Send> Send for HugeArray<T> {}
// SAFETY: as above; `&HugeArray` gives only `&[T]`.
unsafe impl<T: Copy + Sync> Sync for HugeArray<T> {}

impl<T: Copy + std::fmt::Debug> std::fmt::Debug for HugeArray<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HugeArray")
            .field("len", &self.len)
            .field("bytes", &self.layout.size())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_array_holds_its_values() {
        for len in [0usize, 1, 1000, (HUGE_PAGE / 8) + 3] {
            let mut a = HugeArray::new(len, 7u64);
            assert_eq!(a.len(), len);
            assert!(a.iter().all(|&x| x == 7));
            if let Some(x) = a.last_mut() {
                *x = 9;
            }
            assert_eq!(a.iter().filter(|&&x| x == 9).count(), usize::from(len > 0));
            assert!(a.allocated_bytes() >= len * 8);
        }
        let big = HugeArray::new(HUGE_PAGE, 0u8);
        assert_eq!(big.as_ptr() as usize % HUGE_PAGE, 0);
        let empty: HugeArray<()> = HugeArray::new(5, ());
        assert_eq!(empty.len(), 5);
    }
}
