#!/usr/bin/env bash
# Run RTCR's fuzzers (tests/fuzz/fuzz_NAME.c, corpus in tests/fuzz/corpus/NAME/).
#   fuzz.sh [replay|fuzz|all]        default: all
# replay  Run every $B/fuzz/fuzz_NAME (built by `make`, linked with tests/fuzz/replay_main.c)
#         over its corpus directory and its built-in seeds. Prints TAP lines
#         ("ok N - replay fuzz_NAME"); exits non-zero if any fuzzer crashes or aborts.
# fuzz    If clang with libFuzzer is available: build libFuzzer + ASan + UBSan variants of all
#         fuzzers into $FUZZ_BUILD (default /tmp/rtcr-fuzz-build; the tree's build/ is not
#         touched) and fuzz each for $FUZZ_SECONDS (default 30) seconds on a scratch copy of
#         its corpus. Crash reproducers go to $FUZZ_ARTIFACTS (default /tmp/rtcr-fuzz-artifacts).
#         New corpus entries stay in the scratch copy unless FUZZ_MERGE=1 (then they are
#         minimised into tests/fuzz/corpus/NAME with -merge=1). Without clang: skipped, exit 0.
set -uo pipefail
B=${B:-build}
what=${1:-all}
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
FUZZ_BUILD=${FUZZ_BUILD:-/tmp/rtcr-fuzz-build}
FUZZ_ARTIFACTS=${FUZZ_ARTIFACTS:-/tmp/rtcr-fuzz-artifacts}
FUZZ_MERGE=${FUZZ_MERGE:-0}
n=0 failed=0

tap() { # status, description
    n=$((n + 1))
    if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; failed=$((failed + 1)); fi
}

replay() {
    local bin name corpus log rc
    for bin in "$B"/fuzz/fuzz_*; do
        [ -x "$bin" ] || continue
        name=$(basename "$bin")
        corpus=tests/fuzz/corpus/${name#fuzz_}
        log=$(mktemp /tmp/rtcr-replay.XXXXXX)
        if [ -d "$corpus" ]; then
            "$bin" "$corpus" >"$log" 2>&1
        else
            "$bin" >"$log" 2>&1
        fi
        rc=$?
        [ $rc -eq 0 ] || cat "$log"
        rm -f "$log"
        tap $rc "replay $name over ${corpus} and built-in seeds"
    done
    if [ $n -eq 0 ]; then
        echo "fuzz: no fuzzers in $B/fuzz (run make first)" >&2
        return 1
    fi
}

have_libfuzzer() {
    command -v clang >/dev/null 2>&1 || return 1
    echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; (void)n; return 0; }' |
        clang -x c -fsanitize=fuzzer -o /dev/null - >/dev/null 2>&1
}

fuzz() {
    local src name bin corpus scratch rc agent_objs libs
    if ! have_libfuzzer; then
        echo "# fuzz: clang with -fsanitize=fuzzer not available; skipping the fuzzing runs"
        return 0
    fi
    mkdir -p "$FUZZ_BUILD" "$FUZZ_ARTIFACTS"
    # Instrumented libraries and objects, built by the normal Makefile into a private dir.
    # -Wno-error: clang warns about other things than gcc; gcc's -Werror build is the gate.
    local san="-fsanitize=address,undefined,fuzzer-no-link -fno-omit-frame-pointer -Wno-error"
    local targets=()
    for src in tests/fuzz/fuzz_*.c; do
        [ -f "$src" ] || continue
        targets+=("$FUZZ_BUILD/fuzz/$(basename "$src" .c)")
    done
    [ ${#targets[@]} -gt 0 ] || return 0
    if ! CC=clang CFLAGS="-O1 -g" make --no-print-directory B="$FUZZ_BUILD" SAN="$san" \
        "${targets[@]}" >"$FUZZ_BUILD/make.log" 2>&1; then
        tail -30 "$FUZZ_BUILD/make.log"
        tap 1 "build libFuzzer variants"
        return 1
    fi
    agent_objs=$(find "$FUZZ_BUILD" -name 'agent_*.o' 2>/dev/null | sort)
    libs=$(pkg-config --libs libczmq libzmq liblz4 libxxhash libsystemd libprotobuf-c 2>/dev/null)
    for src in tests/fuzz/fuzz_*.c; do
        name=$(basename "$src" .c)
        bin=$FUZZ_BUILD/libfuzzer/$name
        mkdir -p "$(dirname "$bin")"
        # shellcheck disable=SC2086
        if ! clang -O1 -g -std=gnu11 -D_GNU_SOURCE -Irtcr-core/include -Iproto \
            -I"$FUZZ_BUILD/proto" $(pkg-config --cflags libczmq libprotobuf-c 2>/dev/null) \
            -fsanitize=address,undefined,fuzzer -fno-omit-frame-pointer -o "$bin" "$src" \
            $agent_objs "$FUZZ_BUILD/librtcr.a" "$FUZZ_BUILD/libproto.a" $libs -lpthread \
            >"$bin.log" 2>&1; then
            cat "$bin.log"
            tap 1 "link libFuzzer $name"
            continue
        fi
        corpus=tests/fuzz/corpus/${name#fuzz_}
        scratch=$(mktemp -d /tmp/rtcr-fuzz-corpus.XXXXXX)
        [ -d "$corpus" ] && cp -r "$corpus"/. "$scratch"/
        ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
            timeout $((FUZZ_SECONDS + 120)) "$bin" -max_total_time="$FUZZ_SECONDS" \
            -rss_limit_mb=2048 -max_len=65536 -artifact_prefix="$FUZZ_ARTIFACTS/$name-" \
            "$scratch" >"$scratch.log" 2>&1
        rc=$?
        [ $rc -eq 0 ] || tail -60 "$scratch.log"
        grep -E '^#[0-9]+.*DONE|stat::number_of_executed_units' "$scratch.log" | tail -1 | sed 's/^/# /'
        tap $rc "libFuzzer $name for ${FUZZ_SECONDS}s"
        if [ $rc -eq 0 ] && [ "$FUZZ_MERGE" = 1 ]; then
            mkdir -p "$corpus"
            "$bin" -merge=1 "$corpus" "$scratch" >/dev/null 2>&1
        fi
        rm -rf "$scratch" "$scratch.log"
    done
}

case $what in
    replay) replay ;;
    fuzz) fuzz ;;
    all) replay; fuzz ;;
    *) echo "usage: $0 [replay|fuzz|all]" >&2; exit 2 ;;
esac
echo "1..$n"
[ "$failed" -eq 0 ] && [ "$n" -gt 0 ]
