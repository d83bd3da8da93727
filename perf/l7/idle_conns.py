#!/usr/bin/env python3
"""Opens N keep-alive client connections to HOST:PORT, sends one `GET PATH` on each and
reads its whole response (so the proxy has served a request on every connection, as an
idle keep-alive client between requests would leave it), then keeps them all open and
idle. Prints `open <n>` once they are, then holds them HOLD seconds (or until killed) and
exits, closing them. For perf/l7_vs_peers.sh's l7_idle_conn_memory.

Usage: idle_conns.py HOST PORT N PATH [HOLD=120]
"""
import socket
import sys
import time


def read_response(s: socket.socket) -> None:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the response head")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if not head.startswith(b"HTTP/1.1 200"):
        raise ConnectionError("unexpected response: %r" % head.split(b"\r\n")[0])
    while len(body) < length:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the response body")
        body += chunk


def main() -> int:
    if len(sys.argv) < 5:
        print(__doc__, file=sys.stderr)
        return 2
    host, port, n, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    hold = float(sys.argv[5]) if len(sys.argv) > 5 else 120.0
    req = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: idle-conns\r\n\r\n" % (path, host, port)).encode()
    socks = []
    for _ in range(n):
        s = socket.create_connection((host, port), timeout=10)
        s.sendall(req)
        read_response(s)
        socks.append(s)
    print("open %d" % len(socks), flush=True)
    deadline = time.monotonic() + hold
    while time.monotonic() < deadline:
        time.sleep(0.2)
    for s in socks:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
