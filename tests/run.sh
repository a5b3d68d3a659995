#!/usr/bin/env bash
# Run the whole django_jobs test suite on a fresh machine (see README.md).
# Extra arguments go to pytest, e.g. `bash tests/run.sh tests/integration -x`;
# `bash tests/run.sh --lint` runs only the static checks (tests/lint.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/bootstrap.sh

if [ "${1:-}" = "--lint" ]; then
  PY="$PY" exec bash tests/lint.sh
fi
if [ "$#" -gt 0 ]; then
  exec "$PY" -m pytest "$@"
fi

# Static checks first: lint-imports, mypy --strict, ruff (any failure fails the run).
PY="$PY" bash tests/lint.sh

# The DB-writing tests run on PostgreSQL too when a server is reachable.
if "$PY" - <<'PYEOF' 2>/dev/null
import psycopg
psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", connect_timeout=3).close()
PYEOF
then
  echo "==> PostgreSQL tier: tests marked 'db'"
  DJJ_TEST_DB=postgres "$PY" -m pytest -q -m db -p no:randomly tests
else
  echo "==> PostgreSQL not reachable on 127.0.0.1:5432: the 'db' tests run on SQLite only"
fi
echo "==> full suite (SQLite)"
exec "$PY" -m pytest -q tests
