#!/usr/bin/env bash
# Run the whole django_jobs test suite on a fresh machine (see README.md).
# Extra arguments go to pytest, e.g. `bash tests/run.sh tests/integration -x`;
# `bash tests/run.sh --lint` runs only the static checks (tests/lint.sh).
# Without arguments: the static checks, the tests marked 'db' on PostgreSQL (when one listens),
# the full suite on Python 3.13 + the newest Django (.venv), then the fast tier on every other
# supported Python x Django combination (tests/matrix.sh; DJJ_MATRIX=0 skips it).
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
matrix_status=0
if [ "${DJJ_MATRIX:-1}" != "0" ]; then
  # Before the full suite, so that the last lines are the full suite's summary.
  bash tests/matrix.sh || matrix_status=$?
fi
echo "==> full suite (SQLite), $("$PY" -c 'import django, sys; print(f"Python {sys.version.split()[0]}, Django {django.get_version()}")')"
suite_status=0
"$PY" -m pytest -q tests || suite_status=$?
if [ "$matrix_status" -ne 0 ]; then
  echo "==> the fast tier failed on another Python x Django combination (see '==> fast tier' above)" >&2
  exit 1
fi
exit "$suite_status"
