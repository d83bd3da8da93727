#!/usr/bin/env bash
# The foundation end to end: sluiced brings up two af_packet "NICs" with TAP exception
# interfaces; the kernel behind them answers ping and serves TCP, and every packet crosses
# DPDK; malformed frames are dropped and counted; bad configs are refused; SIGTERM cleans up.
set -u
source "$(dirname "$0")/lib.sh"
e2e_setup
conf=$(e2e_config)

t_bad_config_refused() {
  local bad="$E2E_TMP/bad.conf" out rc line
  cp "$conf" "$bad"
  line=$(grep -n '"198.18.0.1/24"' "$bad" | cut -d: -f1)
  sed -i 's|"198.18.0.1/24"|"198.18.0.1/33"|; s|slowpath = 2;|slowpath = 9;|' "$bad"
  out=$(ip netns exec "$(ns app)" "$SLUICED" -c "$bad" 2>&1)
  rc=$?
  echo "$out"
  [ "$rc" = 2 ] || { echo "exit status $rc, want 2"; return 1; }
  echo "$out" | grep -qF "$bad:$line: ports[0].addresses[0]: invalid CIDR \"198.18.0.1/33\"" || return 1
  echo "$out" | grep -qF "lcores.slowpath: unknown lcore 9" || return 1
  # Nothing was brought up: no exception interface exists.
  ! ip -n "$(ns app)" link show wan >/dev/null 2>&1
}

t_version_help() {
  "$SLUICED" --version | grep -q '^sluiced [0-9]' && "$SLUICED" --help | grep -q -- '--config' &&
    { "$SLUICED" --bogus >/dev/null 2>&1; [ $? = 2 ]; }
}

t_ping_wan() { in_ns client ping -c 5 -i 0.2 -W 2 198.18.0.1 | grep -q ' 5 received'; }
t_ping_lan() {
  in_ns be-a ping -c 3 -i 0.2 -W 2 198.19.1.1 | grep -q ' 3 received' &&
    in_ns be-c ping -c 3 -i 0.2 -W 2 198.19.3.1 | grep -q ' 3 received'
}

t_http_to_appliance() {
  local body
  mkdir -p "$E2E_TMP/www"
  echo "hello from the appliance $E2E_PREFIX" >"$E2E_TMP/www/index.html"
  in_ns app python3 -m http.server --bind 198.18.0.1 --directory "$E2E_TMP/www" 8080 \
    >"$E2E_TMP/http.log" 2>&1 &
  local i
  for i in $(seq 1 50); do
    in_ns app bash -c 'exec 3<>/dev/tcp/198.18.0.1/8080' 2>/dev/null && break
    sleep 0.1
  done
  body=$(in_ns client curl -sS -m 5 --retry 2 http://198.18.0.1:8080/index.html) || return 1
  [ "$body" = "hello from the appliance $E2E_PREFIX" ] || { echo "body: $body"; return 1; }
  # A second, bigger transfer: 1 MiB must arrive intact through DPDK both ways.
  head -c 1048576 /dev/urandom >"$E2E_TMP/www/blob"
  in_ns client curl -sS -m 10 -o "$E2E_TMP/blob.out" http://198.18.0.1:8080/blob || return 1
  cmp "$E2E_TMP/www/blob" "$E2E_TMP/blob.out"
}

t_tcp_plain() {
  # nc server in the appliance namespace; the client's line comes back upper-cased by tr.
  in_ns app bash -c 'timeout 10 nc -l 198.18.0.1 9000 | tr a-z A-Z >'"$E2E_TMP/nc.out" &
  local srv=$! i
  sleep 0.5
  echo "sluice tcp check" | in_ns client nc -N -w 3 198.18.0.1 9000 || return 1
  for i in $(seq 1 30); do
    grep -qx "SLUICE TCP CHECK" "$E2E_TMP/nc.out" && return 0
    sleep 0.1
  done
  kill "$srv" 2>/dev/null
  return 1
}

t_counters_moved() {
  local rx tx tk fk lrx
  stats_refresh || return 1
  rx=$(port_stat wan rx_packets); tx=$(port_stat wan tx_packets)
  tk=$(port_stat wan to_kernel); fk=$(port_stat wan from_kernel); lrx=$(port_stat lan rx_packets)
  echo "wan rx=$rx tx=$tx to_kernel=$tk from_kernel=$fk; lan rx=$lrx"
  # 5 pings + ARP + two HTTP transfers (1 MiB: hundreds of segments) + the nc session.
  [ "$rx" -ge 100 ] && [ "$tx" -ge 700 ] && [ "$lrx" -ge 6 ] || return 1
  # Everything received went to the kernel and everything the kernel sent went out, but
  # for the few frames in flight between two lcores when the counters were read.
  local d1=$((tk - rx)) d2=$((fk - tx))
  [ "${d1#-}" -le 8 ] && [ "${d2#-}" -le 8 ]
}

t_malformed_dropped() {
  local before after mac
  stats_refresh || return 1
  before=$(drop ipv4_truncated)
  mac=$(ip -n "$(ns app)" link show wan | awk '/link\/ether/ {print $2}')
  in_ns client python3 - "$mac" <<'PY' || return 1
import socket, sys
mac = bytes.fromhex(sys.argv[1].replace(":", ""))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
src = s.getsockname()[4]
for _ in range(20):
    # Ethernet + a 10-byte "IPv4 header": truncated, must be dropped and counted.
    s.send(mac + src + b"\x08\x00" + b"\x45" + b"\x00" * 9)
PY
  sleep 0.5
  stats_refresh || return 1
  after=$(drop ipv4_truncated)
  echo "ipv4_truncated: $before -> $after"
  [ "$((after - before))" -eq 20 ] && kill -0 "$SLUICED_PID" &&
    in_ns client ping -c 1 -W 2 198.18.0.1 >/dev/null
}

t_sigterm_cleans_up() {
  local rc=$1
  [ "$rc" = 0 ] || { echo "exit status $rc"; tail -n 20 "$SLUICED_LOG"; return 1; }
  grep -q '^sluiced: signal 15, stopping' "$SLUICED_LOG" || return 1
  ! ip -n "$(ns app)" link show wan >/dev/null 2>&1 && ! ip -n "$(ns app)" link show lan >/dev/null 2>&1
}

check "a bad config is refused with file:line and nothing starts" t_bad_config_refused
check "sluiced --version, --help and usage errors" t_version_help
if ! sluiced_start "$conf"; then
  echo "FAIL: sluiced starts and reports ready"
  exit 1
fi
echo "PASS: sluiced starts and reports ready"
E2E_PASSED=$((E2E_PASSED + 1))
check "the client pings the appliance's wan address through DPDK" t_ping_wan
check "backends in two zones ping the appliance's lan addresses" t_ping_lan
check "an HTTP request (and 1 MiB back) from the client to a server in the appliance" t_http_to_appliance
check "a plain TCP session from the client to the appliance" t_tcp_plain
check "the per-port counters moved as expected" t_counters_moved
check "truncated IPv4 frames are dropped, counted, and nothing breaks" t_malformed_dropped
sluiced_stop # in this shell: sluiced is its child
check "SIGTERM stops sluiced, exit 0, exception interfaces removed" t_sigterm_cleans_up $?
e2e_finish
