#!/usr/bin/env bash
# Installs whatever is missing, idempotently: Debian packages for Qt under a virtual display,
# a project virtual environment, torch from the local wheel cache, and the project with extras.
# Why a script and not only pip: CI runs on a clean clone, so every step must live in the repo.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${INSPECTOR_VENV:-.venv}"
EXTRAS="${1:-test}"

need_apt=()
for pkg in xvfb xauth libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxkbcommon-x11-0 libxcb-image0 \
           libxcb-render-util0 libxcb-shape0 libxcb-xkb1 libegl1 libgl1 libfontconfig1 libdbus-1-3 \
           poppler-utils; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        echo "[setup] installing Debian packages: ${need_apt[*]}"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
    else
        echo "[setup] warning: missing Debian packages (${need_apt[*]}); Qt tests use the offscreen platform"
    fi
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating virtual environment $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
fi
PY="$VENV/bin/python"
if ! "$PY" -c "import torch, torchvision; assert torch.__version__.startswith('2.14.1')" 2>/dev/null; then
    echo "[setup] installing torch 2.14.1 / torchvision 0.29.1"
    "$VENV/bin/pip" install -q torch==2.14.1 torchvision==0.29.1
fi
stamp="$VENV/.inspector-installed-$EXTRAS"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "[setup] installing inspector[$EXTRAS]"
    "$VENV/bin/pip" install -q -e ".[$EXTRAS]"
    touch "$stamp"
fi
