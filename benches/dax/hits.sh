#!/usr/bin/env bash
# Hit latency and CPU per hit over DAX against HTTP, one connection each, in one run: the
# release binary with --embedded --dax-listen on loopback; wrk sends GetItem hits over HTTP,
# `dynamo-cache bench` (its own DAX client) sends the same GetItem over DAX. Both clients are
# lean, so the difference is the proxy's two front-ends.
#
#   benches/dax/hits.sh [SECONDS]     (needs wrk; cargo build --release first)
#
# DYNAMO_CACHE_BIN measures another build of the binary (say, the one before a change).
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
bin=${DYNAMO_CACHE_BIN:-target/release/dynamo-cache}
http=127.0.0.1:18300 admin=127.0.0.1:18301 dax=127.0.0.1:18302
scratch=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$scratch"' EXIT

"$bin" serve --embedded --listen $http --admin-listen $admin --dax-listen $dax \
    --log-level warn > "$scratch/serve.log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf "http://$admin/healthz" > /dev/null && break; sleep 0.1; done

# The bench table with one item, and that item cached.
"$bin" bench --endpoint "http://$http" --seed --keys 10 --requests 10 --warmup 0 --quiet > /dev/null
cat > "$scratch/get.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"TableName":"dynamo-cache-bench","Key":{"pk":{"S":"k0"},"sk":{"N":"0"}}}'
wrk.headers["Content-Type"] = "application/x-amz-json-1.0"
wrk.headers["X-Amz-Target"] = "DynamoDB_20120810.GetItem"
wrk.headers["X-Amz-Date"] = "20260101T000000Z"
wrk.headers["Authorization"] = "AWS4-HMAC-SHA256 Credential=bench/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=00"
LUA

ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
cpu_per() { # ticks before, after, requests -> µs per request
    awk -v a="$1" -v b="$2" -v n="$3" -v hz="$hz" 'BEGIN { printf "%.1f", (b - a) * 1e6 / hz / n }'
}

before=$(ticks)
wrk -t1 -c1 -d"${secs}s" --latency -s "$scratch/get.lua" "http://$http/" > "$scratch/wrk.txt"
after=$(ticks)
http_requests=$(awk '/requests in/ {print $1}' "$scratch/wrk.txt")
http_p50=$(awk '$1 == "50%" {print $2}' "$scratch/wrk.txt")
http_p99=$(awk '$1 == "99%" {print $2}' "$scratch/wrk.txt")
http_cpu=$(cpu_per "$before" "$after" "$http_requests")

before=$(ticks)
"$bin" bench --endpoint "dax://$dax" --keys 1 --concurrency 1 --duration "$secs" --warmup 1 \
    --quiet --json "$scratch/dax.json" > /dev/null
after=$(ticks)
read -r dax_requests dax_p50 dax_p99 < <(python3 -c '
import json, sys
e = json.load(open(sys.argv[1]))["endpoints"][0]
print(e["requests"], e["latency_us"]["p50"], e["latency_us"]["p99"])' "$scratch/dax.json")
# The bench's warm-up second is counted in the CPU but not in the requests: scale it out.
dax_cpu=$(awk -v c="$(cpu_per "$before" "$after" "$dax_requests")" -v s="$secs" \
    'BEGIN { printf "%.1f", c * s / (s + 1) }')

printf 'GetItem hits, one connection, %ss each\n' "$secs"
printf '  %-28s %10s %10s %10s %14s\n' "" requests p50 p99 "CPU µs/hit"
printf '  %-28s %10s %10s %10s %14s\n' "HTTP (wrk)" "$http_requests" "$http_p50" "$http_p99" "$http_cpu"
printf '  %-28s %10s %10s %10s %14s\n' "DAX (dynamo-cache bench)" "$dax_requests" "${dax_p50}us" "${dax_p99}us" "$dax_cpu"
