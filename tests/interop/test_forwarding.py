"""boto3 (which checks x-amz-crc32 on every DynamoDB response) through the proxy against moto,
in lockstep with boto3 straight to a second moto: every answer must match."""

import json
import os
import subprocess

import botocore.exceptions

from conftest import CREDS, REGION

VOLATILE = {"ResponseMetadata", "CreationDateTime", "TableId", "LatestStreamArn",
            "LatestStreamLabel", "TableArn", "IndexArn"}


def scrub(value):
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def same(env, op, **kwargs):
    """Calls `op` through the proxy and directly; both answers (or errors) must match.

    DynamoDB returns ConsumedCapacity only when asked; moto sends it unasked on some operations,
    and an answer from the proxy's memory (rightly) does not, so it is compared only when asked.
    """
    outcomes = []
    for name in ("proxied", "direct"):
        try:
            answer = scrub(getattr(env[name], op)(**kwargs))
            if "ReturnConsumedCapacity" not in kwargs:
                answer.pop("ConsumedCapacity", None)
            outcomes.append(("ok", answer))
        except botocore.exceptions.ClientError as err:
            e = err.response["Error"]
            outcomes.append(("error", e.get("Code"), e.get("Message")))
    assert outcomes[0] == outcomes[1], f"{op}: proxied {outcomes[0]} != direct {outcomes[1]}"
    return outcomes[0]


TABLE = "interop"
KEY = {"pk": {"S": "a"}, "sk": {"N": "1"}}


def test_lockstep_operations(env):
    same(env, "create_table", TableName=TABLE,
         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                               {"AttributeName": "sk", "AttributeType": "N"},
                               {"AttributeName": "g", "AttributeType": "S"}],
         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"}],
         GlobalSecondaryIndexes=[{"IndexName": "by_g",
                                  "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                                  "Projection": {"ProjectionType": "ALL"}}],
         BillingMode="PAY_PER_REQUEST")
    same(env, "describe_table", TableName=TABLE)
    same(env, "list_tables")
    for pk, sk, g in [("a", "1", "red"), ("a", "2", "blue"), ("b", "1", "red")]:
        same(env, "put_item", TableName=TABLE,
             Item={"pk": {"S": pk}, "sk": {"N": sk}, "g": {"S": g}, "v": {"S": "v1"}})
    same(env, "put_item", TableName=TABLE, ReturnValues="ALL_OLD",
         Item={"pk": {"S": "a"}, "sk": {"N": "1"}, "g": {"S": "red"}, "v": {"S": "v2"}})
    same(env, "get_item", TableName=TABLE, Key=KEY)
    same(env, "get_item", TableName=TABLE, Key={"pk": {"S": "zz"}, "sk": {"N": "9"}})
    same(env, "get_item", TableName=TABLE, Key=KEY, ConsistentRead=True)
    for rv in ("ALL_NEW", "UPDATED_OLD", "NONE"):
        same(env, "update_item", TableName=TABLE, Key=KEY, ReturnValues=rv,
             UpdateExpression="SET v = :v", ExpressionAttributeValues={":v": {"S": "v3"}})
    same(env, "query", TableName=TABLE, KeyConditionExpression="pk = :p",
         ExpressionAttributeValues={":p": {"S": "a"}})
    same(env, "query", TableName=TABLE, IndexName="by_g", KeyConditionExpression="g = :g",
         ExpressionAttributeValues={":g": {"S": "red"}})
    same(env, "scan", TableName=TABLE)
    same(env, "batch_get_item", RequestItems={TABLE: {"Keys": [KEY, {"pk": {"S": "b"}, "sk": {"N": "1"}}]}})
    same(env, "batch_write_item", RequestItems={TABLE: [
        {"PutRequest": {"Item": {"pk": {"S": "c"}, "sk": {"N": "1"}, "g": {"S": "green"}}}}]})
    same(env, "transact_write_items", TransactItems=[
        {"Put": {"TableName": TABLE, "Item": {"pk": {"S": "d"}, "sk": {"N": "1"}, "g": {"S": "red"}}}}])
    same(env, "transact_get_items", TransactItems=[
        {"Get": {"TableName": TABLE, "Key": {"pk": {"S": "d"}, "sk": {"N": "1"}}}}])
    same(env, "delete_item", TableName=TABLE, Key={"pk": {"S": "b"}, "sk": {"N": "1"}},
         ReturnValues="ALL_OLD")

    # Errors pass through unchanged.
    assert same(env, "get_item", TableName="missing", Key=KEY)[1] == "ResourceNotFoundException"
    failed = same(env, "put_item", TableName=TABLE, Item={"pk": {"S": "a"}, "sk": {"N": "1"}},
                  ConditionExpression="attribute_not_exists(pk)")
    assert failed[1] == "ConditionalCheckFailedException"


def test_aws_cli_through_the_proxy(env):
    cli_env = dict(os.environ, AWS_DEFAULT_REGION=REGION, **CREDS)
    out = subprocess.run(
        ["aws", "dynamodb", "list-tables", "--endpoint-url", env["proxy"].url, "--output", "json"],
        capture_output=True, text=True, env=cli_env, check=True, timeout=60,
    )
    assert TABLE in json.loads(out.stdout)["TableNames"]

