#!/usr/bin/env bash
# The interop suite: boto3 (which checks x-amz-crc32), the AWS CLI, the DAX clients for Python
# and JavaScript, and the README's Rust snippet (the Rust SDK with its default features) through
# the real dynamo-cache binary, against moto as an independent upstream or the embedded emulator.
#
# Creates a project-local virtualenv (.venv) with the pinned packages of
# scripts/interop-requirements.txt on first use; later runs reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/interop-requirements.txt

# The JavaScript DAX client, pinned by tests/interop/js/package-lock.json, where Node.js is.
if command -v npm >/dev/null; then
    npm ci --silent --no-audit --no-fund --prefix tests/interop/js
fi

cargo build --quiet --bin dynamo-cache
export DYNAMO_CACHE_BIN="$PWD/target/debug/dynamo-cache"
# The README's Rust snippet, built as an application would build it (tests/readme-snippet).
CARGO_TARGET_DIR="$PWD/target/readme-snippet" cargo build --quiet --locked \
    --manifest-path tests/readme-snippet/Cargo.toml
export README_SNIPPET_BIN="$PWD/target/readme-snippet/debug/readme-snippet"
# The suite runs the AWS CLI from the virtualenv, not any other on the machine.
export PATH="$PWD/$venv/bin:$PATH"
# Keep the suite hermetic: no endpoint or profile from the caller's environment.
unset AWS_ENDPOINT_URL AWS_ENDPOINT_URL_DYNAMODB AWS_PROFILE
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/interop "$@"
