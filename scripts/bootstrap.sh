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
           fonts-dejavu-core fonts-wqy-zenhei fonts-symbola poppler-utils \
           postgresql; do  # audit PDF fonts + pdftoppm; postgresql: the audit tests start a throwaway server (loopback only)
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
TORCH_CHECK="import torch, torchvision; assert torch.__version__.startswith('2.14.1'), torch.__version__"
if ! "$PY" -c "$TORCH_CHECK" 2>/dev/null; then
    # torch 2.14.1 is a CUDA build with its libraries: 6.8 GB once installed. Every clone of the
    # project (CI's fresh clone, each worktree) used to install its own copy, and a machine with a
    # few clones ran out of disk in the middle of pip. So torch lives once per machine and Python,
    # in a base environment under the user's cache, and each project venv points at it with a .pth
    # file. INSPECTOR_TORCH_ENV moves it; INSPECTOR_TORCH_ENV=none installs into the venv as before.
    TORCH_ENV="${INSPECTOR_TORCH_ENV:-${XDG_CACHE_HOME:-$HOME/.cache}/inspector/torch-2.14.1-$("$PY" -c 'import sys; print(f"py{sys.version_info[0]}{sys.version_info[1]}")')}"
    if [ "$TORCH_ENV" = none ]; then
        TORCH_TARGET="$VENV"
    else
        TORCH_TARGET="$TORCH_ENV"
        mkdir -p "$(dirname "$TORCH_ENV")"
        exec 9>"$TORCH_ENV.lock"
        flock 9  # two clones setting up at once must not both install into the base
    fi
    if ! "$TORCH_TARGET/bin/python" -c "$TORCH_CHECK" 2>/dev/null; then
        need_kb=$((8 * 1024 * 1024))
        probe="$TORCH_TARGET"; [ -e "$probe" ] || probe="$(dirname "$probe")"
        free_kb=$(df -Pk "$probe" | awk 'NR==2 {print $4}')
        if [ "$free_kb" -lt "$need_kb" ]; then
            echo "[setup] error: torch 2.14.1 needs about 8 GB free at $probe, only $((free_kb / 1024)) MB free." >&2
            echo "[setup] Free some disk, or set INSPECTOR_TORCH_ENV to a folder on a larger disk." >&2
            exit 1
        fi
        if [ "$TORCH_TARGET" != "$VENV" ]; then
            rm -rf "$TORCH_ENV"  # a half-finished install (a full disk, a killed run) is not reused
            python3 -m venv "$TORCH_ENV"
        fi
        echo "[setup] installing torch 2.14.1 / torchvision 0.29.1 into $TORCH_TARGET (about 7 GB, once)"
        "$TORCH_TARGET/bin/pip" install -q --no-cache-dir torch==2.14.1 torchvision==0.29.1
    fi
    if [ "$TORCH_TARGET" != "$VENV" ]; then
        site="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
        base_site="$("$TORCH_ENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
        echo "$base_site" > "$site/inspector-torch-base.pth"
        echo "[setup] $VENV uses torch from $TORCH_ENV"
        exec 9>&-
    fi
    "$PY" -c "$TORCH_CHECK"
fi
stamp="$VENV/.inspector-installed-$EXTRAS"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "[setup] installing inspector[$EXTRAS]"
    "$VENV/bin/pip" install -q -e ".[$EXTRAS]"
    touch "$stamp"
fi
