#include <rte_config.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_prefetch.h>
#include "shim.h"

uint16_t farmlb_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{ return rte_eth_rx_burst(port, queue, pkts, n); }
uint16_t farmlb_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{ return rte_eth_tx_burst(port, queue, pkts, n); }
uint16_t farmlb_tx_prepare(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{ return rte_eth_tx_prepare(port, queue, pkts, n); }
struct rte_mbuf *farmlb_pktmbuf_alloc(struct rte_mempool *mp)
{ return rte_pktmbuf_alloc(mp); }
int farmlb_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned n)
{ return rte_pktmbuf_alloc_bulk(mp, mbufs, n); }
void farmlb_pktmbuf_free(struct rte_mbuf *m)
{ rte_pktmbuf_free(m); }
void *farmlb_pktmbuf_mtod(struct rte_mbuf *m)
{ return rte_pktmbuf_mtod(m, void *); }
uint16_t farmlb_pktmbuf_data_len(const struct rte_mbuf *m)
{ return m->data_len; }
uint32_t farmlb_pktmbuf_pkt_len(const struct rte_mbuf *m)
{ return m->pkt_len; }
uint16_t farmlb_pktmbuf_nb_segs(const struct rte_mbuf *m)
{ return m->nb_segs; }
uint16_t farmlb_pktmbuf_capacity(const struct rte_mbuf *m)
{ return (uint16_t)(m->buf_len - m->data_off); }
int farmlb_pktmbuf_set_len(struct rte_mbuf *m, uint16_t len)
{
	if (m->nb_segs != 1 || len > m->buf_len - m->data_off)
		return -1;
	m->data_len = len;
	m->pkt_len = len;
	return 0;
}
void farmlb_pktmbuf_set_tx_offload(struct rte_mbuf *m, uint16_t l2_len, uint16_t l3_len, uint64_t ol_flags)
{
	m->l2_len = l2_len;
	m->l3_len = l3_len;
	m->ol_flags = (m->ol_flags & ~RTE_MBUF_F_TX_OFFLOAD_MASK) | ol_flags;
}
uint64_t farmlb_pktmbuf_ol_flags(const struct rte_mbuf *m)
{ return m->ol_flags; }
uint32_t farmlb_pktmbuf_rss_hash(const struct rte_mbuf *m)
{ return m->hash.rss; }
void farmlb_prefetch0(const void *p)
{ rte_prefetch0(p); }
unsigned farmlb_ring_enqueue_burst(struct rte_ring *r, void *const *objs, unsigned n)
{ return rte_ring_enqueue_burst(r, objs, n, NULL); }
unsigned farmlb_ring_dequeue_burst(struct rte_ring *r, void **objs, unsigned n)
{ return rte_ring_dequeue_burst(r, objs, n, NULL); }
unsigned farmlb_lcore_id(void)
{ return rte_lcore_id(); }
uint64_t farmlb_rdtsc(void)
{ return rte_rdtsc(); }
int farmlb_errno(void)
{ return rte_errno; }

const uint64_t FARMLB_C_TX_OFFLOAD_IPV4_CKSUM = RTE_ETH_TX_OFFLOAD_IPV4_CKSUM;
const uint64_t FARMLB_C_TX_OFFLOAD_UDP_CKSUM = RTE_ETH_TX_OFFLOAD_UDP_CKSUM;
const uint64_t FARMLB_C_TX_OFFLOAD_TCP_CKSUM = RTE_ETH_TX_OFFLOAD_TCP_CKSUM;
const uint64_t FARMLB_C_TX_OFFLOAD_MULTI_SEGS = RTE_ETH_TX_OFFLOAD_MULTI_SEGS;
const uint64_t FARMLB_C_TX_OFFLOAD_MBUF_FAST_FREE = RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE;
const uint64_t FARMLB_C_MBUF_F_TX_IPV4 = RTE_MBUF_F_TX_IPV4;
const uint64_t FARMLB_C_MBUF_F_TX_IPV6 = RTE_MBUF_F_TX_IPV6;
const uint64_t FARMLB_C_MBUF_F_TX_IP_CKSUM = RTE_MBUF_F_TX_IP_CKSUM;
const uint64_t FARMLB_C_MBUF_F_TX_TCP_CKSUM = RTE_MBUF_F_TX_TCP_CKSUM;
const uint64_t FARMLB_C_MBUF_F_TX_UDP_CKSUM = RTE_MBUF_F_TX_UDP_CKSUM;
const uint64_t FARMLB_C_ETH_RSS_IP = RTE_ETH_RSS_IP;
const uint64_t FARMLB_C_ETH_RSS_TCP = RTE_ETH_RSS_TCP;
const uint64_t FARMLB_C_ETH_RSS_UDP = RTE_ETH_RSS_UDP;
