use std::ffi::CString;
use std::ptr::NonNull;

use dpdk_sys as sys;

use super::error::{DpdkError, Result};
use super::mbuf::Mbuf;

/// A packet-buffer pool (`rte_pktmbuf_pool_create`). Freed on drop; every
/// mbuf taken from it must have been returned first.
pub struct Mempool {
    raw: NonNull<sys::rte_mempool>,
}

// SAFETY: DPDK mempools are designed for concurrent use from all lcores
// (per-lcore caches plus a lock-free ring).
unsafe impl Send for Mempool {}
// SAFETY: as above; get/put are thread-safe.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// Creates a pool of `size` mbufs with `data_room` bytes each (including
    /// headroom) and a per-lcore cache of `cache` mbufs.
    pub fn new(name: &str, size: u32, cache: u32, data_room: u16, socket: i32) -> Result<Mempool> {
        let cname = CString::new(name)
            .map_err(|_| DpdkError::other("rte_pktmbuf_pool_create", "pool name contains NUL"))?;
        // SAFETY: cname is a valid C string for the duration of the call; the
        // returned pool is owned by this value and freed once, in Drop.
        let raw = unsafe {
            sys::rte_pktmbuf_pool_create(cname.as_ptr(), size, cache, 0, data_room, socket)
        };
        NonNull::new(raw)
            .map(|raw| Mempool { raw })
            .ok_or_else(|| DpdkError::from_rte_errno("rte_pktmbuf_pool_create"))
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::rte_mempool {
        self.raw.as_ptr()
    }

    /// One mbuf, or `None` when the pool is exhausted.
    #[inline]
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool pointer is valid for self's lifetime; a non-null
        // result is a fresh mbuf owned by the caller.
        let m = unsafe { sys::farmlb_pktmbuf_alloc(self.raw.as_ptr()) };
        // SAFETY: m is either null or an mbuf nobody else owns.
        unsafe { Mbuf::from_raw(m) }
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        // SAFETY: the pool was created by rte_pktmbuf_pool_create and is
        // freed exactly once; ports using it were stopped and closed first.
        unsafe { sys::rte_mempool_free(self.raw.as_ptr()) }
    }
}
