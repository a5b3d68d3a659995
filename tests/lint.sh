#!/usr/bin/env bash
# The static checks, each failing CI when it fails: import layers and cycles (lint-imports, the
# contracts in pyproject.toml), mypy --strict on django_jobs (django-stubs), ruff on the code and
# the tests. Re-run them alone with `bash tests/lint.sh` (or `bash tests/run.sh --lint`).
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
BIN="$(dirname "$PY")"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
failed=()
echo "==> lint-imports (layers, no cycles)"
"$BIN/lint-imports" --no-cache || failed+=("lint-imports")
echo "==> mypy --strict django_jobs"
"$PY" -m mypy --strict django_jobs || failed+=("mypy")
echo "==> ruff check django_jobs tests"
"$PY" -m ruff check django_jobs tests || failed+=("ruff")
if [ "${#failed[@]}" -gt 0 ]; then
  echo "==> static checks FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "==> static checks passed"
