"""Fixtures for the interop suite: two moto servers (one behind the proxy, one called
directly), the real dynamo-cache binary in front of the first, and boto3 clients."""

import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import zlib

import boto3
import pytest

REGION = "us-east-1"
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url, deadline=30.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer means it is up
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


class Moto:
    def __init__(self):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_http(self.url + "/moto-api/")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


class Proxy:
    """The real binary in front of `upstream`, or of its embedded emulator when `upstream`
    is None (the README's quick start)."""

    def __init__(self, upstream=None, extra=()):
        where = ["--upstream", upstream] if upstream else ["--embedded"]
        binary = os.environ.get("DYNAMO_CACHE_BIN", "target/debug/dynamo-cache")
        env = dict(os.environ, RUST_LOG="warn", **CREDS)
        env.pop("AWS_ENDPOINT_URL", None)
        env.pop("AWS_ENDPOINT_URL_DYNAMODB", None)
        self.proc = subprocess.Popen(
            [binary, "serve", *where, "--region", REGION,
             "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            text=True,
        )
        line = self.proc.stdout.readline()
        found = re.findall(r"http://[0-9.:]+", line)
        if len(found) < 2:
            raise RuntimeError(f"unexpected start-up line: {line!r}")
        self.url, self.admin_url = found[0], found[1]
        # With --dax-listen, the next line names the DAX endpoint.
        self.dax_url = None
        if "--dax-listen" in extra:
            dax_line = self.proc.stdout.readline()
            found = re.findall(r"daxs?://[0-9.:]+", dax_line)
            if not found:
                raise RuntimeError(f"unexpected DAX line: {dax_line!r}")
            self.dax_url = found[0]
        _wait_http(self.admin_url + "/healthz")

    def cache_stats(self):
        return json.loads(urllib.request.urlopen(self.admin_url + "/cache").read())

    def flush(self, table):
        url = f"{self.admin_url}/cache/flush?table={urllib.parse.quote(table, safe='')}"
        request = urllib.request.Request(url, method="POST")
        return json.loads(urllib.request.urlopen(request).read())

    def metrics(self):
        return urllib.request.urlopen(self.admin_url + "/metrics").read().decode()

    def stop(self):
        self.proc.terminate()
        code = self.proc.wait(timeout=30)
        assert code == 0, f"proxy exited with {code} on SIGTERM"


class FaultShim:
    """An HTTP relay in front of moto that answers some requests itself, for what moto
    never does: throttling, and batches DynamoDB only partly processed. Item reads and writes
    of tables named `throttled*` always get ProvisionedThroughputExceededException; in BatchGetItem and
    BatchWriteItem, a `partial*` table's last key or write (of more than one) is held back
    and answered as unprocessed."""

    def __init__(self, upstream):
        shim = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                target = self.headers.get("X-Amz-Target", "")
                status, answer = shim.answer(target, body, self.headers)
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("x-amz-crc32", str(zlib.crc32(answer)))
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.upstream = upstream
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def forward(self, body, headers):
        request = urllib.request.Request(self.upstream + "/", data=body, method="POST")
        for name in ("X-Amz-Target", "Content-Type", "Authorization", "X-Amz-Date"):
            if headers.get(name) is not None:
                request.add_header(name, headers.get(name))
        try:
            with urllib.request.urlopen(request) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def answer(self, target, body, headers):
        request = json.loads(body or b"{}")
        op = target.rsplit(".", 1)[-1]
        tables = [request.get("TableName", "")] + list(request.get("RequestItems", {}))
        data_ops = ("GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan",
                    "BatchGetItem", "BatchWriteItem")
        if op in data_ops and any(t.startswith("throttled") for t in tables):
            return 400, json.dumps({
                "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                "message": "The level of configured provisioned throughput for the table was exceeded.",
            }).encode()
        held = {}
        if op in ("BatchGetItem", "BatchWriteItem"):
            for table, entry in request["RequestItems"].items():
                items = entry["Keys"] if op == "BatchGetItem" else entry
                if table.startswith("partial") and len(items) > 1:
                    held[table] = items.pop()
        status, answer = self.forward(json.dumps(request).encode(), headers)
        if held and status == 200:
            answer = json.loads(answer)
            if op == "BatchGetItem":
                answer["UnprocessedKeys"] = {
                    t: {"Keys": [k], **{f: v for f, v in request["RequestItems"][t].items() if f != "Keys"}}
                    for t, k in held.items()}
            else:
                answer["UnprocessedItems"] = {t: [w] for t, w in held.items()}
            answer = json.dumps(answer).encode()
        return status, answer

    def stop(self):
        self.server.shutdown()


def client(url):
    return boto3.client(
        "dynamodb",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=CREDS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDS["AWS_SECRET_ACCESS_KEY"],
    )


@pytest.fixture(scope="session")
def env():
    behind, direct = Moto(), Moto()
    proxy = Proxy(behind.url)
    try:
        yield {
            "proxy": proxy,
            "proxied": client(proxy.url),
            "direct": client(direct.url),
        }
    finally:
        proxy.stop()
        behind.stop()
        direct.stop()
