#!/usr/bin/env bash
# Runs every fuzz target in turn for SECONDS_PER_TARGET seconds (default 10) and fails on the
# first crash, leak, timeout or out-of-memory.
#
#   fuzz/run-all.sh [SECONDS_PER_TARGET]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). cargo-fuzz passes nightly-only flags to rustc;
# RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them. Each target starts from its seeds in
# fuzz/corpus/TARGET (only read) and keeps what it finds in fuzz/target/fuzz-work/TARGET (or
# $FUZZ_WORK_DIR/TARGET), so the committed seeds stay small. A crashing input is saved under
# fuzz/artifacts/TARGET/ and its hex printed. Set FUZZ_SANITIZER=address for AddressSanitizer
# (slower; the code under test is safe Rust, so the default is none). Set FUZZ_SEED to a number
# for a reproducible run (CI does).
set -euo pipefail

seconds="${1:-10}"
case "$seconds" in
'' | *[!0-9]*)
    echo "usage: $0 [SECONDS_PER_TARGET]" >&2
    exit 2
    ;;
esac

cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz" >&2
    exit 2
fi

sanitizer="${FUZZ_SANITIZER:-none}"
seed=()
if [ -n "${FUZZ_SEED:-}" ]; then
    seed=(-seed="$FUZZ_SEED")
fi
work="${FUZZ_WORK_DIR:-target/fuzz-work}"
targets=$(cargo fuzz list)

# Build everything first, so that build time does not eat into the fuzzing time.
cargo fuzz build --debug-assertions --sanitizer "$sanitizer"

failed=()
for target in $targets; do
    mkdir -p "$work/$target" "artifacts/$target"
    echo "=== $target: ${seconds}s"
    marker="$work/.started-$target"
    touch "$marker"
    if ! cargo fuzz run --debug-assertions --sanitizer "$sanitizer" "$target" \
        "$work/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 \
        "${seed[@]}"; then
        failed+=("$target")
        find "artifacts/$target" -type f -newer "$marker" | while read -r artifact; do
            echo "--- $artifact (hex)"
            od -An -tx1 -v "$artifact" | tr -d ' \n' | head -c 8192
            echo
        done
    fi
done

if [ "${#failed[@]}" -ne 0 ]; then
    echo "fuzz targets failed: ${failed[*]}" >&2
    exit 1
fi
echo "all fuzz targets ran ${seconds}s without a failure"
