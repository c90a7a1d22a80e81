#!/usr/bin/env bash
# The README's test command runs this after set-up: architecture contracts, lint, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${INSPECTOR_VENV:-.venv}"
export QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}"
export PYTHONDONTWRITEBYTECODE=1
echo "== import contracts (ui -> inspector -> models, no Qt below ui)"
"$VENV/bin/lint-imports"
echo "== ruff"
"$VENV/bin/ruff" check models inspector ui tests scripts
echo "== pytest"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider --durations=15 "$@"
