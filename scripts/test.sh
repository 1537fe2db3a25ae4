#!/usr/bin/env bash
# Install, then run the test suite (CPU, a few minutes). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export PATH="$PWD/.venv/bin:$PATH"
python -m pytest -q "$@"
