#!/usr/bin/env bash
# Starts the app under Xvfb with Qt's xcb platform (a real X window, not offscreen), logs in as
# each demo role and saves one PNG per view into docs/screenshots/; prints the fps measured.
# The first run trains the demo model (minutes on a CPU); later runs reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${INSPECTOR_VENV:-.venv}"
export QT_QPA_PLATFORM=xcb
export INSPECTOR_HOME="${INSPECTOR_HOME:-${TMPDIR:-/tmp}/inspector-screenshots-home}"
command -v xvfb-run >/dev/null || { echo "xvfb-run not found: run scripts/bootstrap.sh (Debian package xvfb)" >&2; exit 1; }
xvfb-run -a -s "-screen 0 1280x800x24" "$VENV/bin/python" scripts/screenshots.py --out docs/screenshots "$@"
