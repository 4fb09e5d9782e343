#!/usr/bin/env bash
# Run every benchmark program $B/bench/bench_* (B = build dir, default "build"), print each
# one's output, then a summary of every machine-readable line (see tests/lib/bench_util.h):
#     BENCH <name>=<value> <unit>
# Ratios (unit "x") are listed separately, with the PASS/MISS verdicts the programs printed.
# bench_limits runs first (the machine's floors); the rest in name order. Each program gets
# BENCH_TIMEOUT seconds (default 60); the whole run is meant to stay under ~2 minutes.
# Exit status: 0 if every program ran and exited 0, 1 otherwise (a MISS is reported, not fatal).
set -uo pipefail
B=${B:-build}
timeout_s=${BENCH_TIMEOUT:-60}
log=$(mktemp /tmp/rtcr-bench.XXXXXX)
trap 'rm -f "$log"' EXIT

progs=()
[ -x "$B/bench/bench_limits" ] && progs+=("$B/bench/bench_limits")
for p in "$B"/bench/bench_*; do
    [ -x "$p" ] && [ -f "$p" ] || continue
    [ "$(basename "$p")" = bench_limits ] && continue
    progs+=("$p")
done
if [ ${#progs[@]} -eq 0 ]; then
    echo "bench.sh: no benchmark programs in $B/bench (run make first)" >&2
    exit 1
fi

failed=()
start=$(date +%s)
for p in "${progs[@]}"; do
    name=$(basename "$p")
    echo
    echo "################ $name"
    t0=$(date +%s)
    timeout "$timeout_s" "$p" 2>&1 | tee -a "$log"
    rc=${PIPESTATUS[0]}
    echo "(${name}: exit $rc, $(( $(date +%s) - t0 )) s)"
    [ "$rc" -eq 0 ] || failed+=("$name (exit $rc)")
done

echo
echo "================ summary ($(( $(date +%s) - start )) s)"
printf '%-48s %16s  %s\n' metric value unit
grep '^BENCH ' "$log" | awk '{ split($2, kv, "="); if ($3 != "x") printf "%-48s %16s  %s\n", kv[1], kv[2], $3 }'
echo
echo "---------------- ratios"
grep '^BENCH ' "$log" | awk '$3 == "x" { split($2, kv, "="); printf "%-48s %12.3f x\n", kv[1], kv[2] }'
if grep -qE 'goal <= .*(PASS|MISS)' "$log"; then
    echo
    echo "---------------- goals"
    grep -E 'goal <= .*(PASS|MISS)' "$log" | sed -E 's/^ +//; s/ +/ /g; s/^/  /'
fi
if [ ${#failed[@]} -ne 0 ]; then
    echo
    echo "failed: ${failed[*]}"
    exit 1
fi
exit 0
