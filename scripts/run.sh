#!/usr/bin/env bash
# Install clusterd into .venv and run the API with its embedded worker (no MongoDB, Redis or S3 needed).
# Extra arguments go to `clusterd serve` (e.g. --port 9000).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
# glibc's malloc on transparent huge pages: a bulk upload's documents fault in 2 MB at a time, not
# 4 KB (+15-25% docs/s in scripts/bench.py --only ingest/binary); docs/operations.md
export GLIBC_TUNABLES=${GLIBC_TUNABLES:-glibc.malloc.hugetlb=1}
exec .venv/bin/clusterd serve "$@"
