#!/usr/bin/env bash
# The fast tier on every supported Python x Django combination but the one the full suite runs
# on (Python 3.13 + the newest Django, in .venv): each combination in its own virtualenv under
# .venv-matrix/ (pip's cache makes re-runs fast), running FAST_TESTS below.
# The virtualenvs are built side by side first (pip waits on the disk and the index as much as on
# the CPU); then each combination's fast tier runs in turn (`-n 2`: pytest-xdist, as in tests/run.sh).
# `bash tests/matrix.sh py312-django52` runs one combination; extra arguments after `--` go to pytest.
# DJJ_APT=0 (tests/run.sh sets it when it builds .venv at the same time) leaves apt-get to .venv's bootstrap.
set -euo pipefail
cd "$(dirname "$0")/.."

ALL="py312-django52 py313-django52 py312-django60 py313-django60 py312-django61"
# Pure-Python tests, the django.tasks backend contract, the job API, the testing modes, correlation
# ids through the middleware, the embedded Redis and the sample app's own test suites: what a
# Django or Python version changes, in about a minute.
FAST_TESTS=(
  tests/unit
  tests/integration/test_backend.py
  tests/integration/test_jobs.py
  tests/integration/test_testing_modes.py
  tests/integration/test_correlation.py
  tests/integration/test_embedded.py
  tests/sampleapp
)

# What the fast tier needs besides the project (the `test` extra without the browser, PostgreSQL,
# metrics and packaging tools, which the full suite covers): keeps each virtualenv quick to build.
FAST_REQUIREMENTS="pytest>=8 pytest-django>=4.9 pytest-timeout>=2.3 pytest-xdist>=3.5 hypothesis>=6"
# Django-independent tests that need those tools (the docs site, the wheel, the import layers): the full suite runs them.
FAST_SKIP=(--ignore=tests/unit/test_docs_site.py --ignore=tests/unit/test_packaging.py --ignore=tests/unit/test_layers.py)

combos=()
pytest_args=()
while [ "$#" -gt 0 ]; do
  if [ "$1" = "--" ]; then shift; pytest_args=("$@"); break; fi
  combos+=("$1"); shift
done
[ "${#combos[@]}" -gt 0 ] || read -r -a combos <<<"$ALL"

combo_settings() {  # sets python, extras and django for combination $1
  python="python3.${1:3:2}"
  case "${1#*-}" in
    django52) extras="django52"; django="django>=5.2,<6.0" ;;
    django60) extras=""; django="django>=6.0,<6.1" ;;
    django61) extras=""; django="django>=6.1,<6.2" ;;
    *) echo "unknown combination $1 (want pyXY-djangoNN, e.g. py312-django52)" >&2; exit 2 ;;
  esac
}
for combo in "${combos[@]}"; do combo_settings "$combo"; done  # unknown names fail before any work

# Build (or update) every combination's virtualenv at the same time, each one's output in a log.
mkdir -p .venv-matrix
pids=()
for combo in "${combos[@]}"; do
  combo_settings "$combo"
  (
    set -e
    export DJJ_VENV=".venv-matrix/$combo" DJJ_PYTHON="$python" DJJ_EXTRAS="$extras" DJJ_PIP="$django $FAST_REQUIREMENTS"
    source tests/bootstrap.sh
  ) >".venv-matrix/$combo.build.log" 2>&1 &
  pids+=("$!")
done
failed=()
for i in "${!combos[@]}"; do
  combo="${combos[$i]}"
  if ! wait "${pids[$i]}"; then
    echo "==> $combo: building .venv-matrix/$combo FAILED:" >&2
    cat ".venv-matrix/$combo.build.log" >&2
    failed+=("$combo")
  fi
done

for combo in "${combos[@]}"; do
  [[ " ${failed[*]} " != *" $combo "* ]] || continue
  echo "==> $combo: fast tier"
  PY=".venv-matrix/$combo/bin/python"
  "$PY" -c 'import django, sys; print(f"    Python {sys.version.split()[0]}, Django {django.get_version()}")'
  # -n 2: the Redis-bound tests wait more than they compute (tests/conftest.py: a module per worker).
  "$PY" -m pytest -q -p no:randomly -n "${DJJ_MATRIX_WORKERS:-2}" --dist loadgroup "${FAST_SKIP[@]}" "${FAST_TESTS[@]}" ${pytest_args[@]+"${pytest_args[@]}"} \
    || failed+=("$combo")
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "==> fast tier FAILED on: ${failed[*]}" >&2
  exit 1
fi
echo "==> fast tier passed on: ${combos[*]}"
