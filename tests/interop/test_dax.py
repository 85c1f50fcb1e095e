"""The real DAX client (amazon-dax-client from PyPI) against the binary's DAX listener, with
moto behind it (through a relay that adds throttling and partly processed batches). Every
answer is also checked against what boto3 reads over HTTP, through the same proxy and cache."""

import os
import time
from decimal import Decimal
import tempfile
import urllib.request

import amazondax
import botocore.exceptions
import pytest

from conftest import CREDS, REGION, FaultShim, Moto, Proxy, client

TABLE = "dax_items"
PARTIAL = "partial_items"
THROTTLED = "throttled_items"


def dax_client(url, key=CREDS["AWS_ACCESS_KEY_ID"], secret=CREDS["AWS_SECRET_ACCESS_KEY"]):
    return amazondax.AmazonDaxClient(
        endpoint_url=url, region_name=REGION,
        aws_access_key_id=key, aws_secret_access_key=secret)


def create(c, name, indexes=False):
    extra = {}
    definitions = [{"AttributeName": "pk", "AttributeType": "S"},
                   {"AttributeName": "sk", "AttributeType": "N"}]
    if indexes:
        definitions += [{"AttributeName": "v", "AttributeType": "S"},
                        {"AttributeName": "g", "AttributeType": "S"}]
        extra = {
            "LocalSecondaryIndexes": [{
                "IndexName": "by_v",
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                              {"AttributeName": "v", "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "ALL"}}],
            "GlobalSecondaryIndexes": [{
                "IndexName": "by_g",
                "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"},
                              {"AttributeName": "sk", "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "ALL"}}],
        }
    c.create_table(TableName=name, AttributeDefinitions=definitions,
                   KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                              {"AttributeName": "sk", "KeyType": "RANGE"}],
                   BillingMode="PAY_PER_REQUEST", **extra)


@pytest.fixture(scope="module")
def dax_env():
    moto = Moto()
    shim = FaultShim(moto.url)
    proxy = Proxy(shim.url, extra=["--dax-listen", "127.0.0.1:0"])
    http = client(proxy.url)
    for name, indexes in ((TABLE, True), (PARTIAL, False), (THROTTLED, False)):
        create(http, name, indexes)
    dax = dax_client(proxy.dax_url)
    try:
        yield proxy, dax, http
    finally:
        dax.close()
        proxy.stop()
        shim.stop()
        moto.stop()


def key(pk, sk="1"):
    return {"pk": {"S": pk}, "sk": {"N": sk}}


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


EVERY_TYPE = {
    "s": {"S": "héllo ✓"},
    "n38": {"N": "12345678901234567890123456789012345678"},
    "neg": {"N": "-98765432109876543210.123456789"},
    "tiny": {"N": "0.000000000000000000000000000000000001"},
    "b": {"B": b"\x00\x01\xff"},
    "t": {"BOOL": True},
    "f": {"BOOL": False},
    "nul": {"NULL": True},
    "ss": {"SS": ["a", "b"]},
    "ns": {"NS": ["1", "-2.5", "99999999999999999999999999999999999999"]},
    "bs": {"BS": [b"\x01", b"\x02"]},
    "l": {"L": [{"S": "x"}, {"N": "2"}, {"L": [{"NULL": True}]}]},
    "m": {"M": {"inner": {"M": {"deep": {"SS": ["z"]}}}, "list": {"L": []}}},
}


def normalised(item):
    """Sets compare as sets (their order is DynamoDB's own) and numbers as numbers (the DAX
    client writes 1E-36 where DynamoDB writes 0.000...1)."""
    out = {}
    for name, value in item.items():
        (kind, inner), = value.items()
        if kind == "NS":
            out[name] = {kind: sorted(Decimal(n) for n in inner)}
        elif kind in ("SS", "BS"):
            out[name] = {kind: sorted(inner)}
        elif kind == "N":
            out[name] = {kind: Decimal(inner)}
        elif kind == "M":
            out[name] = {"M": normalised(inner)}
        else:
            out[name] = value
    return out


def test_every_attribute_type_round_trips_and_matches_http(dax_env):
    _, dax, http = dax_env
    item = {**key("types"), **EVERY_TYPE}
    assert dax.put_item(TableName=TABLE, Item=item).get("Attributes") is None
    through_dax = dax.get_item(TableName=TABLE, Key=key("types"))["Item"]
    through_http = http.get_item(TableName=TABLE, Key=key("types"))["Item"]
    assert normalised(through_dax) == normalised(item)
    assert normalised(through_http) == normalised(item)
    # A key attribute of type N with every spelling a client might use.
    for spelling in ("100", "1E+2", "100.0"):
        got = dax.get_item(TableName=TABLE, Key=key("types", "1"))
        assert got["Item"]["n38"] == EVERY_TYPE["n38"]
        dax.put_item(TableName=TABLE, Item={**key("spelled", spelling), "v": {"S": spelling}})
        back = http.get_item(TableName=TABLE, Key=key("spelled", "100"), ConsistentRead=True)
        assert back["Item"]["v"] == {"S": spelling}
    # The client puts back the key as it was asked for; a query shows DynamoDB's spelling.
    got = dax.query(TableName=TABLE, KeyConditionExpression="pk = :p",
                    ExpressionAttributeValues={":p": {"S": "spelled"}})["Items"]
    assert [i["sk"] for i in got] == [{"N": "100"}]


def test_items_near_the_size_limit(dax_env):
    _, dax, http = dax_env
    big = "x" * (390 * 1024)
    dax.put_item(TableName=TABLE, Item={**key("big"), "blob": {"S": big}})
    assert dax.get_item(TableName=TABLE, Key=key("big"))["Item"]["blob"]["S"] == big
    assert http.get_item(TableName=TABLE, Key=key("big"))["Item"]["blob"]["S"] == big
    with pytest.raises(botocore.exceptions.ClientError) as too_big:
        dax.put_item(TableName=TABLE, Item={**key("too-big"), "blob": {"S": big + "x" * (20 * 1024)}})
    assert error_code(too_big) == "ValidationException"


def test_return_values_conditions_and_updates(dax_env):
    _, dax, http = dax_env
    k = key("rv")
    dax.put_item(TableName=TABLE, Item={**k, "a": {"N": "1"}, "tags": {"SS": ["x"]}})
    old = dax.put_item(TableName=TABLE, Item={**k, "a": {"N": "2"}, "tags": {"SS": ["x"]}},
                       ReturnValues="ALL_OLD",
                       ConditionExpression="attribute_exists(pk) AND a = :one",
                       ExpressionAttributeValues={":one": {"N": "1"}})
    assert old["Attributes"] == {**k, "a": {"N": "1"}, "tags": {"SS": ["x"]}}
    new = dax.update_item(
        TableName=TABLE, Key=k, ReturnValues="ALL_NEW",
        UpdateExpression="SET #a = #a + :inc, nested = :m, lst = list_append(if_not_exists(lst, :empty), :l) "
                         "REMOVE gone ADD tags :t",
        ConditionExpression="#a BETWEEN :lo AND :hi OR size(tags) IN (:one, :two)",
        ExpressionAttributeNames={"#a": "a"},
        ExpressionAttributeValues={":inc": {"N": "10"}, ":m": {"M": {"k": {"S": "v"}}},
                                   ":l": {"L": [{"S": "e"}]}, ":empty": {"L": []},
                                   ":t": {"SS": ["y"]}, ":lo": {"N": "0"}, ":hi": {"N": "5"},
                                   ":one": {"N": "1"}, ":two": {"N": "2"}})
    assert new["Attributes"]["a"] == {"N": "12"}
    assert new["Attributes"]["nested"] == {"M": {"k": {"S": "v"}}}
    assert sorted(new["Attributes"]["tags"]["SS"]) == ["x", "y"]
    assert new["Attributes"]["pk"] == {"S": "rv"}
    updated_old = dax.update_item(TableName=TABLE, Key=k, ReturnValues="UPDATED_OLD",
                                  UpdateExpression="SET a = :v", ExpressionAttributeValues={":v": {"N": "3"}})
    assert updated_old["Attributes"] == {"a": {"N": "12"}}
    updated_new = dax.update_item(TableName=TABLE, Key=k, ReturnValues="UPDATED_NEW",
                                  UpdateExpression="SET a = :v, b = :b",
                                  ExpressionAttributeValues={":v": {"N": "4"}, ":b": {"BOOL": True}})
    assert updated_new["Attributes"] == {"a": {"N": "4"}, "b": {"BOOL": True}}
    assert http.get_item(TableName=TABLE, Key=k)["Item"]["a"] == {"N": "4"}
    deleted = dax.delete_item(TableName=TABLE, Key=k, ReturnValues="ALL_OLD",
                              ConditionExpression="begins_with(pk, :p) AND NOT contains(tags, :z)",
                              ExpressionAttributeValues={":p": {"S": "r"}, ":z": {"S": "zz"}})
    assert deleted["Attributes"]["b"] == {"BOOL": True}
    assert "Item" not in dax.get_item(TableName=TABLE, Key=k)
    assert "Item" not in http.get_item(TableName=TABLE, Key=k)


def test_projections_match_dynamodb(dax_env):
    _, dax, http = dax_env
    k = key("proj")
    dax.put_item(TableName=TABLE, Item={**k, **EVERY_TYPE})
    # List elements (l[2]) are checked against the embedded emulator (test_readme): moto
    # refuses a name placeholder followed by an index.
    for projection in ("s, m.inner.deep", "pk, #n", "absent, t, m.nope"):
        args = dict(TableName=TABLE, Key=k, ProjectionExpression=projection)
        if "#n" in projection:
            args["ExpressionAttributeNames"] = {"#n": "n38"}
        through_dax = dax.get_item(**args)["Item"]
        through_http = http.get_item(**args)["Item"]
        assert through_dax == through_http, projection


def test_query_and_scan_pages_match_http(dax_env):
    _, dax, http = dax_env
    for i in range(10):
        dax.put_item(TableName=TABLE, Item={
            **key("q", str(i)), "v": {"S": f"v{9 - i}"}, "g": {"S": "group"}, "i": {"N": str(i)}})

    def pages(c, **args):
        out, start = [], None
        while True:
            page = c.query(**args, **({"ExclusiveStartKey": start} if start else {}))
            out.append(([item["i"]["N"] for item in page["Items"]], page["Count"]))
            start = page.get("LastEvaluatedKey")
            if not start:
                return out

    cases = [
        dict(KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "q"}}, Limit=3),
        dict(KeyConditionExpression="pk = :p AND sk BETWEEN :a AND :b", Limit=2, ScanIndexForward=False,
             ExpressionAttributeValues={":p": {"S": "q"}, ":a": {"N": "2"}, ":b": {"N": "7"}}),
        dict(KeyConditionExpression="pk = :p", FilterExpression="i > :three", Limit=4,
             ExpressionAttributeValues={":p": {"S": "q"}, ":three": {"N": "3"}}),
        dict(IndexName="by_v", KeyConditionExpression="pk = :p AND begins_with(v, :v)", Limit=3,
             ExpressionAttributeValues={":p": {"S": "q"}, ":v": {"S": "v"}}),
        dict(IndexName="by_g", KeyConditionExpression="g = :g", Limit=4,
             ExpressionAttributeValues={":g": {"S": "group"}}),
    ]
    for args in cases:
        through_dax = pages(dax, TableName=TABLE, **args)
        through_http = pages(http, TableName=TABLE, **args)
        assert through_dax == through_http, args
        assert sum(len(items) for items, _ in through_dax) > 0

    counted = dax.query(TableName=TABLE, KeyConditionExpression="pk = :p", Select="COUNT",
                        ExpressionAttributeValues={":p": {"S": "q"}})
    assert counted["Count"] == 10 and "Items" not in counted
    projected = dax.query(TableName=TABLE, KeyConditionExpression="pk = :p", Limit=2,
                          ProjectionExpression="i", ExpressionAttributeValues={":p": {"S": "q"}})
    assert projected["Items"] == [{"i": {"N": "0"}}, {"i": {"N": "1"}}]

    scanned, start = [], None
    while True:
        page = dax.scan(TableName=TABLE, Limit=4, FilterExpression="pk = :p",
                        ExpressionAttributeValues={":p": {"S": "q"}},
                        **({"ExclusiveStartKey": start} if start else {}))
        scanned += [item["i"]["N"] for item in page["Items"]]
        assert page["ScannedCount"] >= page["Count"]
        start = page.get("LastEvaluatedKey")
        if not start:
            break
    assert sorted(scanned, key=int) == [str(i) for i in range(10)]


def test_batches_with_unprocessed_keys_and_items(dax_env):
    proxy, dax, http = dax_env
    # The client annotates the requests it is given, so each call gets fresh ones.
    def writes(n=4, pk="b"):
        return [{"PutRequest": {"Item": {**key(pk, str(i)), "v": {"S": f"b{i}"}}}}
                for i in range(n)]

    # moto takes the same key in two tables for a duplicate, so TABLE gets its own keys.
    answer = dax.batch_write_item(RequestItems={PARTIAL: writes(), TABLE: writes(2, "bt")})
    # The relay held back the partial table's last write.
    assert answer["UnprocessedItems"] == {PARTIAL: [writes()[3]]}
    assert dax.batch_write_item(RequestItems=answer["UnprocessedItems"])["UnprocessedItems"] == {}
    assert http.get_item(TableName=PARTIAL, Key=key("b", "3"))["Item"]["v"] == {"S": "b3"}

    deletes = [{"DeleteRequest": {"Key": key("b", str(i))}} for i in (0, 1)]
    answer = dax.batch_write_item(RequestItems={PARTIAL: deletes})
    assert answer["UnprocessedItems"] == {PARTIAL: [{"DeleteRequest": {"Key": key("b", "1")}}]}

    # Writes through the proxy fill its cache; the batch read should go upstream.
    proxy.flush(PARTIAL)
    keys = [key("b", str(i)) for i in range(4)]
    answer = dax.batch_get_item(RequestItems={
        PARTIAL: {"Keys": keys},
        TABLE: {"Keys": [key("bt", "0"), key("bt", "1")], "ProjectionExpression": "v"}})
    got = sorted(item["sk"]["N"] for item in answer["Responses"][PARTIAL])
    assert got == ["1", "2"]  # 0 deleted, 3 held back
    assert answer["UnprocessedKeys"][PARTIAL]["Keys"] == [keys[3]]
    assert sorted(i["v"]["S"] for i in answer["Responses"][TABLE]) == ["b0", "b1"]
    again = dax.batch_get_item(RequestItems=answer["UnprocessedKeys"])
    assert again["Responses"][PARTIAL][0]["v"] == {"S": "b3"}


def test_transactions(dax_env):
    _, dax, http = dax_env
    dax.put_item(TableName=TABLE, Item={**key("tx", "1"), "n": {"N": "1"}})
    dax.put_item(TableName=TABLE, Item={**key("tx", "2"), "n": {"N": "2"}})
    dax.transact_write_items(TransactItems=[
        {"Put": {"TableName": TABLE, "Item": {**key("tx", "3"), "n": {"N": "3"}},
                 "ConditionExpression": "attribute_not_exists(pk)"}},
        {"Update": {"TableName": TABLE, "Key": key("tx", "1"), "UpdateExpression": "SET n = n + :one",
                    "ExpressionAttributeValues": {":one": {"N": "1"}}}},
        {"Delete": {"TableName": TABLE, "Key": key("tx", "2")}},
        {"ConditionCheck": {"TableName": PARTIAL, "Key": key("nothing"),
                            "ConditionExpression": "attribute_not_exists(pk)"}},
    ])
    got = dax.transact_get_items(TransactItems=[
        {"Get": {"TableName": TABLE, "Key": key("tx", "1")}},
        {"Get": {"TableName": TABLE, "Key": key("tx", "2")}},
        {"Get": {"TableName": TABLE, "Key": key("tx", "3"), "ProjectionExpression": "n"}},
    ])["Responses"]
    assert got[0]["Item"]["n"] == {"N": "2"}
    assert got[1] == {}
    assert got[2]["Item"] == {"n": {"N": "3"}}
    assert http.get_item(TableName=TABLE, Key=key("tx", "1"))["Item"]["n"] == {"N": "2"}

    with pytest.raises(botocore.exceptions.ClientError) as cancelled:
        dax.transact_write_items(TransactItems=[
            {"Put": {"TableName": TABLE, "Item": key("tx", "9")}},
            {"ConditionCheck": {"TableName": TABLE, "Key": key("tx", "1"),
                                "ConditionExpression": "n = :five",
                                "ExpressionAttributeValues": {":five": {"N": "5"}},
                                "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}},
        ])
    assert error_code(cancelled) == "TransactionCanceledException"
    reasons = cancelled.value.cancellation_reasons
    assert len(reasons) == 6
    assert reasons[0] in ("None", None) and reasons[3] == "ConditionalCheckFailed"
    assert "Item" not in http.get_item(TableName=TABLE, Key=key("tx", "9"))


def test_errors_have_dynamodbs_types(dax_env):
    _, dax, _ = dax_env
    dax.put_item(TableName=TABLE, Item=key("err"))
    with pytest.raises(botocore.exceptions.ClientError) as failed:
        dax.put_item(TableName=TABLE, Item=key("err"), ConditionExpression="attribute_not_exists(pk)")
    assert error_code(failed) == "ConditionalCheckFailedException"
    with pytest.raises(botocore.exceptions.ClientError) as missing:
        dax.get_item(TableName="no_such_table", Key=key("x"))
    assert error_code(missing) == "ResourceNotFoundException"
    with pytest.raises(botocore.exceptions.ClientError) as invalid:
        dax.update_item(TableName=TABLE, Key=key("err"), UpdateExpression="SET sk = :v",
                        ExpressionAttributeValues={":v": {"N": "2"}})
    assert error_code(invalid) == "ValidationException"
    with pytest.raises(botocore.exceptions.ClientError) as throttled:
        dax.get_item(TableName=THROTTLED, Key=key("x"), ConsistentRead=True)
    assert error_code(throttled) == "ProvisionedThroughputExceededException"
    # The connection pool survives all of that.
    assert dax.get_item(TableName=TABLE, Key=key("err"))["Item"] == key("err")


def test_writes_are_seen_at_once_across_protocols(dax_env):
    proxy, dax, http = dax_env
    k = key("cross")
    http.put_item(TableName=TABLE, Item={**k, "v": {"S": "http-1"}})
    assert dax.get_item(TableName=TABLE, Key=k)["Item"]["v"] == {"S": "http-1"}
    assert http.get_item(TableName=TABLE, Key=k)["Item"]["v"] == {"S": "http-1"}  # cached now
    dax.update_item(TableName=TABLE, Key=k, UpdateExpression="SET v = :v",
                    ExpressionAttributeValues={":v": {"S": "dax-2"}})
    assert http.get_item(TableName=TABLE, Key=k)["Item"]["v"] == {"S": "dax-2"}
    assert dax.get_item(TableName=TABLE, Key=k)["Item"]["v"] == {"S": "dax-2"}
    http.put_item(TableName=TABLE, Item={**k, "v": {"S": "http-3"}})
    assert dax.get_item(TableName=TABLE, Key=k)["Item"]["v"] == {"S": "http-3"}
    dax.delete_item(TableName=TABLE, Key=k)
    assert "Item" not in http.get_item(TableName=TABLE, Key=k)

    metrics = proxy.metrics()
    hits = [line for line in metrics.splitlines()
            if line.startswith('dynamo_cache_requests_total{op="GetItem",protocol="dax",result="hit"}')]
    assert hits and float(hits[0].split()[-1]) >= 1


PRINCIPALS = """
[[principal]]
name = "reader"
access_key_id = "AKIDREADER"
secret_access_key = "reader-secret"
tables = ["open*"]
operations = ["read", "write", "admin"]
"""


def test_authorize_connection_is_verified_with_sigv4():
    moto = Moto()
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "principals.toml")
        with open(path, "w") as f:
            f.write(PRINCIPALS)
        proxy = Proxy(moto.url, extra=["--auth", "sigv4", "--credentials-file", path,
                                       "--dax-listen", "127.0.0.1:0"])
        try:
            create(client(moto.url), "open_table")
            create(client(moto.url), "closed_table")
            good = dax_client(proxy.dax_url, "AKIDREADER", "reader-secret")
            good.put_item(TableName="open_table", Item=key("a"))
            assert good.get_item(TableName="open_table", Key=key("a"))["Item"] == key("a")
            with pytest.raises(botocore.exceptions.ClientError) as denied:
                good.get_item(TableName="closed_table", Key=key("a"))
            assert error_code(denied) == "AccessDeniedException"
            good.close()
            with pytest.raises(Exception) as refused:
                bad = dax_client(proxy.dax_url, "AKIDREADER", "wrong-secret")
                bad.get_item(TableName="open_table", Key=key("a"))
            assert "signature" in str(refused.value).lower()
            failures = urllib.request.urlopen(proxy.admin_url + "/metrics").read().decode()
            assert "dynamo_cache_auth_failures_total" in failures
        finally:
            proxy.stop()
            moto.stop()


def test_dax_locally_with_the_embedded_emulator():
    """`serve --embedded --dax-listen`: the first local DAX. Also list elements in
    projections, which moto cannot take with name placeholders."""
    proxy = Proxy(extra=["--dax-listen", "127.0.0.1:0"])
    try:
        http = client(proxy.url)
        create(http, "local_items")
        dax = dax_client(proxy.dax_url)
        k = key("local")
        dax.put_item(TableName="local_items", Item={**k, **EVERY_TYPE})
        for projection in ("l[2], l[0], s", "m.#i.deep, l[2][0], ss", "l[9], absent"):
            args = dict(TableName="local_items", Key=k, ProjectionExpression=projection)
            if "#i" in projection:
                args["ExpressionAttributeNames"] = {"#i": "inner"}
            through_dax = dax.get_item(**args).get("Item")
            through_http = http.get_item(**args).get("Item")
            assert through_dax == through_http, projection
        assert normalised(dax.get_item(TableName="local_items", Key=k)["Item"]) == \
            normalised({**k, **EVERY_TYPE})
        dax.close()
    finally:
        proxy.stop()


def test_a_client_that_outlives_a_restart_keeps_its_attribute_lists():
    """DAX clients keep attribute-list ids for as long as they run. With
    --dax-attribute-lists-file a restarted proxy still knows them."""
    from conftest import _free_port
    moto = Moto()
    port = _free_port()
    with tempfile.TemporaryDirectory() as scratch:
        lists = os.path.join(scratch, "lists")
        extra = ["--dax-listen", f"127.0.0.1:{port}", "--dax-attribute-lists-file", lists]
        proxy = Proxy(moto.url, extra=extra)
        try:
            create(client(proxy.url), "restarts")
            dax = dax_client(proxy.dax_url)
            dax.put_item(TableName="restarts", Item={**key("a"), "v": {"S": "before"}})
            proxy.stop()
            proxy = Proxy(moto.url, extra=extra)
            # The same client, the same list id, a proxy that started since.
            for attempt in range(50):
                try:
                    dax.put_item(TableName="restarts", Item={**key("a"), "v": {"S": "after"}})
                    break
                except Exception:
                    if attempt == 49:
                        raise
                    time.sleep(0.1)
            got = client(proxy.url).get_item(TableName="restarts", Key=key("a"))["Item"]
            assert got["v"] == {"S": "after"}
            dax.close()
        finally:
            proxy.stop()
            moto.stop()


def _issue_certificate(directory):
    """A CA, and a certificate it signed for localhost and 127.0.0.1, written to `directory`;
    returns the paths of the CA, the certificate and its key."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dynamo-cache test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = [os.path.join(directory, n) for n in ("ca.pem", "cert.pem", "key.pem")]
    pem = serialization.Encoding.PEM
    with open(paths[0], "wb") as f:
        f.write(ca.public_bytes(pem))
    with open(paths[1], "wb") as f:
        f.write(cert.public_bytes(pem))
    with open(paths[2], "wb") as f:
        f.write(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return paths


def test_daxs_with_a_certificate_the_client_trusts(monkeypatch):
    """With TLS configured the DAX listener serves daxs://; the Python client checks the chain
    against its CA store (here SSL_CERT_FILE) and the name against the discovery host."""
    moto = Moto()
    with tempfile.TemporaryDirectory() as scratch:
        ca, cert, cert_key = _issue_certificate(scratch)
        proxy = Proxy(moto.url, extra=["--tls-cert-file", cert, "--tls-key-file", cert_key,
                                       "--dax-listen", "127.0.0.1:0"])
        try:
            assert proxy.dax_url.startswith("daxs://")
            create(client(moto.url), "secure_items")
            monkeypatch.setenv("SSL_CERT_FILE", ca)
            port = proxy.dax_url.rsplit(":", 1)[1]
            dax = dax_client(f"daxs://localhost:{port}")
            dax.put_item(TableName="secure_items", Item={**key("tls"), "v": {"S": "sealed"}})
            got = dax.get_item(TableName="secure_items", Key=key("tls"))["Item"]
            assert got["v"] == {"S": "sealed"}
            dax.close()
        finally:
            proxy.stop()
            moto.stop()



def test_sort_keys_across_dynamodbs_whole_range_page_back_exactly(dax_env):
    # From the smallest magnitude DynamoDB stores to the largest, both signs: sort keys of
    # 1E+38 and up take more than the client's 38-digit context in plain form.
    _, dax, http = dax_env
    keys = ["1E-130", "-1E-130", "1.5E-100", "0.001", "-7", "0", "42", "1E+37", "1E+38",
            "-1E+38", "123456789E+40", "9.9E+125", "-9.9E+125"]
    for n, sk in enumerate(keys):
        http.put_item(TableName=TABLE, Item={**key("range", sk), "n": {"N": str(n)}})
    seen, start = [], None
    while True:
        page = dax.query(TableName=TABLE, KeyConditionExpression="pk = :p", Limit=3,
                         ExpressionAttributeValues={":p": {"S": "range"}},
                         **({"ExclusiveStartKey": start} if start else {}))
        seen += [(Decimal(item["sk"]["N"]), item["n"]["N"]) for item in page["Items"]]
        start = page.get("LastEvaluatedKey")
        if not start:
            break
    assert sorted(seen) == sorted((Decimal(sk), str(n)) for n, sk in enumerate(keys))
    for n, sk in enumerate(keys):
        got = dax.get_item(TableName=TABLE, Key=key("range", sk))["Item"]
        assert Decimal(got["sk"]["N"]) == Decimal(sk) and got["n"]["N"] == str(n), sk
