"""Quantisation scope and the MoE layer terms, against hand-computed cases."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from solver.architecture import param_counts
from solver.catalog import load_catalog
from solver.costmodel import (
    Shape,
    decode_step,
    expert_gemms,
    shape_terms,
    weight_groups,
    with_efficiency,
)
from solver.schemas import Efficiency

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hf"


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


def terms(cat, model, gpu="h100-sxm", quant="fp8", kv="fp8", tp=1, ep=1, pp=1):
    return shape_terms(cat, Shape(model, gpu, None, quant, kv, tp=tp, pp=pp, ep=ep))


# --------------------------------------------------------------------------- quantisation scope
def test_gpt_oss_120b_weights_bf16_attention_vs_all_mxfp4(cat):
    m = cat.model("gpt-oss-120b")
    assert m.quant_scope == "experts"
    bpw = cat.quantization("mxfp4").bytes_per_weight
    assert bpw == 0.53125  # 4 bits + one E8M0 scale per 32 values
    # hand count: 36 layers x (2880 x (4096 + 2 x 512) + 4096 x 2880 + biases 4096 + 1024 + 2880
    # + 64 sinks) attention; 201088 x 2880 per embedding table (untied); 36 x (128 x 2880 + 128)
    # router; 36 x 128 experts of 3 x 2880 x 2880 + 2 x 2880 + 2880
    attention = 36 * (2880 * (4096 + 1024) + 4096 * 2880 + 4096 + 1024 + 2880 + 64)
    table = 201088 * 2880
    router = 36 * (128 * 2880 + 128)
    experts = 36 * 128 * (3 * 2880 * 2880 + 3 * 2880)
    pc = param_counts(m)
    assert (pc.attention, pc.embedding_input, pc.lm_head, pc.router, pc.expert_ffn_total) == (
        attention, table, table, router, experts)
    released = weight_groups(m, bpw)
    assert released.expert_bytes == experts * bpw
    assert released.dense_bytes == (attention + 2 * table + router + pc.norms) * 2
    # ~65.2 GB: the size of the released checkpoint (MXFP4 experts, everything else bf16)
    assert (released.dense_bytes + released.expert_bytes) / 1e9 == pytest.approx(65.19, abs=0.01)
    # quantising attention too (what the model did before) would save attention x (2 - 0.53125)
    everything = weight_groups(m.model_copy(update={"quant_scope": "all"}), bpw)
    assert released.dense_bytes - everything.dense_bytes == pytest.approx(attention * (2 - bpw))
    assert everything.expert_bytes == released.expert_bytes
    # shape terms follow: weights per GPU and the per-step read (no input-embedding table)
    t = terms(cat, "gpt-oss-120b", gpu="b200", quant="mxfp4", ep=2)
    assert t.dense_weight_bytes_gpu == released.dense_bytes
    assert t.dense_read_bytes_gpu == released.dense_bytes - table * 2
    assert t.expert_weight_bytes_gpu == released.expert_bytes / 2
    assert t.weight_bytes_model == released.dense_bytes + released.expert_bytes


def test_sixteen_bit_weights_compute_at_the_16_bit_peak(cat):
    g = terms(cat, "gpt-oss-120b", gpu="b200", quant="mxfp4")
    pc = param_counts(cat.model("gpt-oss-120b"))
    assert g.dense_flop16_per_token == 2 * (pc.attention + pc.lm_head)
    ll = terms(cat, "llama-3.1-70b", tp=4)
    assert ll.dense_flop16_per_token == 2 * param_counts(cat.model("llama-3.1-70b")).lm_head
    b = terms(cat, "llama-3.1-70b", quant="bf16", kv="bf16", tp=4)
    assert b.dense_flop16_per_token == b.dense_flop_per_token


def test_hf_import_reads_modules_to_not_convert():
    from solver.hf_import import import_hf_config

    gpt = json.loads((FIXTURES / "openai--gpt-oss-120b_config.json").read_text())
    assert any("self_attn" in x for x in gpt["quantization_config"]["modules_to_not_convert"])
    m = import_hf_config(FIXTURES / "openai--gpt-oss-120b_config.json", "g")
    assert m.quant_scope == "experts"
    ds = import_hf_config(FIXTURES / "deepseek-ai--DeepSeek-R1_config.json", "d")
    assert ds.quant_scope == "all"


# --------------------------------------------------------------------------- MoE layer terms
def test_efficiency_new_fields_are_optional_and_default_to_zero():
    # an entry written before stream_kernel_us / moe_layer_fixed_us existed still loads
    e = Efficiency(id="x-generic", family="hopper", eta_bw=0.8, mfu_prefill=0.5, mfu_decode=0.3,
                   source="test")
    assert e.stream_kernel_us == 0.0 and e.moe_layer_fixed_us == 0.0


def test_moe_fixed_term_is_zero_for_dense_models(cat):
    t = terms(cat, "llama-3.1-70b", tp=4)
    assert t.experts_per_gpu_layer == 0 and t.expert_bytes_per_expert_gpu == 0
    b = np.array([1, 64, 1024])
    assert np.all(expert_gemms(t, b) == 0)
    slow = with_efficiency(t, moe_layer_fixed_us=100.0)
    np.testing.assert_array_equal(decode_step(slow, b, 2000).total_ms, decode_step(t, b, 2000).total_ms)


def test_moe_fixed_term_is_per_layer_not_per_expert(cat):
    # Mixtral TP2: 32 MoE layers. The fixed time is paid once per MoE layer whatever the number of
    # touched experts: 32 x 10 us = 0.32 ms at batch 1 and at batch 4096 alike.
    t = with_efficiency(terms(cat, "mixtral-8x7b", tp=2), moe_layer_fixed_us=10.0)
    assert t.moe_layer_fixed_s == pytest.approx(10e-6)
    base = with_efficiency(t, moe_layer_fixed_us=0.0)
    tokens = np.array([1, 2, 4, 8, 64, 4096])
    extra = decode_step(t, tokens, 2000).total_ms - decode_step(base, tokens, 2000).total_ms
    np.testing.assert_allclose(extra, 32 * 10e-6 * 1e3, rtol=1e-9)
    # the touched experts still rise with the batch: E x (1 - (1 - k/E)^T) per layer
    n = expert_gemms(t, tokens)
    assert float(expert_gemms(t, 1)) == pytest.approx(2 * 32)
    assert n[1] == pytest.approx(32 * 8 * (1 - 0.75**2))
    assert np.all(np.diff(n) > 0) and n[-1] == pytest.approx(8 * 32)


def test_expert_parallel_divides_the_experts_per_gpu(cat):
    # DeepSeek-R1: 256 routed experts, 58 MoE layers; at EP8 each GPU holds 32 per layer
    t8 = terms(cat, "deepseek-r1", gpu="h200-sxm", ep=8)
    assert t8.experts_per_gpu_layer == 32
    assert float(expert_gemms(t8, 100_000)) == pytest.approx(32 * 58)
    # the same GPUs as tensor parallel inside every expert run every expert's (smaller) slice
    tp8 = terms(cat, "deepseek-r1", gpu="h200-sxm", tp=8)
    assert tp8.experts_per_gpu_layer == 256
    assert tp8.expert_bytes_per_expert_gpu == pytest.approx(t8.expert_bytes_per_expert_gpu / 8)
    assert tp8.expert_flop_per_row_gpu == pytest.approx(t8.expert_flop_per_row_gpu / 8)
    # bytes are conserved: experts per GPU x bytes per expert x layers = the GPU's expert weights
    for t in (t8, tp8):
        assert t.experts_per_gpu_layer * t.expert_bytes_per_expert_gpu * 58 == pytest.approx(
            t.expert_weight_bytes_gpu)


def test_pipeline_stage_runs_its_share_of_moe_layers(cat):
    t = terms(cat, "mixtral-8x7b", tp=2)
    t2 = replace(t, pp=2)
    assert float(expert_gemms(t2, 1)) == pytest.approx(float(expert_gemms(t, 1)) / 2)
