#!/usr/bin/env bash
# Fuzzes every parser that sees untrusted bytes, each for a bounded time (default 60 s per
# target; `benches/fuzz.sh 600` for longer), starting from the committed corpus in
# fuzz/corpus/ and adding what it finds there. A crash stops the run with the input in
# fuzz/artifacts/<target>/; turn it into a regression test before fixing it.
#
# Needs a nightly toolchain (`rustup toolchain install nightly`) and cargo-fuzz, which this
# script installs when missing. Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
targets=(request keys cached_items expressions sigv4 dax_frames dax_requests)

if ! command -v cargo-fuzz >/dev/null; then
    cargo install --quiet --locked cargo-fuzz@0.13.2
fi
log="$(mktemp)"
for target in "${targets[@]}"; do
    echo "== $target: ${seconds} s"
    if ! cargo +nightly fuzz run --fuzz-dir fuzz "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
        tail -40 "$log" >&2
        echo "$target: failed; a crashing input is in fuzz/artifacts/$target/" >&2
        exit 1
    fi
    grep -E '^stat::(number_of_executed_units|new_units_added)' "$log" || true
done
rm -f "$log"
echo "all targets ran ${seconds} s without a crash"
