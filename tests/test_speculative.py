"""Speculative decoding (issue 11 item 2) against hand-computed cases, and in the search."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from solver.catalog import load_catalog
from solver.cli import main
from solver.costmodel import Shape, decode_step, kv_budget_bytes_gpu, operating_point, shape_terms
from solver.costmodel.speculative import (
    expected_tokens, max_concurrency_spec, speculation, speculative_operating_point, verify_step_ms,
)
from solver.errors import InputError


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


def _shape(cat, model: str, tp: int, ep: int = 1) -> Shape:
    return Shape(model, "h200-sxm", cat.systems_for("h200-sxm")[0].id, "fp8", "fp8", tp, 1, ep)


def test_expected_accepted_tokens_by_hand():
    # (1 - a^(k+1)) / (1 - a), Leviathan et al. 2023
    assert expected_tokens(0.7, 3) == pytest.approx((1 - 0.2401) / 0.3)  # 2.533
    assert expected_tokens(0.5, 1) == pytest.approx(1.5)
    assert expected_tokens(0.0, 4) == 1.0
    assert expected_tokens(1.0, 3) == 4.0
    with pytest.raises(InputError, match="acceptance_rate"):
        expected_tokens(1.2, 3)


def test_verify_step_with_no_draft_tokens_is_a_decode_step(cat):
    t = shape_terms(cat, _shape(cat, "llama-3.1-70b", 4))
    b = np.array([1.0, 16.0, 128.0])
    assert np.allclose(verify_step_ms(t, b, 2250, 0), decode_step(t, b, 2250).total_ms)
    assert np.allclose(verify_step_ms(t, b, 2250, 0, 40.0, 40.0 * 1000),
                       decode_step(t, b, 2250, 40.0, 40.0 * 1000).total_ms)
    # verifying 4 tokens per sequence costs more than decoding one, less than 4 decode steps
    v = verify_step_ms(t, b, 2250, 3)
    d = decode_step(t, b, 2250).total_ms
    assert np.all(v > d) and np.all(v < 4 * d)


def test_draft_memory_by_hand(cat):
    """Llama-3.1-70B fp8 TP4 with a Llama-3.1-8B fp8 draft at TP4: per token and GPU the target
    holds 2 x 80 layers x 2 KV heads x 128 x 1 B = 40,960 B and the draft 2 x 32 x 2 x 128 x 1 B
    = 16,384 B; the draft's weights come off the budget."""
    target = _shape(cat, "llama-3.1-70b", 4)
    t = shape_terms(cat, target)
    sp = speculation(cat, target, "llama-3.1-8b", 0.7, 3)
    assert t.kv_full_bytes_per_token_gpu == 40_960 and sp.draft.kv_full_bytes_per_token_gpu == 16_384
    ctx = 3000
    budget = kv_budget_bytes_gpu(t) - sp.draft.weight_bytes_gpu
    assert max_concurrency_spec(t, sp, ctx) == int(budget // (ctx * (40_960 + 16_384)))


def test_mtp_memory_is_one_layer_share_by_hand(cat):
    """DeepSeek-V3's MTP module (num_nextn_predict_layers 1 of 61 layers): 1/61 of the target's
    weights and KV per token (the module's estimate)."""
    target = _shape(cat, "deepseek-v3", 8, 8)
    t = shape_terms(cat, target)
    sp = speculation(cat, target, "mtp", 0.8, 1)
    assert sp.mtp_fraction == pytest.approx(1 / 61)
    ctx = 5000
    per_seq = ctx * t.kv_full_bytes_per_token_gpu * (1 + 1 / 61)
    budget = kv_budget_bytes_gpu(t) - t.weight_bytes_gpu / 61
    assert max_concurrency_spec(t, sp, ctx) == int(budget // per_seq) * t.dp_attn
    assert "no multi-token-prediction" in speculation(cat, _shape(cat, "llama-3.1-70b", 4), "mtp", 0.8, 1)


def test_tpot_is_cycle_over_expected_tokens(cat):
    """At alpha = 0 every cycle emits one token but still pays the k draft steps and the wider
    verification: speculation only loses. At alpha = 0.7, k = 3 it wins at batch 1 (memory-bound
    step) and loses throughput at batch 256."""
    target = _shape(cat, "llama-3.1-70b", 4)
    t = shape_terms(cat, target)
    b = np.array([1, 256])
    plain = operating_point(t, b, 2000, 500)
    zero = speculative_operating_point(t, speculation(cat, target, "llama-3.1-8b", 0.0, 3), b, 2000, 500)
    assert np.all(zero.tpot_ms > plain.tpot_ms)
    good = speculative_operating_point(t, speculation(cat, target, "llama-3.1-8b", 0.7, 3), b, 2000, 500)
    assert good.tpot_ms[0] < plain.tpot_ms[0]
    assert good.output_tokens_per_s[1] < plain.output_tokens_per_s[1]
    assert good.ttft_ms[0] > plain.ttft_ms[0]  # the draft prefills the prompt too


def _problem(tmp_path: Path, rps: float, tpot_ms: float, spec: str) -> Path:
    p = tmp_path / f"spec-{rps:g}-{tpot_ms:g}.yaml"
    p.write_text(f"""name: spec
models:
  - name: chat
    model: llama-3.1-70b
    traffic:
      peak_rps: {rps}
      input_tokens: {{p50: 1000, p90: 1000, p99: 1000}}
      output_tokens: {{p50: 300, p90: 300, p99: 300}}
    slo:
      tpot: {{max_ms: {tpot_ms}, percentile: 99}}
    allowed_accelerators: [h200-sxm]
    allowed_quantizations: [fp8]
    headroom: 0
    {spec}
""")
    return p


SPEC = "speculative: {draft: llama-3.1-8b, acceptance_rate: 0.7, draft_tokens: 3}"


def _solve(path: Path) -> dict:
    r = CliRunner().invoke(main, ["solve", str(path), "--json"])
    assert r.exit_code in (0, 1), r.output
    return json.loads(r.output)


def test_search_uses_speculation_at_low_concurrency_and_says_so(tmp_path):
    """0.5 req/s within 8 ms TPOT: plain decoding on H200 fp8 takes ~8.8 ms per token at TP4
    even at batch 1 and needs TP8; with the 8B draft (2.53 tokens per step) TP4 meets it, at
    half the cost."""
    out = _solve(_problem(tmp_path, 0.5, 8, SPEC))
    assert out["status"] == "optimal"
    dep = out["deployments"][0]
    assert dep["serving_mode"] == "aggregated"
    assert dep["speculative"] == {"draft": "llama-3.1-8b", "acceptance_rate": 0.7, "draft_tokens": 3,
                                  "expected_tokens_per_step": 2.533}  # 0.7599 / 0.3
    assert any("used on" in n for n in out["notes"])
    assert dep["tp"] == 4
    plain = _solve(_problem(tmp_path, 0.5, 8, ""))
    assert plain["deployments"][0]["tp"] == 8 and plain["deployments"][0]["speculative"] is None
    assert plain["cost_usd_per_hour"] == pytest.approx(2 * out["cost_usd_per_hour"])


def test_search_skips_speculation_at_high_concurrency_and_says_so(tmp_path):
    out = _solve(_problem(tmp_path, 100, 200, SPEC))
    assert out["status"] == "optimal"
    assert all(d["speculative"] is None and d["serving_mode"] == "aggregated" for d in out["deployments"])
    assert any("offered but not used" in n for n in out["notes"])
    plain = _solve(_problem(tmp_path, 100, 200, ""))
    assert plain["cost_usd_per_hour"] == out["cost_usd_per_hour"]


@pytest.mark.parametrize("spec, needle", [
    ("speculative: {draft: llama-3.1-8b, acceptance_rate: 1.5}", "speculative.acceptance_rate"),
    ("speculative: {draft: llama-3.1-405b, acceptance_rate: 0.7}", "not smaller than its target"),
    ("speculative: {draft: qwen3-8b, acceptance_rate: 0.7}", "another tokenizer family"),
    ("speculative: {draft: mtp, acceptance_rate: 0.7}", "no multi-token-prediction module"),
    ("speculative: {draft: llama-9b, acceptance_rate: 0.7}", "speculative.draft"),
])
def test_bad_speculative_input_is_one_line_exit_2(tmp_path, spec, needle):
    r = CliRunner().invoke(main, ["solve", str(_problem(tmp_path, 1, 50, spec))])
    assert r.exit_code == 2
    lines = [x for x in r.output.strip().splitlines() if x]
    assert len(lines) == 1 and needle in lines[0], r.output


def test_bench_plan_launch_notes_the_speculation():
    from solver.benchplan import launch

    notes: list[str] = []
    dep = {"tp": 4, "pp": 1, "ep": 1, "max_batch": 8, "quant": "bf16", "kv_dtype": "bf16",
           "speculative": {"draft": "mtp", "acceptance_rate": 0.8, "draft_tokens": 1}}
    launch("vllm", dep, "deepseek-ai/DeepSeek-V3", 4096, False, notes)
    assert any('"method": "deepseek_mtp", "num_speculative_tokens": 1' in n for n in notes)
    plain: list[str] = []
    launch("vllm", {**dep, "speculative": None}, "deepseek-ai/DeepSeek-V3", 4096, False, plain)
    assert not any("speculative" in n for n in plain)
