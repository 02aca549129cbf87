use std::ffi::{CStr, CString};

use dpdk_sys as sys;

use super::eal::is_pci_address;
use super::error::{check, DpdkError, Result};
use super::mbuf::MbufBurst;
use super::mempool::Mempool;
use crate::packet::Offload;

/// DPDK port number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortId(pub u16);

/// Queue number on a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QueueId(pub u16);

/// How to bring one port up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortConfig {
    /// The EAL device string the port was created from (vdev args or PCI address).
    pub device: String,
    /// Queue pairs wanted (one per worker); fewer are set up if the device
    /// has fewer.
    pub queues: u16,
    pub rx_desc: u16,
    pub tx_desc: u16,
    pub mtu: Option<u16>,
    /// MAC to program, instead of the device's own.
    pub mac: Option<[u8; 6]>,
    pub promiscuous: bool,
}

/// A configured and started port. Stopped and closed on drop.
pub struct Port {
    id: PortId,
    name: String,
    driver: String,
    mac: [u8; 6],
    rx_queues: u16,
    tx_queues: u16,
    offload: Offload,
    rss: bool,
}

/// Counters DPDK keeps for a port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PortStats {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_missed: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_nombuf: u64,
}

/// The name DPDK registers a device under: the vdev name before its
/// arguments, or the full PCI address.
fn device_name(device: &str) -> String {
    let name = device.split(',').next().unwrap_or(device).trim();
    if is_pci_address(name) && name.matches(':').count() == 1 {
        format!("0000:{name}")
    } else {
        name.to_string()
    }
}

impl Port {
    /// Finds the port the EAL created for `cfg.device`, configures its queues
    /// with buffers from `pool` and starts it.
    pub fn start(cfg: &PortConfig, pool: &Mempool, socket: i32) -> Result<Port> {
        let name = device_name(&cfg.device);
        let cname = CString::new(name.as_str())
            .map_err(|_| DpdkError::other("rte_eth_dev_get_port_by_name", "NUL in device name"))?;
        let mut id: u16 = 0;
        // SAFETY: cname is valid for the call; id is a valid out pointer.
        let ret = unsafe { sys::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) };
        if ret < 0 {
            return Err(DpdkError::other(
                "rte_eth_dev_get_port_by_name",
                format!("no DPDK port for device '{name}' (is the device string right, is the PMD installed?)"),
            ));
        }

        let mut info = sys::rte_eth_dev_info::default();
        // SAFETY: id is a valid port; info is a valid out pointer.
        check("rte_eth_dev_info_get", unsafe {
            sys::rte_eth_dev_info_get(id, &mut info)
        })?;
        let driver = if info.driver_name.is_null() {
            String::from("?")
        } else {
            // SAFETY: driver_name is a static NUL-terminated string of the PMD.
            unsafe { CStr::from_ptr(info.driver_name) }
                .to_string_lossy()
                .into_owned()
        };

        let want = cfg.queues.max(1);
        let rx_queues = want.min(info.max_rx_queues.max(1));
        let tx_queues = want.min(info.max_tx_queues.max(1));

        let capa = info.tx_offload_capa;
        let offload = Offload {
            ipv4_cksum: capa & sys::FARMLB_TX_OFFLOAD_IPV4_CKSUM != 0,
            tcp_cksum: capa & sys::FARMLB_TX_OFFLOAD_TCP_CKSUM != 0,
            udp_cksum: capa & sys::FARMLB_TX_OFFLOAD_UDP_CKSUM != 0,
        };
        let mut conf = sys::rte_eth_conf::default();
        let mut tx_offloads = 0u64;
        if offload.ipv4_cksum {
            tx_offloads |= sys::FARMLB_TX_OFFLOAD_IPV4_CKSUM;
        }
        if offload.tcp_cksum {
            tx_offloads |= sys::FARMLB_TX_OFFLOAD_TCP_CKSUM;
        }
        if offload.udp_cksum {
            tx_offloads |= sys::FARMLB_TX_OFFLOAD_UDP_CKSUM;
        }
        conf.txmode.offloads = tx_offloads;
        let rss_hf = info.flow_type_rss_offloads
            & (sys::FARMLB_ETH_RSS_IP | sys::FARMLB_ETH_RSS_TCP | sys::FARMLB_ETH_RSS_UDP);
        let rss = rx_queues > 1 && rss_hf != 0;
        if rss {
            conf.rxmode.mq_mode = sys::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
        }
        // SAFETY: id is valid, conf is fully initialised and outlives the call.
        check("rte_eth_dev_configure", unsafe {
            sys::rte_eth_dev_configure(id, rx_queues, tx_queues, &conf)
        })?;
        if let Some(mtu) = cfg.mtu {
            // SAFETY: configured port, plain value argument.
            let ret = unsafe { sys::rte_eth_dev_set_mtu(id, mtu) };
            if ret < 0 && ret != -(libc::ENOTSUP) {
                return Err(DpdkError::from_ret("rte_eth_dev_set_mtu", ret));
            }
        }
        let socket_id = if socket < 0 { 0 } else { socket as u32 };
        for q in 0..rx_queues {
            // SAFETY: configured port, queue index below the configured count,
            // the pool outlives the port (the caller drops ports first).
            check("rte_eth_rx_queue_setup", unsafe {
                sys::rte_eth_rx_queue_setup(
                    id,
                    q,
                    cfg.rx_desc,
                    socket_id,
                    std::ptr::null(),
                    pool.as_ptr(),
                )
            })?;
        }
        let mut txconf = info.default_txconf;
        txconf.offloads = tx_offloads;
        for q in 0..tx_queues {
            // SAFETY: as above; txconf outlives the call.
            check("rte_eth_tx_queue_setup", unsafe {
                sys::rte_eth_tx_queue_setup(id, q, cfg.tx_desc, socket_id, &txconf)
            })?;
        }
        // A device that cannot take the configured MAC (net_pcap, some
        // vdevs) still gets it: farmlb uses it in software and receives in
        // promiscuous mode.
        let mut soft_mac = None;
        if let Some(mac) = cfg.mac {
            let mut addr = sys::rte_ether_addr { addr_bytes: mac };
            // SAFETY: configured port; addr outlives the call.
            let ret = unsafe { sys::rte_eth_dev_default_mac_addr_set(id, &mut addr) };
            if ret == -(libc::ENOTSUP) {
                tracing::info!(port = %name, "device cannot set its MAC; using the configured MAC in software");
                soft_mac = Some(mac);
            } else if ret < 0 {
                return Err(DpdkError::from_ret("rte_eth_dev_default_mac_addr_set", ret));
            }
        }
        // SAFETY: configured port with all queues set up.
        check("rte_eth_dev_start", unsafe { sys::rte_eth_dev_start(id) })?;
        if cfg.promiscuous || soft_mac.is_some() {
            // SAFETY: started port. Some PMDs do not support it: not fatal.
            let ret = unsafe { sys::rte_eth_promiscuous_enable(id) };
            if ret < 0 {
                tracing::debug!(port = %name, ret, "promiscuous mode not supported");
            }
        }
        let mut addr = sys::rte_ether_addr::default();
        // SAFETY: started port; addr is a valid out pointer.
        check("rte_eth_macaddr_get", unsafe {
            sys::rte_eth_macaddr_get(id, &mut addr)
        })?;
        let port = Port {
            id: PortId(id),
            name,
            driver,
            mac: soft_mac.unwrap_or(addr.addr_bytes),
            rx_queues,
            tx_queues,
            offload,
            rss,
        };
        tracing::info!(
            port = %port.name, driver = %port.driver, id, rx_queues, tx_queues, rss,
            ?offload, "port started"
        );
        Ok(port)
    }

    pub fn id(&self) -> PortId {
        self.id
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn driver(&self) -> &str {
        &self.driver
    }
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }
    pub fn rx_queues(&self) -> u16 {
        self.rx_queues
    }
    pub fn tx_queues(&self) -> u16 {
        self.tx_queues
    }
    pub fn offload(&self) -> Offload {
        self.offload
    }
    pub fn rss(&self) -> bool {
        self.rss
    }

    /// Receives up to `max` frames (bounded by the burst's free room) into
    /// `burst`; returns how many.
    #[inline]
    pub fn rx_burst<const N: usize>(
        &self,
        queue: QueueId,
        burst: &mut MbufBurst<N>,
        max: usize,
    ) -> usize {
        let (ptrs, len) = burst.raw_parts();
        let room = (N - *len).min(max) as u16;
        // SAFETY: ptrs[len..N] is writable room for `room` pointers; the
        // received mbufs become owned by the burst. Each (port, queue) is
        // polled by one worker only.
        let n = unsafe { sys::farmlb_rx_burst(self.id.0, queue.0, ptrs.add(*len), room) } as usize;
        *len += n;
        n
    }

    /// Sends as much of `burst` as the queue takes; what was sent leaves the
    /// burst, the rest stays at its front.
    #[inline]
    pub fn tx_burst<const N: usize>(&self, queue: QueueId, burst: &mut MbufBurst<N>) -> usize {
        let (ptrs, len) = burst.raw_parts();
        let n_in = *len as u16;
        // SAFETY: ptrs[..len] are owned mbufs; the ones DPDK accepts (the
        // first n) are owned by the driver afterwards and removed from the burst.
        let n = unsafe {
            let ready = sys::farmlb_tx_prepare(self.id.0, queue.0, ptrs, n_in);
            sys::farmlb_tx_burst(self.id.0, queue.0, ptrs, ready)
        } as usize;
        burst.consume_front(n);
        n
    }

    pub fn stats(&self) -> PortStats {
        let mut s = sys::rte_eth_stats::default();
        // SAFETY: started port; s is a valid out pointer.
        let ret = unsafe { sys::rte_eth_stats_get(self.id.0, &mut s) };
        if ret < 0 {
            return PortStats::default();
        }
        PortStats {
            rx_packets: s.ipackets,
            tx_packets: s.opackets,
            rx_bytes: s.ibytes,
            tx_bytes: s.obytes,
            rx_missed: s.imissed,
            rx_errors: s.ierrors,
            tx_errors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        }
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        // SAFETY: the port was started by us; workers have stopped polling it.
        unsafe {
            let ret = sys::rte_eth_dev_stop(self.id.0);
            if ret < 0 {
                tracing::warn!(port = %self.name, ret, "rte_eth_dev_stop failed");
            }
            sys::rte_eth_dev_close(self.id.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::device_name;

    #[test]
    fn device_names() {
        assert_eq!(device_name("net_pcap0,rx_pcap=a,tx_pcap=b"), "net_pcap0");
        assert_eq!(device_name("0000:03:00.0"), "0000:03:00.0");
        assert_eq!(device_name("03:00.0"), "0000:03:00.0");
        assert_eq!(device_name("net_null0"), "net_null0");
    }
}
