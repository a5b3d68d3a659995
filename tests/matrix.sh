#!/usr/bin/env bash
# The fast tier on every supported Python x Django combination but the one the full suite runs
# on (Python 3.13 + the newest Django, in .venv): each combination in its own virtualenv under
# .venv-matrix/ (pip's cache makes re-runs fast), running FAST_TESTS below.
# The combinations run side by side, each building its virtualenv, then running its fast tier (below).
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
FAST_REQUIREMENTS="pytest>=8,<9.2 pytest-django>=4.9 pytest-timeout>=2.3 pytest-xdist>=3.5 hypothesis>=6"
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

# Every combination at the same time, each one building (or updating) its virtualenv and then
# running its fast tier at once, its output in .venv-matrix/COMBO.log (printed below, in order).
# Side by side, not one after the other: under tests/run.sh this stage runs niced next to the full
# suite and gets the CPU the others leave; a fast tier waits (Redis, timeouts, a cluster's start)
# more than it computes, and one combination's waits are the others' CPU time. Run one after the
# other, the first combinations met the full suite's busiest minutes and took 3-4 times as long as
# the last ones (204 s and 141 s for Django 5.2 against 44-64 s: the order, not Django 5.2).
# Workers: DJJ_MATRIX_WORKERS pytest-xdist processes per combination; by default none (one process)
# when several combinations run side by side (fewer Python start-ups and Redis groups), 2 for one.
workers="${DJJ_MATRIX_WORKERS:-$([ "${#combos[@]}" -gt 1 ] && echo 0 || echo 2)}"
mkdir -p .venv-matrix
run_combo() {  # build combination $1's virtualenv, then run its fast tier; the exit status is the run's
  local combo=$1 start=$SECONDS built PY rc python extras django basetemp
  combo_settings "$combo"
  if ! (
    set -e
    export DJJ_VENV=".venv-matrix/$combo" DJJ_PYTHON="$python" DJJ_EXTRAS="$extras" DJJ_PIP="$django $FAST_REQUIREMENTS"
    source tests/bootstrap.sh
  ) >".venv-matrix/$combo.build.log" 2>&1; then
    echo "==> $combo: building .venv-matrix/$combo FAILED:"
    cat ".venv-matrix/$combo.build.log"
    return 1
  fi
  built=$((SECONDS - start))
  echo "==> $combo: fast tier (load average at its start: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?'))"
  PY=".venv-matrix/$combo/bin/python"
  "$PY" -c 'import django, sys; print(f"    Python {sys.version.split()[0]}, Django {django.get_version()}")'
  rc=0
  # Each pytest session its own temporary directory (--basetemp): sessions side by side (the other
  # combinations, tests/run.sh's other stages) sharing /tmp/pytest-of-$USER delete each other's
  # numbered directories at their ends, and a directory removed while another session writes into
  # it fails that session after its last test ("(rm_rf) error removing ..."). A short path: the
  # embedded server's unix socket lives in a test's tmp_path (at most 100 bytes: engine/embedded.py).
  # Kept when the run fails.
  basetemp=$(mktemp -d "${TMPDIR:-/tmp}/djt-XXXXXX")
  "$PY" -m pytest -q -p no:randomly -n "$workers" --dist loadgroup --basetemp "$basetemp" "${FAST_SKIP[@]}" "${FAST_TESTS[@]}" ${pytest_args[@]+"${pytest_args[@]}"} || rc=$?
  [ "$rc" != 0 ] || rm -rf "$basetemp" 2>/dev/null || true
  echo "==> $combo: virtualenv ready in ${built} s, fast tier in $((SECONDS - start - built)) s"
  return "$rc"
}
pids=()
for combo in "${combos[@]}"; do
  run_combo "$combo" >".venv-matrix/$combo.log" 2>&1 &
  pids+=("$!")
done
failed=()
for i in "${!combos[@]}"; do
  combo="${combos[$i]}"
  wait "${pids[$i]}" || failed+=("$combo")
  cat ".venv-matrix/$combo.log"
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "==> fast tier FAILED on: ${failed[*]}" >&2
  exit 1
fi
echo "==> fast tier passed on: ${combos[*]}"
