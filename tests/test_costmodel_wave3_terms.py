"""Issue 8's later cost-model terms, each against a hand-computed case written before the term.

* activation memory sized by the engine's own token budget per step (``chunk_tokens``);
* narrow expert slices: a grouped GEMM's N and K dimensions padded to the kernel's tile;
* block-scaled FP8 expert GEMMs at their own efficiency.
"""

from __future__ import annotations

import pytest

from solver.catalog import load_catalog
from solver.costmodel import Shape, shape_terms
from solver.units import GIB


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


# --------------------------------------------------------------------------- activation memory
def test_activation_memory_follows_the_engines_token_budget(cat):
    # Llama-3.1-70B: hidden 8192, intermediate 28672, vocab 128256; TP1.
    # One step's activations: tokens x (4 x hidden + 2 x intermediate / tp) x 2 bytes,
    # plus fp32 logits of min(tokens, 1024) rows x vocab.
    # TensorRT-LLM's budget is 8192 tokens (max_num_tokens):
    #   8192 x (32768 + 57344) x 2 = 1,476,395,008 B; logits 1024 x 128256 x 4 = 525,336,576 B
    # vLLM's is 2048 tokens: 2048 x 90112 x 2 = 369,098,752 B + the same logits.
    s = Shape("llama-3.1-70b", "h100-sxm", None, "fp8", "fp8", tp=1)
    trt = shape_terms(cat, s, "tensorrt-llm")
    vllm = shape_terms(cat, s, "vllm")
    assert trt.activation_bytes_gpu == pytest.approx(1_476_395_008 + 525_336_576)
    assert vllm.activation_bytes_gpu == pytest.approx(369_098_752 + 525_336_576)
    # TensorRT-LLM's KV budget: 0.9 of what weights, 2 GiB runtime and activations leave
    fixed = trt.weight_bytes_gpu + 2 * GIB + trt.activation_bytes_gpu
    assert trt.usable_bytes == pytest.approx(fixed + 0.9 * (80 * GIB - fixed))


# --------------------------------------------------------------------------- block-scaled FP8 experts
def test_block_scaled_fp8_grouped_gemm_pads_rows_to_128():
    from solver.costmodel.compute import grouped_gemm_s, padded_rows

    # 16 rows on one expert: a 64-row tile pads to 64, a 128-row tile (block-scaled FP8) to 128
    assert float(padded_rows(16.0, 1.0, 64)) == pytest.approx(64.0)
    assert float(padded_rows(16.0, 1.0, 128)) == pytest.approx(128.0)
    # Qwen3-30B-A3B-like layer at batch 256: 128 experts, top-8 -> 2048 rows, 16 per expert;
    # all 128 touched (1 - (1 - 1/16)^256 ~ 1). flop per row 2 MFLOP, rate 1 PFLOP/s:
    # tile 64: 128 x 64 x 2e6 / 1e15 = 16.384 us; tile 128: 32.768 us
    kw = dict(num_experts=128, k=8, local_experts=128.0, expert_bytes=1e6, flop_per_row=2e6,
              bw_bytes_s=1e12, half_bytes=0.0, fixed_s=0.0)
    _, c64, _ = grouped_gemm_s(256.0, 1e15, tile=64, **kw)
    _, c128, _ = grouped_gemm_s(256.0, 1e15, tile=128, **kw)
    assert float(c64) == pytest.approx(16.384e-6, rel=1e-6)
    assert float(c128) == pytest.approx(32.768e-6, rel=1e-6)


def test_fp8_experts_are_block_scaled_grouped_gemms(cat):
    eff = cat.efficiency_for("h200-sxm").block_scaled_gemm_efficiency
    fp8 = shape_terms(cat, Shape("deepseek-v3", "h200-sxm", None, "fp8", "fp8", tp=8))
    bf16 = shape_terms(cat, Shape("qwen3-30b-a3b", "h200-sxm", None, "bf16", "bf16", tp=1))
    # Mixtral's FP8 checkpoints (ModelOpt) scale per tensor: not block-scaled
    mixtral = shape_terms(cat, Shape("mixtral-8x7b", "h100-sxm", None, "fp8", "fp8", tp=2))
    assert (mixtral.grouped_gemm_tile, mixtral.expert_gemm_eff) == (64, 1.0)
    dense = shape_terms(cat, Shape("llama-3.1-8b", "h200-sxm", None, "fp8", "fp8", tp=1))
    # DeepSeek-V3 is released in block-scaled FP8: 128-row tiles and the block-scaled efficiency
    assert (fp8.grouped_gemm_tile, fp8.expert_gemm_eff) == (128, eff)
    # 16-bit experts and dense models: 64-row tiles, the rate as it is
    assert (bf16.grouped_gemm_tile, bf16.expert_gemm_eff) == (64, 1.0)
    assert dense.expert_gemm_eff == 1.0
    # the expert rate scales the compute part of the MoE layers only: halving the efficiency
    # doubles that part at a compute-bound batch (kernels' fixed time t0 set to 0: it does not
    # scale with the rate)
    from dataclasses import replace

    from solver.costmodel.compute import stage_pass_s

    hi = replace(fp8, expert_gemm_eff=1.0, moe_layer_fixed_s=0.0, stream_kernel_s=0.0)
    lo = replace(hi, expert_gemm_eff=0.5)
    no_exp = replace(hi, num_experts=0)
    _, c_hi, _, _ = stage_pass_s(hi, 4096.0, 1000.0)
    _, c_lo, _, _ = stage_pass_s(lo, 4096.0, 1000.0)
    _, c_0, _, _ = stage_pass_s(no_exp, 4096.0, 1000.0)
    assert float(c_lo - c_0) == pytest.approx(2.0 * float(c_hi - c_0), rel=1e-9)


# --------------------------------------------------------------------------- expert TP inside attention DP
def test_expert_tp_inside_attention_dp_shape(cat):
    from solver.architecture import param_counts
    from solver.costmodel import check_shape

    # AIC's best Qwen3-235B-A22B configuration on 8 GPUs: attention TP1 x DP8, experts EP2 x TP4.
    s = Shape("qwen3-235b-a22b", "h200-sxm", None, "bf16", "bf16", tp=1, ep=2, moe_tp=4)
    assert (s.stage_gpus, s.gpus, s.dp_attn) == (8, 8, 8)
    t = shape_terms(cat, s)
    m = cat.model("qwen3-235b-a22b")  # 128 experts, moe_intermediate 1536
    pc = param_counts(m)
    # each GPU holds 128 / 2 = 64 experts' slices, each a quarter of an expert (1536 / 4 = 384 wide)
    assert t.experts_per_gpu_layer == 64.0
    assert t.expert_bytes_per_expert_gpu == pytest.approx(pc.expert_params * 2.0 / 4)
    assert t.expert_flop_per_row_gpu == pytest.approx(2.0 * pc.expert_params / 4)
    # the experts' weights are still spread evenly over the 8 GPUs
    assert t.expert_weight_bytes_gpu == pytest.approx(pc.expert_ffn_total * 2.0 / 8)
    # the derived layouts are unchanged: moe_tp 0 = derived (ep < tp: experts TP over tp / ep)
    d = shape_terms(cat, Shape("qwen3-235b-a22b", "h200-sxm", None, "bf16", "bf16", tp=8, ep=2))
    assert (d.dp_attn, d.moe_tp, d.experts_per_gpu_layer) == (1, 4, 64.0)
    # bad combinations are refused with a reason naming the field
    assert "moe_tp" in check_shape(cat, Shape("qwen3-235b-a22b", "h200-sxm", None, "bf16", "bf16", tp=1, ep=2, moe_tp=5))
    assert "moe_tp" in check_shape(cat, Shape("llama-3.1-8b", "h200-sxm", None, "bf16", "bf16", tp=1, ep=1, moe_tp=2))
    assert "moe_tp" in check_shape(cat, Shape("qwen3-235b-a22b", "h200-sxm", None, "bf16", "bf16", tp=8, ep=2, moe_tp=2))


def test_expert_tp_group_reduces_its_partial_outputs():
    from solver.costmodel.comm import LinkCost, allreduce_s, stage_comm_s

    nvl = LinkCost(bandwidth_bytes_s=450e9, latency_s=5e-6, bw_efficiency=0.8, saturation_bytes=0.0, ramp=0.0)
    base = dict(rank_tokens=1.0, stage_tokens=8.0, hidden_size=4096, act_bytes=2, layers=10.0, moe_layers=10.0,
                tp=1, ep=2, stage_gpus=8, experts_per_token=8, pp=1, tp_link=nvl, ep_link=nvl, pp_link=nvl)
    plain = stage_comm_s(**base)
    with_etp = stage_comm_s(**base, expert_tp=4, expert_tp_link=nvl)
    # 8 stage tokens x 8 copies land on 2 EP groups: each group's GPUs hold partial outputs of
    # 32 token rows x 4096 x 2 B = 262,144 B, all-reduced over its 4 GPUs once per MoE layer:
    # 5 us + 2 x 3/4 x 262,144 B / (450 GB/s x 0.8) = 5 us + 1.092 us = 6.092 us; x 10 layers
    one = float(allreduce_s(32 * 4096 * 2, 4, nvl))
    assert one == pytest.approx(5e-6 + 1.5 * 262_144 / 360e9)
    assert float(with_etp - plain) == pytest.approx(10 * one)
