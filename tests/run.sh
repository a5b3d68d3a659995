#!/usr/bin/env bash
# Run the whole django_jobs test suite on a fresh machine (see README.md).
# Extra arguments go to pytest, e.g. `bash tests/run.sh tests/integration -x`;
# `bash tests/run.sh --lint` runs only the static checks (tests/lint.sh).
# Without arguments, four stages, side by side (each stage's output is kept and printed at the end,
# in this order, with its time; any failing stage fails the run):
#   - the static checks (tests/lint.sh);
#   - the tests marked 'db' on PostgreSQL (when one listens on 127.0.0.1:5432);
#   - the fast tier on every other supported Python x Django combination (tests/matrix.sh, which
#     builds its virtualenvs while .venv is built; DJJ_MATRIX=0 skips it);
#   - the full suite on Python 3.13 + the newest Django (.venv), last, so that the run's last lines
#     are its summary.
# The pytest runs use pytest-xdist: DJJ_WORKERS (default 4) processes for the full suite, 2 for the
# PostgreSQL tier (a module runs on one worker, the slowest modules first: tests/conftest.py);
# DJJ_WORKERS=0 runs them in one process. The matrix's combinations run side by side, one process each.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$#" -gt 0 ]; then
  source tests/bootstrap.sh
  if [ "$1" = "--lint" ]; then
    PY="$PY" exec bash tests/lint.sh
  fi
  exec "$PY" -m pytest "$@"
fi

LOGS=$(mktemp -d "${TMPDIR:-/tmp}/djj-run-XXXXXX")
# Each pytest session below has a temporary directory of its own (--basetemp): sessions side by
# side sharing /tmp/pytest-of-$USER delete each other's numbered directories at their ends, and
# one removed while its session still wrote into it failed that session after its last test
# ("(rm_rf) error removing ...": pytest's warning, an error under filterwarnings = error). A short
# path: the embedded server's unix socket lives in a test's tmp_path (at most 100 bytes).
basetemp() { local d; d=$(mktemp -d "${TMPDIR:-/tmp}/djt-XXXXXX") && echo "$d" >>"$LOGS/basetemps" && echo "$d"; }
trap '{ [ ! -f "$LOGS/basetemps" ] || xargs rm -rf <"$LOGS/basetemps"; rm -rf "$LOGS"; } 2>/dev/null || true' EXIT
STAGES=()
TITLES=()
stage() {  # stage ID TITLE COMMAND...: run COMMAND in the background, its output and status in $LOGS
  local id=$1 title=$2; shift 2
  STAGES+=("$id")
  TITLES+=("$title")
  (
    start=$SECONDS
    set +e
    "$@" >"$LOGS/$id.log" 2>&1
    rc=$?
    cpu
    echo "$rc $((SECONDS - start)) $CPU_TIME" >"$LOGS/$id.status"
  ) &
}
elapsed() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }
cpu() {  # CPU_TIME: the CPU time (user + system) of this shell's finished children, e.g. 3m12s
  local user sys
  times >"$LOGS/times.$BASHPID"  # in this shell: $(times) would report a subshell's children
  { read -r _; read -r user sys; } <"$LOGS/times.$BASHPID"
  CPU_TIME=$(echo "$user $sys" | awk '{ t = 0; for (i = 1; i <= NF; i++) { split($i, p, /[ms]/); t += p[1] * 60 + p[2] }; printf "%dm%02ds", t / 60, t % 60 }')
}
run_start=$SECONDS

# The matrix builds its own virtualenvs: it starts now, while .venv is built (apt-get, if a system
# package is missing, stays with .venv's bootstrap below).
if [ "${DJJ_MATRIX:-1}" != "0" ]; then
  # niced: the full suite, the longest stage, comes first on the 2 cores they share.
  # Its combinations run side by side, one pytest process each (tests/matrix.sh; DJJ_MATRIX_WORKERS=N for more).
  stage matrix "fast tier (tests/matrix.sh)" nice -n 10 env DJJ_APT=0 \
    DJJ_MATRIX_WORKERS="${DJJ_MATRIX_WORKERS:-0}" bash tests/matrix.sh
fi

source tests/bootstrap.sh
echo "==> .venv ready after $(elapsed $((SECONDS - run_start)))"

stage lint "static checks (tests/lint.sh)" env PY="$PY" bash tests/lint.sh

WORKERS="${DJJ_WORKERS:-4}"
xdist() {  # the pytest-xdist arguments for $1 workers (none for 0)
  if [ "$1" != "0" ]; then echo "-n $1 --dist loadgroup"; fi
}
# The DB-writing tests run on PostgreSQL too when a server is reachable.
if "$PY" - <<'PYEOF' 2>/dev/null
import psycopg
psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", connect_timeout=3).close()
PYEOF
then
  # shellcheck disable=SC2046
  stage postgres "PostgreSQL tier: tests marked 'db'" env DJJ_TEST_DB=postgres \
    "$PY" -m pytest -q -m db -p no:randomly --basetemp "$(basetemp)" $(xdist "$([ "$WORKERS" = 0 ] && echo 0 || echo 2)") tests
else
  echo "==> PostgreSQL not reachable on 127.0.0.1:5432: the 'db' tests run on SQLite only"
fi

suite="full suite (SQLite), $("$PY" -c 'import django, sys; print(f"Python {sys.version.split()[0]}, Django {django.get_version()}")')"
echo "==> running side by side: ${STAGES[*]} and the $suite"
suite_start=$SECONDS
# shellcheck disable=SC2046
read -r suite_status suite_cpu < <(
  set +e
  "$PY" -m pytest -q --durations=20 --basetemp "$(basetemp)" $(xdist "$WORKERS") tests >"$LOGS/suite.log" 2>&1
  rc=$?
  cpu
  echo "$rc $CPU_TIME"
)
suite_time=$((SECONDS - suite_start))
wait

failed=()
for i in "${!STAGES[@]}"; do
  id="${STAGES[$i]}" title="${TITLES[$i]}"
  status=1 seconds=0 cpu_time="?"
  [ ! -s "$LOGS/$id.status" ] || read -r status seconds cpu_time <"$LOGS/$id.status"
  echo "==> $title: $([ "$status" = 0 ] && echo passed || echo "FAILED (exit $status)") in $(elapsed "$seconds") (CPU $cpu_time)"
  cat "$LOGS/$id.log"
  [ "$status" = 0 ] || failed+=("$title")
done
echo "==> $suite: $([ "$suite_status" = 0 ] && echo passed || echo "FAILED (exit $suite_status)") in $(elapsed "$suite_time") (CPU $suite_cpu; whole run: $(elapsed $((SECONDS - run_start))))"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "==> FAILED besides the full suite: ${failed[*]} (see above)"
fi
cat "$LOGS/suite.log"
if [ "${#failed[@]}" -gt 0 ]; then
  exit 1
fi
exit "$suite_status"
