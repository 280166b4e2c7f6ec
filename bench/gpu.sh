#!/usr/bin/env bash
# Scoring throughput on one CUDA GPU: a ~1B-parameter Llama-architecture model (random weights: the FLOPs are
# the same) in bfloat16, against the card's measured bf16 matmul peak. Under 5 minutes on an H100/H200.
#   bash bench/gpu.sh [TOKENS]
# Needs python3 with CUDA torch, transformers, tokenizers, pyarrow and tqdm (a stock GPU image has them); the
# project runs from this checkout (no install, no network). Figures go to stdout and, where $OUT is set, to
# $OUT/gpu-*.json.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
TOKENS=${1:-400000}
OUT=${OUT:-/tmp/miniplm-gpu}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
python3 -c "from miniplm.scorer import flash_attn_installed, packing_pays; import torch
print('flash-attn installed:', flash_attn_installed(), '| packing:', packing_pays(torch.device('cuda'), torch.bfloat16))"
MODEL_DIR=${MODEL_DIR:-/tmp/miniplm-llama-1b}
python3 - "$MODEL_DIR" <<'PY'
import sys
from pathlib import Path

from tests.tiny import make_tokenizer

out = Path(sys.argv[1])
if not (out / "config.json").exists():
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok_dir = make_tokenizer(out.with_name(out.name + "-tokenizer"), vocab_size=32000)
    tok = AutoTokenizer.from_pretrained(tok_dir)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                         num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=4096,
                         eos_token_id=tok.eos_token_id, tie_word_embeddings=False)
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    print(f"built {sum(p.numel() for p in model.parameters()) / 1e9:.2f}B-parameter Llama at {out}")
PY
# The project's scorer as it runs (packed where a varlen kernel is), then padded for comparison.
python3 bench/score.py --model "$MODEL_DIR" --tokens "$TOKENS" --device cuda --dtype bfloat16 --max-len 1024 \
    | tee "$OUT/gpu-auto.txt"
python3 bench/score.py --model "$MODEL_DIR" --tokens "$TOKENS" --device cuda --dtype bfloat16 --max-len 1024 \
    --pack off --skip-naive | tee "$OUT/gpu-padded.txt"
tail -n 1 "$OUT/gpu-auto.txt" > "$OUT/gpu-auto.json"
tail -n 1 "$OUT/gpu-padded.txt" > "$OUT/gpu-padded.json"
