"""LoRA multi-tenancy (issue 11 item 4): adapter memory by hand, and what it does to a plan."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from solver.catalog import load_catalog
from solver.cli import main
from solver.costmodel import Shape, max_concurrency, shape_terms
from solver.lora import adapter_params, resident_bytes, with_lora
from solver.problem import Lora, Problem

CAT = load_catalog()
LENGTHS = {"p50": 500, "p90": 1000, "p99": 2000}


def test_adapter_memory_by_hand():
    """Llama 3.1 8B (hidden 4096, 32 heads x 128, 8 KV heads x 128, FFN 14336, 32 layers), rank 16.
    Attention: q 4096+4096, k 4096+1024, v 4096+1024, o 4096+4096 = 26,624 per layer;
    x 16 x 32 = 13,631,488 params; bf16: 27,262,976 B per adapter; 4 resident: 109,051,904 B."""
    arch = CAT.model("llama-3.1-8b")
    lora = Lora(adapters=["a", "b", "c", "d", "e", "f"], rank=16, resident=4)
    assert adapter_params(arch, lora) == 13_631_488
    assert resident_bytes(arch, lora) == 4 * 27_262_976 == 109_051_904
    # all seven modules: + gate/up 4096+14336 each + down 14336+4096 = 81,920 per layer
    full = Lora(adapters=["a"], rank=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                        "up_proj", "down_proj"])
    assert adapter_params(arch, full) == 8 * 81_920 * 32
    assert full.resident == 1  # default: every adapter named


def test_adapters_take_memory_from_the_kv_cache_and_add_work():
    shape = Shape("llama-3.1-8b", "l4", None, "bf16", "bf16", 1, 1, 1)
    terms = shape_terms(CAT, shape)
    lora = Lora(adapters=[f"t{i}" for i in range(64)], rank=64)
    more = with_lora(terms, CAT.model("llama-3.1-8b"), lora)
    added = resident_bytes(CAT.model("llama-3.1-8b"), lora)
    assert more.overhead_bytes_gpu - terms.overhead_bytes_gpu == pytest.approx(added)
    assert more.dense_flop_per_token - terms.dense_flop_per_token == pytest.approx(2 * adapter_params(CAT.model("llama-3.1-8b"), lora))
    assert int(max_concurrency(more, 3000)) < int(max_concurrency(terms, 3000))


def _problem(lora: dict | None) -> Problem:
    m = {"name": "m", "model": "llama-3.1-8b", "traffic": {"peak_rps": 20, "input_tokens": LENGTHS,
                                                         "output_tokens": LENGTHS},
         "slo": {"ttft": {"max_ms": 2000}, "tpot": {"max_ms": 60}}, "allowed_accelerators": ["l4"]}
    if lora:
        m["lora"] = lora
    return Problem.model_validate({"name": "t", "models": [m]})


def test_many_resident_adapters_cost_more():
    from solver.api import solve

    base = solve(_problem(None), CAT)
    heavy = solve(_problem({"adapters": [f"t{i}" for i in range(200)], "rank": 64, "resident": 16,
                            "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                               "down_proj"]}), CAT)
    assert base.status.has_plan and heavy.status.has_plan  # both verified (LoRA in the verifier too)
    assert heavy.cost_usd_per_hour > base.cost_usd_per_hour


@pytest.mark.parametrize("lora,model,expect", [
    ({"adapters": ["a"], "rank": 8, "resident": 2}, "llama-3.1-8b", "lora: resident: 2 exceeds the 1 adapter(s)"),
    ({"adapters": ["a"], "rank": 8, "target_modules": ["gate_proj"]}, "qwen3-30b-a3b",
     "lora.target_modules: qwen3-30b-a3b is MoE"),
    ({"adapters": ["a"], "rank": 0}, "llama-3.1-8b", "lora.rank: Input should be greater than or equal to 1"),
])
def test_bad_lora_one_line_exit_2(tmp_path: Path, lora: dict, model: str, expect: str):
    p = {"name": "t", "models": [{"name": "m", "model": model, "traffic": {"peak_rps": 1, "input_tokens": LENGTHS,
                                                                        "output_tokens": LENGTHS},
                                  "slo": {"tpot": {"max_ms": 60}}, "lora": lora}]}
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(p))
    res = CliRunner().invoke(main, ["check", str(f)])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and expect in lines[0], res.output
