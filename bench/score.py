"""Scoring throughput: a naive baseline, miniplm's scorer, and this machine's matmul peak, on the same instances.

    python bench/score.py                         # tiny random Llama, under a minute
    python bench/score.py --model demo:smollm2-135m --tokens 20000

Prints one line per measurement and, last, one JSON object (see bench/RESULTS.md for recorded figures).
"""

from __future__ import annotations

import sys

# Run as a script, Python puts bench/ first on the path, where select.py would shadow the standard library's
# `select`; the repository root goes there instead.
sys.path[0] = __file__.rsplit("/bench/", 1)[0]

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM

from miniplm.data.instances import TokenEnds, TokenizerRef, boundary_kinds, cut_points
from miniplm.scoring.devices import pick_device, pick_dtype
from miniplm.scoring.scorer import LMScorer


def real_texts() -> list[str]:
    """Real prose in a realistic mix of lengths: language-reference topics and module docstrings."""
    from pydoc_data.topics import topics

    from miniplm.experiment.demo import _module_docstrings

    docs = [d["text"] for d in _module_docstrings()] + [v for _, v in sorted(topics.items())]
    rng = np.random.default_rng(0)
    return [docs[i] for i in rng.permutation(len(docs))]


def make_instances(tokenizer, max_len: int, budget_tokens: int) -> list[list[int]]:
    """Instances exactly as the pipeline cuts them from the whole corpus, then a seeded random sample of them (in
    that random order, which is the naive loop's input order) until the token budget is reached: the mix of
    lengths is the corpus's own, not that of whichever documents come first. A budget beyond the corpus (about
    150k tokens; a GPU needs more to time) takes it again in a fresh order. Two instances at least, so that the
    bfloat16 and float32 selections have a top half to compare."""
    every = []
    ends_of = TokenEnds(TokenizerRef.of(tokenizer.name_or_path))
    for text in real_texts():
        ((ids, ends),) = ends_of.encode([text])
        tokens = ids.tolist() + [tokenizer.eos_token_id]
        every += [tokens[a:b] for a, b in cut_points(boundary_kinds(text.encode(), ends), len(tokens), max_len)]
    out, total, rng = [], 0, np.random.default_rng(0)
    while total < budget_tokens or len(out) < 2:  # two at least: the top half of one instance is empty
        for i in rng.permutation(len(every)):
            if total >= budget_tokens and len(out) >= 2:
                break
            out.append(every[i])
            total += len(every[i])
    return out


def tiny_model(root: Path) -> str:
    from tests.tiny import make_lm, make_tokenizer

    tok = make_tokenizer(root / "tokenizer", vocab_size=8000)
    return str(make_lm(root / "model", tok, hidden=256, layers=4))


def peak_flops(device: torch.device, dtype: torch.dtype) -> float:
    """Best rate of a square matmul; the size grows until one product takes a measurable time (a dtype without
    native support, such as bfloat16 on a CPU without AVX512-BF16, is emulated and 100x slower)."""
    limit = 4096 if device.type == "cpu" else 8192
    n, best = 512, float("inf")
    while True:
        a = torch.randn(n, n, dtype=dtype, device=device)
        b = torch.randn(n, n, dtype=dtype, device=device)
        best = float("inf")
        for _ in range(4):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            a @ b
            if device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        if n >= limit or best > 0.1:
            return 2 * n**3 / best
        n *= 2


@torch.inference_mode()
def naive_scores(model, instances: list[list[int]], device: torch.device, pad_id: int) -> tuple[np.ndarray, float]:
    """How most scripts do it: input order, padded batches of 8, float32, full log-softmax, then gather."""
    means = []
    start = time.perf_counter()
    for lo in range(0, len(instances), 8):
        rows = instances[lo : lo + 8]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        ids, mask = ids.to(device), mask.to(device)
        logprobs = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
        token_lp = logprobs[:, :-1].gather(2, ids[:, 1:, None]).squeeze(2) * mask[:, 1:]
        means.extend((token_lp.sum(1) / mask[:, 1:].sum(1)).tolist())
    if device.type == "cuda":
        torch.cuda.synchronize()
    return np.asarray(means), time.perf_counter() - start


def project_scores(
    path: str, instances, device: str, dtype: str, batch_tokens: int | None, pack: bool | None
) -> tuple[np.ndarray, float]:
    scorer = LMScorer(path, device=device, dtype=dtype, batch_tokens=batch_tokens, pack=pack)
    scorer.score_all(instances[:8])  # load and warm up outside the timed region
    start = time.perf_counter()
    sums, counts = scorer.score_all(instances)
    if scorer.device.type == "cuda":
        torch.cuda.synchronize()
    return sums / counts, time.perf_counter() - start, scorer.pack


@torch.inference_mode()
def float64_reference(path: str, instances: list[list[int]], device: torch.device) -> np.ndarray:
    """The exact computation to compare against: float64 weights and activations, eager attention, one
    instance at a time, full log-softmax."""
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float64, attn_implementation="eager")
    model = model.to(device).eval()
    means = []
    for row in instances:
        ids = torch.tensor([row], device=device)
        logprobs = torch.log_softmax(model(input_ids=ids).logits[0, :-1], dim=-1)
        means.append(logprobs.gather(1, ids[0, 1:, None]).mean().item())
    return np.asarray(means)


def top_half_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    k = len(a) // 2
    top_a, top_b = set(np.argsort(-a, kind="stable")[:k]), set(np.argsort(-b, kind="stable")[:k])
    return len(top_a & top_b) / len(top_a | top_b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model spec (hub id, checkpoint dir, .gguf, demo:smollm2-135m); default tiny")
    parser.add_argument("--tokens", type=int, default=None, help="tokens to score (default 20000)")
    parser.add_argument("--max-len", type=int, default=1024)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto", help="the project scorer's dtype (auto picks the faster)")
    parser.add_argument("--batch-tokens", type=int, default=None)
    parser.add_argument(
        "--pack", choices=["auto", "on", "off"], default="auto", help="padding-free packing (auto: where a kernel is)"
    )
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument(
        "--reference-instances",
        type=int,
        default=16,
        help="instances also scored in float64 to check accuracy (0: none)",
    )
    args = parser.parse_args()

    import tempfile

    from miniplm.store.models import load_tokenizer, resolve_model

    tmp = tempfile.TemporaryDirectory()
    path = resolve_model(args.model).path if args.model else tiny_model(Path(tmp.name))
    name = args.model or "tiny-random-llama"
    tokens_target = args.tokens or 20000
    tokenizer = load_tokenizer(path)  # as the pipeline loads it: a clear error where there is no EOS token
    instances = make_instances(tokenizer, args.max_len, tokens_target)
    n_tokens = sum(len(i) for i in instances)
    lengths = [len(i) for i in instances]
    naive_fill = n_tokens / sum(len(lengths[i : i + 8]) * max(lengths[i : i + 8]) for i in range(0, len(lengths), 8))
    print(
        f"model {name}: {len(instances)} instances, {n_tokens} tokens, lengths min {min(lengths)} "
        f"median {int(np.median(lengths))} max {max(lengths)}; the naive loop's batches of 8 are "
        f"{naive_fill:.0%} real tokens",
        flush=True,
    )
    device = pick_device(args.device)
    dtype = pick_dtype(device, args.dtype)
    dtype_name = str(dtype).removeprefix("torch.")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device).eval()
    params = sum(p.numel() for p in model.parameters())
    print(
        f"params {params / 1e6:.1f}M, device {device}, scorer dtype {dtype_name}, threads {torch.get_num_threads()}",
        flush=True,
    )

    peak = peak_flops(device, dtype)
    print(f"peak matmul ({dtype_name}): {peak / 1e9:.0f} GFLOP/s", flush=True)

    naive_tps = None
    if not args.skip_naive:
        naive_scores(model, instances[:8], device, tokenizer.eos_token_id)  # warm-up: kernels, allocator
        naive, naive_s = naive_scores(model, instances, device, tokenizer.eos_token_id)
        naive_tps = n_tokens / naive_s
        print(f"naive (input order, batches of 8, float32, full log-softmax): {naive_tps:.0f} tokens/s", flush=True)
    del model

    pack = {"auto": None, "on": True, "off": False}[args.pack]
    ours, ours_s, packed = project_scores(path, instances, args.device, dtype_name, args.batch_tokens, pack)
    tps = n_tokens / ours_s
    achieved = 2 * params * tps
    print(
        f"miniplm scorer ({dtype_name}, {'packed' if packed else 'padded'}): {tps:.0f} tokens/s, "
        f"{achieved / 1e9:.0f} GFLOP/s, {achieved / peak:.2f} of peak",
        flush=True,
    )
    if naive_tps is not None:
        drift = float(np.max(np.abs(ours - naive)))
        print(f"max |miniplm - naive| mean log-prob: {drift:.2e} nats/token", flush=True)
    vs_float64 = None
    if args.reference_instances:
        n_ref = min(args.reference_instances, len(instances))
        ref = float64_reference(path, instances[:n_ref], device)
        vs_float64 = float(np.max(np.abs(ours[:n_ref] - ref)))
        naive_vs = f", naive {np.max(np.abs(naive[:n_ref] - ref)):.2e}" if naive_tps is not None else ""
        print(f"max |miniplm ({dtype_name}) - float64 reference| on {n_ref} instances: {vs_float64:.2e}{naive_vs}")

    jaccard = None
    bf16_ok = device.type == "cuda" or torch.ops.mkldnn._is_mkldnn_bf16_supported()
    if bf16_ok:
        other = "float32" if dtype == torch.bfloat16 else "bfloat16"
        other_scores, _, _ = project_scores(path, instances, args.device, other, args.batch_tokens, pack)
        bf16, fp32 = (ours, other_scores) if dtype == torch.bfloat16 else (other_scores, ours)
        jaccard = top_half_jaccard(bf16, fp32)
        print(
            f"top-half Jaccard bf16 vs fp32: {jaccard:.4f}; max |bf16 - fp32| {np.max(np.abs(bf16 - fp32)):.2e}",
            flush=True,
        )

    print(
        json.dumps(
            {
                "model": name,
                "params": params,
                "device": str(device),
                "dtype": dtype_name,
                "packed": packed,
                "instances": len(instances),
                "tokens": n_tokens,
                "naive_tokens_per_s": round(naive_tps, 1) if naive_tps else None,
                "tokens_per_s": round(tps, 1),
                "speedup": round(tps / naive_tps, 2) if naive_tps else None,
                "peak_flops": peak,
                "achieved_flops": achieved,
                "fraction_of_peak": round(achieved / peak, 3),
                "selection_jaccard_bf16_fp32": None if jaccard is None else round(jaccard, 4),
                "max_abs_diff_vs_float64": vs_float64,
            }
        )
    )


if __name__ == "__main__":
    main()
