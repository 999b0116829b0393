"""A real FTP server for the ALG tests (tests/gw_alg.rs): pyftpdlib (Debian's
python3-pyftpdlib) serving DIR read-write to the anonymous user on ADDR:PORT (IPv4 or
IPv6).

    python3 ftp_server.py ADDR PORT DIR

pyftpdlib's defaults are kept where they are what the test relies on: an active-mode
data connection to an address other than the control connection's peer (a PORT or EPRT
announcing an inside address that NAT did not rewrite) is refused with "501 Rejected
data connection to foreign address", and a passive data connection from another
address than the control connection's is refused too. Every command received and reply
sent is logged (DEBUG), so a test can read what crossed the gateway. Prints "ready" on
stdout once listening.
"""

import logging
import sys

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer


def main():
    addr, port, root = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG,
                        format="%(asctime)s %(message)s")
    auth = DummyAuthorizer()
    auth.add_anonymous(root, perm="elradfmwMT")
    handler = FTPHandler
    handler.authorizer = auth
    handler.permit_foreign_addresses = False
    handler.permit_privileged_ports = False
    server = FTPServer((addr, port), handler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
