"""One deployment identity (a ``Shape``, declared once) in candidates, deployments and
estimates; per-replica and total fields named so, and per replica x replicas = total on solved
bundled plans; plans saved with the old key names still load."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from solver.benchplan import bench_plan
from solver.candidates import Candidate
from solver.catalog import load_catalog
from solver.cli import main
from solver.costmodel import Estimate, Shape, estimate
from solver.guardrails import attach
from solver.plan import IDENTITY_KEYS, RENAMED_KEYS, Deployment, Plan, saved_deployment
from solver.problem import Problem, load_problem
from solver.session import Session
from solver.simulate import plan_replicas

ROOT = Path(__file__).resolve().parent.parent
CAT = load_catalog()
IDENTITY = {"model_id", "accelerator", "system", "quant", "kv_dtype", "tp", "pp", "ep"}


@pytest.mark.parametrize("cls", [Candidate, Deployment, Estimate])
def test_identity_is_declared_once_in_an_embedded_shape(cls: type) -> None:
    names = {f.name for f in dataclasses.fields(cls)}
    assert "shape" in names
    assert not names & IDENTITY, f"{cls.__name__} repeats {sorted(names & IDENTITY)}"
    if cls is Estimate:  # its ``model`` is the catalog id, the shape's
        assert "model" not in names
    assert not names & {"gpus", "capacity_rps"} or cls is Estimate  # Estimate: one replica only


def test_estimate_reads_its_identity_from_the_shape_and_flattens_it() -> None:
    e = estimate(CAT, Shape("llama-3.1-70b", "h100-sxm", None, "fp8", "fp8", 4), 1000, 200, 8)
    assert e.shape.system == e.system == CAT.systems_for("h100-sxm")[0].id  # resolved
    assert (e.model, e.accelerator, e.quant, e.tp, e.pp, e.ep) == ("llama-3.1-70b", "h100-sxm", "fp8", 4, 1, 1)
    d = e.to_dict()
    assert "shape" not in d
    assert list(d)[:9] == ["model", "accelerator", "system", "quant", "kv_dtype", "tp", "pp", "ep", "gpus"]


def _disaggregated_problem() -> Problem:
    m: dict[str, Any] = {
        "name": "m", "model": "llama-3.1-70b",
        "traffic": {"peak_rps": 2, "input_tokens": {"p50": 4000, "p90": 4000, "p99": 4000},
                    "output_tokens": {"p50": 1000, "p90": 1000, "p99": 1000}},
        "slo": {"ttft": {"max_ms": 1000, "percentile": 99}, "tpot": {"max_ms": 50, "percentile": 99}},
        "allowed_accelerators": ["h200-sxm"], "allowed_quantizations": ["fp8"], "allowed_kv_dtypes": ["fp8"],
        "headroom": 0, "min_replicas": 1, "serving_modes": ["disaggregated"],
    }
    return Problem.model_validate({"name": "disagg", "models": [m],
                                   "fleet": {"pricing": "on-demand", "max_configs_per_model": 1}})


def _solved(problem: Problem) -> tuple[Session, Plan, list]:
    s = Session.prepare(problem, CAT)
    plan, sol = s.run(time_limit_s=30)
    assert plan.status.has_plan
    return s, plan, s.chosen(sol)


@pytest.mark.parametrize("source", ["chat-assistant-70b.yaml", "shared-small-models.yaml", "disaggregated"])
def test_per_replica_times_replicas_is_the_total(source: str) -> None:
    problem = (_disaggregated_problem() if source == "disaggregated"
               else load_problem(ROOT / "problems" / source, CAT))
    _, plan, chosen = _solved(problem)
    modes = {d.serving_mode for d in plan.deployments}
    shared = any(d.partition for d in plan.deployments)
    assert ("disaggregated" in modes) == (source == "disaggregated")
    assert shared == (source == "shared-small-models.yaml")
    assert len(chosen) == len(plan.deployments)
    for (c, r), d in zip(chosen, plan.deployments):
        assert d.shape is c.shape and d.replicas == r
        assert d.total_capacity_rps == pytest.approx(r * c.capacity_rps_per_replica)
        assert d.capacity_rps_per_replica == pytest.approx(c.capacity_rps_per_replica)
        assert d.gpus_per_replica == c.gpus_per_replica
        if d.partition:  # a GPU share: one GPU holds replicas_per_gpu replicas
            assert d.gpus_per_replica == 1 and d.total_gpus == math.ceil(r / d.replicas_per_gpu)
        else:
            assert d.total_gpus == r * d.gpus_per_replica
        if d.serving_mode == "disaggregated":  # one replica is one unit of both pools
            assert d.gpus_per_replica == sum(p.replicas * p.gpus_per_replica for p in d.pools)
        row = d.to_dict()
        assert {k: row[k] for k in IDENTITY_KEYS} == {
            "model_id": c.shape.model, "accelerator": c.accelerator, "system": c.system, "quant": c.quant,
            "kv_dtype": c.kv_dtype, "tp": c.tp, "pp": c.pp, "ep": c.ep}
        assert "shape" not in row and "gpus" not in row and "capacity_rps" not in row
        assert (row["total_gpus"], row["gpus_per_replica"]) == (d.total_gpus, d.gpus_per_replica)
        assert row["total_capacity_rps"] == d.total_capacity_rps


def _old(plan: dict[str, Any]) -> dict[str, Any]:
    """The plan as an earlier version saved it: totals under ``gpus`` and ``capacity_rps``."""
    deps = [{RENAMED_KEYS.get(k, k): v for k, v in d.items()} for d in plan["deployments"]]
    return {**plan, "deployments": deps}


def test_plans_saved_with_the_old_keys_still_load(tmp_path: Path) -> None:
    problem = load_problem(ROOT / "problems" / "chat-assistant-70b.yaml", CAT)
    _, plan, _ = _solved(problem)
    new = attach(plan, problem, CAT).to_dict()
    old = _old(new)
    assert "gpus" in old["deployments"][0] and "total_gpus" not in old["deployments"][0]
    assert [saved_deployment(d) for d in old["deployments"]] == new["deployments"]
    # simulate and bench plan read the identity keys, which did not change
    ctx = 8192
    assert ([(r.label, r.max_batch) for r in plan_replicas(old, CAT, None, ctx)]
            == [(r.label, r.max_batch) for r in plan_replicas(new, CAT, None, ctx)])
    assert bench_plan(old, "vllm", CAT) == bench_plan(new, "vllm", CAT)
    # size --plan reads the totals
    worked = ROOT / "tests" / "fixtures" / "bench" / "worked-70b-fp8-tp4-h100.csv"
    outs = []
    for name, p in (("old", old), ("new", new)):
        f = tmp_path / f"{name}.json"
        f.write_text(json.dumps(p))
        r = CliRunner().invoke(main, ["size", "--from-bench", str(worked), "--peak-rps", "120", "--gpus-per-instance", "4",
                                      "--plan", str(f), "--json"])
        assert r.exit_code == 0, r.output
        outs.append(json.loads(r.output))
    assert outs[0] == outs[1]
    deps = plan.deployments
    assert outs[1]["plan"]["plan_gpus"] == sum(d.total_gpus for d in deps)
    assert outs[1]["plan"]["plan_capacity_rps_per_replica"] == pytest.approx(
        sum(d.total_capacity_rps for d in deps) / sum(d.replicas for d in deps))
