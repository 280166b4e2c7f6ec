import pytest
import torch

from miniplm import varlen


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


def test_packed_attention_refuses_what_it_cannot_do_exactly():
    q, k, v, cu = packed_qkv()
    with pytest.raises(ValueError, match="cu_seq_lens_q"):
        varlen.varlen_attention(None, q, k, v, None)
    with pytest.raises(ValueError, match="soft-capping"):
        varlen.varlen_attention(None, q, k, v, None, softcap=50.0, cu_seq_lens_q=cu, max_length_q=6)
