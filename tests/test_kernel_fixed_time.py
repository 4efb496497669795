"""A kernel's fixed time is paid whether its main loop is bandwidth- or math-bound (issue 8).

Each kernel of a step pays ``t0 = stream_kernel_us`` (launch into the GPU's queue, the first
tile's loads before the pipeline is full, the last wave's drain). The cost model used to carry
t0 on the memory side of each operator's roofline only (``eta(S)``), so an operator whose FLOP
time exceeded its streaming time hid its kernels' fixed time entirely. These hand-computed
cases pin the corrected rule: operator time = ``max(bytes / BW, FLOP / rate) + kernels x t0``.
"""

from __future__ import annotations

import numpy as np
import pytest

from solver.catalog import load_catalog
from solver.costmodel import Shape, shape_terms, with_efficiency
from solver.costmodel.compute import grouped_gemm_s, kernel_fixed_s, stage_pass_s


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


def test_kernel_fixed_s_is_kernels_times_t0():
    # S_half = 2 MB at 4 TB/s -> t0 = 0.5 us; 10 kernels -> 5 us; broadcasts over arrays
    assert float(kernel_fixed_s(10, 4e12, 2e6)) == pytest.approx(5e-6)
    np.testing.assert_allclose(kernel_fixed_s(np.array([0.0, 2.0]), 4e12, 2e6), [0.0, 1e-6])


GG = dict(num_experts=8, k=2, local_experts=8.0, expert_bytes=1e6, flop_per_row=2e6,
          bw_bytes_s=1e12, half_bytes=1e6, tile=64, fixed_s=10e-6)


def test_compute_bound_grouped_gemm_pays_its_two_kernels_fixed_time():
    # 256 tokens, top-2 of 8 experts: all 8 touched, 512 rows (64 per expert, no padding).
    # t0 = S_half / BW = 1 MB / 1 TB/s = 1 us per kernel; two grouped GEMMs (gate/up, down).
    # memory: (8 MB + 2 x 1 MB) / 1 TB/s = 10 us
    # compute at 1e14 FLOP/s: 512 x 2 MFLOP / 1e14 = 10.24 us, + 2 x 1 us = 12.24 us
    # -> the layer is compute-bound at 12.24 us (was max(10, 10.24) = 10.24 us)
    mem, cmp, fixed = grouped_gemm_s(256.0, 1e14, **GG)
    assert float(mem) == pytest.approx(10e-6)
    assert float(cmp) == pytest.approx(12.24e-6)
    assert float(fixed) == pytest.approx(10e-6)
    # memory-bound (batch 1, fast math): unchanged -- 2 experts x 1 MB + 2 x 1 MB = 4 us;
    # compute 128 padded rows x 2 MFLOP / 1e15 = 0.256 us + 2 us = 2.256 us < 4 us
    mem1, cmp1, _ = grouped_gemm_s(1.0, 1e15, **GG)
    assert float(mem1) == pytest.approx(4e-6)
    assert float(cmp1) == pytest.approx(2.256e-6)
    assert max(float(mem1), float(cmp1)) == pytest.approx(4e-6)
    # no token, no kernel
    mem0, cmp0, _ = grouped_gemm_s(0.0, 1e14, **GG)
    assert float(mem0) == 0.0 and float(cmp0) == 0.0


def _pass_s(t, decode_seqs: float, prefill_tokens: float) -> float:
    parts = stage_pass_s(t, decode_seqs, 512.0, prefill_tokens, 0.0)
    mem, cmp, comm, fixed = (float(x) for x in parts)
    return max(mem, 0.0) + cmp + comm + fixed


def test_dense_pass_pays_every_kernels_fixed_time_in_both_regimes(cat):
    # Llama-3.1-8B, bf16, one H100 (TensorRT-LLM): 32 layers x 4 GEMM kernels + the LM head =
    # 129 dense kernels, plus 32 decode-attention kernels = 161 kernels in a pass that decodes.
    # Raising t0 from 0 to 10 us must add exactly 161 x 10 us = 1.61 ms to the pass -- at batch 1
    # (memory-bound) and at batch 256 with a 2,048-token prompt chunk (compute-bound) alike.
    base = shape_terms(cat, Shape("llama-3.1-8b", "h100-sxm", None, "bf16", "bf16"), "tensorrt-llm")
    t_zero = with_efficiency(base, stream_kernel_us=0.0)
    t_ten = with_efficiency(base, stream_kernel_us=10.0)
    for b, p in ((1.0, 0.0), (256.0, 2048.0)):
        delta = _pass_s(t_ten, b, p) - _pass_s(t_zero, b, p)
        assert delta == pytest.approx(161 * 10e-6, rel=1e-9), (b, p)
    # the large pass really is compute-bound on its dense GEMMs (else the case proves nothing)
    mem, cmp, _, _ = stage_pass_s(t_ten, 256.0, 512.0, 2048.0, 0.0)
    assert float(cmp) > float(mem)


def test_prefill_only_pass_pays_its_attention_kernels_fixed_time(cat):
    # A pass with a prompt chunk and no decoding sequence (zero-load TTFT, a disaggregated
    # prefill pool) still launches one attention kernel per layer: the same 129 dense + 32
    # attention kernels = 161 as a decoding pass, so t0 = 10 us adds exactly 1.61 ms.
    base = shape_terms(cat, Shape("llama-3.1-8b", "h100-sxm", None, "bf16", "bf16"), "tensorrt-llm")
    t_zero = with_efficiency(base, stream_kernel_us=0.0)
    t_ten = with_efficiency(base, stream_kernel_us=10.0)
    delta = _pass_s(t_ten, 0.0, 2048.0) - _pass_s(t_zero, 0.0, 2048.0)
    assert delta == pytest.approx(161 * 10e-6, rel=1e-9)
