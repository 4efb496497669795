"""Block-scaled FP8 experts tile their rows by 64 in decode-only steps on Hopper (DeepGEMM's
masked layout under CUDA graphs; TensorRT-LLM's vendored DeepGEMM picks a 64-row M block at
<= 64 rows per expert) and by 128 in steps that carry prompt tokens (the contiguous layout)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from solver.catalog import load_catalog
from solver.costmodel import Shape, shape_terms
from solver.costmodel.compute import decode_step, grouped_gemm_s, prefill, stage_pass_s


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


def _terms(cat, gpu: str = "h200-sxm", engine: str = "tensorrt-llm"):  # type: ignore[no-untyped-def]
    return shape_terms(cat, Shape("deepseek-v3", gpu, None, "fp8", "fp8", tp=8, ep=8), engine)


def test_tiles_by_family_and_format(cat):
    t = _terms(cat)
    assert t.block_scaled_experts and (t.grouped_gemm_tile, t.decode_gemm_tile) == (128, 64)
    # no source read for AMD's kernels: 128 in every step, as before
    amd = _terms(cat, "mi300x", "vllm")
    assert amd.block_scaled_experts and (amd.grouped_gemm_tile, amd.decode_gemm_tile) == (128, 128)
    # plain (per-tensor) FP8 experts and 16-bit experts: the 64-row wgmma tile everywhere
    q = shape_terms(cat, Shape("qwen3-235b-a22b", "h200-sxm", None, "fp8", "fp8", tp=8, ep=8))
    assert (q.grouped_gemm_tile, q.decode_gemm_tile) == (64, 64)


def test_decode_pass_expert_gemm_hand_computed(cat):
    t = _terms(cat)
    # 8 decode tokens, top-8 of 256 experts, 32 experts per GPU: each GPU receives 8 x 8 x 32 / 256
    # = 8 rows over n = 32 (1 - (248/256)^8) = 7.178 touched experts, ~1.1 rows each
    n = 32 * (1 - (248 / 256) ** 8)
    assert n == pytest.approx(7.1776, abs=1e-4)
    rate = t.gemm_peak_flop_s * t.mfu_decode * t.expert_gemm_eff
    kw = dict(num_experts=256, k=8, local_experts=32.0, expert_bytes=t.expert_bytes_per_expert_gpu,
              flop_per_row=t.expert_flop_per_row_gpu, bw_bytes_s=t.bw_bytes_s, half_bytes=t.bw_half_bytes,
              fixed_s=0.0)
    _, cmp64, _ = grouped_gemm_s(8.0, rate, tile=64, **kw)
    _, cmp128, _ = grouped_gemm_s(8.0, rate, tile=128, **kw)
    # each touched expert computes one 64-row tile (128 in the contiguous layout), plus the two
    # grouped GEMM kernels' fixed time t0 each (tests/test_kernel_fixed_time.py)
    fix = 2 * t.stream_kernel_s
    assert float(cmp64) == pytest.approx(n * 64 * t.expert_flop_per_row_gpu / rate + fix)
    assert float(cmp128) - fix == pytest.approx(2 * (float(cmp64) - fix))


def test_decode_only_steps_use_the_decode_tile_and_prompt_steps_the_contiguous_one(cat):
    t = _terms(cat)
    as64 = replace(t, grouped_gemm_tile=64, decode_gemm_tile=64)
    as128 = replace(t, grouped_gemm_tile=128, decode_gemm_tile=128)
    b, ctx = np.array([8.0, 112.0]), 4500.0
    # a decode-only pass and a step without prompt tokens: the 64-row tile
    for x, y in zip(stage_pass_s(t, b, ctx, decode_only=True), stage_pass_s(as64, b, ctx)):
        assert np.allclose(x, y)
    assert np.allclose(decode_step(t, b, ctx).total_ms, decode_step(as64, b, ctx).total_ms)
    # a prompt's prefill: the 128-row tile
    assert np.allclose(prefill(t, 4000.0).total_ms, prefill(as128, 4000.0).total_ms)
    # at 112 sequences (3.5 rows per expert) the decode step is shorter than with 128-row tiles
    assert decode_step(t, 112.0, ctx).total_ms < decode_step(as128, 112.0, ctx).total_ms
