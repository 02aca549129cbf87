/* farmlb's wrappers for DPDK's static inline functions and macros, which
 * bindgen cannot bind. Each is a one-line forwarder compiled into the crate. */
#ifndef FARMLB_SHIM_H
#define FARMLB_SHIM_H
#include <stddef.h>
#include <stdint.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

uint16_t farmlb_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t farmlb_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t farmlb_tx_prepare(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
struct rte_mbuf *farmlb_pktmbuf_alloc(struct rte_mempool *mp);
int farmlb_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned n);
void farmlb_pktmbuf_free(struct rte_mbuf *m);
void *farmlb_pktmbuf_mtod(struct rte_mbuf *m);
uint16_t farmlb_pktmbuf_data_len(const struct rte_mbuf *m);
uint32_t farmlb_pktmbuf_pkt_len(const struct rte_mbuf *m);
uint16_t farmlb_pktmbuf_nb_segs(const struct rte_mbuf *m);
/* Room from the start of the data to the end of the buffer (first segment). */
uint16_t farmlb_pktmbuf_capacity(const struct rte_mbuf *m);
/* Sets data_len = pkt_len = len on a single-segment mbuf; -1 if it does not fit. */
int farmlb_pktmbuf_set_len(struct rte_mbuf *m, uint16_t len);
/* Fills l2_len/l3_len and ol_flags for transmit checksum offload. */
void farmlb_pktmbuf_set_tx_offload(struct rte_mbuf *m, uint16_t l2_len, uint16_t l3_len, uint64_t ol_flags);
uint64_t farmlb_pktmbuf_ol_flags(const struct rte_mbuf *m);
uint32_t farmlb_pktmbuf_rss_hash(const struct rte_mbuf *m);
void farmlb_prefetch0(const void *p);
unsigned farmlb_ring_enqueue_burst(struct rte_ring *r, void *const *objs, unsigned n);
unsigned farmlb_ring_dequeue_burst(struct rte_ring *r, void **objs, unsigned n);
unsigned farmlb_lcore_id(void);
uint64_t farmlb_rdtsc(void);
int farmlb_errno(void);

/* Where the per-packet fields sit in struct rte_mbuf (bindgen keeps the
 * struct opaque): the packet path reads them directly instead of calling a
 * shim function for each. clang evaluates offsetof, so these are the
 * installed DPDK's own offsets. */
enum farmlb_mbuf_field {
	FARMLB_MBUF_BUF_ADDR = offsetof(struct rte_mbuf, buf_addr),
	FARMLB_MBUF_DATA_OFF = offsetof(struct rte_mbuf, data_off),
	FARMLB_MBUF_NB_SEGS = offsetof(struct rte_mbuf, nb_segs),
	FARMLB_MBUF_DATA_LEN = offsetof(struct rte_mbuf, data_len),
	FARMLB_MBUF_BUF_LEN = offsetof(struct rte_mbuf, buf_len),
};

/* Offload flags and capability bits that DPDK defines as macros (bindgen drops
 * the shifted-constant macros), exported as constants. */
extern const uint64_t FARMLB_C_TX_OFFLOAD_IPV4_CKSUM;
extern const uint64_t FARMLB_C_TX_OFFLOAD_UDP_CKSUM;
extern const uint64_t FARMLB_C_TX_OFFLOAD_TCP_CKSUM;
extern const uint64_t FARMLB_C_TX_OFFLOAD_MULTI_SEGS;
extern const uint64_t FARMLB_C_TX_OFFLOAD_MBUF_FAST_FREE;
extern const uint64_t FARMLB_C_MBUF_F_TX_IPV4;
extern const uint64_t FARMLB_C_MBUF_F_TX_IPV6;
extern const uint64_t FARMLB_C_MBUF_F_TX_IP_CKSUM;
extern const uint64_t FARMLB_C_MBUF_F_TX_TCP_CKSUM;
extern const uint64_t FARMLB_C_MBUF_F_TX_UDP_CKSUM;
extern const uint64_t FARMLB_C_ETH_RSS_IP;
extern const uint64_t FARMLB_C_ETH_RSS_TCP;
extern const uint64_t FARMLB_C_ETH_RSS_UDP;
#endif
