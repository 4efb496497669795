"""Unit costs in the plan JSON (solver.unitcost): hand-computed figures and agreement with the
report's $/M output tokens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from solver.cli import main
from solver.unitcost import unit_costs

ROOT = Path(__file__).resolve().parents[1]


def test_unit_costs_by_hand() -> None:
    # $10/h serving 2 req/s of 1000 prompt + 250 output tokens:
    # 7.2M input, 1.8M output tokens and 7,200 requests an hour.
    u = unit_costs(10.0, 2.0, 1000.0, 250.0)
    assert u.usd_per_million_input_tokens == pytest.approx(10 / 7.2)
    assert u.usd_per_million_output_tokens == pytest.approx(10 / 1.8)
    assert u.usd_per_million_tokens == pytest.approx(10 / 9.0)
    assert u.usd_per_1k_requests == pytest.approx(10 / 7.2)
    assert unit_costs(10.0, 0.0, 1000.0, 250.0).usd_per_1k_requests is None


def test_plan_json_carries_unit_costs_that_match_the_report() -> None:
    res = CliRunner().invoke(main, ["solve", str(ROOT / "problems" / "chat-assistant-70b.yaml"),
                                    "--no-pareto", "--json"])
    plan = json.loads(res.output)
    u = plan["unit_costs"]["models"]["chat"]
    assert u["requests_per_s"] == 12.0
    assert u["usd_per_1k_requests"] == pytest.approx(plan["cost_usd_per_hour"] / (12 * 3.6))
    report = json.loads((ROOT / "reports" / "chat-assistant-70b.json").read_text())
    # a plan may split the model over deployments: the model's $/M is their token-weighted mean
    deps = report["deployments"]
    tokens = [d["output_tokens_per_s_at_peak"] for d in deps]
    per_m_out = sum(d["usd_per_million_output_tokens"] * t for d, t in zip(deps, tokens)) / sum(tokens)
    assert u["usd_per_million_output_tokens"] == pytest.approx(per_m_out, rel=1e-3)


def test_fleet_unit_costs_cover_every_model() -> None:
    res = CliRunner().invoke(main, ["solve", str(ROOT / "problems" / "multi-model-fleet.yaml"),
                                    "--no-pareto", "--json"])
    plan = json.loads(res.output)
    uc = plan["unit_costs"]
    models = uc["models"]
    assert set(models) == {d["model"] for d in plan["deployments"]}
    fleet = uc["fleet"]
    assert fleet["requests_per_s"] == pytest.approx(sum(m["requests_per_s"] for m in models.values()))
    assert fleet["usd_per_1k_requests"] == pytest.approx(
        plan["cost_usd_per_hour"] / (fleet["requests_per_s"] * 3.6))
