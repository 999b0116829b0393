"""Many long-lived connections, for the active/active ECMP test (tests/gw_ha_ecmp.rs).

server ADDR PORT
    A TCP and a UDP server on ADDR:PORT. Every request "REQ ID ROUND" (a line on TCP, a
    datagram on UDP) is answered with "ANS ID ROUND SRCADDR:SRCPORT", where SRCADDR:SRCPORT
    is the client as the server sees it (its NAT binding). Prints "ready" once it listens.
client DST PORT NTCP NUDP DIR
    Opens NTCP TCP connections (each kept open) and NUDP UDP sockets to DST:PORT, all from
    distinct local ports. Round R (R = 1, 2, ...) sends one request on every connection and
    waits (at most 30 s) for the answers (an unanswered UDP request is sent again every
    second); round 1 starts at once, round R > 1 when the file
    DIR/goR exists. After each round it writes DIR/roundR (one line per connection:
    "tcp|udp ID LOCALPORT STATUS SEENAS", STATUS "ok", "wrong", "closed" or "timeout",
    SEENAS the address the server saw, "-" without an answer) and prints
    "round R ok=N failed=M". A TCP connection that does not connect in 30 s is
    "connect-failed" in every round. Runs until killed (the connections stay open).
"""
import os
import resource
import selectors
import socket
import sys
import time

TIMEOUT = 30.0
# Seconds before an unanswered UDP request is sent again.
UDP_RETRY = 1.0


def raise_fd_limit():
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def answer(data, peer):
    parts = data.split()
    if len(parts) != 3 or parts[0] != b"REQ":
        return None
    return b"ANS %s %s %s:%d" % (parts[1], parts[2], peer[0].encode(), peer[1])


def server(addr, port):
    raise_fd_limit()
    sel = selectors.DefaultSelector()
    lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind((addr, port))
    lst.listen(4096)
    lst.setblocking(False)
    sel.register(lst, selectors.EVENT_READ, "accept")
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind((addr, port))
    u.setblocking(False)
    sel.register(u, selectors.EVENT_READ, "udp")
    print("ready", flush=True)
    bufs = {}
    while True:
        for key, _ in sel.select():
            s = key.fileobj
            if key.data == "accept":
                try:
                    c, peer = s.accept()
                except OSError:
                    continue
                c.setblocking(False)
                bufs[c] = (b"", peer)
                sel.register(c, selectors.EVENT_READ, "tcp")
            elif key.data == "udp":
                try:
                    data, peer = s.recvfrom(2048)
                except OSError:
                    continue
                a = answer(data, peer)
                if a:
                    s.sendto(a, peer)
            else:
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(s)
                    s.close()
                    bufs.pop(s, None)
                    continue
                buf, peer = bufs[s]
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    a = answer(line, peer)
                    if a:
                        s.sendall(a + b"\n")  # a few bytes: never blocks in practice
                bufs[s] = (buf, peer)


class Conn:
    def __init__(self, kind, i, sock):
        self.kind, self.id, self.sock = kind, i, sock
        self.port = sock.getsockname()[1] if kind == "udp" else 0
        self.state = "connecting" if kind == "tcp" else "open"
        self.buf = b""
        self.status, self.seen = "timeout", "-"
        self.resent = 0


def connect_all(dst, port, ntcp):
    """Opens the TCP connections, 100 at a time in flight."""
    sel = selectors.DefaultSelector()
    conns = [Conn("tcp", i, socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for i in range(ntcp)]
    pending = list(conns)
    inflight = 0
    deadline = time.time() + TIMEOUT
    while (pending or inflight) and time.time() < deadline:
        while pending and inflight < 100:
            c = pending.pop(0)
            c.sock.setblocking(False)
            c.sock.connect_ex((dst, port))
            sel.register(c.sock, selectors.EVENT_WRITE, c)
            inflight += 1
        for key, _ in sel.select(0.5):
            c = key.data
            sel.unregister(c.sock)
            inflight -= 1
            err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err == 0:
                c.state = "open"
                c.port = c.sock.getsockname()[1]
            else:
                c.state = "connect-failed"
    for c in conns:
        if c.state == "connecting":
            c.state = "connect-failed"
    return conns


def run_round(r, conns, dst, port):
    sel = selectors.DefaultSelector()
    waiting = 0
    for c in conns:
        c.status, c.seen, c.buf, c.resent = "timeout", "-", b"", 0
        if c.state != "open":
            c.status = c.state
            continue
        msg = b"REQ %d %d" % (c.id, r)
        try:
            if c.kind == "tcp":
                c.sock.sendall(msg + b"\n")
            else:
                c.sock.sendto(msg, (dst, port))
        except OSError:
            c.status = "closed"
            continue
        sel.register(c.sock, selectors.EVENT_READ, c)
        waiting += 1
    deadline = time.time() + TIMEOUT
    resend = time.time() + UDP_RETRY
    while waiting and time.time() < deadline:
        if time.time() >= resend:
            # UDP has no retransmission of its own: an unanswered request is sent again,
            # as a UDP application would (counted in the round's "resent=").
            resend = time.time() + UDP_RETRY
            for key in list(sel.get_map().values()):
                c = key.data
                if c.kind == "udp":
                    c.resent += 1
                    try:
                        c.sock.sendto(b"REQ %d %d" % (c.id, r), (dst, port))
                    except OSError:
                        pass
        for key, _ in sel.select(0.5):
            c = key.data
            try:
                data = c.sock.recv(4096)
            except OSError:
                data = b""
            if not data and c.kind == "tcp":
                c.status = "closed"
                sel.unregister(c.sock)
                waiting -= 1
                continue
            if c.kind == "tcp":
                c.buf += data
                if b"\n" not in c.buf:
                    continue
                data = c.buf.split(b"\n", 1)[0]
            parts = data.split()
            if c.kind == "udp" and parts[:2] == [b"ANS", b"%d" % c.id] and parts[2:3] != [b"%d" % r]:
                continue  # a late second answer to a request of an earlier round
            want = [b"ANS", b"%d" % c.id, b"%d" % r]
            if parts[:3] == want and len(parts) == 4:
                c.status, c.seen = "ok", parts[3].decode()
            else:
                c.status = "wrong"
            sel.unregister(c.sock)
            waiting -= 1
    sel.close()


def client(dst, port, ntcp, nudp, out):
    raise_fd_limit()
    conns = connect_all(dst, port, ntcp)
    for i in range(nudp):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", 0))
        s.setblocking(False)
        conns.append(Conn("udp", i, s))
    r = 1
    while True:
        if r > 1:
            while not os.path.exists(os.path.join(out, "go%d" % r)):
                time.sleep(0.05)
        run_round(r, conns, dst, port)
        lines = ["%s %d %d %s %s\n" % (c.kind, c.id, c.port, c.status, c.seen) for c in conns]
        tmp = os.path.join(out, "round%d.tmp" % r)
        with open(tmp, "w") as f:
            f.writelines(lines)
        os.rename(tmp, os.path.join(out, "round%d" % r))
        ok = sum(1 for c in conns if c.status == "ok")
        resent = sum(c.resent for c in conns)
        print("round %d ok=%d failed=%d resent=%d" % (r, ok, len(conns) - ok, resent), flush=True)
        r += 1


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(sys.argv[2], int(sys.argv[3]))
    else:
        client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
