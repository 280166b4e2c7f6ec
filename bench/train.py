"""Student training speed on this machine: tokens/s of a training step and its fraction of the CPU's matmul peak.

    python bench/train.py [--hidden 128] [--layers 4] [--batch 16] [--block 256] [--vocab 4096] [--steps 6]
                          [--compare-plain]

A Llama of the student's shape (`small_llama`) trains on random tokens (speed, not learning): forward, backward and
AdamW, with miniplm's fused linear cross-entropy. Prints one JSON object: parameters (and those outside the embedding),
tokens per second, the achieved FLOP rate (6 N per token plus attention's 6 x 2 x layers x block x hidden, forward and
backward) and its fraction of the float32 matmul peak measured here (2048 x 1024 x 1024), and with --compare-plain the
plain loss (head on chunks under activation checkpointing) beside it, with the largest difference between the two
losses' gradients after one step from the same weights.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

sys.path[0] = __file__.rsplit("/bench/", 1)[0]  # the repository root, not bench/ (its select.py is not stdlib)

import torch

from miniplm.config import small_llama
from miniplm.scoring.devices import matmul_rate
from miniplm.training import losses, train


def plain_loss_sum(model, x: torch.Tensor) -> torch.Tensor:
    """The loss before: the head on chunks of positions under activation checkpointing, cross_entropy on each."""
    hidden = model.get_decoder()(input_ids=x[:, :-1]).last_hidden_state
    h, targets = losses.predicted(hidden, x, None)

    def chunk_loss(h_chunk, t_chunk):
        return torch.nn.functional.cross_entropy(losses.head_logits(model, h_chunk), t_chunk, reduction="sum")

    return losses.chunked_sum(chunk_loss, h.shape[0], model.get_output_embeddings().weight.shape[0], h, targets)


def tokens_per_s(model, loss_fn, x: torch.Tensor, steps: int) -> float:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(model.config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    times = []
    for _ in range(steps + 1):  # the first step warms up kernels and the allocator
        start = time.perf_counter()
        loss = loss_fn(model, x) / (x.shape[0] * (x.shape[1] - 1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return x.shape[0] * (x.shape[1] - 1) / (sum(times[1:]) / steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--block", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--compare-plain", action="store_true", help="also time the plain chunked loss")
    args = parser.parse_args()
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    config = train.build_config(small_llama(args.layers, args.hidden), args.vocab, args.block + 1, 0)
    model = AutoModelForCausalLM.from_config(config)
    parameters = sum(p.numel() for p in model.parameters())
    x = torch.randint(0, args.vocab, (args.batch, args.block + 1))
    peak = matmul_rate(torch.float32)
    fused = tokens_per_s(model, losses.lm_loss_sum, x, args.steps)
    flops_per_token = 6 * parameters + 6 * 2 * args.layers * args.block * args.hidden
    result = {
        "parameters": parameters,
        "non_embedding_parameters": parameters - args.vocab * args.hidden,
        "vocab": args.vocab,
        "tokens_per_step": args.batch * args.block,
        "threads": torch.get_num_threads(),
        "tokens_per_s": round(fused),
        "gflops": round(fused * flops_per_token / 1e9, 1),
        "peak_gflops_fp32": round(peak / 1e9, 1),
        "fraction_of_peak": round(fused * flops_per_token / peak, 3),
    }
    if args.compare_plain:
        grads = []
        for loss_fn in (losses.lm_loss_sum, plain_loss_sum):
            torch.manual_seed(1)
            m = AutoModelForCausalLM.from_config(config)
            (loss_fn(m, x) / x[:, 1:].numel()).backward()
            grads.append(torch.cat([p.grad.flatten() for p in m.parameters()]))
        plain = tokens_per_s(model, plain_loss_sum, x, args.steps)
        result |= {
            "plain_tokens_per_s": round(plain),
            "speedup": round(fused / plain, 2),
            "max_grad_diff": float((grads[0] - grads[1]).abs().max()),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
