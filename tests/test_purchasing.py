"""Owned GPUs, provider matching and redundancy (issue 12 items 4 and 5): hand-computed costs on
hand-built tables, agreement with brute force, the verifier's checks, and real problems."""

from __future__ import annotations

import math
import random
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from solver.candidates import Candidate, ModelTable
from solver.costmodel import Shape
from solver.catalog import load_catalog, provider_matches
from solver.cli import main
from solver.optimize.brute import brute_force
from solver.optimize.cpsat import FleetModel
from solver.optimize.encode import encode
from solver.plan import SolveStatus
from solver.problem import Fleet, LatencyTarget, ModelDemand, Slo, TokenLengths, Traffic, load_problem
from solver.session import solve_problem
from solver.verify import violations

ROOT = Path(__file__).resolve().parent.parent
SYSTEMS = {"gpu-a": ("sys-a", 8, 2.0, 700.0), "gpu-b": ("sys-b", 8, 3.5, 700.0)}


def demand(name: str, rps: float, min_replicas: int = 1, redundancy: str = "none") -> ModelDemand:
    lengths = TokenLengths(p50=100, p90=200, p99=400)
    return ModelDemand(name=name, model="llama-3.1-8b",
                       traffic=Traffic(peak_rps=rps, input_tokens=lengths, output_tokens=lengths),
                       slo=Slo(tpot=LatencyTarget(max_ms=50)), headroom=0.0,
                       min_replicas=min_replicas, redundancy=redundancy)  # type: ignore[arg-type]


def cand(model: str, gpu: str, gpus: int, cap: float) -> Candidate:
    system, per_node, price, tdp = SYSTEMS[gpu]
    return Candidate(
        model=model, shape=Shape("llama-3.1-8b", gpu, system, "fp8",
        "fp8", gpus), max_batch=8, gpus_per_replica=gpus, gpus_per_node=per_node,
        usd_per_gpu_hour=price, price_id=f"{gpu}-price", tdp_w=tdp, quality_loss_points=0.0,
        capacity_rps_per_replica=cap, ttft_p99_ms=100.0, ttft_min_ms=50.0, tpot_p99_ms=40.0,
        e2e_p99_ms=1000.0, e2e_min_ms=900.0, service_s=1.0, max_concurrency=64,
        violations=frozenset(),
    )


def solve(tables: list[ModelTable], fleet: Fleet):
    ip = encode(tables, fleet)
    return ip, FleetModel(ip).solve(time_limit_s=10, workers=1)


def two_gpu_table(d: ModelDemand, cap_a: float, cap_b: float) -> ModelTable:
    return ModelTable(d, (cand(d.name, "gpu-a", 1, cap_a), cand(d.name, "gpu-b", 1, cap_b)), ())


# -- owned GPUs ---------------------------------------------------------------------------------

def test_owned_gpus_are_a_second_cost_tier_hand_computed():
    """10 req/s; gpu-a ($2/h) serves 1.5, gpu-b ($3.5/h) 2.6. Renting only: 5a + 1b = 10.1 req/s
    for $13.50/h is the cheapest of the two-configuration mixes. With 2 gpu-b owned at $0: 4b =
    10.4 req/s costs 2 x 3.5 = $7.00 (3b + 2a = $7.50, 2b + 4a = $8.00). At $1/h per owned GPU:
    4b = 2 x 1 + 2 x 3.5 = $9.00 (3b + 2a = $9.50, 2b + 4a = $10.00)."""
    t = two_gpu_table(demand("m", 10.0), 1.5, 2.6)
    ip, sol = solve([t], Fleet())
    assert sol.cost_cents == 1350 == brute_force(ip).cost_cents
    ip, sol = solve([t], Fleet(owned={"gpu-b": 2}))
    assert sol.cost_cents == 700 == brute_force(ip).cost_cents
    assert sol.replicas == (0, 4) and sol.owned == (0, 2)
    ip, sol = solve([t], Fleet(owned={"gpu-b": 2}, owned_usd_per_gpu_hour=1.0))
    assert sol.cost_cents == 900 == brute_force(ip).cost_cents
    assert sol.owned == (0, 2)


def test_owned_gpus_dearer_than_renting_stay_idle():
    """An owned GPU whose stated hourly cost exceeds the rental price is not worth running."""
    t = two_gpu_table(demand("m", 3.0), 1.5, 2.6)
    ip, sol = solve([t], Fleet(owned={"gpu-a": 4}, owned_usd_per_gpu_hour=9.0))
    assert sol.owned == (0, 0)
    assert sol.cost_cents == brute_force(ip).cost_cents == 400  # 2a rented at $2


def test_no_idle_owned_gpus_are_provisioned():
    """Free owned GPUs must not inflate the GPUs provisioned beyond those in use."""
    t = two_gpu_table(demand("m", 1.0), 1.5, 2.6)
    _, sol = solve([t], Fleet(owned={"gpu-a": 32}))
    assert sol.provisioned == (1, 0) and sol.owned == (1, 0) and sol.cost_cents == 0


@pytest.mark.parametrize("seed", range(12))
def test_owned_and_redundancy_agree_with_brute_force(seed: int):
    rng = random.Random(seed)
    tables = []
    for m in range(rng.randint(1, 2)):
        d = demand(f"m{m}", rng.uniform(1.0, 8.0), min_replicas=rng.randint(1, 3),
                   redundancy=rng.choice(["none", "n+1"]))
        cands = [cand(d.name, rng.choice(["gpu-a", "gpu-b"]), rng.choice([1, 2]), rng.uniform(0.8, 4.0))
                 for _ in range(rng.randint(1, 3))]
        tables.append(ModelTable(d, tuple(cands), ()))
    fleet = Fleet(owned={rng.choice(["gpu-a", "gpu-b"]): rng.randint(1, 6)},
                  owned_usd_per_gpu_hour=rng.choice([0.0, 1.0, 3.0]),
                  whole_nodes=rng.random() < 0.3)
    ip, sol = solve(tables, fleet)
    ref = brute_force(ip)
    if ref.cost_cents is None:
        assert sol.status is SolveStatus.INFEASIBLE
    else:
        assert sol.status is SolveStatus.OPTIMAL
        assert sol.cost_cents == ref.cost_cents


# -- redundancy ----------------------------------------------------------------------------------

def test_min_replicas_and_n_plus_one_hand_computed():
    """10 req/s; gpu-a ($2) serves 4, gpu-b ($3.5) 6. Plain: 1a + 1b = 10 for $5.50. N+1 (the
    largest replica down must leave 10): 4a = 16 - 4 = 12 for $8.00; 3b = 18 - 6 = 12 for $10.50;
    with a b in the mix 4x + 6y >= 16: 1a + 2b for $9.00, 3a + 1b for $9.50. Optimum $8.00."""
    d = demand("m", 10.0)
    ip, sol = solve([two_gpu_table(d, 4.0, 6.0)], Fleet())
    assert sol.cost_cents == 550 == brute_force(ip).cost_cents
    d = demand("m", 10.0, redundancy="n+1")
    ip, sol = solve([two_gpu_table(d, 4.0, 6.0)], Fleet())
    assert sol.cost_cents == 800 == brute_force(ip).cost_cents and sol.replicas == (4, 0)
    # a minimum of 3 replicas: 2a + 1b = 14 for $7.50 (3a = 12 for $6.00 is cheaper)
    d = demand("m", 10.0, min_replicas=3)
    ip, sol = solve([two_gpu_table(d, 4.0, 6.0)], Fleet())
    assert sol.cost_cents == 600 == brute_force(ip).cost_cents and sum(sol.replicas) == 3


def test_min_replicas_defaults_to_two():
    assert demand("m", 1.0).min_replicas == 1  # this file's helper sets 1
    lengths = TokenLengths(p50=100, p90=200, p99=400)
    d = ModelDemand(name="m", model="x", traffic=Traffic(peak_rps=1, input_tokens=lengths,
                                                          output_tokens=lengths),
                    slo=Slo(tpot=LatencyTarget(max_ms=50)))
    assert d.min_replicas == 2 and d.redundancy == "none"


# -- real problems -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cat():
    return load_catalog()


def _problem(tmp_path: Path, text: str, cat):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return load_problem(path, cat)


CHAT = """
name: owned
models:
  - name: chat
    model: llama-3.3-70b
    traffic:
      peak_rps: 12
      input_tokens: {p50: 900, p90: 2400, p99: 4800}
      output_tokens: {p50: 250, p90: 600, p99: 1000}
    slo:
      ttft: {max_ms: 800}
      tpot: {max_ms: 50}
    allowed_quantizations: [bf16, fp8]
    EXTRA
fleet:
  FLEET
"""


def chat(extra: str = "", fleet: str = "pricing: on-demand") -> str:
    return CHAT.replace("EXTRA", extra or "headroom: 0.2").replace("FLEET", fleet)


def test_owned_h100s_are_used_before_renting(tmp_path: Path, cat):
    """The issue's report: 32 of the company's own H100s, and the plan rented other GPUs from
    three marketplaces instead. Owned GPUs are now used first; the plan says how many of each."""
    problem = _problem(tmp_path, chat(fleet="owned: {h100-sxm: 32}"), cat)
    plan = solve_problem(problem, cat, time_limit_s=20)
    assert plan.status.has_plan
    owned = sum(s.gpus_owned for s in plan.systems if s.accelerator == "h100-sxm")
    assert 0 < owned <= 32
    assert all(s.gpus_owned == 0 for s in plan.systems if s.accelerator != "h100-sxm")
    rented = sum(s.gpus_rented * min(p.usd_per_gpu_hour for p in cat.prices_for(s.accelerator, "on-demand"))
                 for s in plan.systems)
    assert plan.cost_usd_per_hour == pytest.approx(rented)
    rent_only = solve_problem(_problem(tmp_path, chat(), cat), cat, time_limit_s=20)
    assert plan.cost_usd_per_hour < rent_only.cost_usd_per_hour
    assert violations(plan, problem, cat) == []
    d = plan.systems[0].to_dict()
    assert {"gpus_owned", "gpus_rented", "owned_usd_per_gpu_hour"} <= set(d)


def test_verifier_catches_owned_and_redundancy_breaches(cat):
    problem = load_problem(ROOT / "problems" / "owned-h100-fleet.yaml", cat)
    plan = solve_problem(problem, cat, time_limit_s=30)
    assert violations(plan, problem, cat) == []
    # more owned GPUs in use than provisioned (and than owned)
    h100 = [i for i, s in enumerate(plan.systems) if s.accelerator == "h100-sxm"][0]
    systems = list(plan.systems)
    systems[h100] = replace(systems[h100], gpus_owned=33)
    found = {v.family for v in violations(replace(plan, systems=tuple(systems)), problem, cat)}
    assert "inventory" in found
    # chat cut to the replicas that cover its load with none spare: N+1 broken
    chat = [d for d in plan.deployments if d.model == "chat"][0]
    per_replica = chat.capacity_rps_per_replica
    k = math.ceil(plan_load(problem, "chat") / per_replica - 1e-9)
    cut = replace(chat, replicas=k, total_gpus=k * chat.gpus_per_replica, total_capacity_rps=k * per_replica)
    deps = tuple(d for d in plan.deployments if d.model != "chat") + (cut,)
    found = [v for v in violations(replace(plan, deployments=deps), problem, cat) if v.family == "redundancy"]
    assert any("n+1" in v.message for v in found)
    # the router below its replica minimum
    stricter = problem.model_copy(update={"models": [
        m.model_copy(update={"min_replicas": 50}) if m.name == "router" else m for m in problem.models]})
    found = [v for v in violations(plan, stricter, cat) if v.family == "redundancy"]
    assert [v.scope for v in found] == ["router"]


def test_n_plus_one_plan_survives_its_largest_replica(cat):
    problem = load_problem(ROOT / "problems" / "owned-h100-fleet.yaml", cat)
    plan = solve_problem(problem, cat, time_limit_s=30)
    assert plan.status.has_plan and violations(plan, problem, cat) == []
    chat_deps = [d for d in plan.deployments if d.model == "chat"]
    total = sum(d.total_capacity_rps for d in chat_deps)
    largest = max(d.capacity_rps_per_replica for d in chat_deps)
    assert total - largest >= plan_load(problem, "chat") * (1 - 1e-6)
    assert sum(d.replicas for d in plan.deployments if d.model == "router") >= 2
    assert sum(s.gpus_owned for s in plan.systems) <= 32


def plan_load(problem, name: str) -> float:
    d = next(m for m in problem.models if m.name == name)
    return d.traffic.peak_rps * (1 + d.headroom)


# -- providers -----------------------------------------------------------------------------------

def test_provider_matches_by_leading_words_case_insensitively(cat):
    assert provider_matches("AWS (p5.48xlarge)", "aws")
    assert provider_matches("AWS EC2 Capacity Blocks (p5.48xlarge)", "AWS")
    assert provider_matches("RunPod (Community Cloud)", "runpod")
    assert not provider_matches("LambdaLabs", "Lambda")
    ids = {p.id for p in cat.prices_for("h100-sxm", None, "AWS")}
    assert {"h100-sxm-aws-on-demand", "h100-sxm-aws-capacity-block-reserved"} <= ids


def test_reserved_and_spot_rows_are_cheaper_than_the_same_providers_on_demand(cat):
    """Like with like: a provider's reserved or spot price below its own on-demand price for the
    same accelerator (a row failing this is stale or mis-transcribed)."""
    def head(provider: str) -> str:
        return provider.split(" (")[0].split(" EC2")[0].lower()
    on_demand: dict[tuple[str, str], float] = {}
    for p in cat.prices.values():
        if p.pricing == "on-demand":
            key = (p.accelerator, head(p.provider))
            on_demand[key] = min(on_demand.get(key, float("inf")), p.usd_per_gpu_hour)
    compared = 0
    for p in cat.prices.values():
        key = (p.accelerator, head(p.provider))
        if p.pricing != "on-demand" and key in on_demand:
            assert p.usd_per_gpu_hour < on_demand[key], p.id
            compared += 1
    assert compared >= 3


# -- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize("extra,fleet,field", [
    ("", "owned: {h100-sxmm: 8}", "fleet.owned"),
    ("min_replicas: 0", "pricing: on-demand", "min_replicas"),
    ("redundancy: n+2", "pricing: on-demand", "redundancy"),
    ("", "owned_usd_per_gpu_hour: -1", "fleet.owned_usd_per_gpu_hour"),
])
def test_bad_purchasing_input_is_one_line_exit_2(tmp_path: Path, extra: str, fleet: str, field: str):
    path = tmp_path / "bad.yaml"
    path.write_text(chat(extra, fleet))
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line]
    assert len(lines) == 1 and field in lines[0], result.output
