"""Pareto sweeps: non-dominated filtering, every point a verified plan, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from solver.catalog import load_catalog
from solver.cli import main
from solver.errors import InputError
from solver.pareto import ParetoPoint, non_dominated, pareto, parse_axes
from solver.plan import Plan, SolveStatus
from solver.problem import load_problem
from solver.verify import verify_plan

ROOT = Path(__file__).resolve().parent.parent
CHAT = ROOT / "problems" / "chat-assistant-70b.yaml"


def fake(cost: float, ttft: float, quality: float = 0.0) -> ParetoPoint:
    plan = Plan(problem="p", status=SolveStatus.OPTIMAL, cost_usd_per_hour=cost,
                bound_usd_per_hour=cost, gap=0.0, solve_seconds=0.0)
    return ParetoPoint(plan, {"ttft": ttft, "quality": quality}, {})


def test_non_dominated_removes_dominated_and_duplicates() -> None:
    pts = [fake(10, 500), fake(12, 300), fake(12, 400), fake(15, 300), fake(20, 100), fake(10, 500)]
    keep = non_dominated(pts, ["ttft"])
    assert [(p.plan.cost_usd_per_hour, p.values["ttft"]) for p in keep] == [(10, 500), (12, 300), (20, 100)]


def test_non_dominated_compares_models_on_their_own() -> None:
    """Two models with targets of 150 ms and 3,000 ms: the worst raw latency across models is the
    slow model's alone, so a plan that serves the fast model faster at a higher cost was dropped.
    Dominance compares each model's own worst latency."""
    def pt(cost: float, x: float, y: float) -> ParetoPoint:
        plan = Plan(problem="p", status=SolveStatus.OPTIMAL, cost_usd_per_hour=cost,
                    bound_usd_per_hour=cost, gap=0.0, solve_seconds=0.0)
        return ParetoPoint(plan, {"ttft": max(x, y)}, {}, {"ttft": {"x": x, "y": y}})

    pts = [pt(10, 140, 3000), pt(12, 100, 3000), pt(13, 100, 3100), pt(14, 140, 3000)]
    keep = non_dominated(pts, ["ttft"])
    assert [(p.plan.cost_usd_per_hour, p.per_model["ttft"]["x"]) for p in keep] == [(10, 140), (12, 100)]


def test_non_dominated_two_axes_keeps_trade_offs() -> None:
    pts = [fake(10, 500, 1.0), fake(12, 500, 0.0), fake(12, 600, 1.0)]
    keep = non_dominated(pts, ["ttft", "quality"])
    assert [(p.plan.cost_usd_per_hour, p.values["quality"]) for p in keep] == [(10, 1.0), (12, 0.0)]


@pytest.mark.parametrize("text", ["", "speed", "ttft,ttft", "ttft,tpot,e2e"])
def test_parse_axes_rejects(text: str) -> None:
    with pytest.raises(InputError):
        parse_axes(text)


def test_parse_axes_accepts_two() -> None:
    assert parse_axes("ttft, quality") == ("ttft", "quality")


def test_chat_front_is_monotone_and_verified() -> None:
    cat = load_catalog()
    problem = load_problem(CHAT, cat)
    res = pareto(problem, cat, ("ttft",), points=4)
    assert len(res.points) >= 2
    costs = [p.plan.cost_usd_per_hour for p in res.points]
    ttfts = [p.values["ttft"] for p in res.points]
    assert costs == sorted(costs) and len(set(costs)) == len(costs)
    assert all(a > b for a, b in zip(ttfts, ttfts[1:])), ttfts
    from solver.pareto import _scaled
    for p in res.points:
        # Each point is a full plan that passes the independent verifier at its own targets.
        variant = _scaled(problem, "ttft", p.setting["ttft"], {}) if p.setting["ttft"] != 1.0 else problem
        verify_plan(p.plan, variant, cat)
        assert p.plan.status.has_plan


def test_cli_pareto_json_and_bad_points() -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["pareto", str(CHAT), "--points", "3", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["axes"] == ["ttft"] and out["points"]
    assert {"cost_usd_per_hour", "ttft_p99_ms", "deployments"} <= set(out["points"][0])
    bad = runner.invoke(main, ["pareto", str(CHAT), "--points", "1"])
    assert bad.exit_code == 2 and "--points must be >= 2" in bad.output
    bad = runner.invoke(main, ["pareto", str(CHAT), "--axis", "price"])
    assert bad.exit_code == 2 and "unknown axis" in bad.output


def test_solve_returns_pareto_by_default_and_no_pareto_skips() -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["solve", str(CHAT), "--json", "--points", "3"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["pareto"]["axes"] == ["ttft"]
    points = out["pareto"]["points"]
    # The cheapest plan is a point of its own front; the front sweeps targets up to 2x looser, so
    # any cheaper point must break the stated TTFT target.
    assert any(p["cost_usd_per_hour"] == pytest.approx(out["cost_usd_per_hour"]) for p in points)
    target = load_problem(CHAT, load_catalog()).models[0].slo.ttft.max_ms
    assert all(p["ttft_p99_ms"] > target for p in points if p["cost_usd_per_hour"] < out["cost_usd_per_hour"] - 1e-6)
    res = runner.invoke(main, ["solve", str(CHAT), "--json", "--no-pareto"])
    assert "pareto" not in json.loads(res.output)
    bad = runner.invoke(main, ["solve", str(CHAT), "--axis", "quality"])
    assert bad.exit_code == 2 and "latency axis" in bad.output


def test_sweep_stays_clear_of_the_zero_load_floor() -> None:
    """Near the floor only vanishing utilisation meets a target; the sweep stops 25% above it."""
    cat = load_catalog()
    problem = load_problem(CHAT, cat)
    res = pareto(problem, cat, ("ttft",), points=4)
    base = min(p.plan.cost_usd_per_hour for p in res.points)
    assert max(p.plan.cost_usd_per_hour for p in res.points) < 50 * base


def test_two_axis_sweep_is_non_dominated_in_three_objectives() -> None:
    cat = load_catalog()
    problem = load_problem(CHAT, cat)
    res = pareto(problem, cat, ("ttft", "quality"), points=3)
    vecs = [(p.plan.cost_usd_per_hour, p.values["ttft"], p.values["quality"]) for p in res.points]
    assert len(vecs) >= 2 and len({v[2] for v in vecs}) >= 2  # both bf16 and fp8 plans appear
    for a in vecs:
        for b in vecs:
            assert not (b != a and all(x <= y for x, y in zip(b, a))), (b, "dominates", a)
