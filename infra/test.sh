#!/usr/bin/env bash
# Set up, lint, then run the fast tests and the slow end-to-end tests (real SmolLM2-135M teacher).
set -euo pipefail
cd "$(dirname "$0")/.."
bash infra/setup.sh
. .venv/bin/activate
# Debian's packages the slow tests use: chromium (the UI test; a browser download is not possible on the project's
# machines) and postgresql (the Prefect server on PostgreSQL under a Ray fan-out).
need=()
command -v chromium >/dev/null || need+=(chromium)
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "[test] installing Debian's ${need[*]} for the slow tests"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    else
        echo "[test] the slow tests need: sudo apt-get install ${need[*]}" >&2
    fi
fi
export MINIPLM_TEST_HOME=${MINIPLM_TEST_HOME:-$(mktemp -d)}
ruff check .
# The fast suite on both cores: two workers, each module's tests on one of them (its fixtures built once), torch on
# one thread per process (tests/conftest.py) so that the two never wait on each other's threads.
start=$SECONDS
python -m pytest -m "not slow" -n 2 --dist loadfile --durations=15 "$@"
echo "[test] fast suite: $((SECONDS - start)) s"
start=$SECONDS
python -m pytest -m slow --durations=0 "$@"
echo "[test] slow suite: $((SECONDS - start)) s"
