#!/usr/bin/env bash
# Where a forwarded request's CPU goes. perf samples the proxy, built with frame pointers, while
# wrk sends SCRIPT at 16 connections; benches/wrk/phases.py then splits the CPU time per request
# by phase of the request path (front-end HTTP server, parsing, cache layer, signing, upstream
# HTTP client, runtime), from the process's CPU time over the recording (/proc/PID/stat) and
# the requests it answered in that time (its own metrics). The upstream is dynoxide, in a
# process of its own.
#
# Needs perf, wrk, python3, and DYNOXIDE_BIN (dynoxide's binary, as for hit-throughput.sh).
# Bounded: 2 s of warm-up, then one recording of SECONDS (default 5).
#   DYNOXIDE_BIN=<dynoxide> benches/wrk/forward-profile.sh [SCRIPT] [SECONDS]
# SCRIPT is one of benches/wrk/*.lua (default putitem.lua; getitem-consistent.lua for a
# forwarded read). DYNAMO_CACHE_BIN profiles another build, which needs frame pointers
# (RUSTFLAGS="-C force-frame-pointers=yes") for the phases to be found.
set -euo pipefail
cd "$(dirname "$0")/../.."
script=benches/wrk/${1:-putitem.lua}
seconds=${2:-5}
: "${DYNOXIDE_BIN:?must name the dynoxide binary}"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
# shellcheck source=benches/wrk/lib.sh
. benches/wrk/lib.sh

bin="${DYNAMO_CACHE_BIN:-}"
if [ -z "$bin" ]; then
    CARGO_TARGET_DIR=target/frame-pointers RUSTFLAGS="-C force-frame-pointers=yes" \
        cargo build --release --quiet --bin dynamo-cache
    bin=target/frame-pointers/release/dynamo-cache
fi
start_dynoxide "$work/dynoxide.out"
start_proxy "$bin" "$work/proxy.out" --upstream http://127.0.0.1:18090
seed

answered() {
    curl -s http://127.0.0.1:19464/metrics |
        awk '/^dynamo_cache_requests_total\{/ { n += $2 } END { printf "%d", n }'
}
wrk -t2 -c16 -d2s -s "$script" http://127.0.0.1:18000/ >/dev/null
wrk -t2 -c16 -d"$((seconds + 2))s" -s "$script" http://127.0.0.1:18000/ > "$work/wrk.out" &
wrk_pid=$!
sleep 1
cpu_before=$(cpu "$proxy_pid")
answered_before=$(answered)
perf record -F 999 -g -p "$proxy_pid" -o "$work/perf.data" -- sleep "$seconds" 2>/dev/null
cpu_after=$(cpu "$proxy_pid")
answered_after=$(answered)
wait "$wrk_pid"
per_request=$(awk -v a="$cpu_after" -v b="$cpu_before" -v n=$((answered_after - answered_before)) \
    'BEGIN { printf "%.2f", (a - b) * 1e6 / n }')
echo "$(basename "$script"): $((answered_after - answered_before)) requests in ${seconds}s"
perf script -i "$work/perf.data" 2>/dev/null | python3 benches/wrk/phases.py "$per_request"
