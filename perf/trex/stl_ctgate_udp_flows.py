# TRex stateless (STL) profile: many UDP flows from ctgate's inside network to servers
# outside, for throughput (NDR/PDR) and latency of ctgate's established-flow path.
#
# Topology (perf/README.md, "Real hardware"): TRex port 0 -> ctgate inside port
# (10.0.0.0/24, gateway 10.0.0.1), ctgate outside port (192.0.2.0/24, SNAT to 192.0.2.1)
# -> TRex port 1 (192.0.2.2, ctgate's next hop). Every flow is
#   10.0.0.(2 + k) : (1024 + j)  ->  198.18.0.1 : 53   UDP
# with the field engine's tuple generator walking client IP first, then port, over
# exactly --flows distinct (IP, port) pairs (250 client IPs x 64512 ports at most). The
# first packet of each flow creates a connection; every later one is a lookup of an
# existing connection plus SNAT. TRex port 1 only counts what ctgate forwards.
#
# Tunables (TRex v2.89+ / v3.x: argparse, after -t, which must be the last option):
#   --flows N        distinct flows (default 100000; 1..16128000)
#   --size B         frame size in bytes including the 4-byte FCS (default 64)
#   --latency-pps P  also send a latency-measured stream at P packets/s (default 0: off)
#
# Run (TRex server: ./t-rex-64 -i -c 4 with /etc/trex_cfg.yaml, see perf/README.md):
#   ./trex-console
#   trex> start -f /path/to/ctgate/perf/trex/stl_ctgate_udp_flows.py -p 0 -m 10mpps -t --flows 1000000 --size 64
#   trex> stats            # or tui: opackets on port 0 vs ipackets on port 1
#   trex> update -m 12mpps # change the offered rate while running (NDR search)
#   trex> stop
# From Python: client.add_streams(STLProfile.load_py(path, flows=1000000).get_streams(), ports=[0])
# (keyword arguments are turned into --flows 1000000 by the loader).

import argparse
import os

from trex_stl_lib.api import (
    IP,
    STLFlowLatencyStats,
    STLPktBuilder,
    STLScVmRaw,
    STLStream,
    STLTXCont,
    STLVmFixIpv4,
    STLVmTupleGen,
    STLVmWrFlowVar,
    UDP,
    Ether,
)

CLIENT_MIN = "10.0.0.2"
CLIENT_MAX = "10.0.0.251"  # 250 clients inside 10.0.0.0/24 (10.0.0.1 is ctgate)
CLIENTS = 250
PORT_MIN = 1024
PORT_MAX = 65535
SERVER = "198.18.0.1"  # routed by ctgate's default route via 192.0.2.2 (TRex port 1)
SERVER_PORT = 53
LATENCY_PG_ID = 7


def _pad(pkt, size):
    """Pads the scapy packet to size - 4 bytes (the NIC appends the FCS)."""
    want = size - 4
    if len(pkt) > want:
        raise ValueError("--size %d is below the %d-byte headers + FCS" % (size, len(pkt) + 4))
    return pkt / ("x" * (want - len(pkt)))


class CtgateUdpFlows(object):
    def parse(self, tunables):
        parser = argparse.ArgumentParser(
            prog=os.path.basename(__file__),
            description="Many UDP flows through ctgate (inside -> outside).",
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        parser.add_argument("--flows", type=int, default=100000, help="distinct flows")
        parser.add_argument("--size", type=int, default=64, help="frame size with FCS")
        parser.add_argument("--latency-pps", type=int, default=0, help="latency stream rate")
        args = parser.parse_args(list(tunables or []))
        max_flows = CLIENTS * (PORT_MAX - PORT_MIN + 1)
        if not 1 <= args.flows <= max_flows:
            parser.error("--flows must be 1..%d" % max_flows)
        if not 64 <= args.size <= 9216:
            parser.error("--size must be 64..9216")
        if args.latency_pps < 0:
            parser.error("--latency-pps must be >= 0")
        return args

    def streams(self, args):
        base = Ether() / IP(src=CLIENT_MIN, dst=SERVER) / UDP(sport=PORT_MIN, dport=SERVER_PORT, chksum=0)
        vm = STLScVmRaw(
            [
                STLVmTupleGen(
                    name="tuple",
                    ip_min=CLIENT_MIN,
                    ip_max=CLIENT_MAX,
                    port_min=PORT_MIN,
                    port_max=PORT_MAX,
                    limit_flows=args.flows,
                ),
                STLVmWrFlowVar(fv_name="tuple.ip", pkt_offset="IP.src"),
                STLVmFixIpv4(offset="IP"),
                STLVmWrFlowVar(fv_name="tuple.port", pkt_offset="UDP.sport"),
            ]
        )
        # UDP checksum 0 ("none" over IPv4): the field engine rewrites the source address
        # and port (and TRex the latency payload) without recomputing it, and ctgate, like
        # any IPv4 host, accepts 0 while a stale checksum would make the packet invalid.
        streams = [
            STLStream(
                name="flows",
                packet=STLPktBuilder(pkt=_pad(base, args.size), vm=vm),
                mode=STLTXCont(),
            )
        ]
        if args.latency_pps:
            # One more flow (a client outside the tuple range), timestamped by TRex.
            lat = Ether() / IP(src="10.0.0.252", dst=SERVER) / UDP(sport=PORT_MIN, dport=SERVER_PORT, chksum=0)
            streams.append(
                STLStream(
                    name="latency",
                    packet=STLPktBuilder(pkt=_pad(lat, max(args.size, 64))),
                    mode=STLTXCont(pps=args.latency_pps),
                    flow_stats=STLFlowLatencyStats(pg_id=LATENCY_PG_ID),
                )
            )
        return streams

    def get_streams(self, tunables=None, **kwargs):
        # kwargs: direction and port_id from the loader (unused: send on the inside port).
        return self.streams(self.parse(tunables))


def register():
    return CtgateUdpFlows()
