/*
 * Hand-written shims for what bindgen cannot reach: per-lcore TLS variables
 * (rte_errno) and function-like macros (RTE_ETH_RSS_*, RTE_ETH_LINK_*).
 * Everything else that is `static inline` in DPDK is wrapped by bindgen's
 * wrap_static_fns instead.
 */
#ifndef CTGATE_DPDK_SHIM_H
#define CTGATE_DPDK_SHIM_H

#include <stdint.h>

/* The calling thread's rte_errno (a per-lcore TLS variable in DPDK). */
int ctgate_rte_errno(void);

/* RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP (built with RTE_BIT64). */
extern const uint64_t ctgate_rss_ip_tcp_udp;

/* RTE_ETH_RX_OFFLOAD_IPV4_CKSUM (built with RTE_BIT64). */
extern const uint64_t ctgate_rx_offload_ipv4_cksum;

/* RTE_MBUF_F_RX_IP_CKSUM_{MASK,GOOD,BAD,NONE}: the mbuf's RX IPv4 header checksum flags. */
extern const uint64_t ctgate_rx_ip_cksum_mask;
extern const uint64_t ctgate_rx_ip_cksum_good;
extern const uint64_t ctgate_rx_ip_cksum_bad;
extern const uint64_t ctgate_rx_ip_cksum_none;

#endif
