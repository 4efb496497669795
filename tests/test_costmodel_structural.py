"""Structural cost-model terms (issue 8) against hand-computed cases, written before the terms.

Each pure function is checked with round numbers worked out by hand in the comments; the
catalog-level tests then check that a shape's step carries exactly those terms, and that the
step breakdown ``estimate`` prints adds up to TPOT for every catalog model.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from solver.catalog import load_catalog
from solver.costmodel import Shape, check_shape, decode_step, estimate, prefill, shape_terms
from solver.costmodel.comm import LinkCost, allreduce_s, alltoall_s, link_efficiency
from solver.costmodel.compute import grouped_gemm_s, hbm_stream_s, padded_rows, touched_experts


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


# --------------------------------------------------------------------------- HBM efficiency
def test_hbm_stream_efficiency_falls_with_bytes_per_kernel():
    # eta(S) = eta_max x S / (S + S_half): time = (bytes + kernels x S_half) / (peak x eta_max)
    bw = 3e12  # peak x eta_max, bytes/s
    # one kernel of 10 MB, S_half = 2 MB: (10 + 2) MB / 3 TB/s = 4 us
    assert float(hbm_stream_s(10e6, 1, bw, 2e6)) == pytest.approx(4e-6)
    # the same 10 MB in 10 kernels of 1 MB each: (10 + 20) MB / 3 TB/s = 10 us
    assert float(hbm_stream_s(10e6, 10, bw, 2e6)) == pytest.approx(10e-6)
    # S_half = 0 is the plain roofline
    assert float(hbm_stream_s(10e6, 10, bw, 0.0)) == pytest.approx(10e6 / 3e12)
    # elementwise over arrays
    got = hbm_stream_s(np.array([0.0, 3e6]), np.array([1, 1]), bw, 0.0)
    np.testing.assert_allclose(got, [0.0, 1e-6])


# --------------------------------------------------------------------------- grouped GEMM
def test_touched_experts_and_padding():
    # 8 experts, top-2, one GPU holds all 8: one token touches 2, 2 tokens 8 x (1 - 0.75^2) = 3.5
    np.testing.assert_allclose(touched_experts(np.array([1.0, 2.0]), 8, 2, 8.0), [2.0, 3.5])
    # EP2: the GPU holds 4 of the 8, so half the touched experts are its own
    assert float(touched_experts(1.0, 8, 2, 4.0)) == pytest.approx(1.0)
    # 2 rows over 2 experts, tile 64: each expert pads 1 row up to 64 -> 128 rows
    assert float(padded_rows(2.0, 2.0, 64)) == pytest.approx(128.0)
    # 512 rows over 8 experts: 64 each, exactly one tile each -> 512
    assert float(padded_rows(512.0, 8.0, 64)) == pytest.approx(512.0)
    # 520 rows over 8 experts: 65 each -> two tiles each -> 1024
    assert float(padded_rows(520.0, 8.0, 64)) == pytest.approx(1024.0)
    assert float(padded_rows(0.0, 0.0, 64)) == 0.0


GG = dict(num_experts=8, k=2, local_experts=8.0, expert_bytes=1e6, flop_per_row=2e6,
          bw_bytes_s=1e12, half_bytes=0.0, tile=64, fixed_s=10e-6)


def test_grouped_gemm_batch_1():
    # one token: 2 experts touched, 2 rows padded to 2 x 64 = 128;
    # read 2 x 1 MB / 1 TB/s = 2 us; compute 128 x 2 MFLOP / 1 PFLOP/s = 0.256 us;
    # one MoE layer = fixed 10 us + max(2, 0.256) us = 12 us, memory-bound
    mem, cmp, fixed = grouped_gemm_s(1.0, 1e15, **GG)
    assert float(mem) == pytest.approx(2e-6)
    assert float(cmp) == pytest.approx(0.256e-6)
    assert float(fixed) == pytest.approx(10e-6)


def test_grouped_gemm_batch_256():
    # 256 tokens: 8 x (1 - 0.75^256) = 8 experts (to 1e-30); 512 rows, 64 per expert = 512 padded
    # read 8 MB / 1 TB/s = 8 us; compute 512 x 2 MFLOP / 1 PFLOP/s = 1.024 us; fixed 10 us
    mem, cmp, fixed = grouped_gemm_s(256.0, 1e15, **GG)
    assert float(mem) == pytest.approx(8e-6)
    assert float(cmp) == pytest.approx(1.024e-6)
    assert float(fixed) == pytest.approx(10e-6)
    # with S_half = 1 MB per kernel: the two grouped GEMMs (gate/up, down) add 2 MB -> 10 us
    mem2, _, _ = grouped_gemm_s(256.0, 1e15, **(GG | {"half_bytes": 1e6}))
    assert float(mem2) == pytest.approx(10e-6)
    # at a slow rate the padded compute dominates: 512 x 2e6 / 1e14 = 10.24 us
    _, cmp3, _ = grouped_gemm_s(256.0, 1e14, **GG)
    assert float(cmp3) == pytest.approx(10.24e-6)


# --------------------------------------------------------------------------- collectives
NVL = LinkCost(bandwidth_bytes_s=450e9, latency_s=5e-6, bw_efficiency=0.8, saturation_bytes=2**25, ramp=0.25)
PCIE = LinkCost(bandwidth_bytes_s=64e9, latency_s=15e-6, bw_efficiency=0.7, saturation_bytes=2**25, ramp=0.25)


def test_link_efficiency_ramps_to_its_maximum():
    # eff(S) = eff_max x min(1, S / S_sat)^ramp; S_sat = 32 MiB
    assert float(link_efficiency(2**25, NVL)) == pytest.approx(0.8)
    assert float(link_efficiency(2**26, NVL)) == pytest.approx(0.8)
    # 16 KiB = 2^14: (2^-11)^0.25 = 2^-2.75 = 0.148650
    assert float(link_efficiency(2**14, NVL)) == pytest.approx(0.8 * 2**-2.75)


def test_allreduce_16kb_and_16mb_on_nvlink():
    # ring over 8 GPUs moves 2 x 7/8 of the message per GPU
    small = 2**14
    eff = 0.8 * 2**-2.75  # 0.118920
    want = 5e-6 + 2 * 7 / 8 * small / (450e9 * eff)  # 5 us + 0.536 us
    assert float(allreduce_s(small, 8, NVL)) == pytest.approx(want)
    assert float(allreduce_s(small, 8, NVL)) == pytest.approx(5.536e-6, rel=1e-3)
    big = 2**24  # 16 MiB: eff = 0.8 x (1/2)^0.25 = 0.672717
    want_big = 5e-6 + 2 * 7 / 8 * big / (450e9 * 0.8 * 0.5**0.25)
    assert float(allreduce_s(big, 8, NVL)) == pytest.approx(want_big)
    assert float(allreduce_s(big, 8, NVL)) == pytest.approx(102.0e-6, rel=1e-2)
    # a group of one GPU communicates nothing
    assert float(allreduce_s(big, 1, NVL)) == 0.0


def test_allreduce_16kb_and_16mb_on_pcie():
    small, big = 2**14, 2**24
    w_small = 15e-6 + 2 * 3 / 4 * small / (64e9 * 0.7 * 2**-2.75)
    w_big = 15e-6 + 2 * 3 / 4 * big / (64e9 * 0.7 * 0.5**0.25)
    assert float(allreduce_s(small, 4, PCIE)) == pytest.approx(w_small)
    assert float(allreduce_s(big, 4, PCIE)) == pytest.approx(w_big)
    # 16 MiB at TP4 over PCIe: 15 us + 25.17 MB / 37.67 GB/s = 683 us
    assert float(allreduce_s(big, 4, PCIE)) == pytest.approx(683e-6, rel=1e-2)


def test_ep_alltoall_dispatch():
    # each GPU sends 8 MiB of token copies; 7/8 of them leave the GPU at EP8: 7 MiB on the wire,
    # efficiency at 8 MiB = 0.8 x (1/4)^0.25 = 0.565685
    send = 2**23
    want = 5e-6 + 7 / 8 * send / (450e9 * 0.8 * 0.25**0.25)
    assert float(alltoall_s(send, 8, NVL)) == pytest.approx(want)
    assert float(alltoall_s(send, 8, NVL)) == pytest.approx(33.8e-6, rel=1e-2)
    assert float(alltoall_s(send, 1, NVL)) == 0.0


# --------------------------------------------------------------------------- shapes
def _t(cat, model, gpu="h200-sxm", quant="fp8", kv="fp8", tp=1, ep=1, pp=1, engine="tensorrt-llm"):
    return shape_terms(cat, Shape(model, gpu, None, quant, kv, tp=tp, pp=pp, ep=ep), engine)


def test_dp_attention_prefill_runs_on_one_rank(cat):
    # DeepSeek-R1 TP1 x EP8 (8 attention-DP ranks): one prompt's dense and attention FLOPs run on
    # ONE rank's GPU, not spread over the 8. The dense compute of a 2048-token chunk is
    # 2048 x dense FLOP/token / (tp x pp) / (peak x mfu_prefill), split into its 16-bit part.
    t = _t(cat, "deepseek-r1", ep=8)
    assert t.dp_attn == 8
    n = 2048
    f16 = t.dense_flop16_per_token
    fq = t.dense_flop_per_token - f16
    dense = n * (fq / (t.peak_flop_s * t.mfu_prefill) + f16 / (t.attn_peak_flop_s * t.mfu_prefill))
    attn = t.full_attn_layers * n * n / 2 * t.attn_flop_per_pair_layer / (t.attn_peak_flop_s * t.mfu_prefill)
    p = prefill(t, n)
    # compute_ms carries the compute-bound operators; dense GEMMs and prefill attention are both
    # compute-bound at 2048 tokens, and the routed experts are spread over all 8 GPUs
    assert float(p.compute_ms) >= (dense + attn) * 1e3 * 0.999
    # the same prompt on TP8 (no DP) splits the dense work 8 ways
    t8 = _t(cat, "deepseek-r1", tp=8)
    dense8 = dense / 8
    # (under half of the one-rank prefill's compute time: both now also carry their compute-bound
    # kernels' fixed time, tests/test_kernel_fixed_time.py)
    assert float(prefill(t8, n).compute_ms) < float(p.compute_ms) / 2
    assert float(prefill(t8, n).compute_ms) >= (dense8 + attn / 8) * 1e3 * 0.999


def test_amortised_prompt_tokens_do_not_touch_experts_as_decode_tokens(cat):
    # Qwen-like MoE at batch 1 with ISL/OSL 1000/100: 10 prompt tokens per step on average arrive
    # as one chunk every ~chunk/10 steps, not as 10 extra independent tokens in every step.
    # TP8 (one attention rank): a share f = 10 / chunk of the steps carries a full chunk.
    t = _t(cat, "deepseek-r1", tp=8)
    alone = decode_step(t, 1, 1050)
    mixed = decode_step(t, 1, 1050, prefill_tokens_per_step=10.0)
    # the mixed step is a mixture: (1 - f) decode-only steps + f chunk steps, f = 10 / chunk
    c = t.prefill_chunk_tokens
    f = 10.0 / c
    chunk = decode_step(t, 1, 1050, prefill_tokens_per_step=float(c))
    want = (1 - f) * float(alone.total_ms) + f * float(chunk.total_ms)
    assert float(mixed.total_ms) == pytest.approx(want, rel=1e-9)
    # and far below 11 independent tokens' expert reads
    eleven = decode_step(t, 11, 1050)
    assert float(mixed.total_ms) < float(eleven.total_ms)
    # with 8 attention-DP ranks the expected prompt tokens per step are still the 10 given
    t8 = _t(cat, "deepseek-r1", ep=8)
    from solver.costmodel.compute import chunk_mixture
    f_any, chunk, ranks = chunk_mixture(t8, np.array([10.0, 1e6]))
    np.testing.assert_allclose(f_any * chunk, [10.0, 1e6])
    assert ranks[1] == pytest.approx(8.0) and chunk[1] == pytest.approx(1e6)


def test_step_overhead_depends_on_cuda_graphs(cat):
    t = _t(cat, "llama-3.1-8b")
    assert t.host_overhead_graph_s < t.host_overhead_eager_s
    d = decode_step(t, 1, 1000)
    assert float(d.overhead_ms) == pytest.approx(t.host_overhead_graph_s * 1e3)
    p = prefill(t, 4 * t.prefill_chunk_tokens)
    assert float(p.overhead_ms) == pytest.approx(4 * t.host_overhead_eager_s * 1e3)


def _catalog_shapes(cat):
    for mid, m in sorted(cat.models.items()):
        for gpu in ("h200-sxm", "b200", "mi300x"):
            if gpu not in cat.accelerators:
                continue
            for tp, ep in ((8, 1), (1, 8), (4, 2)) if m.moe else ((1, 1), (8, 1)):
                s = Shape(mid, gpu, None, "fp8", "fp8", tp=tp, ep=ep)
                if check_shape(cat, s) is None:
                    yield s


def test_breakdown_sums_to_tpot_over_the_catalog(cat):
    n = 0
    for s in _catalog_shapes(cat):
        for engine in ("vllm", "tensorrt-llm", "sglang"):
            try:
                e = estimate(cat, s, 2000, 500, 16, engine=engine)
            except Exception as exc:  # an engine that does not run this accelerator
                assert "engine" in str(exc)
                continue
            if e.tpot_ms is None:
                continue
            parts = e.decode_memory_ms + e.decode_compute_ms + e.decode_comm_ms + e.decode_overhead_ms
            assert parts == pytest.approx(e.tpot_ms, rel=1e-9), (s, engine)
            n += 1
    assert n >= 40
    assert math.isfinite(n)


def test_without_cuda_graphs_decode_pays_the_eager_host_time(cat):
    s = Shape("llama-3.1-8b", "h200-sxm", None, "fp8", "fp8")
    eager = shape_terms(cat, s, "vllm", cuda_graphs=False)
    graph = shape_terms(cat, s, "vllm")
    eng = cat.engine("vllm")
    assert float(decode_step(eager, 1, 1000).overhead_ms) == pytest.approx(eng.host_overhead_eager_ms)
    assert float(decode_step(graph, 1, 1000).overhead_ms) == pytest.approx(eng.host_overhead_graph_ms)
    e = estimate(cat, s, 1000, 100, 1, engine="vllm", cuda_graphs=False)
    g = estimate(cat, s, 1000, 100, 1, engine="vllm")
    # in the operating point a share f = (1000 / 100) / 2048 of the steps carries a prompt chunk
    # and runs eagerly either way; only the other 1 - f decode-only steps change
    f = 10 / 2048
    want = (1 - f) * (eng.host_overhead_eager_ms - eng.host_overhead_graph_ms)
    assert e.tpot_ms - g.tpot_ms == pytest.approx(want, rel=1e-6)


def test_request_overhead_is_in_ttft_only(cat):
    from solver.costmodel import operating_point, prefill_ms, with_efficiency

    t = with_efficiency(shape_terms(cat, Shape("llama-3.1-8b", "h200-sxm", None, "fp8", "fp8")),
                        request_overhead_ms=5.0)
    base = with_efficiency(t, request_overhead_ms=0.0)
    op, op0 = operating_point(t, [1, 64], 2000, 200), operating_point(base, [1, 64], 2000, 200)
    # batch 1: TTFT = 5 ms + the prompt alone
    assert float(op.ttft_ms[0]) == pytest.approx(5.0 + float(prefill_ms(base, 2000)), rel=1e-9)
    np.testing.assert_allclose(op.ttft_ms - op0.ttft_ms, 5.0, rtol=1e-9)
    np.testing.assert_array_equal(op.tpot_ms, op0.tpot_ms)  # not a per-step cost


def test_link_costs_come_from_the_link_kind_and_the_path(cat):
    # HGX H100: NVLink 450 GB/s per GPU and direction, 3 us path latency (systems.yaml) + the
    # nvlink profile's 2 us software latency (engines.yaml links)
    t = _t(cat, "llama-3.1-70b", gpu="h100-sxm", tp=8)
    nv = cat.link_profile("nvlink")
    assert t.tp_cost.bandwidth_bytes_s == pytest.approx(450e9)
    assert t.tp_cost.latency_s == pytest.approx((nv.latency_us + 3) * 1e-6)
    assert (t.tp_cost.bw_efficiency, t.tp_cost.saturation_bytes) == (nv.bw_efficiency, nv.saturation_mb * 1e6)
    # PCIe H100 box: the pcie profile on the system's PCIe link
    p = shape_terms(cat, Shape("llama-3.1-70b", "h100-pcie", "pcie-h100-8", "fp8", "fp8", tp=4), "vllm")
    pc = cat.link_profile("pcie")
    assert p.tp_link.kind == "pcie"
    assert p.tp_cost.latency_s == pytest.approx((pc.latency_us + p.tp_link.latency_us) * 1e-6)
    # one GPU: no link at all
    assert _t(cat, "llama-3.1-8b").tp_cost.bandwidth_bytes_s == float("inf")


def test_quantised_activations_add_one_quantise_kernel_per_gemm(cat):
    # An FP8 (W8A8) GEMM reads FP8 activations: each of a layer's four GEMM inputs (QKV, O,
    # gate/up, down) is first quantised by its own small kernel, which pays a streaming kernel's
    # fixed time t0 = stream_kernel_us like any other. Weight-only formats (w4a16, computed in
    # bf16) and bf16 add none. Batch 1, no context: the dense GEMMs' weight stream.
    from solver.costmodel.compute import stage_pass_s
    from solver.costmodel import with_efficiency

    def mem(gpu: str, quant: str) -> tuple[float, float, float]:
        t = with_efficiency(shape_terms(cat, Shape("llama-3.1-8b", gpu, None, quant, "bf16", tp=8),
                                        "tensorrt-llm"), stream_kernel_us=5.0)
        m, _, _, _ = stage_pass_s(t, 1.0, 0.0)
        return float(m), t.dense_read_bytes_gpu, t.bw_half_bytes / t.bw_bytes_s

    layers = 32
    m8, bytes8, t0 = mem("h200-sxm", "fp8")
    assert t0 == pytest.approx(5e-6)
    bw = shape_terms(cat, Shape("llama-3.1-8b", "h200-sxm", None, "fp8", "bf16", tp=8), "tensorrt-llm").bw_bytes_s
    assert m8 == pytest.approx(bytes8 / bw + (8 * layers + 1) * 5e-6, rel=1e-9)
    m16, bytes16, _ = mem("h200-sxm", "bf16")
    assert m16 == pytest.approx(bytes16 / bw + (4 * layers + 1) * 5e-6, rel=1e-9)
    # weight-only int4 (w4a16): weights are dequantised inside a bf16 GEMM, no activation quantiser
    mw, bytes_w, _ = mem("h200-sxm", "w4a16")
    assert mw == pytest.approx(bytes_w / bw + (4 * layers + 1) * 5e-6, rel=1e-9)


def test_mixed_input_gemms_run_at_their_own_efficiency(cat):
    # Weights narrower than the GEMM's math dtype (MXFP4 experts on Hopper, computed in bf16; on
    # B200 the engine computes them in fp8) are dequantised inside the GEMM's main loop: such GEMMs
    # reach the family's mixed_input_gemm_efficiency x the peak of the math dtype. Native formats
    # (fp8 on H200, nvfp4 on B200) keep the full peak.
    from solver.costmodel import with_efficiency

    def t(model, gpu, quant, kv="bf16"):
        return shape_terms(cat, Shape(model, gpu, None, quant, kv, tp=1), "tensorrt-llm")

    h = t("gpt-oss-120b", "h200-sxm", "mxfp4")
    assert h.compute_dtype == "bf16" and h.mixed_input
    bf16_peak = cat.accelerator("h200-sxm").dense_tflops["bf16"] * 1e12
    assert with_efficiency(h, mixed_input_gemm_efficiency=0.5).gemm_peak_flop_s == pytest.approx(0.5 * bf16_peak)
    b = t("gpt-oss-120b", "b200", "mxfp4", "fp8")
    assert b.compute_dtype == "fp8" and b.mixed_input
    for native in (t("llama-3.1-8b", "h200-sxm", "fp8"), t("llama-3.1-8b", "b200", "nvfp4"),
                   t("llama-3.1-8b", "h200-sxm", "bf16")):
        assert not native.mixed_input
        assert with_efficiency(native, mixed_input_gemm_efficiency=0.5).gemm_peak_flop_s == native.peak_flop_s
