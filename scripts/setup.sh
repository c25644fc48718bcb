#!/usr/bin/env bash
# One-command set-up: a virtual environment in .venv with lenet2vit and its test tools.
# Browser tests (report and web page) also use Debian's Chromium; it is installed when this
# runs as root on a Debian/Ubuntu machine, and those tests skip with a reason without it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev]"
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
    || echo "note: could not install chromium; browser tests will be skipped"
fi
echo "ready: activate with 'source .venv/bin/activate' or call .venv/bin/lenet2vit"
