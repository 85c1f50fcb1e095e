"""The item cache seen by boto3 against moto. boto3 verifies x-amz-crc32 on every DynamoDB
response, so each hit and each trimmed answer here also proves the proxy's CRC is right."""

import pytest

from conftest import Moto, Proxy, client

TABLE = "cached"


def cache_of(response):
    return response["ResponseMetadata"]["HTTPHeaders"].get("x-dynamo-cache")


@pytest.fixture()
def cache_env():
    moto = Moto()
    proxy = Proxy(moto.url)
    c = client(proxy.url)
    c.create_table(TableName=TABLE,
                   AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                         {"AttributeName": "n", "AttributeType": "N"}],
                   KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                              {"AttributeName": "n", "KeyType": "RANGE"}],
                   BillingMode="PAY_PER_REQUEST")
    try:
        yield moto, proxy, c
    finally:
        proxy.stop()
        moto.stop()


def key(pk, n="1"):
    return {"pk": {"S": pk}, "n": {"N": n}}


def test_hits_misses_and_write_through(cache_env):
    moto, proxy, c = cache_env
    c.put_item(TableName=TABLE, Item={**key("a"), "v": {"S": "one"}})
    c.get_item(TableName=TABLE, Key=key("missing"))  # cache "not found"

    updated = c.update_item(TableName=TABLE, Key=key("b"), UpdateExpression="SET v = :v",
                            ExpressionAttributeValues={":v": {"S": "two"}})
    assert "Attributes" not in updated  # ReturnValues NONE, though ALL_NEW was asked upstream

    moto.stop()  # from here on, only memory can answer

    hit = c.get_item(TableName=TABLE, Key=key("a", "1.0"))  # 1.0 and 1 are one key
    assert cache_of(hit) == "hit"
    assert hit["Item"]["v"] == {"S": "one"}

    gone = c.get_item(TableName=TABLE, Key=key("missing"))
    assert cache_of(gone) == "hit" and "Item" not in gone

    b = c.get_item(TableName=TABLE, Key=key("b"), ReturnConsumedCapacity="TOTAL")
    assert cache_of(b) == "hit" and b["Item"]["v"] == {"S": "two"}
    assert b["ConsumedCapacity"] == {"TableName": TABLE, "CapacityUnits": 0.0}

    both = c.batch_get_item(RequestItems={TABLE: {"Keys": [key("a"), key("b"), key("missing")]}})
    assert cache_of(both) == "hit"
    assert sorted(i["pk"]["S"] for i in both["Responses"][TABLE]) == ["a", "b"]


def test_batch_get_merges_hits_and_misses(cache_env):
    moto, proxy, c = cache_env
    for pk in ("a", "b"):
        c.put_item(TableName=TABLE, Item={**key(pk), "v": {"S": pk}})
    direct = client(moto.url)
    direct.put_item(TableName=TABLE, Item={**key("c"), "v": {"S": "c"}})  # unknown to the proxy
    answer = c.batch_get_item(RequestItems={TABLE: {"Keys": [key("a"), key("c")]}})
    assert cache_of(answer) == "miss"
    assert sorted(i["v"]["S"] for i in answer["Responses"][TABLE]) == ["a", "c"]
    assert answer["UnprocessedKeys"] == {}
    assert 'result="miss"' in proxy.metrics()


def test_queries_are_fresh_after_writes_through_the_proxy(cache_env):
    moto, proxy, c = cache_env
    query = {"TableName": TABLE, "KeyConditionExpression": "pk = :p"}
    c.put_item(TableName=TABLE, Item={**key("a", "1"), "v": {"S": "one"}})
    c.put_item(TableName=TABLE, Item={**key("b", "1"), "v": {"S": "b"}})
    first = c.query(**query, ExpressionAttributeValues={":p": {"S": "a"}})
    assert cache_of(first) == "miss" and first["Count"] == 1
    assert cache_of(c.query(**query, ExpressionAttributeValues={":p": {"S": "a"}})) == "hit"
    c.query(**query, ExpressionAttributeValues={":p": {"S": "b"}})

    c.put_item(TableName=TABLE, Item={**key("a", "2"), "v": {"S": "two"}})
    fresh = c.query(**query, ExpressionAttributeValues={":p": {"S": "a"}})
    assert cache_of(fresh) == "miss"
    assert sorted(i["n"]["N"] for i in fresh["Items"]) == ["1", "2"]
    untouched = c.query(**query, ExpressionAttributeValues={":p": {"S": "b"}})
    assert cache_of(untouched) == "hit"

    moto.stop()
    offline = c.query(**query, ExpressionAttributeValues={":p": {"S": "a"}},
                      ReturnConsumedCapacity="TOTAL")
    assert cache_of(offline) == "hit" and offline["Count"] == 2
    assert offline["ConsumedCapacity"] == {"TableName": TABLE, "CapacityUnits": 0.0}


def test_a_table_named_by_its_arn_is_the_same_table(cache_env):
    """DynamoDB takes a table's ARN wherever it takes its name: through the proxy, a write by
    name is seen by a read by ARN at once, and the reverse."""
    moto, proxy, c = cache_env
    arn = c.describe_table(TableName=TABLE)["Table"]["TableArn"]
    assert arn.startswith(f"arn:aws:dynamodb:{c.meta.region_name}:")
    # A write through the proxy makes it describe the table and learn its account.
    c.put_item(TableName=TABLE, Item={**key("arn"), "v": {"S": "one"}})
    assert c.get_item(TableName=arn, Key=key("arn"))["Item"]["v"] == {"S": "one"}
    read = c.get_item(TableName=arn, Key=key("arn"))
    assert cache_of(read) == "hit"
    # The same entry as the plain name's.
    assert cache_of(c.get_item(TableName=TABLE, Key=key("arn"))) == "hit"

    c.put_item(TableName=TABLE, Item={**key("arn"), "v": {"S": "two"}})
    assert c.get_item(TableName=arn, Key=key("arn"))["Item"]["v"] == {"S": "two"}
    c.put_item(TableName=arn, Item={**key("arn"), "v": {"S": "three"}})
    assert c.get_item(TableName=TABLE, Key=key("arn"))["Item"]["v"] == {"S": "three"}
    c.delete_item(TableName=arn, Key=key("arn"))
    assert "Item" not in c.get_item(TableName=TABLE, Key=key("arn"))

    # A flush by ARN is a flush of the table.
    c.put_item(TableName=TABLE, Item={**key("arn"), "v": {"S": "four"}})
    assert proxy.flush(arn) == {"flushed": {"table": TABLE}}
    assert cache_of(c.get_item(TableName=TABLE, Key=key("arn"))) == "miss"

    # Another region's table of the same name is another table: never served from memory.
    other = arn.replace(f":{c.meta.region_name}:", ":eu-west-1:")
    assert other != arn
    try:
        answer = c.get_item(TableName=other, Key=key("arn"))
        assert cache_of(answer) != "hit"
    except c.exceptions.ClientError:
        pass
