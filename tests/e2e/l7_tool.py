#!/usr/bin/env python3
"""Real HTTP clients and servers for the L7 e2e tests (stdlib only).

  serve NAME ADDR PORT LIFETIME [CONNFILE [STATEDIR]]
      A backend that reports who answered: every response carries `x-backend: NAME` and a
      body "NAME METHOD TARGET" followed by the request's header lines. /ws upgrades to a
      byte echo (WebSocket handshake shape); /status/N answers N; /sleep/MS waits first; /flaky answers 503 to
      every other request. Each accepted connection appends a line to CONNFILE. With
      STATEDIR: every request appends "NAME TARGET" to STATEDIR/requests; while
      STATEDIR/NAME.fail exists every request answers 500; while STATEDIR/NAME.unhealthy
      exists /healthz answers 503 (else 200). Exits after LIFETIME seconds.
  get HOST PORT AUTHORITY PATH COUNT [HEADER: VALUE ...]
      COUNT requests on one keep-alive connection; prints "STATUS BACKEND" per request.
  par HOST PORT AUTHORITY PATH CLIENTS EACH
      CLIENTS concurrent clients, EACH requests each (one connection per request); prints
      "STATUS x-envoy-overloaded" per request.
  watch HOST PORT AUTHORITY PATH SECONDS INTERVAL_MS
      A request every INTERVAL_MS for SECONDS; prints "T_MS STATUS BACKEND" per request.
  ws HOST PORT AUTHORITY MESSAGE
      Upgrades /ws and sends MESSAGE; prints what came back.
"""
import http.client
import os
import socket
import sys
import threading
import time


def serve(name, addr, port, lifetime, connfile=None, statedir=None):
    deadline = time.time() + lifetime
    flaky = [0]
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((addr, port))
    ls.listen(512)
    ls.settimeout(0.5)
    lock = threading.Lock()

    def handle(c):
        c.settimeout(30)
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for l in lines[1:]:
                    k, v = l.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
                n = int(headers.get("content-length", "0"))
                while len(buf) < n:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                buf = buf[n:]
                if target == "/ws" and headers.get("upgrade", "").lower() == "websocket":
                    c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                              b"Connection: Upgrade\r\n\r\n" + buf)
                    while True:
                        d = c.recv(65536)
                        if not d:
                            return
                        c.sendall(d)
                status = 200
                if statedir:
                    with lock, open(os.path.join(statedir, "requests"), "a") as f:
                        f.write("%s %s\n" % (name, target))
                if target.startswith("/status/"):
                    status = int(target[8:])
                elif target.startswith("/sleep/"):
                    time.sleep(int(target[7:]) / 1000.0)
                elif target == "/flaky":
                    with lock:
                        flaky[0] += 1
                        status = 503 if flaky[0] % 2 == 1 else 200
                if statedir and target == "/healthz":
                    status = 503 if os.path.exists(os.path.join(statedir, name + ".unhealthy")) else 200
                elif statedir and os.path.exists(os.path.join(statedir, name + ".fail")):
                    status = 500
                body = ("%s %s %s\n" % (name, method, target) +
                        "".join("%s: %s\n" % kv for kv in headers.items())).encode()
                c.sendall(b"HTTP/1.1 %d X\r\nx-backend: %s\r\ncontent-length: %d\r\n\r\n" %
                          (status, name.encode(), len(body)) + body)
        except OSError:
            pass
        finally:
            c.close()

    while time.time() < deadline:
        try:
            c, _ = ls.accept()
        except socket.timeout:
            continue
        if connfile:
            with lock, open(connfile, "a") as f:
                f.write(name + "\n")
        threading.Thread(target=handle, args=(c,), daemon=True).start()


def get(host, port, authority, path, count, headers):
    hdrs = {"Host": authority}
    for h in headers:
        k, v = h.split(":", 1)
        hdrs[k.strip()] = v.strip()
    conn = http.client.HTTPConnection(host, port, timeout=10)
    for _ in range(count):
        try:
            conn.request("GET", path, headers=hdrs)
            r = conn.getresponse()
            r.read()
            print(r.status, r.getheader("x-backend", "-"))
        except (OSError, http.client.HTTPException) as e:
            print("ERROR", type(e).__name__)
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=10)
    sys.stdout.flush()


def par(host, port, authority, path, clients, each):
    """CLIENTS threads, EACH requests each on its own connection; prints "STATUS OVERLOADED"."""
    out = []
    lock = threading.Lock()

    def run():
        for _ in range(each):
            conn = http.client.HTTPConnection(host, port, timeout=10)
            try:
                conn.request("GET", path, headers={"Host": authority})
                r = conn.getresponse()
                r.read()
                line = "%d %s" % (r.status, r.getheader("x-envoy-overloaded", "-"))
            except (OSError, http.client.HTTPException) as e:
                line = "ERROR " + type(e).__name__
            conn.close()
            with lock:
                out.append(line)

    ts = [threading.Thread(target=run) for _ in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print("\n".join(out))


def watch(host, port, authority, path, seconds, interval_ms):
    """A request every INTERVAL_MS for SECONDS on a keep-alive connection (reconnecting after
    an error); prints "T_MS STATUS BACKEND" per request, T_MS since the epoch."""
    end = time.time() + seconds
    conn = None
    while time.time() < end:
        if conn is None:
            conn = http.client.HTTPConnection(host, port, timeout=5)
        t = int(time.time() * 1000)
        try:
            conn.request("GET", path, headers={"Host": authority})
            r = conn.getresponse()
            r.read()
            print(t, r.status, r.getheader("x-backend", "-"), flush=True)
        except (OSError, http.client.HTTPException) as e:
            print(t, "ERROR", type(e).__name__, flush=True)
            conn.close()
            conn = None
        time.sleep(interval_ms / 1000.0)


def ws(host, port, authority, message):
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(("GET /ws HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
               "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
               % authority).encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(4096)
        if not d:
            print("CLOSED")
            return
        buf += d
    head, buf = buf.split(b"\r\n\r\n", 1)
    if not head.startswith(b"HTTP/1.1 101"):
        print("NOT-UPGRADED", head.split(b"\r\n")[0].decode())
        return
    s.sendall(message.encode())
    while len(buf) < len(message):
        d = s.recv(4096)
        if not d:
            break
        buf += d
    print(buf.decode())


def main():
    cmd = sys.argv[1]
    a = sys.argv[2:]
    if cmd == "serve":
        serve(a[0], a[1], int(a[2]), float(a[3]), a[4] if len(a) > 4 else None,
              a[5] if len(a) > 5 else None)
    elif cmd == "get":
        get(a[0], int(a[1]), a[2], a[3], int(a[4]), a[5:])
    elif cmd == "par":
        par(a[0], int(a[1]), a[2], a[3], int(a[4]), int(a[5]))
    elif cmd == "watch":
        watch(a[0], int(a[1]), a[2], a[3], float(a[4]), float(a[5]))
    elif cmd == "ws":
        ws(a[0], int(a[1]), a[2], a[3])
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
