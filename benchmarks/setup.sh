#!/usr/bin/env bash
# Idempotent: the system tools (wrk, nginx, hyperfine) and a virtualenv OUTSIDE the repo
# with the peers. webhooklite itself is not installed there: bench.py puts the repo on PYTHONPATH.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${BENCH_VENV:-/work/bench-venv}"
python="${PYTHON:-python3}"

need=()
for tool in wrk nginx hyperfine taskset redis-server; do
  command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
if [ "${#need[@]}" -gt 0 ]; then
  pkgs=(wrk nginx hyperfine redis-server)  # redis-server: the broker of bench_outbox.py's Celery
  command -v taskset >/dev/null 2>&1 || pkgs+=(util-linux)
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${pkgs[@]}"
fi

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
stamp="$venv/.requirements.sha256"
sum="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sum" ]; then
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -r "$here/requirements.txt"
  echo "$sum" > "$stamp"
fi
echo "bench venv: $venv ($("$venv/bin/python" --version 2>&1)); tools: $(command -v wrk nginx hyperfine | tr '\n' ' ')"
