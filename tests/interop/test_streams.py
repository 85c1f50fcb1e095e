"""DynamoDB Streams invalidation against moto's Streams API, an implementation independent of
the emulator the Rust tests use: a write made straight to moto is served fresh through a proxy
that follows the table's stream, and a proxy that does not follow it keeps the old value."""

import time

from conftest import Moto, Proxy, client

TABLE = "streamed"
KEY = {"pk": {"S": "a"}}


def value(c):
    response = c.get_item(TableName=TABLE, Key=KEY)
    cache = response["ResponseMetadata"]["HTTPHeaders"].get("x-dynamo-cache")
    return response["Item"]["v"]["N"], cache


def wait_for(condition, what, deadline=15.0):
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_write_around_the_proxy_is_seen_through_the_stream():
    moto = Moto()
    following = Proxy(moto.url, extra=["--streams"])
    ttl_only = Proxy(moto.url)
    try:
        direct = client(moto.url)
        direct.create_table(
            TableName=TABLE,
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"},
        )
        direct.put_item(TableName=TABLE, Item={**KEY, "v": {"N": "1"}})
        proxied, plain = client(following.url), client(ttl_only.url)
        assert value(proxied)[0] == "1"
        assert value(plain)[0] == "1"

        def state():
            return following.cache_stats()["streams"]["tables"].get(TABLE, {}).get("state")

        wait_for(lambda: state() not in (None, "starting"), "the stream to be followed")
        assert state() == "following", following.cache_stats()["streams"]
        value(proxied)  # following dropped what was cached before it began
        assert value(proxied) == ("1", "hit")
        assert value(plain) == ("1", "hit")

        direct.put_item(TableName=TABLE, Item={**KEY, "v": {"N": "2"}})
        wait_for(lambda: value(proxied)[0] == "2", "the new value through the proxy")
        assert value(plain) == ("1", "hit")
        records = [float(line.split()[1]) for line in following.metrics().splitlines()
                   if line.startswith("dynamo_cache_stream_records_total ")]
        assert records and records[0] >= 1, records
    finally:
        following.stop()
        ttl_only.stop()
        moto.stop()
