#!/usr/bin/env bash
# Replays every fuzzer's corpus through the decoders built into build/fuzz (TAP output from
# scripts/fuzz.sh): a crash, hang or sanitizer report is a failure.
cd "$(dirname "$0")/../.." && B=${B:-build} exec bash scripts/fuzz.sh replay
