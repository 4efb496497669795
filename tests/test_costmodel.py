"""Cost-model formulas against hand-computed cases, and the monotonicity a model must keep."""

from __future__ import annotations

import numpy as np
import pytest

from solver.architecture import param_counts
from solver.catalog import load_catalog
from solver.costmodel import (
    Shape,
    check_shape,
    decode_step,
    decode_step_ms,
    estimate,
    expert_touch_fraction,
    kv_bytes_per_seq_gpu,
    max_concurrency,
    operating_point,
    prefill_ms,
    shape_terms,
)
from solver.errors import InputError
from solver.units import GB, GIB


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


def terms(cat, model="llama-3.1-70b", gpu="h100-sxm", quant="fp8", kv="fp8", tp=4, pp=1, ep=1, system=None):
    return shape_terms(cat, Shape(model, gpu, system, quant, kv, tp=tp, pp=pp, ep=ep))


# --------------------------------------------------------------------------- memory
def test_llama70b_kv_bytes_per_token_bf16(cat):
    t = terms(cat, quant="bf16", kv="bf16", tp=1, gpu="h200-sxm")
    assert t.kv_bytes_per_token_model == 2 * 80 * 8 * 128 * 2 == 327_680
    assert float(kv_bytes_per_seq_gpu(t, 1)) == 327_680


def test_kv_heads_split_over_tp_then_replicated(cat):
    t8 = terms(cat, quant="bf16", kv="bf16", tp=8)
    assert t8.kv_full_bytes_per_token_gpu == 327_680 / 8  # 8 KV heads, one per GPU
    # Qwen2.5-7B has 4 KV heads and 28 query heads: tp=4 splits them, none of tp=8 is legal (28 % 8)
    q = terms(cat, model="qwen2.5-7b", quant="bf16", kv="bf16", tp=4)
    assert q.kv_full_bytes_per_token_gpu == 2 * 28 * 1 * 128 * 2
    # Qwen3-30B-A3B: 4 KV heads, 32 query heads: tp=8 replicates each KV head on two GPUs
    r = terms(cat, model="qwen3-30b-a3b", quant="bf16", kv="bf16", tp=8)
    assert r.kv_full_bytes_per_token_gpu == 2 * 48 * 1 * 128 * 2


def test_llama70b_fp8_weights_embeddings_stay_16_bit(cat):
    # ModelOpt FP8 checkpoints keep the token embedding and LM head in bf16: 70.6 GB of fp8
    # matmul weights less the two 1.05 GB tables, plus the tables at 2 bytes -> ~72.7 GB
    t = terms(cat, tp=1, gpu="h200-sxm")
    pc = param_counts(cat.model("llama-3.1-70b"))
    side = pc.embedding_input + pc.lm_head + pc.norms
    assert t.weight_bytes_model == pytest.approx((pc.total - side) * 1 + side * 2)
    assert t.weight_bytes_model / GB == pytest.approx(72.66, abs=0.05)
    assert t.weight_bytes_gpu == pytest.approx(t.weight_bytes_model)
    # a 16-bit format stores everything alike
    b = terms(cat, quant="bf16", kv="bf16", tp=1, gpu="h200-sxm")
    assert b.weight_bytes_model == pytest.approx(pc.total * 2)


def test_scale_overhead_counts_in_weights(cat):
    q = cat.quantization("nvfp4")
    t = terms(cat, gpu="b200", quant="nvfp4", tp=1)
    pc = param_counts(cat.model("llama-3.1-70b"))
    side = pc.embedding_input + pc.lm_head + pc.norms
    assert t.weight_bytes_gpu == pytest.approx((pc.total - side) * 0.5 * (1 + q.scale_overhead_fraction) + side * 2)


def test_decode_reads_no_input_embedding(cat):
    # the input embedding is a row lookup: a step streams every dense weight but that table
    pc = param_counts(cat.model("llama-3.1-8b"))
    for tp in (1, 2):
        t = terms(cat, model="llama-3.1-8b", quant="bf16", kv="bf16", tp=tp)
        assert t.dense_read_bytes_gpu == pytest.approx(t.dense_weight_bytes_gpu - pc.embedding_input * 2 / tp)


def test_more_tp_less_memory_per_gpu(cat):
    w = [terms(cat, tp=tp).weight_bytes_gpu for tp in (1, 2, 4, 8)]
    assert all(a > b for a, b in zip(w, w[1:]))
    caps = [int(max_concurrency(terms(cat, tp=tp), 2048)) for tp in (2, 4, 8)]
    assert caps[0] < caps[1] < caps[2]


def test_max_concurrency_hand_computed(cat):
    t = terms(cat, tp=4)
    free = 0.9 * 80 * GIB - t.weight_bytes_gpu - t.overhead_bytes_gpu - t.activation_bytes_gpu
    per_seq = 2 * 80 * 2 * 128 * 1 * 3000  # 2 KV heads per GPU, fp8, 3000 tokens
    assert int(max_concurrency(t, 3000)) == int(free // per_seq)
    arr = max_concurrency(t, np.array([1000, 2000, 4000]))
    assert arr.shape == (3,) and arr[0] > arr[1] > arr[2]


def test_sliding_window_caps_kv(cat):
    t = terms(cat, model="gemma-3-27b", quant="bf16", kv="bf16", tp=1, gpu="h200-sxm")
    m = cat.model("gemma-3-27b")
    per_layer = 2 * m.num_kv_heads * m.head_dim * 2
    full = m.num_layers - m.attention.sliding_window_layers
    w = m.attention.sliding_window
    got = float(kv_bytes_per_seq_gpu(t, 10_000))
    assert got == per_layer * (full * 10_000 + m.attention.sliding_window_layers * w)


def test_mla_kv_much_smaller_than_gqa_equivalent(cat):
    t = terms(cat, model="deepseek-v3", gpu="h200-sxm", quant="fp8", kv="bf16", tp=8, ep=8)
    m = cat.model("deepseek-v3")
    assert t.kv_bytes_per_token_model == 61 * (512 + 64) * 2
    mha = 2 * m.num_layers * m.num_kv_heads * m.head_dim * 2
    assert t.kv_bytes_per_token_model < mha / 20
    # the latent is kept whole on every TP rank
    assert t.kv_full_bytes_per_token_gpu == t.kv_bytes_per_token_model


def test_moe_experts_split_over_all_stage_gpus(cat):
    pc = param_counts(cat.model("mixtral-8x7b"))
    for tp, ep in ((8, 1), (8, 8), (2, 8)):
        t = terms(cat, model="mixtral-8x7b", tp=tp, ep=ep)
        assert t.gpus == max(tp, ep)
        assert t.expert_weight_bytes_gpu == pytest.approx(pc.expert_ffn_total / max(tp, ep))
        side = pc.embedding_input + pc.lm_head + pc.router + pc.norms  # 16-bit in fp8 checkpoints
        assert t.dense_weight_bytes_gpu == pytest.approx((pc.dense - side + 2 * side) / tp)
        # one GPU holds E / ep experts, each whole (ep >= tp) or a 1 / (tp / ep) slice of it
        assert t.experts_per_gpu_layer == 8 / ep
        assert t.expert_bytes_per_expert_gpu == pytest.approx(pc.expert_params / (max(tp, ep) // ep))


# --------------------------------------------------------------------------- time
def test_expert_touch_fraction():
    class T:  # a minimal stand-in: only the two fields the formula reads
        num_experts, experts_per_token = 8, 2

    f = expert_touch_fraction(T, np.array([1, 2, 64]))
    assert f[0] == pytest.approx(2 / 8)
    assert f[1] == pytest.approx(1 - (6 / 8) ** 2)
    assert f[2] == pytest.approx(1.0, abs=1e-6)


def test_decode_batch1_is_weight_read_bound(cat):
    t = terms(cat, tp=1, gpu="h200-sxm")
    s = decode_step(t, 1, 1000)
    assert str(s.bound) == "memory"
    # all weights but the embedding table in 4 GEMM kernels per layer, each after its
    # activation-quantise kernel (fp8 math: 8 kernels per layer), + the LM head (641 kernels),
    # and one sequence's KV in one attention kernel per layer (80): each kernel adds S_half
    assert t.compute_dtype == "fp8"
    weights = t.dense_read_bytes_gpu + (8 * 80 + 1) * t.bw_half_bytes
    kv = float(kv_bytes_per_seq_gpu(t, 1000)) + 80 * t.bw_half_bytes
    assert float(s.memory_ms) == pytest.approx((weights + kv) / t.bw_bytes_s * 1e3, rel=1e-9)
    # a decode-only step replays a CUDA graph: memory + compute-bound parts + the graph's host time
    assert float(s.overhead_ms) == pytest.approx(t.host_overhead_graph_s * 1e3)
    assert float(s.total_ms) == pytest.approx(
        float(s.memory_ms + s.compute_ms + s.comm_ms) + t.host_overhead_graph_s * 1e3, rel=1e-9)


def test_small_kernels_stream_below_the_plateau(cat):
    # the same weights split 8 ways: each kernel reads 1/8 of the bytes, so the fixed S_half per
    # kernel weighs more -- TP8 batch 1 is far less than 8x faster on the weight read
    one = terms(cat, tp=1, gpu="h200-sxm")
    eight = terms(cat, tp=8, gpu="h200-sxm")
    m1 = float(decode_step(one, 1, 1000).memory_ms)
    m8 = float(decode_step(eight, 1, 1000).memory_ms)
    assert m1 / m8 < 8 * 0.75
    assert eight.bw_half_bytes > 0


def test_prefill_compute_bound_and_weight_floor(cat):
    t = terms(cat, tp=1, gpu="h200-sxm")
    long = float(prefill_ms(t, 2048))
    flop = t.dense_flop_per_token * 2048 + t.attn_flop_per_pair_layer * 80 * 2048**2 / 2
    assert long >= flop / (t.peak_flop_s * t.mfu_prefill) * 1e3
    short = float(prefill_ms(t, 1))
    assert short >= t.weight_bytes_gpu / t.bw_bytes_s * 1e3


def test_prefix_hits_remove_prefill(cat):
    t = terms(cat)
    p = prefill_ms(t, 8192, np.array([0.0, 0.5, 0.9]))
    assert p[0] > p[1] > p[2]


def test_more_concurrency_more_throughput_not_lower_tpot(cat):
    t = terms(cat)
    b = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256, 512])
    op = operating_point(t, b, 2048, 256)
    assert np.all(np.diff(op.output_tokens_per_s) > 0)
    assert np.all(np.diff(op.tpot_ms) >= 0)
    assert np.all(np.diff(op.ttft_ms) >= 0)
    assert np.all(op.requests_per_s == pytest.approx(op.output_tokens_per_s / 256))


def test_vectorised_matches_scalar(cat):
    t = terms(cat)
    b = np.array([3, 30, 300])
    c = np.array([500, 1500, 4000])
    vec = decode_step_ms(t, b, c)
    for i in range(3):
        assert vec[i] == pytest.approx(float(decode_step_ms(t, int(b[i]), int(c[i]))))


def test_moe_decode_reads_fewer_bytes_than_dense_of_same_total(cat):
    moe = terms(cat, model="mixtral-8x7b", quant="bf16", kv="bf16", tp=2)
    one = decode_step(moe, 1, 1000)
    # batch 1 reads 2 of 8 experts: far less than all weights
    full_ms = moe.weight_bytes_gpu / moe.bw_bytes_s * 1e3
    assert float(one.memory_ms) < 0.5 * full_ms
    big = decode_step(moe, 256, 1000)
    assert float(big.memory_ms) > 0.95 * full_ms


def test_tp_comm_and_pcie_pays_more(cat):
    nv = terms(cat, model="llama-3.1-8b", gpu="h100-sxm", tp=4)
    pcie = terms(cat, model="llama-3.1-8b", gpu="h100-pcie", tp=4, system="pcie-h100-8")
    assert nv.tp_link.kind == "nvlink" and pcie.tp_link.kind == "pcie"
    assert float(decode_step(pcie, 64, 2000).comm_ms) > float(decode_step(nv, 64, 2000).comm_ms)
    assert float(decode_step(pcie, 4096, 2000).comm_ms) > 4 * float(decode_step(nv, 4096, 2000).comm_ms)
    one = terms(cat, model="llama-3.1-8b", tp=1)
    assert float(decode_step(one, 64, 2000).comm_ms) == 0.0


def test_pipeline_parallel_adds_latency_not_memory(cat):
    tp8 = terms(cat, model="llama-3.1-405b", tp=8)
    pp2 = terms(cat, model="llama-3.1-405b", tp=8, pp=2, system="hgx-h100-8")
    assert pp2.gpus == 16 and pp2.weight_bytes_gpu == pytest.approx(tp8.weight_bytes_gpu / 2)
    assert pp2.pp_link.kind == "scale-out"
    assert float(decode_step_ms(pp2, 1, 1000)) > float(decode_step_ms(tp8, 1, 1000)) * 0.9


# --------------------------------------------------------------------------- shapes
@pytest.mark.parametrize(
    "kw, words",
    [
        (dict(tp=3), "does not divide the 64 attention heads"),
        (dict(tp=16), "scale-up domain"),
        (dict(gpu="a100-80gb", quant="nvfp4"), "not supported on"),
        (dict(ep=2), "dense"),
        (dict(model="mixtral-8x7b", tp=4, ep=3), "does not divide the 8 experts"),
        (dict(system="hgx-h200-8"), "built from"),
        (dict(tp=0), "positive integer"),
    ],
)
def test_invalid_shapes_have_reasons(cat, kw, words):
    base = dict(model="llama-3.1-70b", accelerator="h100-sxm", system=None, quant="fp8", kv_dtype="fp8", tp=4)
    if "gpu" in kw:
        base["accelerator"] = kw.pop("gpu")
    base.update(kw)
    reason = check_shape(cat, Shape(**base))
    assert reason and words in reason
    with pytest.raises(InputError, match=words.split()[0]):
        shape_terms(cat, Shape(**base))


def test_unknown_ids_suggest(cat):
    with pytest.raises(InputError, match="closest valid ids: llama-3.1-70b"):
        check_shape(cat, Shape("llama-3.1-70", "h100-sxm", None, "fp8", "fp8"))


@pytest.mark.parametrize("isl, osl, conc", [(0, 10, 1), (10, 0, 1), (10, 10, 0), (10, 10, -3)])
def test_bad_lengths_and_concurrency(cat, isl, osl, conc):
    with pytest.raises(InputError):
        estimate(cat, Shape("llama-3.1-8b", "h100-sxm", None, "fp8", "fp8"), isl, osl, conc)


# --------------------------------------------------------------------------- estimate
def test_estimate_fields_and_max(cat):
    e = estimate(cat, Shape("llama-3.1-70b", "h100-sxm", None, "fp8", "fp8", tp=4), 2048, 256, "max")
    d = e.to_dict()
    for k in ("gpus", "weights_gib_per_gpu", "kv_gib_per_gpu", "max_concurrency", "concurrency",
              "ttft_ms", "tpot_ms", "output_tokens_per_s", "output_tokens_per_s_per_gpu",
              "requests_per_s", "bound", "fits", "reason"):
        assert k in d
    assert e.fits and e.concurrency == e.max_concurrency > 64
    assert e.kv_gib_per_gpu <= e.kv_free_gib_per_gpu + 1e-9
    assert e.bound in ("memory", "compute", "communication")


def test_estimate_does_not_fit_reports_reason(cat):
    e = estimate(cat, Shape("llama-3.1-405b", "h100-sxm", None, "bf16", "bf16", tp=4), 1000, 100, 8)
    assert not e.fits and "weights need" in e.reason
    e2 = estimate(cat, Shape("llama-3.1-405b", "h100-sxm", None, "bf16", "bf16", tp=4), 1000, 100, "max")
    assert e2.concurrency == 0 and e2.tpot_ms is None
    e3 = estimate(cat, Shape("llama-3.1-70b", "h100-sxm", None, "fp8", "fp8", tp=1), 2048, 256, 64)
    assert not e3.fits and "max concurrency" in e3.reason and e3.tpot_ms is not None


def test_mla_decode_attends_the_latent(cat):
    t = terms(cat, model="deepseek-v3", gpu="h200-sxm", quant="fp8", kv="bf16", tp=1, ep=8)
    a = cat.model("deepseek-v3").attention
    assert t.attn_decode_flop_per_pair_layer == 2 * 128 * (2 * a.kv_lora_rank + a.qk_rope_head_dim)
    assert t.attn_flop_per_pair_layer == 2 * 128 * (a.qk_nope_head_dim + a.qk_rope_head_dim + a.v_head_dim)
    assert t.dp_attn == 8 and t.gpus == 8


def test_attention_runs_at_16_bit_peak(cat):
    t = terms(cat)  # fp8 GEMMs on H100
    acc = cat.accelerator("h100-sxm")
    assert t.peak_flop_s == acc.dense_tflops["fp8"] * 1e12
    assert t.attn_peak_flop_s == acc.dense_tflops["bf16"] * 1e12


def test_with_efficiency_rescales_bandwidth(cat):
    from solver.costmodel import with_efficiency

    t = terms(cat)
    slow = with_efficiency(t, eta_bw=t.bw_bytes_s / t.peak_bw_bytes_s / 2)
    assert slow.bw_bytes_s == pytest.approx(t.bw_bytes_s / 2)
    # the bytes stream at half the rate; each kernel's fixed time (641 dense -- 4 GEMMs and 4
    # activation-quantise kernels per layer in fp8 math, + the LM head -- and 80 attention
    # kernels of Llama-70B) stays what it was
    assert t.compute_dtype == "fp8"
    fixed_ms = (8 * 80 + 1 + 80) * t.stream_kernel_s * 1e3
    base = float(decode_step(t, 1, 100).memory_ms)
    assert float(decode_step(slow, 1, 100).memory_ms) == pytest.approx(2 * (base - fixed_ms) + fixed_ms, rel=1e-9)
    bytes_ms = (t.dense_read_bytes_gpu + float(kv_bytes_per_seq_gpu(t, 100))) / t.bw_bytes_s * 1e3
    assert base == pytest.approx(bytes_ms + fixed_ms, rel=1e-9)


def test_ep_uses_all_to_all(cat):
    from solver.costmodel.comm import allreduce_s, alltoall_s

    # attention DP8 + EP8: no all-reduce (tp = 1); each GPU dispatches its 1000/8 tokens' k = 2
    # expert copies and combines them back, twice per MoE layer (32 layers)
    dep = terms(cat, model="mixtral-8x7b", tp=1, ep=8)
    send = 1000 / 8 * 2 * 4096 * 2
    want = 2 * 32 * float(alltoall_s(send, 8, dep.ep_cost))
    assert float(decode_step(dep, 1000, 2000).comm_ms) == pytest.approx(want * 1e3, rel=1e-9)
    # TP8: two ring all-reduces of all 1000 tokens' hidden states per layer, no all-to-all
    tp = terms(cat, model="mixtral-8x7b", tp=8)
    want_tp = 2 * 32 * float(allreduce_s(1000 * 4096 * 2, 8, tp.tp_cost))
    assert float(decode_step(tp, 1000, 2000).comm_ms) == pytest.approx(want_tp * 1e3, rel=1e-9)


def test_pipeline_bubble_in_prefill(cat):
    from solver.costmodel import prefill

    t1 = terms(cat, model="llama-3.1-405b", tp=8)
    t2 = terms(cat, model="llama-3.1-405b", tp=8, pp=2)
    # one chunk through two stages takes two stage passes of half the layers each: about the same
    one, two = float(prefill_ms(t1, 2048)), float(prefill_ms(t2, 2048))
    assert two == pytest.approx(one, rel=0.15)
    # eight chunks pipeline: (8 + 2 - 1) half-passes instead of 8 full passes
    assert float(prefill(t2, 8 * 2048).total_ms) < float(prefill(t1, 8 * 2048).total_ms)


def test_operating_point_matches_estimate(cat):
    s = Shape("llama-3.1-8b", "h100-sxm", None, "fp8", "fp8")
    t = shape_terms(cat, s)
    op = operating_point(t, np.array([16, 64]), 1000, 200, 0.3)
    e = estimate(cat, s, 1000, 200, 64, 0.3)
    assert op.tpot_ms[1] == pytest.approx(e.tpot_ms)
    assert op.ttft_ms[1] == pytest.approx(e.ttft_ms)
    assert op.output_tokens_per_s[1] == pytest.approx(e.output_tokens_per_s)
    assert bool(op.fits[1]) and op.max_concurrency == e.max_concurrency
