use std::ffi::CString;
use std::os::raw::{c_char, c_int};
use std::sync::atomic::{AtomicBool, Ordering};

use dpdk_sys as sys;

use super::error::{DpdkError, Result};

/// What the EAL is started with; built from the `[eal]` config section.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EalArgs {
    /// `--lcores` map: the first lcore is the main (control) lcore, the rest run workers.
    pub lcores: String,
    /// Use hugepages; when false the EAL runs with `--no-huge`.
    pub hugepages: bool,
    /// Memory to reserve in MiB (`-m`), 0 for DPDK's default.
    pub memory_mb: u32,
    /// `--file-prefix`, so several DPDK processes can run side by side.
    pub file_prefix: String,
    /// EAL device arguments: `--vdev NAME,ARGS` or `-a PCI` per port.
    pub devices: Vec<String>,
    /// Further EAL arguments, passed as they are.
    pub extra: Vec<String>,
}

impl EalArgs {
    /// The argv handed to `rte_eal_init` (program name first).
    pub fn argv(&self) -> Vec<String> {
        let mut v = vec!["farmlb".to_string()];
        if !self.lcores.is_empty() {
            v.push("--lcores".into());
            v.push(self.lcores.clone());
        }
        if !self.hugepages {
            v.push("--no-huge".into());
        }
        if self.memory_mb > 0 {
            v.push("-m".into());
            v.push(self.memory_mb.to_string());
        }
        if !self.file_prefix.is_empty() {
            v.push("--file-prefix".into());
            v.push(self.file_prefix.clone());
        }
        // Without a PCI port, keep the EAL away from the machine's PCI devices
        // (it would otherwise probe every NIC it has a driver for).
        if !self.devices.iter().any(|d| is_pci_address(d)) {
            v.push("--no-pci".into());
        }
        for d in &self.devices {
            if is_pci_address(d) {
                v.push("-a".into());
            } else {
                v.push("--vdev".into());
            }
            v.push(d.clone());
        }
        v.extend(self.extra.iter().cloned());
        v
    }
}

/// True for `0000:03:00.0` or `03:00.0` (optionally followed by `,devargs`).
pub fn is_pci_address(dev: &str) -> bool {
    let name = dev.split(',').next().unwrap_or("");
    let parts: Vec<&str> = name.split(':').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.chars().all(|c| c.is_ascii_hexdigit());
    let bdf = |bus: &str, devfn: &str| {
        let mut df = devfn.split('.');
        hex(bus, 2)
            && matches!((df.next(), df.next(), df.next()), (Some(d), Some(f), None) if hex(d, 2) && hex(f, 1))
    };
    match parts.as_slice() {
        [dom, bus, devfn] => hex(dom, 4) && bdf(bus, devfn),
        [bus, devfn] => bdf(bus, devfn),
        _ => false,
    }
}

static EAL_STARTED: AtomicBool = AtomicBool::new(false);

/// The running EAL. Dropping it calls `rte_eal_cleanup`; it must outlive every
/// port, mempool and mbuf (the caller keeps it last in scope).
pub struct Eal {
    _private: (),
}

impl Eal {
    /// Starts the EAL. Only once per process.
    pub fn init(args: &EalArgs) -> Result<Eal> {
        if EAL_STARTED.swap(true, Ordering::SeqCst) {
            return Err(DpdkError::other(
                "rte_eal_init",
                "the EAL is already running",
            ));
        }
        let argv = args.argv();
        let cstrings: Vec<CString> = argv
            .iter()
            .map(|a| CString::new(a.as_str()))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| DpdkError::other("rte_eal_init", "an EAL argument contains a NUL byte"))?;
        // The EAL keeps pointers into argv (it may permute it), so the strings
        // are leaked on purpose: they live as long as the process.
        let mut ptrs: Vec<*mut c_char> = cstrings.into_iter().map(|c| c.into_raw()).collect();
        let argc = ptrs.len() as c_int;
        ptrs.push(std::ptr::null_mut());
        let ptrs = ptrs.leak();
        tracing::info!(argv = ?argv, "starting EAL");
        // SAFETY: argc/argv describe NUL-terminated strings that are never freed;
        // rte_eal_init is called once per process (guarded above).
        let ret = unsafe { sys::rte_eal_init(argc, ptrs.as_mut_ptr()) };
        if ret < 0 {
            EAL_STARTED.store(false, Ordering::SeqCst);
            return Err(DpdkError::from_rte_errno("rte_eal_init"));
        }
        Ok(Eal { _private: () })
    }

    /// Lcores that run workers (every enabled lcore but the main one), in order.
    pub fn worker_lcores(&self) -> Vec<u32> {
        let mut out = Vec::new();
        let mut id: u32 = u32::MAX; // -1: start from the first lcore
        loop {
            // SAFETY: pure query of the EAL's lcore table, valid after init.
            id = unsafe { sys::rte_get_next_lcore(id, 1, 0) };
            if id >= sys::RTE_MAX_LCORE {
                break;
            }
            out.push(id);
        }
        out
    }

    /// NUMA socket of the calling thread.
    pub fn socket_id(&self) -> i32 {
        // SAFETY: pure query, valid after init.
        unsafe { sys::rte_socket_id() as i32 }
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        // SAFETY: all DPDK objects were released by their owners, which the
        // caller drops before the Eal.
        let ret = unsafe { sys::rte_eal_cleanup() };
        if ret < 0 {
            tracing::warn!(ret, "rte_eal_cleanup failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_addresses_are_recognised() {
        assert!(is_pci_address("0000:03:00.0"));
        assert!(is_pci_address("03:00.1"));
        assert!(is_pci_address("0000:af:00.0,rxq_cqe_comp_en=0"));
        assert!(!is_pci_address("net_pcap0,rx_pcap=a.pcap"));
        assert!(!is_pci_address("net_tap0,iface=x"));
        assert!(!is_pci_address("03:00"));
    }

    #[test]
    fn vdev_only_skips_pci_probing() {
        let a = EalArgs {
            devices: vec!["net_pcap0,rx_pcap=a,tx_pcap=b".into()],
            hugepages: true,
            ..EalArgs::default()
        };
        assert_eq!(
            a.argv(),
            [
                "farmlb",
                "--no-pci",
                "--vdev",
                "net_pcap0,rx_pcap=a,tx_pcap=b"
            ]
        );
    }

    #[test]
    fn argv_maps_devices_and_hugepages() {
        let a = EalArgs {
            lcores: "0,1".into(),
            hugepages: false,
            memory_mb: 256,
            file_prefix: "t1".into(),
            devices: vec!["net_null0".into(), "0000:03:00.0".into()],
            extra: vec!["--log-level=7".into()],
        };
        assert_eq!(
            a.argv(),
            [
                "farmlb",
                "--lcores",
                "0,1",
                "--no-huge",
                "-m",
                "256",
                "--file-prefix",
                "t1",
                "--vdev",
                "net_null0",
                "-a",
                "0000:03:00.0",
                "--log-level=7"
            ]
        );
    }
}
