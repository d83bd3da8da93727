#!/usr/bin/env python3
"""Writes a pcap of 64-byte frames (60 bytes captured + the 4-byte FCS a wire would add),
one frame per distinct client 5-tuple, for perf/l4_vs_testpmd.sh. Python standard library only;
the pcap format is written by hand (classic libpcap, microsecond timestamps, LINKTYPE_ETHERNET).

  gen_pcap.py udp  FLOWS VIP PORT OUT.pcap [DISTINCT]   UDP datagrams (18-byte payload)
  gen_pcap.py syn  FLOWS VIP PORT OUT.pcap [DISTINCT]   TCP SYNs with an MSS option (1460)

DISTINCT (default FLOWS): frame i carries flow i % DISTINCT, so FLOWS frames cycle through
DISTINCT 5-tuples (the same stream of frames, fewer flows: a diagnostic).

Flow i comes from 198.18.128.0/17 (client address 198.18.128.0 + i % 32768) and source port
10000 + i // 32768, so FLOWS <= 32768 * 55535 tuples are distinct. Every address is in
198.18.0.0/15. IPv4, UDP and TCP checksums are correct (the full-NAT rewrite updates them
incrementally, so they must be right to begin with).
"""
import struct
import sys

FRAME = 60  # bytes captured: a 64-byte frame on the wire less its FCS
DST_MAC = bytes.fromhex("020000000001")  # the appliance's port (nothing checks it: pcap ports)
SRC_MAC = bytes.fromhex("020000000002")
CLIENT_BASE = (198 << 24) | (18 << 16) | (128 << 8)  # 198.18.128.0/17
CLIENTS = 32768


def csum_fold(s):
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def sum16(b):
    if len(b) % 2:
        b += b"\0"
    return sum(struct.unpack("!%dH" % (len(b) // 2), b))


def main():
    if len(sys.argv) not in (6, 7) or sys.argv[1] not in ("udp", "syn"):
        sys.exit(__doc__)
    kind, flows, vip, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
    distinct = int(sys.argv[6]) if len(sys.argv) == 7 else flows
    if not 1 <= flows <= CLIENTS * 55535:
        sys.exit("FLOWS out of range")
    if not 1 <= distinct <= flows:
        sys.exit("DISTINCT out of range (1..FLOWS)")
    a, b, c, d = (int(x) for x in vip.split("."))
    vip32 = (a << 24) | (b << 16) | (c << 8) | d
    if (vip32 >> 17) != (198 << 7 | 18 >> 1):
        sys.exit("the VIP must be in 198.18.0.0/15")
    eth = DST_MAC + SRC_MAC + b"\x08\x00"
    if kind == "udp":
        proto, l4_len = 17, 8 + 18
    else:
        proto, l4_len = 6, 24
    ip_total = 20 + l4_len
    pad = b"\0" * (FRAME - 14 - ip_total)
    # Sums of the parts of every checksum that do not change from flow to flow.
    ip_fixed = sum16(struct.pack("!BBHHHBBH4s", 0x45, 0, ip_total, 0, 0x4000, 64, proto, 0,
                                 struct.pack("!I", vip32)))
    pseudo_fixed = sum16(struct.pack("!IBBH", vip32, 0, proto, l4_len))
    payload = b"sluice-perf-l4-udp"
    rec_hdr_tail = struct.pack("<II", FRAME, FRAME)
    f = open(out, "wb")
    chunks = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i in range(flows):
        fl = i % distinct
        src = CLIENT_BASE + fl % CLIENTS
        sport = 10000 + fl // CLIENTS
        src_sum = (src >> 16) + (src & 0xFFFF)
        ident = i & 0xFFFF
        ip_ck = 0xFFFF - csum_fold(ip_fixed + src_sum + ident)
        iph = struct.pack("!BBHHHBBHI", 0x45, 0, ip_total, ident, 0x4000, 64, proto, ip_ck, src) + \
            struct.pack("!I", vip32)
        if kind == "udp":
            l4_nock = struct.pack("!HHH", sport, port, l4_len) + payload
            ck = 0xFFFF - csum_fold(pseudo_fixed + src_sum + sum16(l4_nock))
            l4 = l4_nock[:6] + struct.pack("!H", ck or 0xFFFF) + l4_nock[6:]
        else:
            seq = (i * 2654435761) & 0xFFFFFFFF
            # SYN, data offset 6 words (one MSS option), window 64240.
            head = struct.pack("!HHII", sport, port, seq, 0)
            tail = struct.pack("!BBH", 6 << 4, 0x02, 64240)
            opt = struct.pack("!BBH", 2, 4, 1460)
            ck = 0xFFFF - csum_fold(pseudo_fixed + src_sum + sum16(head + tail + opt))
            l4 = head + tail + struct.pack("!HH", ck, 0) + opt
        chunks.append(struct.pack("<II", i // 1000000, i % 1000000) + rec_hdr_tail + eth + iph + l4 + pad)
        if len(chunks) >= 65536:
            f.write(b"".join(chunks))
            chunks = []
    f.write(b"".join(chunks))
    f.close()


if __name__ == "__main__":
    main()
