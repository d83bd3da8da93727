# shellcheck shell=bash
# Helpers shared by the perf/ scripts (source it from the repository root).

# median: the median of the numbers on stdin (spaces or newlines; empty fields ignored).
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

# rps_of FILE: the requests per second of a wrk report.
rps_of() { awk '/^Requests\/sec:/ {print $2}' "$1"; }

# stop_pid PID [SECONDS]: SIGTERM, then SIGKILL after SECONDS (default 10); returns the process's
# exit status (137 when it had to be killed).
stop_pid() {
  local p=$1 i rc=0 tenths=$((${2:-10} * 10))
  kill -TERM "$p" 2>/dev/null || return 0
  for i in $(seq 1 "$tenths"); do
    kill -0 "$p" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$p" 2>/dev/null; then
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    return 137
  fi
  wait "$p" 2>/dev/null || rc=$?
  return $rc
}
