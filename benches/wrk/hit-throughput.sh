#!/usr/bin/env bash
# GetItem hits and PutItem writes through the proxy, measured in one run on loopback with wrk,
# against baselines on the same machine at the same time:
#   - nginx answering the same bytes with `return 200` (the ceiling of an HTTP server here);
#   - nginx `proxy_cache` in front of the same upstream, with the POST body in the cache key
#     (what a user might try instead of a DynamoDB-aware cache);
#   - for forwarded requests (strongly consistent GetItem, PutItem), the emulator directly and
#     nginx `proxy_pass` in front of it (what any proxy adds on this machine).
# For each: requests/s at 16 connections, CPU time per request of the serving process(es) over
# that run (from /proc/PID/stat: steadier than req/s on a shared machine), and p50/p99 at one
# connection. Prints each and the ratios.
#
# Needs wrk and nginx (Debian: apt-get install wrk nginx-light). Bounded: eighteen runs of
# DURATION_S (default 10) each.
#   benches/wrk/hit-throughput.sh [DURATION_S]
# DYNAMO_CACHE_BIN measures another build of the binary (say, the one before a change)
# instead of building this tree's.
# DYNOXIDE_BIN puts the emulator in a process of its own (dynoxide's binary: `cargo install
# dynoxide-rs --version =3.2.0 --features cli --locked`), so the proxy's whole process, and
# nothing else, is counted for forwarded requests; by default the proxy embeds it.
set -euo pipefail
cd "$(dirname "$0")/../.."
duration="${1:-10}"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; nginx -p "$work" -c nginx.conf -s stop 2>/dev/null || true; rm -rf "$work"' EXIT

# shellcheck source=benches/wrk/lib.sh
. benches/wrk/lib.sh

bin="${DYNAMO_CACHE_BIN:-}"
if [ -z "$bin" ]; then
    cargo build --release --quiet --bin dynamo-cache
    bin=./target/release/dynamo-cache
fi
if [ -n "${DYNOXIDE_BIN:-}" ]; then
    start_dynoxide "$work/dynoxide.out"
    start_proxy "$bin" "$work/proxy.out" --upstream http://127.0.0.1:18090
    # The proxy's whole process serves forwarded requests: nothing else runs in it.
    proxy_fwd=$proxy_pid
else
    start_proxy "$bin" "$work/proxy.out" --embedded
    # Only the proxy's worker threads: the embedded emulator shares its process.
    proxy_fwd=workers:$proxy_pid
fi
seed
body=$(call GetItem '{"TableName":"bench","Key":{"pk":{"S":"k"}}}')
upstream=$(grep -o 'upstream http://[0-9.:]*' "$work/proxy.out" | head -1 | cut -d' ' -f2)
upstream=${upstream#http://}

mkdir -p "$work/logs"
cat > "$work/nginx.conf" <<CONF
worker_processes 2;
error_log $work/logs/error.log;
pid $work/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $work;
    proxy_temp_path $work/proxy_temp;
    proxy_cache_path $work/cache levels=1:2 keys_zone=ddb:10m max_size=100m inactive=10m;
    upstream ddb {
        server $upstream;
        keepalive 32;
    }
    server {
        listen 127.0.0.1:18081;
        location / {
            # \$request_body is only set for bodies read into memory.
            client_body_buffer_size 64k;
            client_body_in_single_buffer on;
            proxy_pass http://ddb;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache ddb;
            proxy_cache_methods POST;
            proxy_cache_key "\$http_x_amz_target|\$request_body";
            proxy_cache_valid 200 5m;
            add_header X-Cache \$upstream_cache_status;
        }
    }
    # A plain reverse proxy, no cache: what forwarding through any proxy costs here.
    server {
        listen 127.0.0.1:18082;
        location / {
            proxy_pass http://ddb;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
    server {
        listen 127.0.0.1:18080;
        location / {
            default_type application/x-amz-json-1.0;
            return 200 '$body';
        }
    }
}
CONF
nginx -p "$work" -c nginx.conf

# run NAME URL SCRIPT PID...: 16 connections, then one; sets NAME_rps, NAME_cpu_us (CPU µs per
# request at 16 connections), NAME_p50, NAME_p99 and NAME_cpu1_us (at one connection).
run() {
    local name=$1 url=$2 script=$3; shift 3
    local before after out requests
    before=$(cpu "$@")
    out=$(wrk -t2 -c16 -d"${duration}s" -s "$script" "$url")
    after=$(cpu "$@")
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    printf -v "${name}_rps" '%s' "$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
    printf -v "${name}_cpu_us" '%s' "$(awk -v a="$after" -v b="$before" -v n="$requests" \
        'BEGIN { printf "%.2f", (a - b) * 1e6 / n }')"
    before=$(cpu "$@")
    out=$(wrk -t1 -c1 -d"${duration}s" --latency -s "$script" "$url")
    after=$(cpu "$@")
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    printf -v "${name}_cpu1_us" '%s' "$(awk -v a="$after" -v b="$before" -v n="$requests" \
        'BEGIN { printf "%.2f", (a - b) * 1e6 / n }')"
    printf -v "${name}_p50" '%s' "$(awk '$1 == "50%" {print $2}' <<<"$out")"
    printf -v "${name}_p99" '%s' "$(awk '$1 == "99%" {print $2}' <<<"$out")"
}
nginx_pids=$(cat "$work/nginx.pid"; pgrep -P "$(cat "$work/nginx.pid")")

run proxy http://127.0.0.1:18000/ benches/wrk/getitem.lua "$proxy_pid"
# shellcheck disable=SC2086
run static http://127.0.0.1:18080/ benches/wrk/getitem.lua $nginx_pids
# One request first so the cache holds the answer; then check it really is a cache hit.
get='{"TableName":"bench","Key":{"pk":{"S":"k"}}}'
call GetItem "$get" http://127.0.0.1:18081/ -o /dev/null
cached=$(call GetItem "$get" http://127.0.0.1:18081/ -o /dev/null -D - | awk 'tolower($1) == "x-cache:" {print $2}' | tr -d '\r')
# shellcheck disable=SC2086
run cache http://127.0.0.1:18081/ benches/wrk/getitem.lua $nginx_pids
hits=$(curl -s http://127.0.0.1:19464/metrics |
    awk '/^dynamo_cache_requests_total\{/ && /op="GetItem"/ && /result="hit"/ && /protocol="http"/ {print $2}')
# Forwarded requests (strongly consistent reads, writes): through the proxy, through nginx
# proxy_pass, and straight at the emulator. CPU: the proxy's worker threads, and nginx's
# workers.
run fwd http://127.0.0.1:18000/ benches/wrk/getitem-consistent.lua "$proxy_fwd"
# shellcheck disable=SC2086
run fwd_nginx http://127.0.0.1:18082/ benches/wrk/getitem-consistent.lua $nginx_pids
run fwd_direct "http://$upstream/" benches/wrk/getitem-consistent.lua "$proxy_fwd"
run put http://127.0.0.1:18000/ benches/wrk/putitem.lua "$proxy_fwd"
# shellcheck disable=SC2086
run put_nginx http://127.0.0.1:18082/ benches/wrk/putitem.lua $nginx_pids
run put_direct "http://$upstream/" benches/wrk/putitem.lua "$proxy_fwd"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
printf 'GetItem hits of a ~400-byte item (proxy hits counted: %s); %ss per run, one run each\n' "$hits" "$duration"
printf '%-22s %12s %14s %10s %10s %14s\n' "" "req/s (16c)" "CPU µs/req" "p50 (1c)" "p99 (1c)" "CPU µs/req 1c"
printf '%-22s %12s %14s %10s %10s %14s\n' "proxy" "$proxy_rps" "$proxy_cpu_us" "$proxy_p50" "$proxy_p99" "$proxy_cpu1_us"
printf '%-22s %12s %14s %10s %10s %14s\n' "nginx return 200" "$static_rps" "$static_cpu_us" "$static_p50" "$static_p99" "$static_cpu1_us"
printf '%-22s %12s %14s %10s %10s %14s\n' "nginx proxy_cache (${cached:-?})" "$cache_rps" "$cache_cpu_us" "$cache_p50" "$cache_p99" "$cache_cpu1_us"
echo "  proxy/nginx return 200: req/s $(ratio "$proxy_rps" "$static_rps"), CPU per request $(ratio "$proxy_cpu_us" "$static_cpu_us")"
echo "  proxy/nginx proxy_cache: req/s $(ratio "$proxy_rps" "$cache_rps"), CPU per request $(ratio "$proxy_cpu_us" "$cache_cpu_us")"
# µs, from wrk's "123.00us" or "1.23ms".
us() { awk -v v="$1" 'BEGIN { if (v ~ /ms$/) printf "%.0f", v * 1000; else printf "%.0f", v + 0 }'; }
forwarded() { # title prefix
    local p=$2
    local rps=${p}_rps p50=${p}_p50 p99=${p}_p99
    local nrps=${p}_nginx_rps np50=${p}_nginx_p50 np99=${p}_nginx_p99
    local drps=${p}_direct_rps dp50=${p}_direct_p50 dp99=${p}_direct_p99
    echo
    echo "$1"
    local cpu=${p}_cpu_us ncpu=${p}_nginx_cpu_us cpu1=${p}_cpu1_us ncpu1=${p}_nginx_cpu1_us
    printf '%-22s %12s %14s %10s %10s %14s\n' "" "req/s (16c)" "CPU µs/req" "p50 (1c)" "p99 (1c)" "CPU µs/req 1c"
    printf '%-22s %12s %14s %10s %10s %14s\n' "proxy" "${!rps}" "${!cpu}" "${!p50}" "${!p99}" "${!cpu1}"
    printf '%-22s %12s %14s %10s %10s %14s\n' "nginx proxy_pass" "${!nrps}" "${!ncpu}" "${!np50}" "${!np99}" "${!ncpu1}"
    printf '%-22s %12s %14s %10s %10s\n' "emulator directly" "${!drps}" "" "${!dp50}" "${!dp99}"
    echo "  proxy/direct: req/s $(ratio "${!rps}" "${!drps}"); added at p50: $(( $(us "${!p50}") - $(us "${!dp50}") )) µs (nginx proxy_pass: $(( $(us "${!np50}") - $(us "${!dp50}") )) µs)"
    echo "  proxy/nginx proxy_pass: CPU per request $(ratio "${!cpu}" "${!ncpu}") at 16 connections"
}
forwarded "Strongly consistent GetItem (always forwarded)" fwd
forwarded "PutItem of a ~400-byte item" put
