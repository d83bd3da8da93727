#!/usr/bin/env python3
"""The mesh of perf/l7_vs_peers.sh: a Gateway on port 8080 (hosts "*"), a ServiceEntry for
the backend (one static endpoint 127.0.0.1:PORT) and ONE VirtualService with RULES http
rules, REGEX of them uri-regex matches spread evenly, the others exact, prefix or header
matches; none matches the benchmark request but the last (uri prefix /bench/), so every
request walks the whole table (routing work is real).

Usage: gen_mesh.py BACKEND_PORT OUT.yaml [RULES=100] [REGEX=10]
The benchmark request is `GET /bench/hello` with no extra headers.
"""
import sys


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    port = int(sys.argv[1])
    out = sys.argv[2]
    rules = int(sys.argv[3]) if len(sys.argv) > 3 else 100
    regex = int(sys.argv[4]) if len(sys.argv) > 4 else 10
    if rules < 2 or not 0 <= regex < rules:
        print("need RULES >= 2 and 0 <= REGEX < RULES", file=sys.stderr)
        return 2
    y = [
        "apiVersion: networking.istio.io/v1",
        "kind: Gateway",
        "metadata: {name: bench-gw, namespace: default}",
        "spec:",
        "  selector: {istio: ingressgateway}",
        "  servers:",
        "  - port: {number: 8080, name: http, protocol: HTTP}",
        '    hosts: ["*"]',
        "---",
        "apiVersion: networking.istio.io/v1",
        "kind: ServiceEntry",
        "metadata: {name: backend, namespace: default}",
        "spec:",
        "  hosts: [backend.bench]",
        "  location: MESH_INTERNAL",
        "  resolution: STATIC",
        "  ports:",
        "  - {number: 80, name: http, protocol: HTTP}",
        "  endpoints:",
        "  - address: 127.0.0.1",
        f"    ports: {{http: {port}}}",
        "---",
        "apiVersion: networking.istio.io/v1",
        "kind: VirtualService",
        "metadata: {name: bench, namespace: default}",
        "spec:",
        '  hosts: ["*"]',
        "  gateways: [bench-gw]",
        "  http:",
    ]
    # Regex rules at evenly spaced positions among the first RULES-1 (the last one is the
    # prefix rule the request matches).
    regex_at = {(i * (rules - 1)) // regex for i in range(regex)} if regex else set()
    assert len(regex_at) == regex
    dest = "    route: [{destination: {host: backend.bench}}]"
    for i in range(rules - 1):
        y.append(f"  - name: r{i}")
        if i in regex_at:
            # Near misses of /bench/hello: the engine must run the regex to reject it.
            y.append(f"    match: [{{uri: {{regex: '/bench/(v{i}|api{i})/[a-z]+/[0-9]+'}}}}]")
        elif i % 3 == 0:
            y.append(f"    match: [{{uri: {{exact: /bench/hello{i}}}}}]")
        elif i % 3 == 1:
            y.append(f"    match: [{{uri: {{prefix: /bench/v{i}/}}}}]")
        else:
            y.append(f"    match: [{{headers: {{x-tenant: {{exact: tenant-{i}}}}}}}]")
        y.append(dest)
    y.append(f"  - name: r{rules - 1}-bench")
    y.append("    match: [{uri: {prefix: /bench/}}]")
    y.append(dest)
    with open(out, "w", encoding="ascii") as f:
        f.write("\n".join(y) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
