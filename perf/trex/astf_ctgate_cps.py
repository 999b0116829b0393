# TRex advanced stateful (ASTF) profile: HTTP-like TCP connections through ctgate's source
# NAT, for the connection rate (connections/s) ctgate sustains.
#
# Topology (perf/README.md, "Real hardware"): TRex port 0 = clients on ctgate's inside
# network, TRex port 1 = servers beyond ctgate's outside port. Each connection: TCP
# handshake, a ~100-byte GET from the client, a ~300-byte response from the server, FIN
# both ways. Clients 10.0.0.2-10.0.0.251 (inside 10.0.0.0/24, ctgate is 10.0.0.1);
# servers 198.18.0.1-198.18.0.254 (routed by ctgate's default route via 192.0.2.2, TRex
# port 1's address). ctgate source-NATs each connection to 192.0.2.1; the TRex server side
# accepts connections by destination port (80), so the translated client address is fine.
#
# Tunables (after -t, which must be the last option of `start`):
#   --cps N        new connections per second at multiplier 1 (default 10000)
#   --resp-size B  response body bytes (default 256)
#
# Run (TRex server in ASTF mode: ./t-rex-64 -i --astf -c 4, /etc/trex_cfg.yaml in
# perf/README.md):
#   ./trex-console
#   trex> start -f /path/to/ctgate/perf/trex/astf_ctgate_cps.py -m 1 -d 60 -t --cps 50000
#   trex> stats -a        # or tui: m_active_flows, tcps_connects, tcps_drops, udp/tcp errors
#   trex> stop
# Total rate = cps x multiplier (-m 4 with --cps 50000 offers 200k connections/s). A rate
# is sustained when the client's tcps_connects rate equals it and tcps_conndrops /
# tcps_rexmttimeo stay 0; raise -m until they do not (binary search, as for NDR).

import argparse
import os

from trex.astf.api import (
    ASTFAssociationRule,
    ASTFIPGen,
    ASTFIPGenDist,
    ASTFIPGenGlobal,
    ASTFProfile,
    ASTFProgram,
    ASTFTCPClientTemplate,
    ASTFTCPServerTemplate,
    ASTFTemplate,
)

CLIENTS = ["10.0.0.2", "10.0.0.251"]
SERVERS = ["198.18.0.1", "198.18.0.254"]
PORT = 80

REQUEST = (
    b"GET /index.html HTTP/1.1\r\n"
    b"Host: 198.18.0.1\r\n"
    b"User-Agent: ctgate-bench\r\n"
    b"Accept: */*\r\n"
    b"\r\n"
)


def response(body_bytes):
    head = (
        "HTTP/1.1 200 OK\r\n"
        "Server: ctgate-bench\r\n"
        "Content-Type: text/html\r\n"
        "Content-Length: %d\r\n"
        "\r\n" % body_bytes
    )
    return head.encode() + b"x" * body_bytes


class CtgateCps(object):
    def parse(self, tunables):
        parser = argparse.ArgumentParser(
            prog=os.path.basename(__file__),
            description="HTTP-like TCP connections through ctgate's SNAT.",
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        parser.add_argument("--cps", type=float, default=10000.0, help="connections/s at -m 1")
        parser.add_argument("--resp-size", type=int, default=256, help="response body bytes")
        args = parser.parse_args(list(tunables or []))
        if args.cps <= 0:
            parser.error("--cps must be positive")
        if not 0 <= args.resp_size <= 1000000:
            parser.error("--resp-size must be 0..1000000")
        return args

    def profile(self, args):
        resp = response(args.resp_size)

        client = ASTFProgram()
        client.send(REQUEST)
        client.recv(len(resp))

        server = ASTFProgram()
        server.recv(len(REQUEST))
        server.send(resp)

        ip_gen = ASTFIPGen(
            glob=ASTFIPGenGlobal(ip_offset="1.0.0.0"),
            dist_client=ASTFIPGenDist(ip_range=CLIENTS, distribution="seq"),
            dist_server=ASTFIPGenDist(ip_range=SERVERS, distribution="seq"),
        )
        template = ASTFTemplate(
            client_template=ASTFTCPClientTemplate(
                program=client, ip_gen=ip_gen, port=PORT, cps=args.cps
            ),
            server_template=ASTFTCPServerTemplate(
                program=server, assoc=ASTFAssociationRule(port=PORT)
            ),
        )
        return ASTFProfile(default_ip_gen=ip_gen, templates=template)

    def get_profile(self, tunables=None, **kwargs):
        return self.profile(self.parse(tunables))


def register():
    return CtgateCps()
