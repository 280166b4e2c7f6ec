#!/usr/bin/env bash
# Create .venv and install miniplm with its test tools. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
say() { echo "[setup] $*"; }
if [ ! -x .venv/bin/python ]; then
    say "creating the virtual environment .venv"
    "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
if ! python -c "import torch" 2>/dev/null; then
    say "installing PyTorch (the CPU build 2.13.0 where it is on local disk; about 20 s, else a download)"
    # The CPU build (2.13.0) installs from local disk on the project's machines; CUDA machines may pick their own.
    pip install --quiet --disable-pip-version-check "torch==2.13.0" || pip install --quiet "torch>=2.4,<2.14"
fi
if ! python -c "import miniplm, prefect, pytest" 2>/dev/null || [ pyproject.toml -nt .venv/.miniplm-installed ]; then
    say "installing miniplm and its dependencies (Prefect, transformers, DuckDB, polars, ...; about 2 minutes)"
    start=$SECONDS
    pip install --quiet --disable-pip-version-check -e ".[dev]"
    # litdata (the tests read `--format litdata` with it) asks for torchvision, which pip would take from the
    # registry built for another torch than the local CPU build (it then fails to import): its other needs only
    pip install --quiet --disable-pip-version-check --no-deps "litdata>=0.2.50,<0.3"
    pip install --quiet --disable-pip-version-check boto3 filelock lightning-utilities obstore tifffile
    touch .venv/.miniplm-installed
    say "installed in $((SECONDS - start)) s"
fi
say "ready: $(python -c 'import torch, prefect, transformers; print(f"torch {torch.__version__}, prefect {prefect.__version__}, transformers {transformers.__version__}")')"
