"""Fixtures for the interop suite: two moto servers (one behind the proxy, one called
directly), the real dynamo-cache binary in front of the first, and boto3 clients."""

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

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
