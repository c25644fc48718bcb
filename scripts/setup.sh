#!/usr/bin/env bash
# One-command set-up: a virtual environment in .venv with lenet2vit and its test tools.
# Browser tests (report and web page) also use Debian's Chromium and its driver; they are
# installed when this runs as root on a Debian/Ubuntu machine, and those tests skip with a
# reason without them. Whatever cannot be done (not root, no apt-get) is printed, not hidden.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
as_root() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }

if [ ! -x .venv/bin/python ]; then
  if ! "$PY" -m venv .venv 2>/dev/null; then
    rm -rf .venv
    # Debian and Ubuntu ship the venv module separately (python3-venv / python3.X-venv).
    ver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    if as_root; then
      echo "note: $PY has no venv module; installing python3-venv and python$ver-venv"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null 2>&1 || true
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python$ver-venv" >/dev/null 2>&1 || true
      "$PY" -m venv .venv
    else
      echo "error: $PY cannot create a virtual environment (no venv module). Install it first:" >&2
      echo "       sudo apt-get install python3-venv python$ver-venv   (Debian/Ubuntu), then rerun $0" >&2
      exit 1
    fi
  fi
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev]"

have_browser() { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }
if ! have_browser; then
  if as_root; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
      || echo "note: could not install chromium and chromium-driver; browser tests will be skipped"
  else
    echo "note: skipped installing chromium and chromium-driver (needs root and apt-get); browser tests will be skipped"
  fi
fi
echo "ready: activate with 'source .venv/bin/activate' or call .venv/bin/lenet2vit"
