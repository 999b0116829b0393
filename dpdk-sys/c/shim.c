#include <rte_errno.h>
#include <rte_ethdev.h>

#include "shim.h"

int ctgate_rte_errno(void)
{
	return rte_errno;
}

const uint64_t ctgate_rss_ip_tcp_udp = RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP;

const uint64_t ctgate_rx_offload_ipv4_cksum = RTE_ETH_RX_OFFLOAD_IPV4_CKSUM;

const uint64_t ctgate_rx_ip_cksum_mask = RTE_MBUF_F_RX_IP_CKSUM_MASK;
const uint64_t ctgate_rx_ip_cksum_good = RTE_MBUF_F_RX_IP_CKSUM_GOOD;
const uint64_t ctgate_rx_ip_cksum_bad = RTE_MBUF_F_RX_IP_CKSUM_BAD;
const uint64_t ctgate_rx_ip_cksum_none = RTE_MBUF_F_RX_IP_CKSUM_NONE;
