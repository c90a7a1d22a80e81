#!/usr/bin/env bash
# Starts the app under Xvfb with Qt's xcb platform (a real X window, not offscreen), logs in as
# each demo role and saves one PNG per view into docs/screenshots/; prints the fps measured.
# Each run starts from a fresh demo home (its own model and audit store, removed afterwards), so
# the auditor's view shows this run's records only; pass INSPECTOR_HOME to keep or reuse one.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${INSPECTOR_VENV:-.venv}"
export QT_QPA_PLATFORM=xcb
if [ -z "${INSPECTOR_HOME:-}" ]; then
    INSPECTOR_HOME="$(mktemp -d "${TMPDIR:-/tmp}/inspector-screenshots-XXXXXX")"
    trap 'rm -rf "$INSPECTOR_HOME"' EXIT
fi
export INSPECTOR_HOME
command -v xvfb-run >/dev/null || { echo "xvfb-run not found: run scripts/bootstrap.sh (Debian package xvfb)" >&2; exit 1; }
xvfb-run -a -s "-screen 0 1280x800x24" "$VENV/bin/python" scripts/screenshots.py --out docs/screenshots "$@"
