#!/usr/bin/env bash
# Run RTCR's tests and print one closing line "N passed, N failed".
#   run-tests.sh unit|integration|all
# Unit tests are cmocka programs in $B/tests; each prints "[  PASSED  ] N test(s)." and
# "[  FAILED  ] N test(s)" lines, which are added up here. Integration tests are scripts in
# tests/integration that print TAP lines ("ok N - what" / "not ok N - what").
# MEMCHECK=1 runs the unit tests under valgrind, failing on any error or definite leak.
set -uo pipefail
B=${B:-build}
what=${1:-all}
passed=0 failed=0
failures=()
logdir=$(mktemp -d /tmp/rtcr-tests.XXXXXX)
trap 'rm -rf "$logdir"' EXIT

run_unit() {
    local t name log rc p f
    for t in "$B"/tests/test_*; do
        [ -x "$t" ] || continue
        name=$(basename "$t")
        log=$logdir/$name.log
        if [ "${MEMCHECK:-0}" = 1 ]; then
            valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
                --track-fds=no "$t" >"$log" 2>&1
        else
            "$t" >"$log" 2>&1
        fi
        rc=$?
        p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
        f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
        p=${p:-0} f=${f:-0}
        if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi   # crash, valgrind error, abort
        passed=$((passed + p)) failed=$((failed + f))
        printf '%-40s %3d passed, %d failed%s\n' "$name" "$p" "$f" \
            "$([ $rc -ne 0 ] && echo "  (exit $rc)")"
        if [ "$f" -ne 0 ]; then failures+=("$name"); cat "$log"; fi
    done
}

run_integration() {
    local t name log rc p f
    for t in tests/integration/test_*.sh; do
        [ -f "$t" ] || continue
        name=$(basename "$t" .sh)
        log=$logdir/$name.log
        B=$B timeout 600 bash "$t" >"$log" 2>&1
        rc=$?
        p=$(grep -c '^ok ' "$log")
        f=$(grep -c '^not ok ' "$log")
        if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
        passed=$((passed + p)) failed=$((failed + f))
        printf '%-40s %3d passed, %d failed%s\n' "$name" "$p" "$f" \
            "$([ $rc -ne 0 ] && echo "  (exit $rc)")"
        if [ "$f" -ne 0 ]; then failures+=("$name"); cat "$log"; fi
    done
}

case $what in
    unit) run_unit ;;
    integration) run_integration ;;
    all) run_unit; run_integration ;;
    *) echo "usage: $0 unit|integration|all" >&2; exit 2 ;;
esac

[ ${#failures[@]} -eq 0 ] || echo "failing: ${failures[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
