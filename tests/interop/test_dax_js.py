"""The JavaScript DAX client (@amazon-dax-sdk/client-dax, pinned in tests/interop/js) through
the binary's DAX listener, moto behind it: tests/interop/js/dax-client.mjs checks every answer,
against the AWS SDK for JavaScript over the HTTP listener too."""

import pathlib
import shutil
import subprocess

import pytest

from conftest import Moto, Proxy

JS = pathlib.Path(__file__).resolve().parent / "js"


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_the_javascript_dax_client():
    assert (JS / "node_modules" / "@amazon-dax-sdk" / "client-dax").is_dir(), \
        "scripts/interop.sh installs the JavaScript client (npm ci in tests/interop/js)"
    moto = Moto()
    proxy = Proxy(moto.url, extra=["--dax-listen", "127.0.0.1:0"])
    try:
        done = subprocess.run(["node", str(JS / "dax-client.mjs"), proxy.url, proxy.dax_url],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.strip().endswith("ok")
        assert 'protocol="dax"' in proxy.metrics()
    finally:
        proxy.stop()
        moto.stop()
