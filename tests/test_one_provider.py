"""``one_provider`` in ``fleetplan solve``: ``fleet`` keeps every rented GPU of the fleet with one
provider (a provider choice in CP-SAT, brute force and the decomposition's claim), ``true`` /
``accelerator`` keep each accelerator with one; the verifier checks both as one family."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from solver.catalog import load_catalog, provider_key
from solver.cli import main
from solver.optimize.brute import brute_force
from solver.optimize.cpsat import FleetModel
from solver.optimize.decompose import as_fleet_plan, decompose
from solver.optimize.encode import encode
from solver.plan import SolveStatus
from solver.problem import Fleet
from solver.session import solve_problem
from solver.verify import violations
from tests.test_optimizer import SYSTEMS, cand, demand, table

ROOT = Path(__file__).resolve().parents[1]

# provider -> accelerator -> $/GPU-h: x is cheapest for gpu-a, y for gpu-b; z offers gpu-c only.
OFFERS = {"x": {"gpu-a": 2.0, "gpu-b": 5.0}, "y": {"gpu-a": 4.0, "gpu-b": 3.5}, "z": {"gpu-c": 1.0}}


def _two_models() -> list:
    """m0 runs only on gpu-a, m1 only on gpu-b: 1-GPU replicas of 1 req/s, two each (the
    default replica minimum)."""
    return [table(demand("m0", 1.0), [cand("m0", "gpu-a", 1, 1.0)]),
            table(demand("m1", 1.0), [cand("m1", "gpu-b", 1, 1.0)])]


def test_fleet_one_provider_hand_computed_cpsat_brute_and_decomposition():
    """Two GPUs of each. Mixed: a from x ($2) + b from y ($3.5) = 2 x $5.50 = $11/h. One
    provider: x 2 x ($2 + $5) = $14, y 2 x ($4 + $3.5) = $15 -> x at $14/h. The models' own
    optima (mixed, $11) are a bound, never the fleet's plan. z rents no accelerator in use."""
    fleet = Fleet(one_provider="fleet")
    ip = encode(_two_models(), fleet, offers=OFFERS)
    assert [p.key for p in ip.providers] == ["x", "y"]
    sol = FleetModel(ip).solve(time_limit_s=10, workers=1)
    assert sol.status is SolveStatus.OPTIMAL and sol.cost_cents == 1400
    assert ip.providers[sol.provider].key == "x"
    assert brute_force(ip).cost_cents == 1400
    parts = decompose(ip)
    assert parts is not None and parts.bound_cents == 1100
    assert as_fleet_plan(ip, parts, 0.0) is None
    free = encode(_two_models(), Fleet(), offers=OFFERS)  # without one_provider: no choice
    assert free.providers == () and FleetModel(free).solve(10, 1).cost_cents == 1100


def test_fleet_one_provider_no_provider_offers_both_is_infeasible_and_named():
    """m0 on gpu-a only, m1 on gpu-c only: z alone offers gpu-c and not gpu-a."""
    tables = [table(demand("m0", 1.0), [cand("m0", "gpu-a", 1, 1.0)]),
              table(demand("m1", 1.0), [cand("m1", "gpu-c", 1, 1.0)])]
    ip = encode(tables, Fleet(one_provider="fleet"), offers=OFFERS)
    model = FleetModel(ip)
    assert model.solve(10, 1).status is SolveStatus.INFEASIBLE
    assert brute_force(ip).cost_cents is None
    assert [g.name for g in model.core(10).guards] == ["one_provider"]


@pytest.mark.parametrize("seed", range(20))
def test_random_fleet_one_provider_matches_brute_force(seed):
    rng = random.Random(500 + seed)
    tables = []
    for m in range(rng.choice([1, 2, 3])):
        d = demand(f"m{m}", rng.choice([2.0, 5.0]), rng.choice([0.0, 0.2]))
        tables.append(table(d, [cand(f"m{m}", rng.choice(list(SYSTEMS)), rng.choice([1, 2]),
                                     round(rng.uniform(0.8, 4.0), 3)) for _ in range(rng.randint(1, 3))]))
    offers = {k: {g: round(rng.uniform(1.0, 6.0), 2) for g in SYSTEMS if rng.random() < 0.6} for k in "pqr"}
    for g in SYSTEMS:  # every accelerator rented by someone
        if not any(g in o for o in offers.values()):
            offers[rng.choice("pqr")][g] = round(rng.uniform(1.0, 6.0), 2)
    cheapest = {g: min(o[g] for o in offers.values() if g in o) for g in SYSTEMS}
    tables = [dataclasses.replace(t, candidates=tuple(  # the tables carry each accelerator's cheapest price
        dataclasses.replace(c, usd_per_gpu_hour=cheapest[c.accelerator]) for c in t.candidates))
        for t in tables]
    fleet = Fleet(one_provider="fleet", budget_usd_per_hour=rng.choice([None, 20.0, 40.0]),
                  owned=rng.choice([None, {"gpu-a": 2}]), max_configs_per_model=rng.choice([1, 2]))
    ip = encode(tables, fleet, offers=offers)
    sol = FleetModel(ip).solve(10, 1)
    ref = brute_force(ip)
    if ref.cost_cents is None:
        assert sol.status is SolveStatus.INFEASIBLE
    else:
        assert sol.status is SolveStatus.OPTIMAL and sol.cost_cents == ref.cost_cents


def _problem(tmp_path: Path, one_provider) -> Path:
    """Two small models, one allowed only A100-40GB (Lambda cheapest), one only H100 SXM
    (RunPod cheapest, and RunPod has no A100-40GB row)."""
    lengths = {"p50": 300, "p90": 600, "p99": 1000}
    model = lambda name, acc: {"name": name, "model": "llama-3.1-8b",  # noqa: E731
                               "traffic": {"peak_rps": 2, "input_tokens": lengths, "output_tokens": lengths},
                               "slo": {"tpot": {"max_ms": 60}}, "allowed_accelerators": [acc],
                               "min_replicas": 1}
    data = {"name": "two-providers", "models": [model("a", "a100-40gb"), model("b", "h100-sxm")],
            "fleet": {"one_provider": one_provider}}
    f = tmp_path / f"p-{one_provider}.yaml"
    f.write_text(yaml.safe_dump(data))
    return f


def _keys(cat, deps) -> set[str]:
    return {provider_key(cat.prices[d["price_id"]].provider) for d in deps}


def test_solve_enforces_one_provider_fleet_end_to_end(tmp_path: Path):
    cat = load_catalog()
    free = CliRunner().invoke(main, ["solve", str(_problem(tmp_path, False)), "--json"])
    one = CliRunner().invoke(main, ["solve", str(_problem(tmp_path, "fleet")), "--json"])
    assert free.exit_code == 0 and one.exit_code == 0, one.output
    f, o = json.loads(free.output), json.loads(one.output)
    assert _keys(cat, f["deployments"]) == {"lambda", "runpod"}  # the cheapest rows mix providers
    assert len(_keys(cat, o["deployments"])) == 1 and o["provider"] in _keys(cat, o["deployments"])
    assert o["cost_usd_per_hour"] >= f["cost_usd_per_hour"] - 1e-9
    for d in o["deployments"]:  # each price is that provider's cheapest row of the accelerator
        assert d["usd_per_gpu_hour"] == cat.prices_for(d["accelerator"], "on-demand", o["provider"])[0].usd_per_gpu_hour


@pytest.mark.parametrize("mode", [True, "accelerator", "fleet"])
def test_verifier_flags_a_plan_that_mixes_providers(tmp_path: Path, mode):
    """A plan planned without one_provider mixes Lambda and RunPod across accelerators: fine for
    ``true``/``accelerator``, a violation for ``fleet``. A second H100 deployment priced from
    another provider breaks ``true``/``accelerator`` too."""
    from solver.problem import load_problem

    cat = load_catalog()
    free = solve_problem(load_problem(_problem(tmp_path, False), cat), cat)
    constrained = load_problem(_problem(tmp_path, mode), cat)
    fams = {v.family for v in violations(free, constrained, cat)}
    assert ("one_provider" in fams) == (mode == "fleet")
    h100 = next(d for d in free.deployments if d.accelerator == "h100-sxm")
    other = next(p for p in cat.prices_for("h100-sxm", "on-demand") if provider_key(p.provider) == "lambda")
    twin = dataclasses.replace(h100, replicas=1, price_id=other.id, usd_per_gpu_hour=other.usd_per_gpu_hour)
    mixed = dataclasses.replace(free, deployments=free.deployments + (twin,))
    assert "one_provider" in {v.family for v in violations(mixed, constrained, cat)}


@pytest.mark.parametrize("mode", [True, "accelerator"])
def test_solve_keeps_each_accelerator_with_one_provider(tmp_path: Path, mode):
    cat = load_catalog()
    res = CliRunner().invoke(main, ["solve", str(_problem(tmp_path, mode)), "--json"])
    assert res.exit_code == 0, res.output
    deps = json.loads(res.output)["deployments"]
    for acc in {d["accelerator"] for d in deps}:
        assert len(_keys(cat, [d for d in deps if d["accelerator"] == acc])) == 1


def test_solve_explains_a_fleet_no_single_provider_can_rent(tmp_path: Path):
    """MI325X is priced by TensorWave alone, which has no H100 row: no one provider rents both."""
    f = _problem(tmp_path, "fleet")
    data = yaml.safe_load(f.read_text())
    data["models"][0]["allowed_accelerators"] = ["mi325x"]
    f.write_text(yaml.safe_dump(data))
    res = CliRunner().invoke(main, ["solve", str(f), "--json"])
    d = json.loads(res.output)
    assert d["status"] == "infeasible" and d["conflict"] == ["one_provider"], res.output
    assert "no one provider rents every accelerator" in d["explanation"][0]
