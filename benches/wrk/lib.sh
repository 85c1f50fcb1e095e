# What the wrk benches share; sourced by them, not run. The proxy listens on 18000 (admin on
# 19464), and dynoxide, when it runs in a process of its own, on 18090.

# start_dynoxide LOG: dynoxide's binary ($DYNOXIDE_BIN) on 18090, once it answers.
start_dynoxide() {
    "$DYNOXIDE_BIN" --port 18090 > "$1" 2>&1 &
    for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:18090/ && break; sleep 0.1; done
}

# start_proxy BIN LOG ARGS...: `BIN serve ARGS...` on 18000, once it is healthy; sets proxy_pid.
start_proxy() {
    local bin=$1 log=$2; shift 2
    AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 \
        "$bin" serve --listen 127.0.0.1:18000 --admin-listen 127.0.0.1:19464 "$@" > "$log" 2>&1 &
    proxy_pid=$!
    for _ in $(seq 100); do curl -sf http://127.0.0.1:19464/healthz >/dev/null && break; sleep 0.1; done
}

# call OP BODY [URL [CURL ARGS...]]: one DynamoDB request, with a well-formed placeholder
# signature (the proxy re-signs; the emulator checks only that one is there).
call() {
    curl -sf "${3:-http://127.0.0.1:18000/}" -H "Content-Type: application/x-amz-json-1.0" \
        -H "X-Amz-Target: DynamoDB_20120810.$1" -H "X-Amz-Date: 20260101T000000Z" \
        -H "Authorization: AWS4-HMAC-SHA256 Credential=bench/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=00" \
        "${@:4}" -d "$2"
}

# seed: the table the scripts use, `bench`, holding the item they read (a ~400-byte value
# under key "k").
seed() {
    call CreateTable '{"TableName":"bench","AttributeDefinitions":[{"AttributeName":"pk","AttributeType":"S"}],"KeySchema":[{"AttributeName":"pk","KeyType":"HASH"}],"BillingMode":"PAY_PER_REQUEST"}' >/dev/null
    local value
    value=$(printf 'x%.0s' $(seq 400))
    call PutItem "{\"TableName\":\"bench\",\"Item\":{\"pk\":{\"S\":\"k\"},\"v\":{\"S\":\"$value\"}}}" >/dev/null
}

# cpu PID...: CPU seconds (user + system) used so far by the given processes; `workers:PID`
# counts only the proxy's worker threads (named dynamo-cache-N), which serve every request,
# and not those of an emulator embedded in the same process.
cpu() {
    local ticks=0 pid stats
    for pid in "$@"; do
        if [[ $pid == workers:* ]]; then
            stats=$(grep -l '^dynamo-cache-' /proc/"${pid#workers:}"/task/*/comm | sed 's/comm$/stat/')
        else
            stats=/proc/$pid/stat
        fi
        # Fields 14 and 15 of /proc/PID/stat, counted after the command name's parentheses. A
        # process gone meanwhile (nginx's cache loader exits) counts nothing.
        # shellcheck disable=SC2086
        ticks=$((ticks + $(cat $stats 2>/dev/null | sed 's/.*) //' | awk '{t += $12 + $13} END {print t + 0}')))
    done
    awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.4f", t / hz }'
}
