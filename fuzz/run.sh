#!/usr/bin/env bash
# Runs every fuzz target (or those named after SECONDS) for SECONDS each, default 60, one
# after the other, one job each: `fuzz/run.sh [SECONDS] [TARGET...]`.
# New inputs go to target/corpus/<target> (kept between runs, not committed), seeded from
# corpus/<target>. Each run's log lands in target/logs/, and a line per run is appended to
# target/fuzz-stats.tsv (date, target, seconds actually run, executions, corpus files, result).
# Exits non-zero as soon as a target crashes; the input is left in artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(decide_request model features_csv features_nbf)
mkdir -p target/logs
for t in "${targets[@]}"; do
    mkdir -p "target/corpus/$t"
    log="target/logs/$t-$(date +%Y%m%dT%H%M%S).log"
    echo "== $t: ${seconds}s (log: fuzz/$log)"
    status=ok
    start=$(date +%s)
    # -jobs=1 runs the fuzzer in one child process whose output goes to fuzz-0.log.
    cargo +nightly fuzz run "$t" "target/corpus/$t" "corpus/$t" -- \
        -max_total_time="$seconds" -jobs=1 -rss_limit_mb=2048 -print_final_stats=1 \
        >/dev/null 2>&1 || status=crash
    elapsed=$(($(date +%s) - start))
    mv -f fuzz-0.log "$log" 2>/dev/null || true
    execs=$(grep -o 'number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
    corpus=$(find "target/corpus/$t" "corpus/$t" -type f | wc -l)
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -I)" "$t" "$elapsed" "${execs:-0}" "$corpus" "$status" \
        | tee -a target/fuzz-stats.tsv
    if [ "$status" != ok ] || grep -q 'ERROR: libFuzzer\|panicked at' "$log"; then
        grep -m1 -A3 'panicked at' "$log" >&2 || grep -m1 -A3 'ERROR: libFuzzer' "$log" >&2 || true
        grep -m1 'Test unit written' "$log" >&2 || true
        echo "== $t: CRASH (input in fuzz/artifacts/$t/, log in fuzz/$log)" >&2
        exit 1
    fi
done
echo "== all targets ran ${seconds}s without a crash"
