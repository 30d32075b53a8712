#!/usr/bin/env bash
# Runs each fuzz target (fuzz/fuzz_targets/) for a bounded time and prints what it reached.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (make fuzz FUZZ_SECS=60)
#   FUZZ_RUNS=10000000 scripts/fuzz.sh 0 mqtt_message    (stop at a number of executions)
#
# Stable toolchain: cargo-fuzz passes nightly-only flags (-Zsanitizer), which
# RUSTC_BOOTSTRAP=1 lets the stable compiler take. No sanitizer (-s none): the code under
# test is safe Rust, so AddressSanitizer would cost ~2x executions for nothing; debug
# assertions and overflow checks stay on (cargo-fuzz's default), so an overflow is a crash.
#
# New inputs the fuzzer finds go to $FUZZ_WORK/corpus/{target} (not the repo); the seeds
# under fuzz/corpus/{target} are read only. A crash stops the run, exits 1, and leaves its
# input in $FUZZ_WORK/artifacts/{target}/: fix it, then copy the input into
# fuzz/corpus/{target}/ so that `make test` replays it for good.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(mqtt_message config_file grpc_request ws)
runs=${FUZZ_RUNS:-0}
target_dir=${CARGO_TARGET_DIR:-$PWD/target}/fuzz
work=${FUZZ_WORK:-$target_dir/work}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz not found: cargo install cargo-fuzz --locked (once, ~2 min)"
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1

# Every target at once (the first build compiles the daemon's library, ~5 min).
cargo fuzz build --fuzz-dir fuzz --target-dir "$target_dir" -s none

summary=()
status=0
for t in "${targets[@]}"; do
    mkdir -p "$work/corpus/$t" "$work/artifacts/$t"
    log="$work/$t.log"
    args=(-print_final_stats=1 -artifact_prefix="$work/artifacts/$t/")
    [ "$secs" -gt 0 ] && args+=(-max_total_time="$secs")
    [ "$runs" -gt 0 ] && args+=(-runs="$runs")
    limit="${secs}s"
    [ "$runs" -gt 0 ] && limit="$limit, at most $runs runs"
    echo "== $t: $limit (log: $log)"
    set +e
    cargo fuzz run --fuzz-dir fuzz --target-dir "$target_dir" -s none "$t" \
        "$work/corpus/$t" "fuzz/corpus/$t" -- "${args[@]}" >"$log" 2>&1
    rc=$?
    set -e
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    took=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
    if [ $rc -ne 0 ]; then
        status=1
        echo "!! $t failed (exit $rc): $(grep -m1 -E 'panicked|ERROR' "$log" || true)"
        ls "$work/artifacts/$t/"
    fi
    summary+=("$(printf '%-14s %14s execs %9s/s  cov %6s  exit %s' "$t" "${execs:-?}" "${took:-?}" "${cov:-?}" "$rc")")
done
echo
echo "fuzz summary"
printf '%s\n' "${summary[@]}"
exit $status
