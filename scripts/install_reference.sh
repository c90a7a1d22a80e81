#!/usr/bin/env bash
# Installs anomalib (the reference for `inspector bench`) into the project's virtual environment.
#
# Idempotent: does nothing when the pinned version is already there. Checked with
# `pip install --dry-run anomalib` first: it pulls lightning, kornia, torchmetrics, FrEIA and
# friends, keeps torch 2.14.1 / torchvision 0.29.1, and uses opencv-python-headless (already a
# dependency) rather than opencv-python, which would break PySide6. The script refuses to go on if
# a resolver ever plans either change.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
SPEC="anomalib==2.7.0"

if "$PY" -c "import importlib.metadata as m, sys; sys.exit(m.version('anomalib') != '2.7.0')" 2>/dev/null; then
    echo "anomalib 2.7.0 already installed"
    exit 0
fi

plan="$("$PY" -m pip install --dry-run "$SPEC" 2>&1 | grep '^Would install' || true)"
echo "${plan:-nothing to install}"
if grep -Eq '(^| )(opencv-python-[0-9]|torch-[0-9]|torchvision-[0-9])' <<<"$plan"; then
    echo "refusing: installing $SPEC would add opencv-python or change torch/torchvision" >&2
    exit 1
fi
"$PY" -m pip install "$SPEC"
"$PY" -c "import anomalib.models.image.patchcore.torch_model; print('anomalib reference ready')"
