#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv and install
# CBST-MX into it in editable mode, with the test tools. Idempotent: a second
# run only checks that everything is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.cbst-installed
if [ ! -f "$stamp" ] || [ setup.py -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e ".[test]"
  bash scripts/headless_cv2.sh .venv/bin/python
  .venv/bin/python -m pip check
  touch "$stamp"
fi
