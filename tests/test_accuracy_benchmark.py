"""The accuracy benchmark maps refdata rows onto the cost model and keeps dense-model error low."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CSV = REPO.parent / "shared" / "refdata" / "measured.csv"


@pytest.fixture(scope="module")
def acc():
    spec = importlib.util.spec_from_file_location("accuracy", REPO / "benchmarks" / "accuracy.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["accuracy"] = mod  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(not CSV.exists(), reason="../shared/refdata not present")
def test_rows_map_and_dense_throughput_error_is_bounded(acc):
    from solver.catalog import load_catalog
    from solver.costmodel import shape_terms

    cat = load_catalog()
    cases, skipped = acc.load_cases(CSV)
    assert len(cases) >= 60
    assert all(reason for _, _, reason in skipped)
    dense = [c for c in cases if c.metric in acc.THROUGHPUT and c.shape.model not in acc.MOE_MODELS]
    rows = [(c, acc.predict(shape_terms(cat, c.shape), c)) for c in dense]
    assert acc.mape(rows) < 20.0


def test_precision_mapping(acc):
    assert acc._formats("FP8 W/A, FP8 KV", "h100-sxm") == ("fp8", "fp8")
    assert acc._formats("NVFP4 weights, FP16 KV", "b200") == ("nvfp4", "fp16")
    assert acc._formats("FP16", "a100-80gb") == ("fp16", "fp16")
    assert acc._formats("not stated", "h100-sxm") is None


def _row(**kw) -> dict[str, str]:
    r = {"source": "https://github.com/NVIDIA/TensorRT-LLM/blob/x/docs/source/developer-guide/perf-overview.md",
         "engine": "TensorRT-LLM", "model": "gpt-oss-120b", "gpu": "H100 SXM 80GB", "num_gpus": "4",
         "tp": "", "pp": "1", "ep": "4", "precision": "FP8 (as labelled)", "isl": "1024", "osl": "1024",
         "scenario": "offline", "metric": "output_tokens_per_s_per_gpu", "value": "4715",
         "notes": "trtllm-bench throughput, PyTorch backend, max load; parallelism DEP4"}
    return r | kw


def test_as_labelled_runs_the_released_checkpoint_and_requests_cap(acc):
    c = acc.map_row(81, _row())
    assert (c.shape.quant, c.shape.kv_dtype, c.shape.tp, c.shape.ep) == ("mxfp4", "bf16", 1, 4)
    # Blackwell runs of the same doc keep the FP8 KV cache its llm_options set
    bw = acc.map_row(78, _row(gpu="B200 180GB", precision="FP4 (as labelled), FP8 KV", ep="2", num_gpus="2"))
    assert (bw.shape.quant, bw.shape.kv_dtype) == ("mxfp4", "fp8")
    assert c.concurrency == "max:3000"  # perf overview: 3000 requests at 1024/1024
    assert acc.map_row(0, _row(isl="8192")).concurrency == "max:1500"
    # a precision that names the weights is taken as given; other sources are not capped
    other = acc.map_row(0, _row(precision="FP8 W/A, FP8 KV", source="https://example.org/other"))
    assert (other.shape.quant, other.concurrency) == ("fp8", "max")


def test_trtllm_kv_cache_takes_a_fraction_of_free_memory(acc):
    from solver.catalog import load_catalog
    from solver.costmodel import kv_budget_bytes_gpu, shape_terms
    from solver.costmodel.shape import Shape

    cat = load_catalog()
    s = Shape("llama-3.1-70b", "h100-sxm", None, "fp16", "fp16", tp=2)
    trt = shape_terms(cat, s, acc.engine_id("TensorRT-LLM (PyTorch backend)"))
    vllm = shape_terms(cat, s, acc.engine_id("vLLM"))
    fixed = trt.weight_bytes_gpu + trt.overhead_bytes_gpu + trt.activation_bytes_gpu
    assert kv_budget_bytes_gpu(trt) == pytest.approx(0.9 * (trt.hbm_bytes - fixed))
    assert vllm.usable_bytes == pytest.approx(0.9 * vllm.hbm_bytes)
    assert kv_budget_bytes_gpu(trt) > kv_budget_bytes_gpu(vllm)  # 0.9 of the free part, not of all HBM


def test_vendor_rows_are_their_own_group_and_not_fitted(acc, tmp_path):
    header = "source,engine,model,gpu,num_gpus,tp,pp,ep,precision,isl,osl,scenario,metric,value,notes\n"
    row = ("https://example.org/amd,vLLM,Llama-3.1-70B,MI300X,8,8,1,1,\"FP8 W/A, FP8 KV\",128,2048,"
           "\"static batch, concurrency=64\",output_tokens_per_s_total,5000,test row\n")
    path = tmp_path / "vendor.csv"
    path.write_text(header + row + row.replace("Llama-3.1-70B", "Llama-9-1T"))
    cases, skipped = acc.load_cases(path, "vendor")
    assert [(c.group, c.tag, c.shape.accelerator, c.concurrency) for c in cases] == [("vendor", "v0", "mi300x", "n:64")]
    assert skipped[0][0] == "v1" and "not in the catalog" in skipped[0][2]
    assert acc.engine_id(cases[0].engine) == "vllm"


def test_batch_scenarios_read_the_whole_number(acc):
    # "batch=1" is a prefix of batch=16/128/256: each must map to its own concurrency
    for n in ("1", "16", "128", "256", "1024"):
        c = acc.map_row(3, _row(scenario=f"static batch={n}", notes="", ep="1", tp="4"))
        assert c.concurrency == f"n:{n}", (n, c.concurrency)
