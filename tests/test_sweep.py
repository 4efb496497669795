"""Sweeps: variants, how they change the problem and the prices, runners that agree."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from solver.api import solve
from solver.candidates import cost_model_key
from solver.catalog import load_catalog
from solver.cli import main
from solver.errors import InputError
from solver.problem import load_problem
from solver.sweep import (
    ModelMix, SweepGrid, apply, check_grid, load_grid, priced, run_sweep, same_results, variants,
)

ROOT = Path(__file__).resolve().parent.parent
CHAT = ROOT / "problems" / "chat-assistant-70b.yaml"
FLEET = ROOT / "problems" / "multi-model-fleet.yaml"


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


def test_variants_are_the_cartesian_product_in_grid_order() -> None:
    grid = SweepGrid(traffic_growth=[1.0, 2.0], slo_scale=[0.5, 1.0, 1.5])
    vs = variants(grid)
    assert len(vs) == 6
    assert [(v.traffic_growth, v.slo_scale) for v in vs][:3] == [(1.0, 0.5), (1.0, 1.0), (1.0, 1.5)]


def test_apply_scales_traffic_targets_and_mix(cat) -> None:
    problem = load_problem(FLEET, cat)
    mix = ModelMix(name="m", drop=["judge"], scale={"router": 3.0})
    (v,) = variants(SweepGrid(traffic_growth=[2.0], slo_scale=[0.5], model_mix=[mix]))
    out = apply(problem, v)
    by = {d.name: d for d in out.models}
    base = {d.name: d for d in problem.models}
    assert set(by) == {"router", "generator"}
    assert by["router"].traffic.peak_rps == pytest.approx(base["router"].traffic.peak_rps * 6.0)
    assert by["generator"].traffic.peak_rps == pytest.approx(base["generator"].traffic.peak_rps * 2.0)
    assert by["router"].slo.ttft.max_ms == pytest.approx(base["router"].slo.ttft.max_ms * 0.5)
    assert by["router"].slo.ttft.percentile == base["router"].slo.ttft.percentile
    assert by["router"].slo.tpot is None  # absent targets stay absent


def test_priced_catalog_scales_prices_only(cat) -> None:
    half = priced(cat, {"h100-sxm": 0.5})
    for pid, p in cat.prices.items():
        f = 0.5 if p.accelerator == "h100-sxm" else 1.0
        assert half.prices[pid].usd_per_gpu_hour == pytest.approx(p.usd_per_gpu_hour * f)
    assert cost_model_key(half) == cost_model_key(cat)  # shape evaluations are shared
    assert priced(cat, 1.0) is cat


def test_uniform_price_factor_scales_the_cost_not_the_plan(cat) -> None:
    problem = load_problem(CHAT, cat)
    base = solve(problem, cat)
    double = solve(problem, priced(cat, 2.0))
    assert double.cost_usd_per_hour == pytest.approx(2 * base.cost_usd_per_hour, rel=1e-3)
    assert [(d.accelerator, d.replicas) for d in double.deployments] == \
        [(d.accelerator, d.replicas) for d in base.deployments]


def test_grid_errors_name_the_field(cat, tmp_path: Path) -> None:
    bad = tmp_path / "grid.yaml"
    bad.write_text("traffic_growth: [1.0, -2]\n")
    with pytest.raises(InputError, match="traffic_growth"):
        load_grid(bad)
    bad.write_text("trafic_growth: [1.0]\n")
    with pytest.raises(InputError, match="trafic_growth"):
        load_grid(bad)
    problem = load_problem(FLEET, cat)
    with pytest.raises(InputError, match="nobody"):
        check_grid(problem, SweepGrid(model_mix=[ModelMix(name="x", drop=["nobody"])]), cat)
    res = CliRunner().invoke(main, ["sweep", str(FLEET), "--grid", str(bad)])
    assert res.exit_code == 2 and "trafic_growth" in res.output


GRID = SweepGrid(traffic_growth=[1.0, 3.0], price_factor=[1.0, {"h100-sxm": 0.5}])


@pytest.fixture(scope="module")
def in_process(cat):
    return run_sweep(load_problem(CHAT, cat), GRID, cat, workers=1)


def test_sweep_costs_follow_the_axes(in_process) -> None:
    rows = in_process.rows
    assert [r.index for r in rows] == [0, 1, 2, 3]
    assert all(r.status == "optimal" for r in rows)
    base, cheap_h100, grown, grown_cheap = (r.cost_usd_per_hour for r in rows)
    assert grown > base and grown_cheap > cheap_h100  # 3x traffic costs more
    assert cheap_h100 <= base and grown_cheap <= grown  # cheaper H100s never cost more


def test_process_pool_equals_in_process(cat, in_process) -> None:
    pool = run_sweep(load_problem(CHAT, cat), GRID, cat, workers=2)
    assert pool.runner == "process pool"
    assert same_results(pool.rows, in_process.rows)


@pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                    reason="Ray is not installed (optional extra: pip install 'fleetplan[ray]')")
def test_local_ray_equals_process_pool(cat, in_process) -> None:
    on_ray = run_sweep(load_problem(CHAT, cat), GRID, cat, workers=2, ray_address="local")
    assert on_ray.runner.startswith("ray")
    assert same_results(on_ray.rows, in_process.rows)


def test_sweep_cli_writes_table_report_and_plot(tmp_path: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text("traffic_growth: [1.0, 2.0]\n")
    out = tmp_path / "sweep"
    res = CliRunner().invoke(main, ["sweep", str(CHAT), "--grid", str(grid), "--workers", "1",
                                    "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "2 variants" in res.output
    md = (tmp_path / "sweep.md").read_text()
    assert "![cost per variant](sweep.svg)" in md and md.count("| optimal |") == 2
    assert (tmp_path / "sweep.svg").read_text().lstrip().startswith("<?xml")


def test_ray_flag_without_ray_is_one_line_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as where Ray is absent
    grid = tmp_path / "grid.yaml"
    grid.write_text("traffic_growth: [1.0]\n")
    res = CliRunner().invoke(main, ["sweep", str(CHAT), "--grid", str(grid), "--ray", "auto"])
    assert res.exit_code == 2
    assert "fleetplan[ray]" in res.output and "Traceback" not in res.output
