use std::ptr::NonNull;

use dpdk_sys as sys;

use crate::packet::{Frame, L4Offload, TxOffload};

/// An owned single packet buffer. Dropping it returns it to its pool;
/// [`Mbuf::into_raw`] hands ownership to DPDK (a tx burst, a ring).
pub struct Mbuf {
    raw: NonNull<sys::rte_mbuf>,
}

// SAFETY: an mbuf is owned by exactly one Mbuf value, so moving it to another
// thread (e.g. over a ring) is sound; DPDK's free path is thread-safe.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Takes ownership of a raw mbuf; `None` for null.
    ///
    /// # Safety
    /// `raw` must be null or an mbuf that nothing else owns or frees.
    #[inline]
    pub unsafe fn from_raw(raw: *mut sys::rte_mbuf) -> Option<Mbuf> {
        NonNull::new(raw).map(|raw| Mbuf { raw })
    }

    /// Gives up ownership without freeing.
    #[inline]
    pub fn into_raw(self) -> *mut sys::rte_mbuf {
        let p = self.raw.as_ptr();
        std::mem::forget(self);
        p
    }

    #[inline]
    pub fn len(&self) -> usize {
        // SAFETY: the mbuf is valid while owned.
        unsafe { sys::farmlb_pktmbuf_data_len(self.raw.as_ptr()) as usize }
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when the packet spans several segments (farmlb's core sees only
    /// the first; such packets are only produced by jumbo-frame ports).
    #[inline]
    pub fn is_chained(&self) -> bool {
        // SAFETY: the mbuf is valid while owned.
        unsafe { sys::farmlb_pktmbuf_nb_segs(self.raw.as_ptr()) != 1 }
    }

    /// The NIC's RSS hash of the packet (0 when the port has no RSS).
    #[inline]
    pub fn rss_hash(&self) -> u32 {
        // SAFETY: the mbuf is valid while owned.
        unsafe { sys::farmlb_pktmbuf_rss_hash(self.raw.as_ptr()) }
    }

    /// Prefetches the packet data into cache.
    #[inline]
    pub fn prefetch(&self) {
        // SAFETY: a prefetch never faults; the pointer is the mbuf's data start.
        unsafe { sys::farmlb_prefetch0(sys::farmlb_pktmbuf_mtod(self.raw.as_ptr())) }
    }
}

impl Frame for Mbuf {
    #[inline]
    fn data(&self) -> &[u8] {
        // SAFETY: mtod points at data_len initialised bytes inside the mbuf's
        // buffer, which lives as long as self and is not aliased mutably.
        unsafe {
            let p = sys::farmlb_pktmbuf_mtod(self.raw.as_ptr()) as *const u8;
            std::slice::from_raw_parts(p, self.len())
        }
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in data(); &mut self guarantees exclusive access.
        unsafe {
            let p = sys::farmlb_pktmbuf_mtod(self.raw.as_ptr()) as *mut u8;
            std::slice::from_raw_parts_mut(p, self.len())
        }
    }

    #[inline]
    fn set_len(&mut self, len: usize) -> bool {
        if len > u16::MAX as usize {
            return false;
        }
        // SAFETY: the shim checks the length against the buffer's room and
        // refuses chained mbufs; new bytes come from the mbuf's own buffer.
        unsafe { sys::farmlb_pktmbuf_set_len(self.raw.as_ptr(), len as u16) == 0 }
    }

    #[inline]
    fn set_tx_offload(&mut self, req: TxOffload) {
        let mut flags = 0u64;
        if req.ipv4 {
            flags |= sys::FARMLB_MBUF_F_TX_IPV4;
        }
        if req.ipv6 {
            flags |= sys::FARMLB_MBUF_F_TX_IPV6;
        }
        if req.ip_cksum {
            flags |= sys::FARMLB_MBUF_F_TX_IP_CKSUM;
        }
        match req.l4 {
            L4Offload::None => {}
            L4Offload::Tcp => flags |= sys::FARMLB_MBUF_F_TX_TCP_CKSUM,
            L4Offload::Udp => flags |= sys::FARMLB_MBUF_F_TX_UDP_CKSUM,
        }
        // SAFETY: writes the offload fields of an mbuf we own.
        unsafe {
            sys::farmlb_pktmbuf_set_tx_offload(
                self.raw.as_ptr(),
                req.l2_len as u16,
                req.l3_len,
                flags,
            )
        }
    }
}

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we own the mbuf and free it exactly once.
        unsafe { sys::farmlb_pktmbuf_free(self.raw.as_ptr()) }
    }
}

/// A fixed array of raw mbuf pointers for rx/tx bursts, owning the first
/// `len` entries.
pub struct MbufBurst<const N: usize> {
    ptrs: [*mut sys::rte_mbuf; N],
    len: usize,
}

impl<const N: usize> Default for MbufBurst<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> MbufBurst<N> {
    pub const fn new() -> Self {
        MbufBurst {
            ptrs: [std::ptr::null_mut(); N],
            len: 0,
        }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    pub fn is_full(&self) -> bool {
        self.len == N
    }

    /// Appends an mbuf; gives it back when the burst is full.
    #[inline]
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        if self.len == N {
            return Err(m);
        }
        self.ptrs[self.len] = m.into_raw();
        self.len += 1;
        Ok(())
    }

    /// Takes all mbufs out, in order.
    #[inline]
    pub fn drain(&mut self) -> impl Iterator<Item = Mbuf> + '_ {
        let n = std::mem::take(&mut self.len);
        self.ptrs[..n].iter().filter_map(|&p| {
            // SAFETY: entries below len are owned mbufs, taken out exactly once
            // (len was reset before iterating).
            unsafe { Mbuf::from_raw(p) }
        })
    }

    /// Prefetches the data of every mbuf in the burst.
    #[inline]
    pub fn prefetch_all(&self) {
        for &p in &self.ptrs[..self.len] {
            // SAFETY: prefetch of an owned mbuf's data start never faults.
            unsafe { sys::farmlb_prefetch0(sys::farmlb_pktmbuf_mtod(p)) }
        }
    }

    pub(crate) fn raw_parts(&mut self) -> (*mut *mut sys::rte_mbuf, &mut usize) {
        (self.ptrs.as_mut_ptr(), &mut self.len)
    }

    /// Removes the first `n` entries (they were consumed by DPDK) and moves the
    /// rest to the front.
    pub(crate) fn consume_front(&mut self, n: usize) {
        let n = n.min(self.len);
        self.ptrs.copy_within(n..self.len, 0);
        self.len -= n;
    }
}

impl<const N: usize> Drop for MbufBurst<N> {
    fn drop(&mut self) {
        for m in self.drain() {
            drop(m);
        }
    }
}
