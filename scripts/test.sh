#!/usr/bin/env bash
# Install clusterd with its dev extras into .venv, make sure Redis answers on 127.0.0.1:6379,
# then lint and run the whole suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'

redis_up() { .venv/bin/python -c "import redis,sys; sys.exit(0 if redis.Redis(socket_timeout=2).ping() else 1)" 2>/dev/null; }
if ! redis_up; then
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "redis-server not found; installing it" >&2
    (apt-get update -qq && apt-get install -y -qq redis-server) >/dev/null
  fi
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 1 50); do redis_up && break; sleep 0.1; done
  redis_up || { echo "Redis did not start on 127.0.0.1:6379" >&2; exit 1; }
fi

# tests/e2e/test_dashboard.py drives the dashboard in the system Chromium (CLUSTERD_CHROMIUM overrides)
if [ -z "${CLUSTERD_CHROMIUM:-}" ] && [ ! -x /usr/bin/chromium ]; then
  echo "chromium not found; installing it" >&2
  (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null
fi

.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/pytest "$@"
