#!/usr/bin/env bash
# Run the whole benchmark suite and write bench/RESULTS.md (pass --quick for a smoke test).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python bench/run.py "$@"
