#!/usr/bin/python3
"""SCTP peers for the net_tap gateway test (tests/gw_tap.rs), over raw IP sockets.

The test machine's kernel may have no SCTP module, so the packets are built and checked
with scapy and sent and received on raw sockets of IP protocol 132 (a raw socket for the
protocol also keeps the kernel from answering "protocol unreachable").

  sctp_peer.py server ADDR LOG SECONDS
      Answers every SCTP packet to ADDR with its ports swapped and the same chunks (an
      INIT answered by an INIT-like chunk, DATA by the same DATA), for SECONDS seconds;
      logs "SRC SPORT DPORT CRC_OK CHUNKS_HEX" per packet received to LOG.

  sctp_peer.py clients SERVER DPORT SPORT N ADDR:TAG [ADDR:TAG ...]
      One "host" per ADDR (a raw socket bound to it): each sends an INIT (initiate tag
      TAG) then N DATA chunks carrying TAG-K, all from SPORT to SERVER:DPORT, then listens
      for 3 s. Prints one JSON object: per host, the packets it sent and received
      (source, ports, CRC32c right, chunks), as the test asserts on them.
"""

import json
import select
import socket
import sys
import time

from scapy.layers.inet import IP
from scapy.layers.sctp import SCTP, SCTPChunkData, SCTPChunkInit, crc32c

PROTO = 132


def crc_ok(raw):
    """The CRC32c of an SCTP packet (bytes from the common header) is right."""
    return len(raw) >= 12 and crc32c(raw[:8] + b"\0" * 4 + raw[12:]) == int.from_bytes(
        raw[8:12], "big"
    )


def sock(addr):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, PROTO)
    s.bind((addr, 0))
    return s


def parse(data):
    """An IPv4 packet from a raw socket: (src, dst, SCTP bytes)."""
    ip = IP(data)
    hl = ip.ihl * 4
    return ip.src, ip.dst, bytes(data[hl : ip.len])


def server(addr, log, seconds):
    s = sock(addr)
    end = time.time() + seconds
    with open(log, "w", buffering=1) as f:
        while time.time() < end:
            r, _, _ = select.select([s], [], [], 0.2)
            if not r:
                continue
            data, _ = s.recvfrom(65535)
            src, _, raw = parse(data)
            if len(raw) < 12:
                continue
            sport = int.from_bytes(raw[0:2], "big")
            dport = int.from_bytes(raw[2:4], "big")
            ok = crc_ok(raw)
            f.write(f"{src} {sport} {dport} {int(ok)} {raw[12:].hex()}\n")
            if not ok:
                continue
            tag = int.from_bytes(raw[4:8], "big")
            reply = bytes(SCTP(sport=dport, dport=sport, tag=tag) / raw[12:])
            s.sendto(reply, (src, 0))


def clients(server_addr, dport, sport, n, hosts):
    socks = {}
    sent = {}
    for spec in hosts:
        addr, tag = spec.split(":")
        socks[addr] = sock(addr)
        pkts = [
            SCTP(sport=sport, dport=dport, tag=0)
            / SCTPChunkInit(
                init_tag=int(tag, 16),
                a_rwnd=65536,
                n_out_streams=1,
                n_in_streams=1,
                init_tsn=1,
            )
        ]
        for k in range(n):
            pkts.append(
                SCTP(sport=sport, dport=dport, tag=int(tag, 16))
                / SCTPChunkData(tsn=k + 1, data=f"{tag}-{k}".encode())
            )
        sent[addr] = [bytes(p) for p in pkts]
    # Interleaved: host by host, packet by packet.
    for k in range(n + 1):
        for addr, pkts in sent.items():
            socks[addr].sendto(pkts[k], (server_addr, 0))
            time.sleep(0.05)
    got = {addr: [] for addr in socks}
    end = time.time() + 3
    while time.time() < end:
        r, _, _ = select.select(list(socks.values()), [], [], 0.2)
        for s in r:
            data, _ = s.recvfrom(65535)
            src, dst, raw = parse(data)
            if len(raw) < 12:
                continue
            got[dst].append(
                {
                    "src": src,
                    "sport": int.from_bytes(raw[0:2], "big"),
                    "dport": int.from_bytes(raw[2:4], "big"),
                    "crc_ok": crc_ok(raw),
                    "chunks": raw[12:].hex(),
                }
            )
    print(
        json.dumps(
            {
                addr: {"sent": [p[12:].hex() for p in sent[addr]], "got": got[addr]}
                for addr in socks
            }
        )
    )


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    else:
        clients(
            sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6:]
        )
