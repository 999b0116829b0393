"""A UDP flow with sequence numbers, for the failover tests (tests/gw_ha.rs).

server ADDR PORT
    Answers every datagram b"seq N" with b"ack N" and logs one line per request,
    "N SRCADDR:SRCPORT TIME" (what the server saw as the client: the NAT binding).
client DST PORT SPORT RATE
    Sends b"seq N" (N = 1, 2, ...) from local port SPORT to DST:PORT, RATE per second,
    and logs "sent N TIME" and "ack N TIME" for every reply; runs until killed.

TIME is the wall clock (time.time(), seconds); every line is flushed when written.
"""
import select
import socket
import sys
import time


def server(addr, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, port))
    print("ready", flush=True)
    while True:
        data, peer = s.recvfrom(2048)
        if not data.startswith(b"seq "):
            continue
        n = data[4:].decode(errors="replace")
        print(f"{n} {peer[0]}:{peer[1]} {time.time():.6f}", flush=True)
        s.sendto(b"ack " + data[4:], peer)


def client(dst, port, sport, rate):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", sport))
    interval = 1.0 / rate
    n = 0
    next_send = time.time()
    while True:
        now = time.time()
        if now >= next_send:
            n += 1
            try:
                s.sendto(b"seq %d" % n, (dst, port))
            except OSError:
                pass  # no route for a moment (a link went away): this one is lost
            print(f"sent {n} {now:.6f}", flush=True)
            next_send += interval
            continue
        r, _, _ = select.select([s], [], [], next_send - now)
        if r:
            data, _ = s.recvfrom(2048)
            if data.startswith(b"ack "):
                print(f"ack {data[4:].decode(errors='replace')} {time.time():.6f}", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(sys.argv[2], int(sys.argv[3]))
    else:
        client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
