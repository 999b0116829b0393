#!/usr/bin/env python3
"""A userspace 802.1Q tagger for the VLAN sub-interface test (tests/gw_tap.rs).

The machine's kernel has no 8021q module (no `ip link ... type vlan`, no tc vlan action,
no VLAN-filtering bridge), so a Linux host "on VLAN V" is built from a tap device this
relay creates (TAPNAME, no offloads: every checksum is complete) and this relay between
it and the trunk interface TRUNK (the net_tap interface of ctgate's trunk port):

* a frame the Linux stack sends on TAPNAME goes out on TRUNK with an 802.1Q tag for V
  (priority 0) inserted after the MAC addresses;
* a frame arriving on TRUNK tagged V goes to TAPNAME without its tag. The kernel takes
  the tag off received frames before packet sockets see them (skb_vlan_untag), so the
  tag is read from PACKET_AUXDATA; untagged and other-VLAN frames are left to the kernel.

Usage: vlan_tagger.py TRUNK TAPNAME V  (as root, in TRUNK's namespace). Prints "ready"
once both ends are open; the test then moves TAPNAME to its own namespace (the open file
keeps the device). Runs until killed.
"""

import fcntl
import os
import select
import socket
import struct
import sys

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_AUXDATA = 8
PACKET_OUTGOING = 4
TP_STATUS_VLAN_VALID = 1 << 4
# struct tpacket_auxdata: status, len, snaplen (u32); mac, net, vlan_tci, vlan_tpid (u16).
AUXDATA = struct.Struct("=IIIHHHH")


def main() -> None:
    trunk, tapname, vid = sys.argv[1], sys.argv[2], int(sys.argv[3])
    tun = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(tun, TUNSETIFF, struct.pack("16sH", tapname.encode(), IFF_TAP | IFF_NO_PI))
    raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    raw.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    raw.bind((trunk, 0))
    tag = struct.pack("!HH", 0x8100, vid & 0x0FFF)
    print("ready", flush=True)
    while True:
        ready, _, _ = select.select([tun, raw], [], [])
        if tun in ready:
            frame = os.read(tun, 65536)
            if len(frame) >= 14:
                raw.send(frame[:12] + tag + frame[12:])
        if raw in ready:
            frame, anc, _flags, addr = raw.recvmsg(65536, socket.CMSG_SPACE(AUXDATA.size))
            if addr[2] == PACKET_OUTGOING or len(frame) < 14:
                continue
            if frame[12:14] == b"\x81\x00" and len(frame) >= 18:
                # Still in the bytes (a kernel that did not take it off).
                if struct.unpack("!H", frame[14:16])[0] & 0x0FFF == vid:
                    os.write(tun, frame[:12] + frame[16:])
                continue
            for level, kind, data in anc:
                if level != SOL_PACKET or kind != PACKET_AUXDATA or len(data) < AUXDATA.size:
                    continue
                status, _, _, _, _, tci, _ = AUXDATA.unpack(data[: AUXDATA.size])
                if status & TP_STATUS_VLAN_VALID and tci & 0x0FFF == vid:
                    os.write(tun, frame)


if __name__ == "__main__":
    main()
