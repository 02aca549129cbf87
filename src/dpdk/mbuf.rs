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

    /// A pointer to the field at byte `offset` of the mbuf header.
    #[inline(always)]
    fn field<T>(&self, offset: sys::farmlb_mbuf_field) -> *mut T {
        field(self.raw.as_ptr(), offset)
    }

    /// The first byte of the packet data.
    #[inline(always)]
    fn data_ptr(&self) -> *mut u8 {
        // SAFETY: the mbuf is owned, hence valid.
        unsafe { data_start(self.raw.as_ptr()) }
    }

    #[inline]
    pub fn len(&self) -> usize {
        // SAFETY: data_len is an aligned u16 field of an mbuf we own.
        unsafe { *self.field::<u16>(sys::farmlb_mbuf_field_FARMLB_MBUF_DATA_LEN) as usize }
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when the packet spans several segments (farmlb's core sees only
    /// the first; such packets are only produced by jumbo-frame ports).
    #[inline]
    pub fn is_chained(&self) -> bool {
        // SAFETY: nb_segs is an aligned u16 field of an mbuf we own.
        unsafe { *self.field::<u16>(sys::farmlb_mbuf_field_FARMLB_MBUF_NB_SEGS) != 1 }
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
        prefetch_ptr(self.data_ptr());
    }
}

/// A pointer to the field at byte `offset` of mbuf `m`'s header (one of
/// the `farmlb_mbuf_field` offsets the shim exports; reading the fields in
/// place saves a call into the shim per access on the packet path).
#[inline(always)]
fn field<T>(m: *mut sys::rte_mbuf, offset: sys::farmlb_mbuf_field) -> *mut T {
    // The offsets come from offsetof over the installed DPDK's struct
    // rte_mbuf: the result points inside the header, and wrapping_add
    // needs no unsafe.
    m.cast::<u8>().wrapping_add(offset as usize).cast::<T>()
}

/// The first byte of the packet data of `m`: buf_addr + data_off, as
/// rte_pktmbuf_mtod computes it.
///
/// # Safety
/// `m` must be a valid mbuf.
#[inline(always)]
unsafe fn data_start(m: *mut sys::rte_mbuf) -> *mut u8 {
    // SAFETY: buf_addr and data_off are naturally aligned fields of a valid
    // mbuf; data_off lies within the buffer by DPDK's invariant.
    unsafe {
        let buf = *field::<*mut u8>(m, sys::farmlb_mbuf_field_FARMLB_MBUF_BUF_ADDR);
        let off = *field::<u16>(m, sys::farmlb_mbuf_field_FARMLB_MBUF_DATA_OFF);
        buf.add(off as usize)
    }
}

/// Starts loading the cache line at `p` (what rte_prefetch0 does).
#[inline(always)]
fn prefetch_ptr(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint: it never faults and writes nothing.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>())
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

impl Frame for Mbuf {
    #[inline]
    fn data(&self) -> &[u8] {
        // SAFETY: the data start points at data_len initialised bytes inside
        // the mbuf's buffer, which lives as long as self and is not aliased
        // mutably.
        unsafe { std::slice::from_raw_parts(self.data_ptr(), self.len()) }
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in data(); &mut self guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.data_ptr(), self.len()) }
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
        if flags == 0 {
            // Nothing to request (a port without checksum offload): the
            // mbuf came from rx or alloc with no tx flags set.
            return;
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
            // SAFETY: entries below len are owned, valid mbufs.
            prefetch_ptr(unsafe { data_start(p) });
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
