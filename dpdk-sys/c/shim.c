#include <rte_errno.h>
#include <rte_ethdev.h>

#include "shim.h"

int ctgate_rte_errno(void)
{
	return rte_errno;
}

const uint64_t ctgate_rss_ip_tcp_udp = RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP;
