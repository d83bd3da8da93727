#!/usr/bin/env bash
# Runs every test tier (format, unit, fast, pkt, e2e, and a short fuzz pass) and ends with one line
# "N passed, M failed". Exit status: 0 when nothing failed. Needs root: the e2e tier builds
# network namespaces. Usage: sudo ./scripts/test.sh [format|unit|fast|pkt|e2e|fuzz ...]
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

if [ "$(id -u)" != 0 ]; then
  echo "test.sh: run as root (sudo): the e2e tier creates network namespaces" >&2
  exit 2
fi
./scripts/setup.sh || { echo "0 passed, 1 failed"; exit 1; }
if ! ninja -C build; then
  echo "build failed"
  echo "0 passed, 1 failed"
  exit 1
fi

tiers=("$@")
[ ${#tiers[@]} -gt 0 ] || tiers=(format unit fast pkt e2e fuzz)
passed=0
failed=0
failures=()
logdir=$(mktemp -d /tmp/sluice-test.XXXXXX)

# run_gtest TIER BINARY: counts the binary's test cases.
run_gtest() {
  local tier=$1 bin=$2 log="$logdir/$1.log" rc p f
  echo "== $tier: $bin"
  timeout 900 "$bin" --gtest_brief=1 >"$log" 2>&1
  rc=$?
  p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -n 1)
  f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -n 1)
  p=${p:-0}
  f=${f:-0}
  if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
    f=1 # crashed, timed out or failed to start
    echo "   $bin exited with status $rc"
  fi
  grep -E '^\[  FAILED  \] [A-Za-z]' "$log" | sort -u | sed 's/^/   /'
  [ "$rc" != 0 ] && tail -n 40 "$log" | sed 's/^/   | /'
  echo "   $p passed, $f failed"
  passed=$((passed + p))
  failed=$((failed + f))
  [ "$f" = 0 ] || failures+=("$tier: $bin")
}

# run_e2e SCRIPT: each script prints "PASS: case" / "FAIL: case" lines.
run_e2e() {
  local s=$1 log="$logdir/e2e-$(basename "$s").log" rc p f
  echo "== e2e: $s"
  timeout 900 bash "$s" >"$log" 2>&1
  rc=$?
  p=$(grep -c '^PASS: ' "$log")
  f=$(grep -c '^FAIL: ' "$log")
  grep -E '^(PASS|FAIL): ' "$log" | sed 's/^/   /'
  if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
    f=1
    echo "   $s exited with status $rc"
  fi
  if [ "$f" != 0 ]; then
    tail -n 60 "$log" | sed 's/^/   | /'
    failures+=("e2e: $s")
  fi
  passed=$((passed + p))
  failed=$((failed + f))
}

# Formatting (STYLE N2): every tracked C++ file as .clang-format says.
run_format() {
  local log="$logdir/format.log" files
  echo "== format: clang-format --dry-run"
  files=$(git ls-files '*.cc' '*.hh' 2>/dev/null)
  if [ -z "$files" ]; then
    files=$(find app lib drivers-glue tests perf -name '*.cc' -o -name '*.hh')
  fi
  # shellcheck disable=SC2086
  if clang-format --dry-run --Werror $files >"$log" 2>&1; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    failures+=("format: clang-format -i on the files below")
    grep -oE '^[^:]+\.(cc|hh)' "$log" | sort -u | sed 's/^/   /'
  fi
}

run_fuzz() {
  local bin=$1 log="$logdir/$(basename "$1").log"
  echo "== fuzz: $bin"
  if timeout 300 "$bin" 300000 20 >"$log" 2>&1; then
    passed=$((passed + 1))
    tail -n 1 "$log" | sed 's/^/   /'
  else
    failed=$((failed + 1))
    failures+=("fuzz: $bin")
    tail -n 40 "$log" | sed 's/^/   | /'
  fi
}

for t in "${tiers[@]}"; do
  case "$t" in
    format) run_format ;;
    unit) run_gtest unit build/tests/unit/sluice-unit-tests ;;
    fast) run_gtest fast build/tests/dpdk/sluice-dpdk-tests ;;
    pkt) run_gtest pkt build/tests/pkt/sluice-pkt-tests ;;
    e2e) for s in tests/e2e/test_*.sh; do run_e2e "$s"; done ;;
    fuzz) for b in build/tests/fuzz/fuzz-*; do [ -x "$b" ] && [ -f "$b" ] && run_fuzz "$b"; done ;;
    *) echo "unknown tier $t"; failed=$((failed + 1)) ;;
  esac
done

echo
[ ${#failures[@]} -eq 0 ] || printf 'failed: %s\n' "${failures[@]}"
echo "logs: $logdir"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
