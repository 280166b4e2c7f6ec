"""Where and in what precision to score, and how many tokens a batch holds: decided by measuring the device at hand.

CPUs of one kind differ (bfloat16 is twice as fast as float32 with AMX and half as fast without it), so the dtype
and the batch token budget are measured once per machine, model shape and dtype, and remembered in the cache.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

import torch

from miniplm.scoring import varlen
from miniplm.store.shards import write_json

# Logits per output-head chunk (positions x vocabulary): about 100 MB of float32 on a CPU, ~1 GB on CUDA, large
# enough for the head matmul to run at speed, small beside the memory.
HEAD_CHUNK_LOGITS = {"cpu": 512 * 49152, "cuda": 1 << 28}
# Budgets tried on a CPU, in order; the search stops once a larger one is slower.
CPU_BUDGETS = (1024, 2048, 4096, 8192, 16384)
DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


_free_gpus: list[int] | None = None
_gpus_changed = threading.Condition()


@contextmanager
def lease_device(device: str = "auto") -> Iterator[str]:
    """A device for one scoring task, for as long as it runs. With `auto` or `cuda`, a GPU this process sees and no
    other task of it holds: a scoring worker process (`claim_gpu`) or a task on Ray sees only its own GPU."""
    global _free_gpus
    if device not in ("auto", "cuda") or not torch.cuda.is_available():
        yield "cpu" if device == "auto" else device
        return
    with _gpus_changed:
        if _free_gpus is None:
            _free_gpus = list(range(torch.cuda.device_count()))
        _gpus_changed.wait_for(lambda: bool(_free_gpus))
        gpu = _free_gpus.pop(0)
    try:
        yield f"cuda:{gpu}"
    finally:
        with _gpus_changed:
            _free_gpus.append(gpu)
            _gpus_changed.notify()


def pick_dtype(device: torch.device, dtype: str = "auto") -> torch.dtype:
    if dtype != "auto":
        return DTYPES[dtype]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return fastest_cpu_dtype()


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def matmul_rate(
    dtype: torch.dtype, rows: int = 2048, width: int = 1024, repeats: int = 4, device: torch.device | None = None
) -> float:
    """FLOP/s of a (rows x width) @ (width x width) product in `dtype` (on a CPU unless `device` says otherwise)."""
    device = device or torch.device("cpu")
    if device.type == "cuda":
        rows, width, repeats = 8192, 8192, 10  # a GPU needs a larger product to reach its rate
    a = torch.randn(rows, width, dtype=dtype, device=device)
    w = torch.randn(width, width, dtype=dtype, device=device)
    torch.nn.functional.linear(a, w)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.nn.functional.linear(a, w)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return repeats * 2 * rows * width * width / (time.perf_counter() - start)


@functools.cache
def fastest_cpu_dtype() -> torch.dtype:
    """bfloat16 or float32, whichever multiplies matrices faster on this CPU (measured once, ~0.2 s).

    Only a CPU with native bfloat16 support is worth probing; elsewhere it is emulated and far slower.
    """
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return torch.float32
    rates = {dt: matmul_rate(dt) for dt in (torch.float32, torch.bfloat16)}
    # bf16 also loses ~1e-2 nats/token of accuracy, so it must win clearly to be chosen.
    return torch.bfloat16 if rates[torch.bfloat16] > 1.2 * rates[torch.float32] else torch.float32


def gpu_batch_tokens(config, dtype: torch.dtype, free_bytes: int) -> int:
    """Tokens per batch for the GPU memory left free once the weights are loaded.

    In inference only one layer's activations are alive at a time: about 6 hidden-wide and 3 MLP-wide vectors
    per token (residual, norm, q/k/v, attention output; gate, up, their product), plus the float32 hidden state
    kept for the head. Half the free memory, less 2 GiB for the head's logit chunk, goes to batches; the
    out-of-memory backoff catches what this misjudges. Clamped to 4k..128k tokens (beyond that the GPU is full).
    """
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden = text.hidden_size
    mlp = next((v for k in ("intermediate_size", "ffn_dim", "n_inner") if (v := getattr(text, k, None))), 4 * hidden)
    per_token = (6 * hidden + 3 * mlp) * dtype.itemsize + 4 * hidden
    usable = free_bytes // 2 - (2 << 30)
    return int(min(max(usable // per_token, 4096), 131072)) // 1024 * 1024


def _calibration_file():
    from miniplm.store.hashing import cache_root

    return cache_root() / "calibration.json"


_measured: dict[str, int] = {}


def _remembered(key: list, measure: Callable[[], int]) -> int:
    """A value measured once per machine and setting, kept in the cache's calibration file (and in memory)."""
    text = json.dumps(key)
    if text in _measured:
        return _measured[text]
    path = _calibration_file()
    known = json.loads(path.read_text()) if path.exists() else {}
    if text not in known:
        value = measure()
        known = json.loads(path.read_text()) if path.exists() else {}
        known[text] = value
        write_json(known, path)
    _measured[text] = int(known[text])
    return _measured[text]


def machine() -> list:
    """What a measurement made here depends on: the CPU, the threads torch uses and its version."""
    return [platform.processor() or platform.machine(), _cpu_name(), torch.get_num_threads(), torch.__version__]


def logsumexp_block_rows(vocab: int) -> int:
    """Rows per logsumexp call on a CPU: few enough that their logits stay in cache across logsumexp's passes (max,
    subtract, exp, sum); how few depends on the CPU's cache sizes, so it is measured (~0.3 s, once)."""

    def fastest() -> int:
        logits = torch.randn(256, vocab) * 3
        rates = {}
        for rows in (1, 2, 4, 8, 16, 32):
            start = time.perf_counter()
            for lo in range(0, 256, rows):
                torch.logsumexp(logits[lo : lo + rows], dim=-1)
            rates[rows] = 1 / (time.perf_counter() - start)
        return max(rates, key=rates.get)

    return _remembered(["logsumexp-rows", *machine(), vocab], fastest)


def cpu_batch_tokens(model_key: str, dtype: torch.dtype, tokens_per_s_at: Callable[[int], float]) -> int:
    """The CPU batch budget that scores fastest for this model shape and dtype on this machine.

    Larger batches make bigger matmuls, until their activations spill the caches; where that happens depends
    on the CPU, the model's widths and the dtype. Budgets are tried in increasing order until one is slower than
    the best so far; the answer is remembered per (CPU, threads, torch, model shape, dtype).
    """

    def fastest() -> int:
        best, best_rate = CPU_BUDGETS[0], 0.0
        for budget in CPU_BUDGETS:
            rate = tokens_per_s_at(budget)
            if rate <= best_rate:
                break
            best, best_rate = budget, rate
        return best

    return _remembered(["batch-tokens", *machine(), model_key, dtype_name(dtype)], fastest)


@functools.cache
def _cpu_name() -> str:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    return next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "")


def flash_attn_installed() -> bool:
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return False
    return True


def packing_pays(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether padding-free packing is the faster layout here.

    On a CPU it always is: attention runs per instance slice with SDPA's fused causal kernel, and no row pays for
    padding. On CUDA it needs a varlen kernel, flash-attn's or PyTorch's own (torch >= 2.10); a per-instance loop
    there would launch too many small kernels.
    """
    if device.type == "cpu":
        return True
    half = dtype in (torch.bfloat16, torch.float16)  # both varlen kernels need a half dtype
    return device.type == "cuda" and half and (flash_attn_installed() or varlen.kernel_available(device, dtype))


def autocast_for(device: torch.device) -> AbstractContextManager:
    """bfloat16 autocast for a model body being trained on CUDA: its matmuls at the tensor cores' half-precision
    rate while weights, optimizer state and the loss stay float32. A CPU trains in float32 throughout."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def node_gpus() -> list[str]:
    """This node's GPUs as CUDA_VISIBLE_DEVICES names them (or by index where it is not set)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip()]
    return [str(i) for i in range(torch.cuda.device_count())]


_claim: dict = {}  # this worker's GPU, and its lock file, open (and so locked) for the life of the process


def claim_gpu(gpus: tuple[str, ...], claims: str) -> None:
    """Start of a worker process on a multi-GPU node: take the first of `gpus` no other worker holds, for the life of
    the process, before CUDA starts in it. Each GPU then has a process of its own: its own interpreter lock, its own
    precision settings, its own loaded model, and `cuda` in it means that GPU.

    A worker holds its GPU by an exclusive lock on a file per GPU in the folder `claims`, which the operating system
    releases when the process ends; the arguments are plain strings because Prefect pickles its task runner, with
    the workers' initializer arguments, into every task it sends them."""
    from miniplm.store.lock import try_lock

    for gpu in gpus:
        handle = open(Path(claims) / f"gpu-{gpu}", "a+")  # noqa: SIM115 -- held open for as long as the claim is
        if try_lock(handle):
            _claim.update(gpu=gpu, lock=handle)
            use_claimed_gpu()
            return
        handle.close()
    raise RuntimeError(f"every GPU of {', '.join(gpus)} is held by another worker process (claims in {claims})")


def claimed_gpu() -> str | None:
    """The GPU this worker process claimed (as CUDA_VISIBLE_DEVICES names it), or None outside such a worker."""
    return _claim.get("gpu")


def use_claimed_gpu() -> None:
    """In a worker process that claimed a GPU, make it the only one CUDA sees; elsewhere, nothing. Called at the start
    of every task such a worker runs, before CUDA starts: Prefect gives each task the environment of the flow that
    sent it (CUDA_VISIBLE_DEVICES with every GPU of the node), which would put every worker on the node's first GPU."""
    if gpu := _claim.get("gpu"):
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
