#!/usr/bin/env bash
# Control-plane scale: meshes of 1k, 2k, 4k, 8k and 16k VirtualServices (each with a
# DestinationRule of two subsets, a Service and an EndpointSlice of 10 endpoints across
# three zones), timed through decode + validate + compile with peak RSS. Sizes run in
# rounds (1k 2k 4k 8k 16k, again, ...) so machine noise hits every size alike; each figure
# is the median of the rounds.
#   RESULT compile_scale growth=<median time ratio per doubling> ms_at_16k=<ms> rss_mb_at_16k=<MB>
# Usage: perf/compile_scale.sh [rounds=3]
set -euo pipefail
cd "$(dirname "$0")/.."
source perf/lib.sh
rounds=${1:-3}
./scripts/setup.sh >/dev/null
ninja -C build perf/scale/compile_scale >/dev/null
tmp=$(mktemp -d /tmp/sluice-scale.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

gen() { # gen N FILE
  python3 - "$1" "$2" <<'PY'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
out = []
for i in range(n):
    ns = f"team{i % 50}"
    name = f"svc{i}"
    host = f"{name}.{ns}.svc.cluster.local"
    out.append(f"""apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec:
  ports: [{{name: http, port: 8080}}]
  selector: {{app: {name}}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-abc
  namespace: {ns}
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports: [{{name: http, port: 8080}}]
endpoints:
""")
    for e in range(10):
        a = 10 * i + e
        zone = "zone-" + "abc"[e % 3]
        out.append(f"""- addresses: ["198.{18 + (a >> 16) % 2}.{(a >> 8) & 255}.{a & 255}"]
  zone: {zone}
  conditions: {{ready: true}}
""")
    out.append(f"""---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}, namespace: {ns}}}
spec:
  host: {host}
  trafficPolicy:
    outlierDetection: {{consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: {ns}}}
spec:
  hosts: [{host}]
  http:
  - match: [{{headers: {{x-canary: {{exact: "1"}}}}}}]
    route: [{{destination: {{host: {host}, subset: v2}}}}]
  - match: [{{uri: {{prefix: /api/}}}}]
    timeout: 5s
    route:
    - {{destination: {{host: {host}, subset: v1}}, weight: 90}}
    - {{destination: {{host: {host}, subset: v2}}, weight: 10}}
---
""")
open(path, "w").write("".join(out))
PY
}

sizes=(1000 2000 4000 8000 16000)
for n in "${sizes[@]}"; do gen "$n" "$tmp/mesh-$n.yaml"; done
declare -A times rss
for r in $(seq 1 "$rounds"); do
  for n in "${sizes[@]}"; do
    line=$(build/perf/scale/compile_scale "$tmp/mesh-$n.yaml")
    echo "round $r n=$n $line"
    times[$n]+="$(echo "$line" | sed -n 's/.*total_ms=\([0-9.]*\).*/\1/p') "
    rss[$n]+="$(echo "$line" | sed -n 's/.*rss_mb=\([0-9.]*\).*/\1/p') "
  done
done
ratios=""
prev=""
for n in "${sizes[@]}"; do
  m=$(echo "${times[$n]}" | median)
  echo "n=$n median_ms=$m median_rss_mb=$(echo "${rss[$n]}" | median)"
  [ -n "$prev" ] && ratios+="$(awk -v a="$m" -v b="$prev" 'BEGIN {printf "%.3f", a / b}') "
  prev=$m
done
growth=$(echo "$ratios" | median)
echo "RESULT compile_scale growth=$growth ms_at_16k=$(echo "${times[16000]}" | median) rss_mb_at_16k=$(echo "${rss[16000]}" | median)"
