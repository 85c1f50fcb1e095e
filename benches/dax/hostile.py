#!/usr/bin/env python3
"""1,000 hostile DAX connections beside normal DAX and HTTP traffic, against the release binary
with --embedded on loopback: every normal request must be answered, and the proxy's resident
memory must stay bounded. The hostile connections, a quarter each, reconnecting whenever the
proxy closes them:
  - idle: the preamble, then nothing;
  - trickling: a request one byte a second;
  - half-sent: half a request, then nothing;
  - huge headers: a byte string claiming a gigabyte, then as much as the proxy reads of it.
Normal traffic: `dynamo-cache bench` over DAX (get, query, batch-get, put) and over HTTP (the
same mix), 4 connections each. Prints the bench's requests and errors and the proxy's peak
resident memory, with and without the hostile load, in one run.

    benches/dax/hostile.py [SECONDS]     (cargo build --release first; loopback only)
"""
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
BIN = os.path.join(ROOT, "target", "release", "dynamo-cache")
HTTP, ADMIN, DAX = "127.0.0.1:18310", "127.0.0.1:18311", "127.0.0.1:18312"
PREAMBLE = (b"\x67J7yne5G\x00\x41\x07\xa1\x69UserAgent\x65storm\x00")
# getItem of the bench table, key ("k0", 0).
GET = (b"\x01\x1a\x0f\xb0\xcc\x6a\x52dynamo-cache-bench\x44\x62k0\x80\xbf\x03\x00\xff")


def rss_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


async def hostile(kind, stop, opened):
    host, port = DAX.split(":")
    while time.monotonic() < stop:
        try:
            reader, writer = await asyncio.open_connection(host, int(port))
        except OSError:
            await asyncio.sleep(0.1)
            continue
        opened[kind] += 1
        try:
            writer.write(PREAMBLE)
            if kind == "half":
                writer.write(GET[: len(GET) // 2])
            elif kind == "huge":
                writer.write(b"\x01\x1a\x0f\xb0\xcc\x6a\x5a" + (1 << 30).to_bytes(4, "big"))
            await writer.drain()
            while time.monotonic() < stop:
                if kind == "trickle":
                    for byte in GET:
                        writer.write(bytes([byte]))
                        await writer.drain()
                        await asyncio.sleep(1)
                elif kind == "huge":
                    writer.write(b"\x00" * 65536)
                    await writer.drain()
                else:
                    data = await asyncio.wait_for(reader.read(4096), timeout=stop - time.monotonic())
                    if not data:
                        break
        except (OSError, asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()


def bench(endpoint, secs, out):
    return subprocess.Popen(
        [BIN, "bench", "--endpoint", endpoint, "--mix", "get=80,query=10,batch-get=5,put=5",
         "--keys", "1000", "--concurrency", "4", "--duration", str(secs), "--warmup", "1",
         "--quiet", "--json", out],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def report(path):
    e = json.load(open(path))["endpoints"][0]
    if e["errors"]:
        print(f"    errors of {path.rsplit('/', 1)[-1]}: {e.get('errors_by_kind')}")
    return e["requests"], e["errors"]


async def run(secs, with_hostile, scratch, pid):
    stop = time.monotonic() + secs + 2
    opened = {"idle": 0, "trickle": 0, "half": 0, "huge": 0}
    tasks = []
    if with_hostile:
        for kind in opened:
            tasks += [asyncio.create_task(hostile(kind, stop, opened)) for _ in range(250)]
        await asyncio.sleep(2)
    peak = 0
    dax_json, http_json = os.path.join(scratch, "dax.json"), os.path.join(scratch, "http.json")
    benches = [bench(f"dax://{DAX}", secs, dax_json), bench(f"http://{HTTP}", secs, http_json)]
    while any(b.poll() is None for b in benches):
        peak = max(peak, rss_kb(pid, "VmRSS:"))
        await asyncio.sleep(0.2)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return report(dax_json), report(http_json), peak, opened


def main():
    secs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    scratch = tempfile.mkdtemp()
    proxy = subprocess.Popen(
        [BIN, "serve", "--embedded", "--listen", HTTP, "--admin-listen", ADMIN,
         "--dax-listen", DAX, "--log-level", os.environ.get("HOSTILE_LOG", "error")],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(scratch, "serve.log"), "w"))
    print(f"proxy log: {scratch}/serve.log")
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://{ADMIN}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        subprocess.run([BIN, "bench", "--endpoint", f"http://{HTTP}", "--seed", "--keys", "1000",
                        "--requests", "10", "--warmup", "0", "--quiet"],
                       check=True, stdout=subprocess.DEVNULL)
        print(f"{secs} s of normal traffic each, 4 connections over DAX and 4 over HTTP")
        print(f"  {'':34} {'DAX requests':>13} {'errors':>7} {'HTTP requests':>14} {'errors':>7} {'peak RSS':>10}")
        for with_hostile in (False, True):
            (dax_n, dax_e), (http_n, http_e), peak, opened = asyncio.run(
                run(secs, with_hostile, scratch, proxy.pid))
            label = "with 1,000 hostile connections" if with_hostile else "alone"
            print(f"  {label:34} {dax_n:>13} {dax_e:>7} {http_n:>14} {http_e:>7} {peak / 1024:>8.0f} MB")
            if with_hostile:
                print("  hostile connections opened: " + ", ".join(f"{k} {v}" for k, v in opened.items()))
        print(f"  proxy peak RSS over the run (VmHWM): {rss_kb(proxy.pid, 'VmHWM:') / 1024:.0f} MB")
    finally:
        proxy.terminate()
        proxy.wait(timeout=30)


if __name__ == "__main__":
    main()
