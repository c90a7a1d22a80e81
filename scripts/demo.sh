#!/usr/bin/env bash
# The README's main job: the station app on the embedded demo (synthetic data, no download).
# With no display (a server, CI), it runs the headless demo instead and says how to see the app.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${INSPECTOR_VENV:-.venv}"
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && [ -z "${INSPECTOR_HEADLESS:-}" ]; then
    exec "$VENV/bin/inspector" gui --demo
fi
echo "[demo] no display: running the headless demo (train + evaluate on synthetic data)."
echo "[demo] to open the app on a virtual display: xvfb-run -a $VENV/bin/inspector gui --demo"
exec "$VENV/bin/inspector" demo
