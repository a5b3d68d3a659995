#!/bin/sh
# Make docs/admin.md's pictures (docs/img/admin-*.png) again: the browser tests of the operator
# questions on their seeded site (tests/browser/test_admin_operator.py, ~3,000 jobs) save the
# window of each page (about 50-120 KB each); with ImageMagick they are cut to 64 colours.
set -e
cd "$(dirname "$0")/../.."
out=tests/artifacts/docs
rm -rf "$out"
DJJ_DOCS_IMG="$out" PYTHONPATH="$PWD" "${PY:-.venv/bin/python}" -m pytest -q -p no:randomly tests/browser/test_admin_operator.py
for shot in "$out"/admin-*.png; do
    if convert -version 2>/dev/null | grep -q ImageMagick; then
        convert "$shot" -strip -colors 64 "PNG8:docs/img/$(basename "$shot")"
    else
        cp "$shot" docs/img/
    fi
done
ls -l docs/img/admin-*.png
