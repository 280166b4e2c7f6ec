#!/usr/bin/env bash
# Set up, lint, then run the fast tests and the slow end-to-end tests (real SmolLM2-135M teacher).
set -euo pipefail
cd "$(dirname "$0")/.."
bash infra/setup.sh
. .venv/bin/activate
# The UI test drives Debian's chromium (a browser download is not possible on the project's machines).
if ! command -v chromium >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "[test] installing Debian's chromium for the browser test"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "[test] the browser test needs chromium: sudo apt-get install chromium" >&2
    fi
fi
export MINIPLM_TEST_HOME=${MINIPLM_TEST_HOME:-$(mktemp -d)}
ruff check .
python -m pytest -m "not slow" --durations=15 "$@"
python -m pytest -m slow --durations=0 "$@"
