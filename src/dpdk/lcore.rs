use std::os::raw::{c_int, c_void};

use dpdk_sys as sys;

use super::error::{DpdkError, Result};

/// An EAL lcore number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LcoreId(pub u32);

type Job = Box<dyn FnOnce() -> i32 + Send + 'static>;

extern "C" fn trampoline(arg: *mut c_void) -> c_int {
    // SAFETY: arg came from Box::into_raw(Box<Job>) in launch_workers and is
    // consumed exactly once, here.
    let job: Box<Job> = unsafe { Box::from_raw(arg as *mut Job) };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)) {
        Ok(code) => code,
        Err(_) => {
            tracing::error!("worker panicked");
            -1
        }
    }
}

/// Lcores running jobs started by [`launch_workers`]; [`WorkerHandle::join`]
/// waits for all of them.
pub struct WorkerHandle {
    lcores: Vec<LcoreId>,
}

impl WorkerHandle {
    /// Waits for every worker to return; the exit codes in launch order.
    pub fn join(self) -> Vec<i32> {
        self.lcores
            .iter()
            .map(|l| {
                // SAFETY: waits for a job we launched on that lcore.
                unsafe { sys::rte_eal_wait_lcore(l.0) }
            })
            .collect()
    }
}

/// Runs each job on its lcore (the EAL pins lcores to their CPUs).
pub fn launch_workers(jobs: Vec<(LcoreId, Job)>) -> Result<WorkerHandle> {
    let mut lcores = Vec::with_capacity(jobs.len());
    for (lcore, job) in jobs {
        let arg = Box::into_raw(Box::new(job)) as *mut c_void;
        // SAFETY: the trampoline takes ownership of arg; on failure we take
        // it back so it is not leaked.
        let ret = unsafe { sys::rte_eal_remote_launch(Some(trampoline), arg, lcore.0) };
        if ret < 0 {
            // SAFETY: the launch failed, so the trampoline never saw arg.
            drop(unsafe { Box::from_raw(arg as *mut Job) });
            // Wait for the workers already running (the caller has set its
            // stop flag or will see this error and set it), then report.
            let _ = WorkerHandle { lcores }.join();
            return Err(DpdkError::from_ret("rte_eal_remote_launch", ret));
        }
        lcores.push(lcore);
    }
    Ok(WorkerHandle { lcores })
}

/// Timestamp counter now.
#[inline]
pub fn tsc_now() -> u64 {
    // RDTSC in place on x86_64 (what rte_rdtsc does), the shim elsewhere.
    #[cfg(target_arch = "x86_64")]
    // SAFETY: RDTSC only reads the CPU's timestamp counter.
    unsafe {
        std::arch::x86_64::_rdtsc()
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: reads the CPU's timestamp counter.
    unsafe {
        sys::farmlb_rdtsc()
    }
}

/// Timestamp counter ticks per second.
pub fn tsc_hz() -> u64 {
    // SAFETY: pure query, valid after EAL init.
    unsafe { sys::rte_get_tsc_hz() }
}
