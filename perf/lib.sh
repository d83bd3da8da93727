# shellcheck shell=bash
# Helpers shared by the perf/ scripts (source it from the repository root).

# median: the median of the numbers on stdin (spaces or newlines; empty fields ignored).
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

# rps_of FILE: the requests per second of a wrk report.
rps_of() { awk '/^Requests\/sec:/ {print $2}' "$1"; }
