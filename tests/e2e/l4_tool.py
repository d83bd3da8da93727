#!/usr/bin/env python3
"""Real L4 clients and servers for the e2e tests (stdlib only).

  serve NAME ADDR TCPPORT UDPPORT LIFETIME [PEERS_FILE]
      A backend that reports who answered: every TCP connection gets "NAME ADDR\\n", then
      each line the client sends comes back prefixed with NAME; every UDP datagram is
      answered with "NAME ADDR". Exits after LIFETIME seconds. With PEERS_FILE, appends
      "tcp PEER" or "udp PEER" to it for each connection or datagram (who the backend saw as
      the client: the SNAT address under full-NAT).
  tcp VIP PORT COUNT SPORT_BASE TIMEOUT [GAP]
      COUNT connections from source ports SPORT_BASE.. (0: kernel's choice), one at a time,
      GAP seconds apart;
      prints one line per connection: "SPORT NAME" or "SPORT ERROR reason".
  udp VIP PORT COUNT SPORT_BASE TIMEOUT
      COUNT datagrams from distinct source ports, in batches; "SPORT NAME" / "SPORT ERROR".
  dsr NAME ADDR MODE GUE_PORT LIFETIME
      A direct-server-return backend for UDP VIPs, decapsulating in user space (this kernel
      has no ipip/fou): MODE ipip reads IP-in-IP packets to ADDR from a raw socket, MODE gue
      reads GUE variant 1 datagrams on ADDR:GUE_PORT; the inner UDP datagram (client ->
      VIP:port) is answered straight to the client from VIP:port with "NAME ADDR MODE".
  hold VIP PORT COUNT HOLD_FILE TIMEOUT [ICMP_MTU]
      Opens COUNT connections, records who answered each ("conn NAME" per connection, then
      "opened N"), then waits until HOLD_FILE exists (bounded by TIMEOUT), sends a line on
      every connection and checks the answer comes from the same backend. Prints "held N ok M"
      once every connection is closed. With ICMP_MTU, once they are open, sends the VIP one
      IPv4 "fragmentation needed" (next-hop MTU ICMP_MTU) per connection, as a router on the
      client's side would, quoting a segment VIP:PORT -> the connection's address and port;
      prints "icmp_sent N".
  bulk VIP PORT NBYTES TIMEOUT
      One connection to a `serve` backend: NBYTES random bytes, hex-encoded in lines, go up
      while the echoed lines come back (sent and received at once, so neither side's buffers
      fill); prints "NAME sent N received M sha256 ok|MISMATCH" (or "ERROR reason").
  udpconn VIP PORT COUNT TIMEOUT
      COUNT datagrams, each from a connected UDP socket of its own, so an ICMP error about it
      (port unreachable) is reported to the socket: "SPORT NAME" or "SPORT ERROR reason"
      (ConnectionRefusedError for a port unreachable).
"""
import hashlib
import os
import select
import socket
import struct
import sys
import threading
import time


def serve(name, addr, tcp_port, udp_port, lifetime, peers_file=None):
    deadline = time.time() + lifetime
    peers = open(peers_file, "a", buffering=1) if peers_file else None
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    ts = socket.socket(fam, socket.SOCK_STREAM)
    ts.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ts.bind((addr, tcp_port))
    ts.listen(512)
    us = socket.socket(fam, socket.SOCK_DGRAM)
    us.bind((addr, udp_port))
    ident = ("%s %s\n" % (name, addr)).encode()
    conns = {}
    while time.time() < deadline:
        rl = [ts, us] + list(conns)
        r, _, _ = select.select(rl, [], [], 0.2)
        for s in r:
            if s is ts:
                try:
                    c, peer = ts.accept()
                    if peers:
                        peers.write("tcp %s\n" % peer[0])
                    c.sendall(ident)
                    conns[c] = b""
                except OSError:
                    pass
            elif s is us:
                try:
                    data, peer = us.recvfrom(2048)
                    if peers:
                        peers.write("udp %s\n" % peer[0])
                    us.sendto(ident.strip(), peer)
                except OSError:
                    pass
            else:
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    s.close()
                    del conns[s]
                    continue
                buf = conns[s] + data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    s.sendall(name.encode() + b" " + line + b"\n")
                conns[s] = buf


def _csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def _udp4(src, dst, sport, dport, payload):
    """An IPv4 + UDP packet with correct checksums (addresses as 4-byte strings)."""
    ulen = 8 + len(payload)
    pseudo = src + dst + bytes([0, 17]) + ulen.to_bytes(2, "big")
    hdr = sport.to_bytes(2, "big") + dport.to_bytes(2, "big") + ulen.to_bytes(2, "big")
    c = _csum(pseudo + hdr + b"\0\0" + payload) or 0xFFFF
    udp = hdr + c.to_bytes(2, "big") + payload
    ip = bytes([0x45, 0]) + (20 + ulen).to_bytes(2, "big") + b"\0\0\x40\0" + bytes([64, 17])
    ip += b"\0\0" + src + dst
    ip = ip[:10] + _csum(ip).to_bytes(2, "big") + ip[12:]
    return ip + udp


def dsr(name, addr, mode, gue_port, lifetime):
    deadline = time.time() + lifetime
    if mode == "ipip":
        rx = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)  # IPPROTO_IPIP
    else:
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind((addr, gue_port))
    tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    me = socket.inet_aton(addr)
    while time.time() < deadline:
        r, _, _ = select.select([rx], [], [], 0.2)
        if not r:
            continue
        data = rx.recv(65535)
        if mode == "ipip":
            if len(data) < 20 or data[16:20] != me:
                continue
            data = data[(data[0] & 0x0F) * 4:]  # the outer header: raw sockets include it
        if len(data) < 28 or data[0] >> 4 != 4 or data[9] != 17:
            continue
        ihl = (data[0] & 0x0F) * 4
        csrc, vip = data[12:16], data[16:20]
        cport = int.from_bytes(data[ihl:ihl + 2], "big")
        vport = int.from_bytes(data[ihl + 2:ihl + 4], "big")
        reply = _udp4(vip, csrc, vport, cport, ("%s %s %s" % (name, addr, mode)).encode())
        tx.sendto(reply, (socket.inet_ntoa(csrc), 0))


def one_tcp(vip, port, sport, timeout):
    fam = socket.AF_INET6 if ":" in vip else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.settimeout(timeout)
    try:
        if sport:
            s.bind(("", sport))
        s.connect((vip, port))
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(256)
            if not chunk:
                break
            data += chunk
        return s.getsockname()[1], data.decode().split()[0] if data else "ERROR empty"
    except OSError as e:
        return sport, "ERROR " + type(e).__name__
    finally:
        s.close()


def tcp(vip, port, count, sport_base, timeout, gap=0.0):
    for i in range(count):
        sp, who = one_tcp(vip, port, sport_base + i if sport_base else 0, timeout)
        print(sp, who, flush=True)
        if gap:
            time.sleep(gap)


def udp(vip, port, count, sport_base, timeout):
    fam = socket.AF_INET6 if ":" in vip else socket.AF_INET
    batch = 200
    for start in range(0, count, batch):
        socks = {}
        for i in range(start, min(count, start + batch)):
            s = socket.socket(fam, socket.SOCK_DGRAM)
            s.bind(("", sport_base + i if sport_base else 0))
            socks[s] = s.getsockname()[1]
            s.sendto(b"who", (vip, port))
        answered = {}
        deadline = time.time() + timeout
        pending = set(socks)
        resends = 0
        start_t = time.time()
        while pending and time.time() < deadline:
            r, _, _ = select.select(list(pending), [], [], 0.2)
            for s in r:
                try:
                    data, _ = s.recvfrom(256)
                    answered[s] = data.decode().split()[0]
                except OSError:
                    answered[s] = "ERROR recv"
                pending.discard(s)
            if resends < 3 and time.time() > start_t + timeout * (resends + 1) / 4:
                # Up to three retries: a first datagram may wait for ARP on either side.
                for s in pending:
                    s.sendto(b"who", (vip, port))
                resends += 1
        for s, sp in socks.items():
            print(sp, answered.get(s, "ERROR timeout"), flush=True)
            s.close()


def inet_csum(b):
    if len(b) % 2:
        b += b"\0"
    total = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def icmp_frag_needed(vip, vport, client, cport, mtu):
    """Sends VIP an ICMP "fragmentation needed" about a segment VIP:vport -> client:cport."""
    q = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0x4000, 63, 6, 0,
                    socket.inet_aton(vip), socket.inet_aton(client))
    q = q[:10] + struct.pack("!H", inet_csum(q)) + q[12:] + struct.pack("!HHI", vport, cport, 1)
    icmp = struct.pack("!BBHHH", 3, 4, 0, 0, mtu) + q
    icmp = icmp[:2] + struct.pack("!H", inet_csum(icmp)) + icmp[4:]
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    try:
        s.sendto(icmp, (vip, 0))
    finally:
        s.close()


def hold(vip, port, count, hold_file, timeout, icmp_mtu=0):
    fam = socket.AF_INET6 if ":" in vip else socket.AF_INET
    conns = []
    for _ in range(count):
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect((vip, port))
            f = s.makefile("rb")
            who = f.readline().decode().split()[0]
            conns.append((s, f, who))
        except (OSError, IndexError):
            s.close()
    for _, _, who in conns:
        print("conn", who)
    print("opened", len(conns), flush=True)
    if icmp_mtu > 0:
        for c, _, _ in conns:
            addr, cport = c.getsockname()[:2]
            icmp_frag_needed(vip, port, addr, cport, icmp_mtu)
        print("icmp_sent", len(conns), flush=True)
    deadline = time.time() + timeout
    while not os.path.exists(hold_file) and time.time() < deadline:
        time.sleep(0.1)
    ok = 0
    for i, (s, f, who) in enumerate(conns):
        try:
            s.sendall(b"still-here %d\n" % i)
            line = f.readline().decode().split()
            if line and line[0] == who and line[1] == "still-here":
                ok += 1
        except OSError:
            pass
        s.close()
    print("held", len(conns), "ok", ok, flush=True)


def bulk(vip, port, nbytes, timeout):
    fam = socket.AF_INET6 if ":" in vip else socket.AF_INET
    data = os.urandom(nbytes)
    line_bytes = 512  # 1024 hex characters per line
    out = b"".join(data[i:i + line_bytes].hex().encode() + b"\n"
                   for i in range(0, nbytes, line_bytes))
    deadline = time.time() + timeout
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((vip, port))
        s.setblocking(False)
        sent = 0
        inbuf = b""
        got = []
        name = None
        received = 0
        while time.time() < deadline and received < nbytes:
            wl = [s] if sent < len(out) else []
            r, w, _ = select.select([s], wl, [], 0.2)
            if w:
                try:
                    sent += s.send(out[sent:sent + 65536])
                except BlockingIOError:
                    pass
            if r:
                try:
                    chunk = s.recv(65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    break
                inbuf += chunk
                lines = inbuf.split(b"\n")
                inbuf = lines.pop()
                for ln in lines:
                    parts = ln.decode().split()
                    if name is None:  # the greeting: "NAME ADDR"
                        name = parts[0]
                        continue
                    if len(parts) != 2 or parts[0] != name:
                        print("ERROR unexpected line from", name, flush=True)
                        return
                    b = bytes.fromhex(parts[1])
                    got.append(b)
                    received += len(b)
        echoed = b"".join(got)
        same = hashlib.sha256(echoed).digest() == hashlib.sha256(data).digest()
        print(name, "sent", sent * line_bytes // (2 * line_bytes + 1), "received", received,
              "sha256", "ok" if same else "MISMATCH", flush=True)
    except (OSError, ValueError) as e:
        print("ERROR", type(e).__name__, flush=True)
    finally:
        s.close()


def udpconn(vip, port, count, timeout):
    fam = socket.AF_INET6 if ":" in vip else socket.AF_INET
    for _ in range(count):
        s = socket.socket(fam, socket.SOCK_DGRAM)
        s.settimeout(timeout)
        sp = 0
        try:
            s.connect((vip, port))
            sp = s.getsockname()[1]
            s.send(b"who")
            data = s.recv(256)
            print(sp, data.decode().split()[0], flush=True)
        except OSError as e:
            print(sp, "ERROR " + type(e).__name__, flush=True)
        finally:
            s.close()


def main():
    cmd = sys.argv[1]
    a = sys.argv[2:]
    if cmd == "serve":
        serve(a[0], a[1], int(a[2]), int(a[3]), float(a[4]), a[5] if len(a) > 5 else None)
    elif cmd == "tcp":
        tcp(a[0], int(a[1]), int(a[2]), int(a[3]), float(a[4]), float(a[5]) if len(a) > 5 else 0)
    elif cmd == "udp":
        udp(a[0], int(a[1]), int(a[2]), int(a[3]), float(a[4]))
    elif cmd == "dsr":
        dsr(a[0], a[1], a[2], int(a[3]), float(a[4]))
    elif cmd == "hold":
        hold(a[0], int(a[1]), int(a[2]), a[3], float(a[4]), int(a[5]) if len(a) > 5 else 0)
    elif cmd == "bulk":
        bulk(a[0], int(a[1]), int(a[2]), float(a[3]))
    elif cmd == "udpconn":
        udpconn(a[0], int(a[1]), int(a[2]), float(a[3]))
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
