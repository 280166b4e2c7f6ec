#!/usr/bin/env bash
# What only a GPU can show (issue 20), as one JSON object: the scorer on a ~135M/49k and a ~1B/152k random Llama in
# bfloat16 (packed and padded: agreement, tokens/s, fraction of the measured bf16 matmul peak, the attention path
# and any varlen fallback) and a student's training step. A few minutes on an H100/H200; no download, no install.
#   bash bench/gpu.sh [extra bench/gpu.py arguments]
# Needs python3 with CUDA torch and transformers (a stock GPU image has them, or the project's .venv); the project
# runs from this checkout. The JSON goes to stdout and, where $OUT is set, to $OUT/gpu.json.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
"$PY" bench/gpu.py "$@"
