"""Error bands and --confidence: the band table is what the accuracy benchmark computes, the
multiplier is hand-checkable, planning at 90 % costs at least the point estimate and the plan
still verifies, and bad confidence values are one line, exit 2."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from solver import api
from solver.catalog import load_catalog
from solver.cli import main
from solver.problem import query_problem
from solver.slo import SloView
from solver.uncertainty import band_for, planning_multiplier, step_multiplier, widen

REPO = Path(__file__).resolve().parents[1]


def _accuracy():
    spec = importlib.util.spec_from_file_location("accuracy", REPO / "benchmarks" / "accuracy.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["accuracy"] = mod
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def run(args: list[str]):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_band_table_matches_what_the_accuracy_benchmark_computes() -> None:
    acc = _accuracy()
    cat = load_catalog()
    terms, cases, _ = acc.compared(cat)
    computed = acc.error_bands([(c, acc.predict(t, c)) for t, c in zip(terms, cases)], cat)
    table = yaml.safe_load((REPO / "catalogs" / "error_bands.yaml").read_text())["bands"]
    assert {(b["family"], b["kind"]) for b in table} == set(computed)
    for b in table:
        mape, n = computed[(b["family"], b["kind"])]
        assert (b["mape_pct"], b["rows"]) == (mape, n), b


def test_band_lookup_family_then_any_and_conversion() -> None:
    cat = load_catalog()
    h = band_for(cat, "llama-3.1-70b", "h100-sxm", "fp8", "vllm")
    assert h.sigma == pytest.approx(0.105 * math.sqrt(math.pi / 2))
    assert "hopper/dense" in h.source
    moe = band_for(cat, "mixtral-8x7b", "a100-80gb", "bf16", "vllm")  # no ampere/moe row
    assert moe.sigma == pytest.approx(0.213 * math.sqrt(math.pi / 2))
    assert "any/moe" in moe.source


def test_step_multiplier_hand_computed() -> None:
    cat = load_catalog()
    band = band_for(cat, "llama-3.1-70b", "h100-sxm", "fp8", "vllm")
    # z(0.9) = 1.2816; sigma = 0.105 x 1.2533 = 0.1316; exp(1.2816 x 0.1316) = 1.1837
    assert step_multiplier(band, 0.9) == pytest.approx(1.1837, abs=2e-4)
    assert step_multiplier(band, None) == 1.0
    assert planning_multiplier(cat, "llama-3.1-70b", "h100-sxm", "fp8", "vllm", 0.5) == pytest.approx(1.0)
    import numpy as np
    v = SloView(np.array([1, 2]), np.array([1.0, 2.0]), np.array([10.0, 20.0]), np.array([3.0, 4.0]),
                np.array([30.0, 40.0]), 8)
    w = widen(v, 1.5)
    assert list(w.ttft0_ms) == [15.0, 30.0] and list(w.service_s) == [1.5, 3.0]
    assert list(w.tpot_ms) == [4.5, 6.0] and list(w.e2e0_ms) == [45.0, 60.0] and w.max_concurrency == 8


def test_confidence_plan_costs_at_least_the_point_plan_and_verifies() -> None:
    cat = load_catalog()
    p = query_problem("llama-3.1-70b", 20.0, (1000, 1000, 1000), (200, 200, 200), 2000.0, 60.0, None,
                      gpus=["h100-sxm"], cat=cat)
    point = api.solve(p, cat)
    sure = api.solve(p.model_copy(update={"confidence": 0.9}), cat)  # verify_plan runs inside
    assert sure.status.has_plan and point.status.has_plan
    assert sure.cost_usd_per_hour >= point.cost_usd_per_hour
    # each deployment's reported p99 TPOT is the point estimate's times the multiplier
    m = planning_multiplier(cat, "llama-3.1-70b", "h100-sxm", "fp8", "vllm", 0.9)
    cap_point = {(d.quant, d.tp, d.max_batch): d.capacity_rps / d.replicas for d in point.deployments}
    for d in sure.deployments:
        key = (d.quant, d.tp, d.max_batch)
        if key in cap_point and d.quant == "fp8":
            assert d.capacity_rps / d.replicas < cap_point[key]
    assert m > 1.0


def test_query_confidence_reports_cost_and_hardware_within_error() -> None:
    r = run(["query", "--model", "llama-3.1-70b", "--isl", "1000", "--osl", "200", "--rps", "20",
             "--ttft-p99-ms", "2000", "--tpot-p99-ms", "60", "--gpu", "h100-sxm", "--gpu", "h200-sxm",
             "--confidence", "0.9", "--json"])
    assert r.exit_code == 0, r.output
    c = json.loads(r.output)["confidence"]
    assert c["level"] == 0.9
    assert c["cost_of_confidence_usd_per_hour"] == pytest.approx(
        c["cost_usd_per_hour"] - c["cost_usd_per_hour_at_point_estimate"])
    rows = c["hardware"]["llama-3.1-70b"]
    assert {r["accelerator"] for r in rows} == {"h100-sxm", "h200-sxm"}
    assert rows[0]["ratio_to_cheapest"] == 1.0 and rows[0]["within_error_of_cheapest"]
    for row in rows[1:]:
        limit = math.exp(1.2816 * math.hypot(rows[0]["band_sigma"], row["band_sigma"]))
        assert row["within_error_of_cheapest"] == (row["ratio_to_cheapest"] <= limit)


def test_capacity_confidence_is_a_lower_bound() -> None:
    base = ["capacity", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--gpus", "8", "--isl", "1000",
            "--osl", "200", "--ttft-p99-ms", "500", "--json"]
    r = run([*base, "--confidence", "0.9"])
    assert r.exit_code == 0, r.output
    c = json.loads(r.output)["confidence"]
    assert c["requests_per_s"] < c["requests_per_s_at_point_estimate"]
    assert c["capacity_cost_of_confidence_rps"] > 0


@pytest.mark.parametrize("value", ["0", "1", "1.5", "-0.2", "nan"])
def test_confidence_outside_zero_one_is_one_line_exit_2(value: str) -> None:
    r = run(["query", "--model", "llama-3.1-8b", "--isl", "100", "--osl", "10", "--rps", "1",
             "--ttft-p99-ms", "500", "--confidence", value])
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "--confidence" in lines[0], r.output


def test_problem_file_confidence_key_is_validated(tmp_path: Path) -> None:
    prob = {"name": "c", "confidence": 1.2, "models": [{
        "name": "chat", "model": "llama-3.1-8b",
        "traffic": {"peak_rps": 5, "input_tokens": {"p50": 100, "p90": 100, "p99": 100},
                    "output_tokens": {"p50": 20, "p90": 20, "p99": 20}},
        "slo": {"ttft": {"max_ms": 2000}}}]}
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(prob))
    r = run(["solve", f, "--no-pareto"])
    assert r.exit_code == 2 and "confidence" in r.output
