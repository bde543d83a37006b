#!/usr/bin/env bash
# README command 1: set up the environment and run the bundled default.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/setup_env.sh
echo "environment ready in $(( $(date +%s) - start )) s"
exec .venv/bin/python -m issegm.benchmark "$@"
