"""Hit latency through the Python clients, one request at a time: boto3 to the proxy's HTTP
listener against amazon-dax-client to its DAX listener, same items, same cache.

    .venv/bin/python benches/dax/python-hits.py http://127.0.0.1:8000 dax://127.0.0.1:8111

(the interop virtualenv has both clients: `bash scripts/interop.sh --co -q` creates it). Rounds
alternate between the clients so that a noisy machine slows both alike. Loopback only."""

import statistics
import sys
import time

import amazondax
import boto3

HTTP, DAX = sys.argv[1], sys.argv[2]
ROUNDS, PER_ROUND, KEYS = 10, 500, 100
TABLE = "python-hits"
CREDS = dict(region_name="us-east-1", aws_access_key_id="bench", aws_secret_access_key="bench")

for url in (HTTP, DAX):
    host = url.split("://", 1)[1].rsplit(":", 1)[0]
    if host not in ("127.0.0.1", "localhost", "[::1]"):
        sys.exit(f"{url}: this bench only targets loopback")

http = boto3.client("dynamodb", endpoint_url=HTTP, **CREDS)
dax = amazondax.AmazonDaxClient(endpoint_url=DAX, **CREDS)
try:
    http.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                      AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                      KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
except http.exceptions.ResourceInUseException:
    pass
keys = [{"pk": {"S": f"k{i}"}} for i in range(KEYS)]
for key in keys:
    http.put_item(TableName=TABLE, Item={**key, "v": {"S": "x" * 380}})


def run(get):
    samples = []
    for i in range(PER_ROUND):
        key = keys[i % KEYS]
        started = time.perf_counter_ns()
        get(TableName=TABLE, Key=key)
        samples.append((time.perf_counter_ns() - started) / 1000)
    return samples


# Warm both paths (and the cache) before measuring.
run(http.get_item), run(dax.get_item)
through = {"http (boto3)": [], "dax (amazon-dax-client)": []}
for _ in range(ROUNDS):
    through["http (boto3)"] += run(http.get_item)
    through["dax (amazon-dax-client)"] += run(dax.get_item)
dax.close()

print(f"GetItem hits, one at a time, {ROUNDS * PER_ROUND} each")
figures = {}
for name, samples in through.items():
    samples.sort()
    p50 = statistics.median(samples)
    p99 = samples[int(len(samples) * 0.99)]
    figures[name] = p50
    print(f"  {name:26} p50 {p50:7.0f} µs   p99 {p99:7.0f} µs")
http_p50, dax_p50 = figures.values()
print(f"  DAX p50 is {http_p50 / dax_p50:.2f}x faster than HTTP through the Python clients")
