#!/usr/bin/env bash
# Install clusterd into .venv and run the API with its embedded worker (no MongoDB, Redis or S3 needed).
# Extra arguments go to `clusterd serve` (e.g. --port 9000).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
exec .venv/bin/clusterd serve "$@"
