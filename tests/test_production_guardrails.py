"""Guardrails in every plan (hand-computed limits) and the week-one ``check-production``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from solver import api, guardrails
from solver.catalog import load_catalog
from solver.cli import main
from solver.costmodel import Shape
from solver.plan import Deployment
from solver.problem import load_problem
from solver.production import check

CAT = load_catalog()
PROBLEMS = Path(__file__).resolve().parent.parent / "problems"


def _demand(ttft_ms: float | None = 800.0, e2e_ms: float | None = None, peak: float = 12.0):
    problem = api.single_model_problem("llama-3.1-70b", peak, 1000, 200, ttft_ms, 50.0, e2e_ms, cat=CAT)
    return problem.models[0]


def _dep(**kw) -> Deployment:
    base = dict(model="llama-3.1-70b", shape=Shape("llama-3.1-70b", "h100-sxm", "hgx-h100-8", "fp8", "fp8", 4),
                max_batch=64, replicas=5, total_gpus=20, gpus_per_replica=4, total_capacity_rps=16.6, load_rps=14.4, ttft_p99_ms=400.0, tpot_p99_ms=40.0,
                e2e_p99_ms=8400.0, cost_usd_per_hour=50.0, usd_per_gpu_hour=2.5, price_id="x")
    return Deployment(**{**base, **kw})


def test_queue_limit_and_breaker_from_wait_times_rate():
    assert guardrails.queue_limits(2.0, 50.0) == (100, 85)  # 2 s x 50 req/s; trips at 85%
    assert guardrails.queue_limits(0.8, 12.0) == (10, 8)    # ceil(9.6) = 10; floor(8.5) = 8


def test_token_limits_are_multiples_within_the_context_window():
    d = _demand()  # 1000 in / 200 out at every percentile
    assert guardrails.token_limits(d, 131072) == (2000, 400)
    assert guardrails.token_limits(d, 2048) == (1648, 400)   # input cut to fit 2048 - 400
    assert guardrails.token_limits(d, 600) == (300, 300)     # new tokens keep at most half


def test_max_wait_falls_back_from_ttft_to_e2e_to_tpot():
    assert guardrails.max_wait_s(_demand()) == (0.8, "ttft target")
    assert guardrails.max_wait_s(_demand(None, 30000.0)) == (30.0, "e2e target")
    assert guardrails.max_wait_s(_demand(None, None)) == (pytest.approx(50.0 * 200 / 1e3), "tpot target x p99 output")


def test_model_guardrails_by_hand():
    d = _demand()
    g = guardrails.for_model(CAT, d, [_dep()], load_gb_s=2.0)
    # warm replicas carry the peak without headroom: ceil(5 x 12 / 16.6) = ceil(3.61) = 4
    assert g["min_warm_replicas"] == 4 and g["replicas"] == 5
    # lead time = weights per GPU / 2 GB/s; Llama 70B fp8 over TP4 holds about 70.6e9 / 4 bytes
    gb = g["scale_up_basis"]["weight_gb_per_gpu"]
    assert 16.0 < gb < 19.0 and g["scale_up_lead_time_s"] == pytest.approx(gb / 2.0, abs=1e-3)
    # in flight = 14.4 / 5 req/s x (400 ms + 200 x 40 ms) = 2.88 x 8.4 s = 24.192
    exp = g["expected"]
    assert exp["in_flight_per_replica"] == pytest.approx(24.192)
    assert exp["kv_utilisation_pct"] == pytest.approx(100 * 24.192 * (1000 + 100) / (64 * 1200), abs=1e-3)
    assert exp["gpu_busy_pct"] == pytest.approx(100 * (1 - math.exp(-24.192)), abs=1e-3)
    metrics = [a["metric"] for a in g["alerts"]]
    assert metrics == ["gpu_memory_used_pct", "kv_cache_utilisation_pct", "preemptions_per_s", "ttft_p99_ms",
                       "itl_p99_ms"]
    ttft = g["alerts"][3]
    assert (ttft["warn_above"], ttft["page_above"]) == (640.0, 800.0)
    default = guardrails.for_model(CAT, d, [_dep()])
    assert default["scale_up_basis"]["load_gb_s"] == CAT.accelerator("h100-sxm").pcie_gb_s
    assert "pcie_gb_s" in default["scale_up_basis"]["source"]


def test_every_solved_plan_carries_guardrails():
    problem = load_problem(PROBLEMS / "chat-assistant-70b.yaml", CAT)
    out = api.solve(problem, CAT, time_limit_s=5).to_dict()
    (g,) = out["guardrails"]
    keys = {"max_input_tokens", "max_new_tokens", "queue_limit", "circuit_breaker_queue", "min_warm_replicas",
            "scale_up_lead_time_s", "alerts", "workload", "expected"}
    assert keys <= set(g) and g["model"] == "chat"
    # p95 prompt (the stated p99, 4800) x 2; p99 output 1000 x 2; 0.8 s x 12 req/s
    assert (g["max_input_tokens"], g["max_new_tokens"], g["queue_limit"], g["circuit_breaker_queue"]) == (9600, 2000, 10, 8)
    assert any(a["metric"] == "prefix_cache_hit_rate" and a["expected"] == 0.3 for a in g["alerts"])


PLAN = {"deployments": [{"model": "chat", "load_rps": 14.4, "ttft_p99_ms": 400.0, "tpot_p99_ms": 40.0}],
        "guardrails": [{"model": "chat", "expected": {"in_flight_per_replica": 2.0, "kv_utilisation_pct": 60.0}}]}


def _rows(**kw) -> list[dict[str, str]]:
    return [{k: str(v) for k, v in kw.items()}]


def test_production_within_plan_holds():
    # at 12 req/s: KV expected 60 x 12/14.4 = 50 (limit 30); GPU 100 (1 - e^(-2 x 12/14.4)) = 81.1 (limit 61.1)
    res = check(PLAN, _rows(request_rate_rps=12, ttft_p99_ms=500, itl_p99_ms=50, gpu_utilisation_pct=70,
                            kv_cache_utilisation_pct=35))
    assert not res.replan and res.not_checked == ()
    kv = next(f for f in res.findings if f.metric == "kv_cache_utilisation_pct")
    assert (kv.expected, kv.limit) == (pytest.approx(50.0), pytest.approx(30.0))
    gpu = next(f for f in res.findings if f.metric == "gpu_utilisation_pct")
    assert gpu.expected == pytest.approx(100 * (1 - math.exp(-2 * 12 / 14.4)))


@pytest.mark.parametrize("row, metric", [
    (dict(request_rate_rps=12, ttft_p99_ms=521), "ttft_p99_ms"),        # > 400 x 1.3 = 520
    (dict(request_rate_rps=12, itl_p99_ms=52.5), "itl_p99_ms"),         # > 40 x 1.3 = 52
    (dict(request_rate_rps=12, kv_cache_utilisation_pct=29), "kv_cache_utilisation_pct"),
    (dict(request_rate_rps=12, gpu_utilisation_pct=60), "gpu_utilisation_pct"),
    (dict(request_rate_rps=15, ttft_p99_ms=100), "request_rate_rps"),   # above the planned 14.4
])
def test_production_breaches_say_replan(row, metric):
    res = check(PLAN, _rows(**row))
    assert res.replan and [f.metric for f in res.findings if f.breach] == [metric]


def test_check_production_cli(tmp_path):
    pf = tmp_path / "plan.json"
    pf.write_text(json.dumps(PLAN))
    mf = tmp_path / "m.csv"
    mf.write_text("timestamp,request_rate_rps,ttft_p99_ms,itl_p99_ms\n2026-12-01T10:00,12,450,41\n"
                  "2026-12-01T10:05,13,700,42\n")
    r = CliRunner().invoke(main, ["check-production", str(pf), str(mf)])
    assert r.exit_code == 1 and r.output.startswith("RE-PLAN (2 windows)") and "BREACH" in r.output
    assert "not checked (no column): gpu_utilisation_pct, kv_cache_utilisation_pct" in r.output
    mf.write_text("request_rate_rps,ttft_p99_ms\n12,450\n")
    r = CliRunner().invoke(main, ["check-production", str(pf), str(mf), "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["verdict"] == "plan holds"
    mf.write_text("rate,ttft_p99_ms\n12,450\n")
    r = CliRunner().invoke(main, ["check-production", str(pf), str(mf)])
    assert r.exit_code == 2 and "request_rate_rps" in r.output
    r = CliRunner().invoke(main, ["check-production", str(tmp_path / "none.json"), str(mf)])
    assert r.exit_code == 2 and "no such file" in r.output
