#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install davs with its pinned deps.
# Versions are pinned by requirements.lock (constraints). Re-installs only when pyproject.toml or the lock changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  echo "[install] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=.venv/.davs-installed
want=$(cat pyproject.toml requirements.lock | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[install] installing davs and its dependencies into .venv (a few minutes the first time)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -c requirements.lock -e '.[dev]'
  echo "$want" > "$stamp"
else
  echo "[install] .venv is up to date"
fi
