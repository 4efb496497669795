"""Engine profiles (catalogs/engines.yaml): memory rules, chunk sizes, host overheads, formats per
accelerator, the ``engine`` input of problems and CLI commands, and the MoE parallelism space."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from solver.candidates import moe_parallelism
from solver.catalog import load_catalog
from solver.cli import main
from solver.costmodel import Shape, check_shape, kv_budget_bytes_gpu, shape_terms, usable_bytes
from solver.errors import InputError
from solver.problem import check_ids, load_problem
from solver.units import GIB

PROBLEMS = Path(__file__).resolve().parent.parent / "problems"


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


def run(args):
    return CliRunner().invoke(main, args)


def test_every_engine_has_a_source_and_the_default_exists(cat):
    assert cat.default_engine == "vllm"
    assert set(cat.engines) == {"vllm", "sglang", "tensorrt-llm"}
    for e in cat.engines.values():
        assert e.source and e.host_overhead_graph_ms <= e.host_overhead_eager_ms


def test_usable_bytes_by_policy():
    # 80 GiB GPU, 30 GiB of weights + runtime + activations
    hbm, fixed = 80 * GIB, 30 * GIB
    assert usable_bytes("total-fraction", 0.9, hbm, fixed) == pytest.approx(72 * GIB)
    # TensorRT-LLM: 30 + 0.9 x (80 - 30) = 75 GiB
    assert usable_bytes("free-after-weights", 0.9, hbm, fixed) == pytest.approx(75 * GIB)
    # weights larger than HBM: never more than the HBM
    assert usable_bytes("free-after-weights", 0.9, hbm, 90 * GIB) == pytest.approx(80 * GIB)


def test_engine_changes_kv_budget_and_chunk(cat):
    s = Shape("llama-3.1-70b", "h200-sxm", None, "fp8", "fp8", tp=2)
    v, t, g = (shape_terms(cat, s, e) for e in ("vllm", "tensorrt-llm", "sglang"))
    assert v.usable_bytes == pytest.approx(0.9 * v.hbm_bytes)
    assert g.usable_bytes == pytest.approx(0.88 * g.hbm_bytes)
    assert kv_budget_bytes_gpu(t) > kv_budget_bytes_gpu(v) > kv_budget_bytes_gpu(g)
    assert (v.prefill_chunk_tokens, t.prefill_chunk_tokens) == (2048, 8192)
    assert shape_terms(cat, s).engine == "vllm"


def test_engine_that_does_not_run_the_accelerator_or_format(cat):
    s = Shape("llama-3.1-8b", "mi300x", None, "fp8", "fp8")
    assert "does not run on 'mi300x'" in check_shape(cat, s, "tensorrt-llm")
    assert check_shape(cat, s, "vllm") is None
    with pytest.raises(InputError, match="engine 'tensorrt-llm'"):
        shape_terms(cat, s, "tensorrt-llm")
    nv = Shape("llama-3.1-8b", "b200", None, "nvfp4", "fp8")
    assert check_shape(cat, nv, "tensorrt-llm") is None
    # int8 runs on CDNA3 hardware, but SGLang's ROCm path does not serve it
    i8 = Shape("llama-3.1-8b", "mi300x", None, "int8", "bf16")
    assert check_shape(cat, i8) is None
    assert "does not run format 'int8' on cdna3" in check_shape(cat, i8, "sglang")


def test_problem_engine_field_is_checked(cat):
    p = load_problem(PROBLEMS / "chat-assistant-70b.yaml", cat)
    assert all(m.engine is None for m in p.models)  # default: the catalog's default_engine
    good = p.model_copy(update={"models": [m.model_copy(update={"engine": "sglang"}) for m in p.models]})
    check_ids(good, cat, "x")
    bad = p.model_copy(update={"models": [m.model_copy(update={"engine": "tgi"}) for m in p.models]})
    with pytest.raises(InputError, match=r"\.engine: unknown engine 'tgi'"):
        check_ids(bad, cat, "x")


def test_cli_bad_engine_dp_and_ep_exit_2_one_line():
    common = ["estimate", "--model", "deepseek-v3", "--gpu", "h200-sxm", "--quant", "fp8",
              "--kv-dtype", "fp8", "--isl", "1000", "--osl", "100"]
    cases = [
        (["--engine", "tgi"], "--engine: unknown engine 'tgi'"),
        (["--tp", "8", "--gpu", "mi300x", "--engine", "tensorrt-llm"], "--engine: engine 'tensorrt-llm' does not run on 'mi300x'"),
        (["--tp", "1", "--ep", "3"], "ep=3 does not divide the 256 experts"),
        (["--tp", "1", "--ep", "8", "--dp", "4"], "--dp 4 x --tp 1 = 4 GPUs"),
    ]
    for extra, msg in cases:
        r = run(common + extra)
        assert r.exit_code == 2, (extra, r.output)
        assert msg in r.output and len(r.output.strip().splitlines()) == 1
    ok = run(common + ["--tp", "1", "--ep", "8", "--dp", "8", "--engine", "tensorrt-llm", "--concurrency", "64"])
    assert ok.exit_code == 0, ok.output


def test_capacity_rejects_an_engine_for_the_gpu():
    r = run(["capacity", "--model", "llama-3.1-8b", "--gpu", "mi300x", "--gpus", "8", "--isl", "1000",
             "--osl", "100", "--tpot-p99-ms", "50", "--engine", "tensorrt-llm"])
    assert r.exit_code == 2 and "--engine:" in r.output


def test_moe_parallelism_space():
    # a stage of 8: TP8 with experts TP-split or split into EP groups, or attention DP with EP8
    assert moe_parallelism(8, 256) == [(1, 8), (2, 8), (4, 8), (8, 1), (8, 2), (8, 4), (8, 8)]
    # TP4 + EP2 lives in a stage of 4
    assert (4, 2) in moe_parallelism(4, 128)
    # EP must divide the expert count: Mixtral's 8 experts allow no EP16
    assert moe_parallelism(16, 8) == []
    # wide stages (NVL72): EP over all GPUs, attention TP within 8
    assert moe_parallelism(32, 256) == [(1, 32), (2, 32), (4, 32), (8, 32)]


def test_engine_runs_mxfp4_experts_at_its_activation_dtype(cat):
    # TensorRT-LLM's gpt-oss MoE backend on Blackwell: MXFP4 weights x MXFP8 activations
    s = Shape("gpt-oss-120b", "b200", None, "mxfp4", "fp8")
    trt, vllm = shape_terms(cat, s, "tensorrt-llm"), shape_terms(cat, s, "vllm")
    acc = cat.accelerator("b200")
    assert trt.compute_dtype == "fp8" and trt.peak_flop_s == acc.dense_tflops["fp8"] * 1e12
    assert vllm.compute_dtype == "fp4"
    # Hopper has no override: the format's own (emulated, bf16) dtype
    assert shape_terms(cat, Shape("gpt-oss-120b", "h200-sxm", None, "mxfp4", "bf16"), "tensorrt-llm").compute_dtype == "bf16"


def test_capacity_with_an_engine_plans_and_verifies_under_that_engine():
    # the verifier recomputes each deployment under the model's engine (a TensorRT-LLM plan checked
    # against vLLM's memory rule and chunk size would not verify)
    r = run(["capacity", "--model", "qwen3-30b-a3b", "--gpu", "h200-sxm", "--gpus", "8", "--isl", "4000",
             "--osl", "1000", "--ttft-p99-ms", "2000", "--tpot-p99-ms", "50", "--engine", "tensorrt-llm", "--json"])
    assert r.exit_code == 0, r.output
