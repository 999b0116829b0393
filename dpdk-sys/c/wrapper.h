/*
 * The DPDK headers ctgate binds to, plus the few shims in shim.h.
 * bindgen reads this file; the allowlists in build.rs pick what is generated.
 */
#include <rte_config.h>
#include <rte_version.h>
#include <rte_errno.h>
#include <rte_log.h>
#include <rte_eal.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_cycles.h>
#include <rte_ring.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_ethdev.h>
#include <rte_eth_ring.h>
#include <rte_telemetry.h>

#include "shim.h"
