#!/usr/bin/env bash
# One command: set up (idempotent) and run every benchmark; extra arguments go to bench.py.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bash "$here/setup.sh"
exec "${BENCH_VENV:-/work/bench-venv}/bin/python" "$here/bench.py" "$@"
