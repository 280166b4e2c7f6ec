#!/usr/bin/env bash
# Scoring throughput on one CUDA GPU: a ~1B-parameter Llama-architecture model (random weights: the FLOPs are
# the same) in bfloat16, against the card's measured bf16 matmul peak. Under 5 minutes on an H100/H200.
#   bash bench/gpu.sh [TOKENS]
# Needs torch with CUDA and the project's dependencies; installs the project itself (no network needed for that).
set -euo pipefail
cd "$(dirname "$0")/.."
TOKENS=${1:-400000}
python -m pip install --quiet --no-deps --no-build-isolation -e . 2>/dev/null || true
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
MODEL_DIR=${MODEL_DIR:-/tmp/miniplm-llama-1b}
python - "$MODEL_DIR" <<'PY'
import sys
from pathlib import Path
sys.path.insert(0, ".")
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
python bench/score.py --model "$MODEL_DIR" --tokens "$TOKENS" --device cuda --dtype bfloat16 --max-len 1024
