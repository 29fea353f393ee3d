#!/usr/bin/env bash
# Run orch's fuzz targets: build them once, then run each for SECONDS_PER_TARGET (default 60).
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]     (no TARGET: every target)
#   fuzz/run.sh 3600 redactor                         (one target, an hour)
#
# Needs a nightly toolchain and cargo-fuzz. Each target starts from its committed seeds in
# fuzz/corpus/<target>/ (read only); what it finds beyond them is kept in fuzz/work/<target>/
# (not committed) and reused by the next run. A crash stops that target: its input is written to
# fuzz/artifacts/<target>/, the script says how to replay it, and it exits 1 after the others ran.
# FUZZ_SEED=N and FUZZ_RUNS=N make the run repeatable (what CI does).
# FUZZ_SANITIZER=address builds with AddressSanitizer (slower; orch forbids unsafe code, so the
# default is none).
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -eq 0 ]; then
    echo "usage: fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]  (SECONDS_PER_TARGET: a whole number > 0)" >&2
    exit 2
fi
shift $(($# > 0 ? 1 : 0))

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: no nightly Rust toolchain (cargo-fuzz needs one); install it with:" >&2
    echo "    rustup toolchain install nightly --profile minimal" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: cargo-fuzz is not installed; install it with:" >&2
    echo "    cargo install cargo-fuzz --locked" >&2
    exit 1
fi

all_targets=()
while IFS= read -r target; do all_targets+=("$target"); done < <(cargo +nightly fuzz list)
targets=("$@")
if ((${#targets[@]} == 0)); then targets=("${all_targets[@]}"); fi
for target in "${targets[@]}"; do
    if ! printf '%s\n' "${all_targets[@]}" | grep -qxF "$target"; then
        echo "fuzz/run.sh: no target \`$target\`; the targets are: ${all_targets[*]}" >&2
        exit 2
    fi
done

sanitizer="${FUZZ_SANITIZER:-none}"
echo "building ${#targets[@]} fuzz target(s) (sanitizer: $sanitizer)"
build_started=$SECONDS
if ((${#targets[@]} == ${#all_targets[@]})); then
    cargo +nightly fuzz build --sanitizer "$sanitizer"
else
    for target in "${targets[@]}"; do cargo +nightly fuzz build --sanitizer "$sanitizer" "$target"; done
fi
echo "built in $((SECONDS - build_started)) s"

host="$(rustc +nightly -vV | sed -n 's/^host: //p')"
bin_dir="target/$host/release"
# FUZZ_SEED and FUZZ_RUNS make a run repeatable (CI): the same seed and a count of inputs
# reached before the time limit explore the same inputs on every machine, so a CI run cannot
# fail by chance on a crash nobody can reproduce.
repeatable=()
if [ -n "${FUZZ_SEED:-}" ]; then repeatable+=("-seed=$FUZZ_SEED"); fi
if [ -n "${FUZZ_RUNS:-}" ]; then repeatable+=("-runs=$FUZZ_RUNS"); fi
failed=()
summary=()
for target in "${targets[@]}"; do
    work="work/$target"
    artifacts="artifacts/$target"
    mkdir -p "$work" "$artifacts" "corpus/$target"
    log="work/$target.log"
    echo "fuzzing $target for ${seconds} s"
    status=0
    "$bin_dir/$target" "$work" "corpus/$target" \
        -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 "${repeatable[@]}" \
        -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1 || status=$?
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
    if [ "$status" -eq 0 ]; then
        summary+=("fuzz $target: ok, ${runs:-0} inputs in ${seconds} s, no crash")
    else
        crash="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)"
        tail -n 40 "$log" >&2
        summary+=("fuzz $target: CRASH (exit $status); input: fuzz/${crash:-$artifacts/}; replay: cargo +nightly fuzz run -s $sanitizer $target fuzz/${crash:-$artifacts/<file>} (log: fuzz/$log)")
        failed+=("$target")
    fi
done

printf '%s\n' "${summary[@]}"
if ((${#failed[@]})); then
    echo "fuzz/run.sh: ${#failed[@]} target(s) crashed: ${failed[*]}" >&2
    exit 1
fi
