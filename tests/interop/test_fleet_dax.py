"""A fleet as DAX clients see it: three binaries sharing one real redis-server, with
`--fleet-discovery fleet`. The real DAX client is given one node's endpoint, discovers all
three, and its requests reach all three; a write through one node is read through the others.

Needs `redis-server` on PATH (CI installs it and sets DYNAMO_CACHE_REQUIRE_REDIS, so a skip
there is a failure)."""

import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import Moto, Proxy, _free_port, client
from test_dax import create, dax_client

TABLE = "fleet_items"


@pytest.fixture(scope="module")
def redis_url():
    if shutil.which("redis-server") is None:
        if os.environ.get("DYNAMO_CACHE_REQUIRE_REDIS"):
            pytest.fail("redis-server is not on PATH and DYNAMO_CACHE_REQUIRE_REDIS is set")
        pytest.skip("redis-server is not on PATH (apt-get install redis-server redis-tools)")
    port = _free_port()
    workdir = tempfile.mkdtemp()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"],
        cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while subprocess.run(["redis-cli", "-p", str(port), "PING"], capture_output=True,
                         text=True).stdout.strip() != "PONG":
        assert time.monotonic() < deadline, "redis-server never answered"
        time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def dax_requests(proxy):
    """DAX requests the node has answered, whatever the operation and result."""
    return sum(float(value) for value in re.findall(
        r'^dynamo_cache_requests_total\{[^}]*protocol="dax"[^}]*\} (\S+)$',
        proxy.metrics(), re.M))


def metric(proxy, name):
    found = re.findall(rf"^{name} (\S+)$", proxy.metrics(), re.M)
    return float(found[0]) if found else 0.0


def test_one_endpoint_discovers_the_fleet_and_load_reaches_every_node(redis_url):
    moto = Moto()
    nodes = []
    try:
        for _ in range(3):
            dax_port = _free_port()
            nodes.append(Proxy(moto.url, extra=[
                "--dax-listen", f"127.0.0.1:{dax_port}",
                "--fleet-redis", redis_url, "--fleet-name", "interop",
                "--fleet-discovery", "fleet"]))
        http = client(nodes[0].url)
        create(http, TABLE)
        # Every node has registered, and each hears the fleet.
        deadline = time.monotonic() + 15
        while not all(metric(n, "dynamo_cache_fleet_members") == 3
                      and metric(n, "dynamo_cache_fleet_memory_serving") == 1 for n in nodes):
            assert time.monotonic() < deadline, "the fleet never formed"
            time.sleep(0.1)

        dax = dax_client(nodes[0].dax_url)
        try:
            for i in range(10):
                dax.put_item(TableName=TABLE, Item={"pk": {"S": f"k{i}"}, "sk": {"N": "1"},
                                                    "v": {"N": "1"}})
            before = [dax_requests(n) for n in nodes]
            for _ in range(20):
                for i in range(10):
                    got = dax.get_item(TableName=TABLE, Key={"pk": {"S": f"k{i}"},
                                                             "sk": {"N": "1"}})
                    assert got["Item"]["v"] == {"N": "1"}
            after = [dax_requests(n) for n in nodes]
            reached = [a - b for a, b in zip(after, before)]
            assert all(r > 0 for r in reached), f"DAX requests per node: {reached}"

            # A write through one node (HTTP) is read through every node (DAX, spread).
            client(nodes[1].url).put_item(
                TableName=TABLE, Item={"pk": {"S": "k0"}, "sk": {"N": "1"}, "v": {"N": "2"}})
            # (Other nodes hear of it within milliseconds, not before the write's answer.)
            deadline = time.monotonic() + 1
            while dax.get_item(TableName=TABLE, Key={"pk": {"S": "k0"}, "sk": {"N": "1"}}
                               )["Item"]["v"] != {"N": "2"}:
                assert time.monotonic() < deadline, "a node kept the old version"
            for _ in range(12):
                got = dax.get_item(TableName=TABLE, Key={"pk": {"S": "k0"}, "sk": {"N": "1"}})
                assert got["Item"]["v"] == {"N": "2"}
        finally:
            dax.close()
    finally:
        for node in nodes:
            node.stop()
        moto.stop()
