#!/usr/bin/env bash
# GetItem hit throughput through the proxy, measured in one run on loopback with wrk (16
# connections), against two baselines:
#   - nginx answering the same bytes with `return 200` (the ceiling of an HTTP server here);
#   - nginx `proxy_cache` in front of the same upstream, with the POST body in the cache key
#     (what a user might try instead of a DynamoDB-aware cache).
# Prints each and the ratios.
#
# Needs wrk and nginx (Debian: apt-get install wrk nginx-light). Bounded: three 10 s runs.
#   benches/wrk/hit-throughput.sh [DURATION_S]
set -euo pipefail
cd "$(dirname "$0")/../.."
duration="${1:-10}"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; nginx -p "$work" -c nginx.conf -s stop 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --release --quiet --bin dynamo-cache
./target/release/dynamo-cache serve --embedded --listen 127.0.0.1:18000 --admin-listen 127.0.0.1:19464 \
    > "$work/proxy.out" 2>&1 &
for _ in $(seq 100); do curl -sf http://127.0.0.1:19464/healthz >/dev/null && break; sleep 0.1; done

call() { # op body [url]
    curl -sf "${3:-http://127.0.0.1:18000/}" -H "Content-Type: application/x-amz-json-1.0" \
        -H "X-Amz-Target: DynamoDB_20120810.$1" -H "X-Amz-Date: 20260101T000000Z" \
        -H "Authorization: AWS4-HMAC-SHA256 Credential=bench/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=00" \
        "${@:4}" -d "$2"
}
call CreateTable '{"TableName":"bench","AttributeDefinitions":[{"AttributeName":"pk","AttributeType":"S"}],"KeySchema":[{"AttributeName":"pk","KeyType":"HASH"}],"BillingMode":"PAY_PER_REQUEST"}' >/dev/null
value=$(printf 'x%.0s' $(seq 400))
call PutItem "{\"TableName\":\"bench\",\"Item\":{\"pk\":{\"S\":\"k\"},\"v\":{\"S\":\"$value\"}}}" >/dev/null
body=$(call GetItem '{"TableName":"bench","Key":{"pk":{"S":"k"}}}')
upstream=$(grep -o 'upstream http://[0-9.:]*' "$work/proxy.out" | cut -d' ' -f2)
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

rps() { wrk -t2 -c16 -d"${duration}s" -s benches/wrk/getitem.lua "$1" | awk '/Requests\/sec/ {print $2}'; }
proxy=$(rps http://127.0.0.1:18000/)
nginx_rps=$(rps http://127.0.0.1:18080/)
# One request first so the cache holds the answer; then check it really is a cache hit.
get='{"TableName":"bench","Key":{"pk":{"S":"k"}}}'
call GetItem "$get" http://127.0.0.1:18081/ -o /dev/null
cached=$(call GetItem "$get" http://127.0.0.1:18081/ -o /dev/null -D - | awk 'tolower($1) == "x-cache:" {print $2}' | tr -d '\r')
nginx_cache_rps=$(rps http://127.0.0.1:18081/)
hits=$(curl -s http://127.0.0.1:19464/metrics | awk '/^dynamo_cache_requests_total\{op="GetItem",result="hit"\}/ {print $2}')
echo "GetItem hits, 16 connections, ${duration}s each, one run"
echo "  proxy (hits: $hits)  $proxy req/s"
echo "  nginx return 200     $nginx_rps req/s"
echo "  nginx proxy_cache    $nginx_cache_rps req/s (second request was a cache ${cached:-?})"
awk -v p="$proxy" -v n="$nginx_rps" 'BEGIN { printf "  proxy/nginx return 200 = %.2f\n", p / n }'
awk -v p="$proxy" -v n="$nginx_cache_rps" 'BEGIN { printf "  proxy/nginx proxy_cache = %.2f\n", p / n }'
