#!/usr/bin/env bash
# Set up, then run the whole pipeline on the embedded demo (offline: stdlib prose, SmolLM2-135M teacher).
set -euo pipefail
cd "$(dirname "$0")/.."
bash infra/setup.sh
exec .venv/bin/miniplm demo --workdir "${1:-miniplm-demo}"
