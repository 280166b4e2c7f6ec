"""Padding-free attention for instances laid end to end in one row, plugged into transformers' attention interface.

Each instance attends only to itself: the row's instance boundaries (cumulative lengths) reach the attention
function as the `cu_seq_lens_q` / `max_length_q` keyword arguments that transformers passes down to it. On CUDA
in bf16/fp16 PyTorch's own flash-attention varlen kernel does the work (no extra package); elsewhere each
instance runs through SDPA on its own slice, which is exact and lets the packed path be tested on a CPU.
Plain SDPA over the packed row with restarting position ids would let instances attend to each other (scores off by
nats); this never does.
"""

from __future__ import annotations

import functools
import inspect
import math
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F

ATTENTION = "miniplm_varlen"


@functools.cache
def torch_varlen() -> Callable | None:
    """PyTorch's varlen flash attention as f(q, k, v, cu_seqlens, max_len, scale), or None where it is missing.

    Its signature moved between releases (torch 2.10 takes `is_causal`, later ones `window_size=(-1, 0)`; `scale`
    and `enable_gqa` came later than the function), so the keyword arguments are chosen from the installed
    function's own signature: a keyword it lacks would raise TypeError on every call.
    """
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_call(varlen_attn)


def varlen_call(varlen_attn: Callable) -> Callable:
    """Adapt a varlen_attn function of any signature to f(q, k, v, cu_seqlens, max_len, scale): q (N, H, D),
    k and v (N, H_kv, D) -> (N, H, D)."""
    params = inspect.signature(varlen_attn).parameters
    causal = {"window_size": (-1, 0)} if "window_size" in params else {"is_causal": True}
    takes_scale, native_gqa = "scale" in params, "enable_gqa" in params

    def call(q, k, v, cu, max_len, scale):
        extra = dict(causal)
        if scale is not None:
            if takes_scale:
                extra["scale"] = scale
            else:  # the kernel scales by 1/sqrt(D): fold the model's own scale into the queries instead
                q = q * (scale * math.sqrt(q.shape[-1]))
        if q.shape[1] != k.shape[1]:
            if native_gqa:
                extra["enable_gqa"] = True
            else:  # an older kernel without grouped queries: each key/value head repeated for its query heads
                k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
                v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
        return varlen_attn(q, k, v, cu, cu, max_len, max_len, **extra)

    return call


_kernel_failed: list[str] = []  # the first error of PyTorch's kernel in this process, if it raised one


def kernel_fallback() -> str | None:
    """Why the varlen kernel was given up in this process (every later packed batch attends per instance, an
    order of magnitude slower on a GPU), or None. The scorer reports it in its figures, so a run says so."""
    return _kernel_failed[0] if _kernel_failed else None


def kernel_available(device: torch.device, dtype: torch.dtype) -> bool:
    half = dtype in (torch.bfloat16, torch.float16)
    return device.type == "cuda" and half and torch_varlen() is not None and not _kernel_failed


def _per_instance_sdpa(query, key, value, cu: list[int], scale, sliding_window: int | None) -> torch.Tensor:
    """Exact reference path: SDPA on each instance's own slice. query (1, H, N, D) -> (1, N, H, D)."""
    out = torch.empty_like(query)
    gqa = query.shape[1] != key.shape[1]
    for a, b in zip(cu[:-1], cu[1:], strict=True):
        if a == b:
            continue
        q, k, v = query[:, :, a:b], key[:, :, a:b], value[:, :, a:b]
        if sliding_window and b - a > sliding_window:
            i = torch.arange(b - a, device=query.device)
            band = (i[None, :] <= i[:, None]) & (i[:, None] - i[None, :] < sliding_window)
            out[:, :, a:b] = F.scaled_dot_product_attention(q, k, v, attn_mask=band, scale=scale, enable_gqa=gqa)
        else:
            out[:, :, a:b] = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=gqa)
    return out.transpose(1, 2)


def varlen_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    sliding_window: int | None = None,
    softcap: float | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers attention-interface function: query (1, H, N, D), key/value (1, H_kv, N, D) -> (1, N, H, D)."""
    cu = kwargs.get("cu_seq_lens_q")
    if cu is None or query.shape[0] != 1 or attention_mask is not None:
        raise ValueError("miniplm_varlen attention needs one packed row and cu_seq_lens_q (see LMScorer)")
    if softcap:
        raise ValueError("miniplm_varlen attention has no logit soft-capping; score this model unpacked")
    max_len = int(kwargs.get("max_length_q") or int((cu[1:] - cu[:-1]).max()))
    windowed = bool(sliding_window) and max_len > sliding_window
    if kernel_available(query.device, query.dtype) and not windowed:
        q, k, v = (t[0].transpose(0, 1).contiguous() for t in (query, key, value))  # (N, H, D)
        try:
            return torch_varlen()(q, k, v, cu.to(torch.int32), max_len, scaling)[None], None
        except torch.OutOfMemoryError:
            raise  # the scorer halves the batch
        except (RuntimeError, TypeError, ValueError) as exc:
            # A kernel this GPU, head size or torch build does not support: exact and slower from here on.
            _kernel_failed.append(f"{type(exc).__name__}: {exc}")
            warnings.warn(
                f"varlen flash attention failed ({_kernel_failed[0][:300]}); attending per instance", stacklevel=2
            )
    return _per_instance_sdpa(query, key, value, cu.tolist(), scaling, sliding_window), None


def register() -> str:
    """Make ATTENTION a valid `attn_implementation` for from_pretrained (idempotent)."""
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION, varlen_attention)
    return ATTENTION
