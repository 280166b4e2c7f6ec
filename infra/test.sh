#!/usr/bin/env bash
# Set up, lint, then run the fast tests and the slow end-to-end tests (real SmolLM2-135M teacher).
set -euo pipefail
cd "$(dirname "$0")/.."
bash infra/setup.sh
. .venv/bin/activate
export MINIPLM_TEST_HOME=${MINIPLM_TEST_HOME:-$(mktemp -d)}
ruff check .
python -m pytest -m "not slow" "$@"
python -m pytest -m slow "$@"
