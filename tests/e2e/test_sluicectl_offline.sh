#!/usr/bin/env bash
# sluicectl's offline verbs as a user runs them: no daemon, no DPDK, no root needed.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CTL="$ROOT/build/app/sluicectl/sluicectl"
SAMPLES="$ROOT/../shared/fixtures/istio-samples"
TMP=$(mktemp -d /tmp/sluicectl-test.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
passed=0
failed=0
check() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then
    echo "PASS: $name"; passed=$((passed + 1))
  else
    echo "FAIL: $name"; printf '%s\n' "$out" | sed 's/^/    /'; failed=$((failed + 1))
  fi
}

t_every_sample_is_clean() {
  local f n=0 bad=0
  while IFS= read -r f; do
    n=$((n + 1))
    if ! "$CTL" analyze -q -f "$f" >"$TMP/out" 2>&1; then
      echo "$f:"; cat "$TMP/out"; bad=$((bad + 1))
    fi
  done < <(find "$SAMPLES" -name '*.yaml' | sort)
  echo "$n sample files, $bad with errors"
  [ "$n" -ge 25 ] && [ "$bad" = 0 ]
}

t_directory_and_stdin() {
  "$CTL" analyze -q -f "$SAMPLES/samples/bookinfo/networking" | tail -n 1 | grep -q '0 error(s)' &&
    cat "$SAMPLES/samples/helloworld/helloworld-gateway.yaml" | "$CTL" analyze -q -f - |
      grep -q '^1 file(s), 2 object(s): 0 error(s)'
}

t_errors_exit_1_with_field_paths() {
  cat >"$TMP/bad.yaml" <<'YAML'
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: api
  namespace: prod
spec:
  hosts: [api.example.com]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 150
YAML
  local out rc
  out=$("$CTL" analyze -f "$TMP/bad.yaml")
  rc=$?
  echo "$out"
  [ "$rc" = 1 ] &&
    echo "$out" | grep -qF "error: $TMP/bad.yaml:1: VirtualService prod/api: spec.http[0].route[0].weight: must be between 0 and 100"
}

t_syntax_error_has_line() {
  printf 'apiVersion: v1\nkind: Service\nmetadata: {name: x\n  bad: [\n' >"$TMP/syntax.yaml"
  local out rc
  out=$("$CTL" analyze -f "$TMP/syntax.yaml")
  rc=$?
  echo "$out"
  [ "$rc" = 1 ] && echo "$out" | grep -qE "^error: $TMP/syntax.yaml:[0-9]+: "
}

t_usage_errors_exit_2() {
  "$CTL" analyze >/dev/null 2>&1
  [ $? = 2 ] || return 1
  "$CTL" frobnicate >/dev/null 2>&1
  [ $? = 2 ] || return 1
  "$CTL" --version | grep -q '^sluicectl '
}

t_missing_file() {
  local out rc
  out=$("$CTL" analyze -f "$TMP/nope.yaml")
  rc=$?
  [ "$rc" = 1 ] && echo "$out" | grep -q "nope.yaml: cannot read the file"
}

ROUTES="$ROOT/tests/e2e/routes"
t_route_check_tests() {
  local out rc
  out=$("$CTL" route check -f "$ROUTES/mesh.yaml" --tests "$ROUTES/tests.yaml")
  rc=$?
  echo "$out"
  [ "$rc" = 0 ] && [ "$(echo "$out" | tail -n 1)" = "10 passed, 0 failed" ]
}

t_route_check_reports_mismatches() {
  cat >"$TMP/wrong.yaml" <<'YAML'
tests:
- name: jason is expected on v9
  request: {authority: api.example.com, path: /reviews/1, gateway: istio-system/edge,
            headers: {end-user: jason}}
  expect: {subset: v9, timeout: 4s, status: 200}
YAML
  local out rc
  out=$("$CTL" route check -f "$ROUTES/mesh.yaml" --tests "$TMP/wrong.yaml")
  rc=$?
  echo "$out"
  [ "$rc" = 1 ] && echo "$out" | grep -qx "FAIL: jason is expected on v9" &&
    echo "$out" | grep -qx "  subset: expected v9, got v2" &&
    echo "$out" | grep -qx "  timeout: expected 4s, got 3s" &&
    [ "$(echo "$out" | tail -n 1)" = "0 passed, 1 failed" ]
}

t_route_check_one_request() {
  local out
  out=$("$CTL" route check -f "$ROUTES/mesh.yaml" --request 'GET http://api.example.com/reviews/1' \
    -H 'end-user: jason' --gateway istio-system/edge) || return 1
  echo "$out"
  echo "$out" | grep -q 'virtualService: prod/api' &&
    echo "$out" | grep -q 'host: reviews.prod.svc.cluster.local subset: v2 port: 9080'
}

t_route_check_bad_config() {
  local rc
  "$CTL" route check -f "$TMP/bad.yaml" --request 'GET http://api.example.com/' >/dev/null 2>&1
  rc=$?
  [ "$rc" = 1 ]
}

check "every Istio sample file passes sluicectl analyze with exit 0" t_every_sample_is_clean
check "analyze reads a directory and stdin" t_directory_and_stdin
check "an invalid object exits 1 with file:line, object and field path" t_errors_exit_1_with_field_paths
check "a YAML syntax error names its line" t_syntax_error_has_line
check "usage errors exit 2; --version" t_usage_errors_exit_2
check "a missing file is an error" t_missing_file
check "route check: every expect field, 10 tests pass" t_route_check_tests
check "route check: mismatches print expected vs actual, exit 1" t_route_check_reports_mismatches
check "route check --request prints the decision" t_route_check_one_request
check "route check refuses an invalid config" t_route_check_bad_config
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
