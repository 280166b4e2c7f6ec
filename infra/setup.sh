#!/usr/bin/env bash
# Create .venv and install miniplm with its test tools. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
if ! python -c "import torch" 2>/dev/null; then
    # The CPU build (2.13.0) installs from local disk on the project's machines; CUDA machines may pick their own.
    pip install --quiet --disable-pip-version-check "torch==2.13.0" || pip install --quiet "torch>=2.4,<2.14"
fi
if ! python -c "import miniplm, prefect, pytest" 2>/dev/null || [ pyproject.toml -nt .venv/.miniplm-installed ]; then
    pip install --quiet --disable-pip-version-check -e ".[dev]"
    touch .venv/.miniplm-installed
fi
