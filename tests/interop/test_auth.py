"""Inbound SigV4 verification with botocore's own signer: the right key works (and boto3's
x-amz-crc32 check passes on the proxy's answers), every other caller gets DynamoDB's error."""

import os
import tempfile

import boto3
import botocore.config
import botocore.exceptions
import pytest

from conftest import REGION, Moto, Proxy

PRINCIPALS = """
[[principal]]
name = "ops"
access_key_id = "AKIDOPS"
secret_access_key = "ops-secret"
tables = ["*"]
operations = ["read", "write", "admin"]

[[principal]]
name = "orders-service"
access_key_id = "AKIDORDERS"
secret_access_key = "orders-secret"
tables = ["orders*"]
operations = ["read", "write"]
"""


@pytest.fixture(scope="module")
def guarded():
    moto = Moto()
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "principals.toml")
        with open(path, "w") as f:
            f.write(PRINCIPALS)
        proxy = Proxy(moto.url, extra=["--auth", "sigv4", "--credentials-file", path])
        try:
            yield proxy
        finally:
            proxy.stop()
            moto.stop()


def signed_as(proxy, key, secret):
    return boto3.client(
        "dynamodb",
        endpoint_url=proxy.url,
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=botocore.config.Config(retries={"max_attempts": 1}),
    )


def code_of(call):
    with pytest.raises(botocore.exceptions.ClientError) as err:
        call()
    return err.value.response["Error"]["Code"], err.value.response["Error"]["Message"]


def create(client, name):
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def test_boto3_signatures_verify_and_bad_ones_get_dynamodb_errors(guarded):
    ops = signed_as(guarded, "AKIDOPS", "ops-secret")
    create(ops, "orders")
    create(ops, "payroll")
    ops.put_item(TableName="payroll", Item={"pk": {"S": "p"}, "salary": {"N": "1"}})

    orders = signed_as(guarded, "AKIDORDERS", "orders-secret")
    orders.put_item(TableName="orders", Item={"pk": {"S": "o1"}, "v": {"S": "one"}})
    for _ in range(2):  # a miss, then a hit from memory: both pass boto3's CRC check
        got = orders.get_item(TableName="orders", Key={"pk": {"S": "o1"}})
        assert got["Item"]["v"] == {"S": "one"}

    code, message = code_of(
        lambda: signed_as(guarded, "AKIDORDERS", "guess").get_item(
            TableName="orders", Key={"pk": {"S": "o1"}}))
    assert code == "InvalidSignatureException", message
    code, message = code_of(
        lambda: signed_as(guarded, "AKIDNOBODY", "x").get_item(
            TableName="orders", Key={"pk": {"S": "o1"}}))
    assert (code, message) == (
        "UnrecognizedClientException", "The security token included in the request is invalid.")
    code, message = code_of(
        lambda: orders.get_item(TableName="payroll", Key={"pk": {"S": "p"}}))
    assert code == "AccessDeniedException", message
    assert "table/payroll" in message
    code, _ = code_of(lambda: orders.delete_table(TableName="orders"))
    assert code == "AccessDeniedException"

    metrics = guarded.metrics()
    assert 'dynamo_cache_auth_failures_total{reason="denied"} 2' in metrics
    assert 'dynamo_cache_auth_failures_total{reason="signature"} 1' in metrics
    assert 'dynamo_cache_auth_failures_total{reason="unknown_key"} 1' in metrics
