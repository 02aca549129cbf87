use std::ffi::CStr;

use dpdk_sys as sys;

/// A failed DPDK call: which call, the (positive) errno value and DPDK's text for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{call} failed: {text} (errno {errno})")]
pub struct DpdkError {
    pub call: &'static str,
    pub errno: i32,
    pub text: String,
}

pub type Result<T> = std::result::Result<T, DpdkError>;

impl DpdkError {
    /// An error from a call that returns a negative errno (`-ENOTSUP`, ...).
    pub fn from_ret(call: &'static str, ret: i32) -> Self {
        Self::from_errno(call, ret.abs())
    }

    /// An error from a call that reports through `rte_errno`.
    pub fn from_rte_errno(call: &'static str) -> Self {
        // SAFETY: reads the calling thread's rte_errno; no memory is touched.
        let errno = unsafe { sys::farmlb_errno() };
        Self::from_errno(call, errno)
    }

    pub fn from_errno(call: &'static str, errno: i32) -> Self {
        // SAFETY: rte_strerror returns a pointer to a static or thread-local
        // NUL-terminated string that stays valid until the next call on this
        // thread; it is copied out at once.
        let text = unsafe {
            let p = sys::rte_strerror(errno);
            if p.is_null() {
                format!("errno {errno}")
            } else {
                CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        };
        DpdkError { call, errno, text }
    }

    /// An error found by farmlb itself around a DPDK call (bad argument, a
    /// device that is not there).
    pub fn other(call: &'static str, text: impl Into<String>) -> Self {
        DpdkError {
            call,
            errno: 0,
            text: text.into(),
        }
    }
}

/// Turns a DPDK return code (0 or positive: success, negative: -errno) into a Result.
pub(crate) fn check(call: &'static str, ret: i32) -> Result<i32> {
    if ret < 0 {
        Err(DpdkError::from_ret(call, ret))
    } else {
        Ok(ret)
    }
}
