"""The README's Python snippet and its "Try it" shell session, run as a new user would:
against the quick-start proxy (`dynamo-cache serve --embedded`)."""

import os
import pathlib
import re
import shutil
import subprocess

import boto3
import pytest

from conftest import CREDS, REGION, Proxy

README = (pathlib.Path(__file__).resolve().parents[2] / "README.md").read_text()
QUICK_START_URL = "http://127.0.0.1:8000"
QUICK_START_ADMIN = "http://127.0.0.1:9464"


def block(after, lang):
    """The first ```lang block after the text `after` in the README."""
    start = README.index(after)
    match = re.compile(r"```" + lang + r"\n(.*?)```", re.S).search(README, start)
    assert match, f"no {lang} block after {after!r}"
    return match.group(1)


@pytest.fixture
def quick_start():
    proxy = Proxy()
    try:
        yield proxy
    finally:
        proxy.stop()


def test_the_python_snippet_runs_against_the_quick_start_proxy(quick_start, monkeypatch):
    for name, value in CREDS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    boto3.client("dynamodb", endpoint_url=quick_start.url).create_table(
        TableName="orders",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    snippet = block("Python (boto3):", "python")
    assert QUICK_START_URL in snippet
    exec(compile(snippet.replace(QUICK_START_URL, quick_start.url), "README.md", "exec"), {})
    # The read went through the cache: the item is cached now.
    assert 'dynamo_cache_cache_entries{cache="item"} 1' in quick_start.metrics()


def test_the_rust_snippet_runs_against_the_quick_start_proxy(quick_start):
    # tests/readme-snippet: the snippet in a program of its own, built by scripts/interop.sh
    # with the SDK's default features, as an application has them. It checks that its copy
    # is the README's.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(CREDS, AWS_DEFAULT_REGION=REGION, AWS_ENDPOINT_URL_DYNAMODB=quick_start.url)
    subprocess.run([os.environ["README_SNIPPET_BIN"]], env=env, check=True, timeout=120)
    # The read went through the cache: the item is cached now.
    assert 'dynamo_cache_cache_entries{cache="item"} 1' in quick_start.metrics()


def test_the_try_it_session_runs_against_the_quick_start_proxy(quick_start):
    script = block("### Try it", "sh")
    assert QUICK_START_URL in script and QUICK_START_ADMIN in script
    script = script.replace(QUICK_START_URL, quick_start.url)
    script = script.replace(QUICK_START_ADMIN, quick_start.admin_url)
    if shutil.which("curl") is None:
        script = "\n".join(l for l in script.splitlines() if not l.startswith("curl "))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # The second get-item was answered from memory.
    assert re.search(r"x-dynamo-cache.{0,6}hit", done.stdout, re.I), done.stdout[-2000:]
    assert '"S": "order-1"' in done.stdout


def test_the_dax_locally_snippet_runs_against_the_quick_start_proxy(monkeypatch):
    for name, value in CREDS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    command = block("### DAX locally", "sh")
    assert "serve --embedded --dax-listen 127.0.0.1:8111" in command
    proxy = Proxy(extra=["--dax-listen", "127.0.0.1:0"])
    try:
        snippet = block("### DAX locally", "python")
        assert QUICK_START_URL in snippet and "dax://127.0.0.1:8111" in snippet
        snippet = snippet.replace(QUICK_START_URL, proxy.url)
        snippet = snippet.replace("dax://127.0.0.1:8111", proxy.dax_url)
        exec(compile(snippet, "README.md", "exec"), {})
        metrics = proxy.metrics()
        assert 'op="GetItem",protocol="dax"' in metrics
    finally:
        proxy.stop()
