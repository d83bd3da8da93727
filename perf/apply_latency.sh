#!/usr/bin/env bash
# Apply-to-published latency of the REST config port: sluiced runs in the demo topology with
# a 1,000-object mesh (250 services: Service, EndpointSlice, DestinationRule,
# VirtualService); then 100 applies each change one VirtualService, so each one decodes,
# validates and compiles the whole mesh, persists it and publishes the snapshot before it
# answers. The client times each apply (curl time_total).
#   RESULT apply_latency p50_ms=<ms> p99_ms=<ms> objects=1000 runs=100
# Needs root (network namespaces). Usage: sudo perf/apply_latency.sh [runs=100]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
runs=${1:-100}
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 2; }
./scripts/setup.sh >/dev/null
ninja -C build >/dev/null
source scripts/topology.sh
P="slperf$$"
tmp=$(mktemp -d /tmp/sluice-apply.XXXXXX)
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  topo_down "$P"
  rm -rf "$tmp"
}
trap cleanup EXIT
topo_up "$P"
sed -e "s|^state_dir = .*|state_dir = \"$tmp/state\";|" -e "s|token_file = .*|token_file = \"$tmp/token\";|" \
  conf/sluice.conf >"$tmp/sluice.conf"
ip netns exec "$P-app" build/app/sluiced/sluiced -c "$tmp/sluice.conf" >"$tmp/sluiced.log" 2>&1 &
pid=$!
for _ in $(seq 1 150); do grep -q '^sluiced: ready' "$tmp/sluiced.log" && break; sleep 0.2; done

sed -n '/^gen() {/,/^}/p' perf/compile_scale.sh >"$tmp/gen.sh"
source "$tmp/gen.sh"
gen 250 "$tmp/mesh.yaml"
api() {
  ip netns exec "$P-app" curl -sS -o "$tmp/reply" -w '%{http_code} %{time_total}\n' \
    -H "Authorization: Bearer $(cat "$tmp/token")" -H 'Content-Type: application/yaml' \
    --data-binary "@$1" http://127.0.0.1:9180/v1/apply
}
read -r code _ < <(api "$tmp/mesh.yaml")
[ "$code" = 200 ] || { echo "initial apply failed: $(cat "$tmp/reply")"; exit 1; }
objects=$(python3 -c "import json; print(len(json.load(open('$tmp/state/mesh.json'))['objects']))")
: >"$tmp/times"
for i in $(seq 1 "$runs"); do
  cat >"$tmp/one.yaml" <<YAML
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc0, namespace: team0}
spec:
  hosts: [svc0.team0.svc.cluster.local]
  http:
  - timeout: ${i}s
    route: [{destination: {host: svc0.team0.svc.cluster.local, subset: v1}}]
YAML
  read -r code t < <(api "$tmp/one.yaml")
  [ "$code" = 200 ] || { echo "apply $i failed: $(cat "$tmp/reply")"; exit 1; }
  echo "$t" >>"$tmp/times"
done
sort -g "$tmp/times" | awk -v n="$runs" -v objs="$objects" '
  { t[NR] = $1 * 1000 }
  END {
    p50 = t[int((n + 1) / 2)]; i99 = int(n * 0.99 + 0.999); if (i99 > n) i99 = n
    printf "min=%.1fms p50=%.1fms p99=%.1fms max=%.1fms over %d applies\n", t[1], p50, t[i99], t[n], n
    printf "RESULT apply_latency p50_ms=%.1f p99_ms=%.1f objects=%d runs=%d\n", p50, t[i99], objs, n
  }'
