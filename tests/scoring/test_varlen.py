import pytest
import torch

from miniplm.scoring import varlen


def packed_qkv():
    torch.manual_seed(0)
    q = torch.randn(1, 4, 10, 8, dtype=torch.bfloat16)
    k, v = torch.randn(2, 1, 2, 10, 8, dtype=torch.bfloat16)  # grouped-query: 2 key/value heads for 4
    return q, k, v, torch.tensor([0, 4, 10], dtype=torch.int32)


def test_per_instance_attention_never_crosses_instances():
    q, k, v, cu = packed_qkv()
    out, _ = varlen.varlen_attention(None, q, k, v, None, scaling=0.3, cu_seq_lens_q=cu, max_length_q=6)
    for a, b in ((0, 4), (4, 10)):
        alone = torch.nn.functional.scaled_dot_product_attention(
            q[:, :, a:b], k[:, :, a:b], v[:, :, a:b], is_causal=True, scale=0.3, enable_gqa=True
        )
        torch.testing.assert_close(out[:, a:b], alone.transpose(1, 2))


def test_a_failing_kernel_falls_back_exactly_and_warns(monkeypatch):
    """PyTorch's varlen kernel has no CPU implementation: claimed available here, it raises like an unsupported
    GPU would, and the call must still return the exact per-instance result (and not try the kernel again)."""
    q, k, v, cu = packed_qkv()
    assert varlen.torch_varlen() is not None  # torch >= 2.10 (the project installs 2.13)
    monkeypatch.setattr(varlen, "_kernel_failed", [])
    monkeypatch.setattr(varlen, "kernel_available", lambda device, dtype: not varlen._kernel_failed, raising=True)
    with pytest.warns(UserWarning, match="varlen flash attention failed"):
        out, _ = varlen.varlen_attention(None, q, k, v, None, scaling=0.3, cu_seq_lens_q=cu, max_length_q=6)
    torch.testing.assert_close(out, varlen._per_instance_sdpa(q, k, v, [0, 4, 10], 0.3, None), rtol=0, atol=0)
    assert len(varlen._kernel_failed) == 1
    varlen.varlen_attention(None, q, k, v, None, scaling=0.3, cu_seq_lens_q=cu, max_length_q=6)
    assert len(varlen._kernel_failed) == 1
    assert "flash_attention" in varlen.kernel_fallback()  # what the scoring summary reports


def test_packed_attention_refuses_what_it_cannot_do_exactly():
    q, k, v, cu = packed_qkv()
    with pytest.raises(ValueError, match="cu_seq_lens_q"):
        varlen.varlen_attention(None, q, k, v, None)
    with pytest.raises(ValueError, match="soft-capping"):
        varlen.varlen_attention(None, q, k, v, None, softcap=50.0, cu_seq_lens_q=cu, max_length_q=6)


def per_instance_reference(q, k, v, cu, scale):
    """The exact answer in the kernel's layout: q (N, H, D), k/v (N, H_kv, D) -> (N, H, D)."""
    out = varlen._per_instance_sdpa(q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None],
                                    cu.tolist(), scale, None)  # fmt: skip
    return out[0]


def test_the_installed_kernel_is_called_with_keywords_it_takes():
    """The installed torch's varlen_attn gets only keywords of its own signature: it fails on a CPU for want of a
    CPU kernel, never with a TypeError about an argument (which used to send every layer down the slow path)."""
    from torch.nn.attention.varlen import varlen_attn

    q, k, v, cu = packed_qkv()
    q, k, v = (t[0].transpose(0, 1).contiguous() for t in (q, k, v))
    with pytest.raises(RuntimeError) as failure:  # NotImplementedError: no CPU backend for the flash kernel
        varlen.varlen_call(varlen_attn)(q, k, v, cu, 6, 0.3)
    assert not isinstance(failure.value, TypeError)


def test_an_older_kernel_signature_gets_the_scale_and_groups_it_lacks():
    """A kernel of torch 2.10's shape (is_causal, no scale, no enable_gqa): the model's scale is folded into the
    queries and each key/value head repeated for its query heads, with the exact result."""
    calls = []

    def old_varlen_attn(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, is_causal=False):
        calls.append(is_causal)
        assert query.shape[1] == key.shape[1]  # no grouped-query support
        return per_instance_reference(query, key, value, cu_seq_q, None)  # its own scale, 1/sqrt(D)

    q, k, v, cu = packed_qkv()
    q, k, v = (t[0].transpose(0, 1).contiguous().float() for t in (q, k, v))
    out = varlen.varlen_call(old_varlen_attn)(q, k, v, cu, 6, 0.3)
    assert calls == [True]
    torch.testing.assert_close(out, per_instance_reference(q, k, v, cu, 0.3))


def test_a_newer_kernel_signature_takes_scale_window_and_groups_natively():
    seen = {}

    def new_varlen_attn(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, scale=None, window_size=(-1, -1),
                        enable_gqa=False):  # fmt: skip
        seen.update(scale=scale, window_size=window_size, enable_gqa=enable_gqa, kv_heads=key.shape[1])
        return query

    q, k, v, cu = packed_qkv()
    q, k, v = (t[0].transpose(0, 1).contiguous() for t in (q, k, v))
    varlen.varlen_call(new_varlen_attn)(q, k, v, cu, 6, 0.3)
    assert seen == {"scale": 0.3, "window_size": (-1, 0), "enable_gqa": True, "kv_heads": 2}  # no copied heads
