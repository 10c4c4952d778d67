#!/usr/bin/env bash
# Runs every fuzz target (or those named after SECONDS) for SECONDS each, default 60, one
# after the other, one job each: `fuzz/run.sh [SECONDS] [TARGET...]`.
# FUZZ_CPU=<n> pins the build and the fuzzer to CPU n (taskset), to leave the others free.
# New inputs go to target/corpus/<target> (kept between runs, not committed), seeded from
# corpus/<target>. Each run's log lands in target/logs/, and a line per run is appended to
# target/fuzz-stats.tsv (date, target, seconds fuzzed as libFuzzer reports them, so without
# the build, executions, corpus files, result).
# Exits non-zero as soon as a target crashes; the input is left in artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] ||
    targets=(decide_request model features_csv features_nbf events xgboost lightgbm)
pin=()
[ -z "${FUZZ_CPU:-}" ] || pin=(taskset -c "$FUZZ_CPU")
mkdir -p target/logs
for t in "${targets[@]}"; do
    mkdir -p "target/corpus/$t"
    log="target/logs/$t-$(date +%Y%m%dT%H%M%S).log"
    echo "== $t: ${seconds}s (log: fuzz/$log)"
    status=ok
    start=$(date +%s)
    # -jobs=1 runs the fuzzer in one child process whose output goes to fuzz-0.log.
    "${pin[@]}" cargo +nightly fuzz run "$t" "target/corpus/$t" "corpus/$t" -- \
        -max_total_time="$seconds" -jobs=1 -rss_limit_mb=2048 -print_final_stats=1 \
        >/dev/null 2>&1 || status=crash
    mv -f fuzz-0.log "$log" 2>/dev/null || true
    # libFuzzer's own figure ("Done N runs in S second(s)"); wall time of the whole command
    # (build included) when the run did not get that far.
    fuzzed=$(grep -o 'runs in [0-9]* second' "$log" | grep -o '[0-9]*' | tail -1 || true)
    [ -n "$fuzzed" ] || fuzzed="$(($(date +%s) - start))(wall)"
    execs=$(grep -o 'number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
    corpus=$(find "target/corpus/$t" "corpus/$t" -type f | wc -l)
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -I)" "$t" "$fuzzed" "${execs:-0}" "$corpus" "$status" \
        | tee -a target/fuzz-stats.tsv
    if [ "$status" != ok ] || grep -q 'ERROR: libFuzzer\|panicked at' "$log"; then
        grep -m1 -A3 'panicked at' "$log" >&2 || grep -m1 -A3 'ERROR: libFuzzer' "$log" >&2 || true
        grep -m1 'Test unit written' "$log" >&2 || true
        echo "== $t: CRASH (input in fuzz/artifacts/$t/, log in fuzz/$log)" >&2
        exit 1
    fi
done
echo "== all targets ran ${seconds}s without a crash"
