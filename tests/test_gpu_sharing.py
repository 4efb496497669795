"""GPU sharing (issue 11 item 5): MIG instances and co-located replicas by memory fraction.

Hand-computed MIG memory slices and rates, time-sliced throughput, a fleet where sharing is
cheaper and one where it is not, CP-SAT against brute force with GPU shares, and the verifier
catching a plan that miscounts shared GPUs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from solver.candidates import Candidate, ModelTable, build_tables
from solver.catalog import load_catalog
from solver.costmodel import Shape, decode_step, max_concurrency, shape_terms
from solver.costmodel.partition import mig_partition, partition_terms, shared_partition
from solver.optimize.brute import brute_force
from solver.optimize.cpsat import FleetModel
from solver.optimize.encode import encode
from solver.plan import SolveStatus
from solver.problem import Problem
from solver.session import Session, solve_problem
from solver.units import GIB
from solver.verify import violations

H100_MIG = ["1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb"]


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


def _model(name: str, model: str, rps: float, sharing: dict | None, ttft: float = 2000.0,
           e2e: float | None = None) -> dict:
    slo: dict = {"ttft": {"max_ms": ttft}}
    if e2e is not None:
        slo["e2e"] = {"max_ms": e2e}
    out = {
        "name": name, "model": model,
        "traffic": {"peak_rps": rps, "input_tokens": {"p50": 300, "p90": 600, "p99": 1000},
                    "output_tokens": {"p50": 100, "p90": 200, "p99": 300}},
        "slo": slo, "allowed_accelerators": ["h100-sxm"], "allowed_quantizations": ["fp8"],
        "allowed_kv_dtypes": ["fp8"], "min_replicas": 1,
    }
    if sharing is not None:
        out["gpu_sharing"] = sharing
    return out


def _problem(models: list[dict], **fleet) -> Problem:
    return Problem.model_validate({"name": "t", "models": models,
                                   "fleet": {"max_configs_per_model": 1, **fleet}})


# -- the cost model on a share ----------------------------------------------------------------

def test_mig_profile_gets_its_memory_slices_bandwidth_and_sms(cat) -> None:
    """H100 SXM 1g.10gb: 1/8 of 80 GiB = 10 GiB, vLLM's 0.9 of it usable; 1/8 of the achievable
    3.35 TB/s; 1/7 of the 1,979 TFLOP/s fp8 peak (MIG user guide fractions)."""
    whole = shape_terms(cat, Shape("llama-3.1-8b", "h100-sxm", None, "fp8", "fp8", 1, 1, 1))
    prof = next(p for p in cat.accelerator("h100-sxm").mig_profiles if p.name == "1g.10gb")
    assert (prof.memory_slices, prof.compute_slices, prof.max_count) == (1, 1, 7)
    part = mig_partition(prof.name, prof.memory_slices, prof.compute_slices, prof.max_count)
    t = partition_terms(whole, part, "total-fraction", 0.9)
    assert t.hbm_bytes == pytest.approx(10 * GIB)
    assert t.usable_bytes == pytest.approx(0.9 * 10 * GIB)
    assert t.peak_bw_bytes_s == pytest.approx(3.35e12 / 8)
    assert t.bw_bytes_s == pytest.approx(whole.bw_bytes_s / 8)
    assert t.peak_flop_s == pytest.approx(1979e12 / 7)
    assert t.weight_bytes_gpu == whole.weight_bytes_gpu  # the model is whole on its instance
    # sequences of 1,300 tokens an instance holds: (0.9 x its memory - weights - runtime - activations)
    # / KV per sequence. 8B fp8 weights + runtime + activations exceed 9 GiB: none on 1g.10gb.
    per_seq = whole.kv_full_bytes_per_token_gpu * 1300
    fixed = whole.weight_bytes_gpu + whole.overhead_bytes_gpu + whole.activation_bytes_gpu
    assert 0.9 * 10 * GIB - fixed < 0 and int(max_concurrency(t, 1300)) == 0
    two = next(p for p in cat.accelerator("h100-sxm").mig_profiles if p.name == "1g.20gb")
    t20 = partition_terms(whole, mig_partition(two.name, two.memory_slices, two.compute_slices, two.max_count),
                          "total-fraction", 0.9)
    expect = int(np.floor((0.9 * 20 * GIB - fixed) / per_seq))
    assert expect > 0 and int(max_concurrency(t20, 1300)) == expect
    assert t20.peak_flop_s == pytest.approx(1979e12 / 7)  # one compute slice, two memory slices


def test_h200_3g_profile_is_half_the_memory_three_sevenths_of_the_sms(cat) -> None:
    prof = next(p for p in cat.accelerator("h200-sxm").mig_profiles if p.name == "3g.71gb")
    part = mig_partition(prof.name, prof.memory_slices, prof.compute_slices, prof.max_count)
    assert (part.memory_fraction, part.compute_fraction, part.per_gpu) == (0.5, pytest.approx(3 / 7), 2)
    whole = shape_terms(cat, Shape("llama-3.1-8b", "h200-sxm", None, "fp8", "fp8", 1, 1, 1))
    t = partition_terms(whole, part, "total-fraction", 0.9)
    assert t.hbm_bytes == pytest.approx(70.5 * GIB)


def test_time_sliced_replica_runs_k_times_slower_on_the_gpu(cat) -> None:
    """Four co-located replicas: a quarter of the memory each, and every GPU-side part of a step
    (HBM traffic and math) four times as long; host time unchanged."""
    whole = shape_terms(cat, Shape("llama-3.1-8b", "h100-sxm", None, "fp8", "fp8", 1, 1, 1))
    t = partition_terms(whole, shared_partition(4), "total-fraction", 0.9)
    assert t.hbm_bytes == pytest.approx(20 * GIB)
    for batch in (1, 16, 64):
        a, b = decode_step(whole, batch, 1300), decode_step(t, batch, 1300)
        assert float(b.memory_ms + b.compute_ms) == pytest.approx(4 * float(a.memory_ms + a.compute_ms))
        assert float(b.overhead_ms) == pytest.approx(float(a.overhead_ms))


def test_multi_gpu_shape_cannot_run_on_a_share(cat) -> None:
    whole = shape_terms(cat, Shape("llama-3.1-8b", "h100-sxm", None, "fp8", "fp8", 2, 1, 1))
    with pytest.raises(ValueError, match="single-GPU"):
        partition_terms(whole, shared_partition(2), "total-fraction", 0.9)


# -- the search -------------------------------------------------------------------------------

def test_two_small_models_share_one_gpu_where_whole_gpus_take_two(cat) -> None:
    sharing = {"mig": {"h100-sxm": H100_MIG}, "colocate": [2, 4]}
    alone = solve_problem(_problem([_model("a", "llama-3.1-8b", 0.2, None),
                                    _model("b", "qwen2.5-7b", 0.2, None)]), cat)
    shared = solve_problem(_problem([_model("a", "llama-3.1-8b", 0.2, sharing),
                                     _model("b", "qwen2.5-7b", 0.2, sharing)]), cat)
    assert alone.status is SolveStatus.OPTIMAL and shared.status is SolveStatus.OPTIMAL
    assert alone.gpus == 2 and shared.gpus == 1
    assert shared.cost_usd_per_hour == pytest.approx(alone.cost_usd_per_hour / 2)
    assert all(d.partition for d in shared.deployments)
    # both on the same kind of share, so the one GPU holds them together
    assert len({d.partition for d in shared.deployments}) == 1
    k = shared.deployments[0].replicas_per_gpu
    assert sum(d.replicas for d in shared.deployments) <= k
    assert sum(d.cost_usd_per_hour for d in shared.deployments) == pytest.approx(2 * cat.prices_for(
        "h100-sxm", "on-demand", None)[0].usd_per_gpu_hour / k)


def test_sharing_does_not_help_a_model_that_fills_whole_gpus(cat) -> None:
    """40 req/s of an 8B model fills several GPUs: shares give no more throughput per GPU
    (MIG: 7/8 of the bandwidth over 7 instances; time-slicing: the same GPU), so the plan costs
    the same with sharing allowed."""
    sharing = {"mig": {"h100-sxm": H100_MIG}, "colocate": [2, 4]}
    alone = solve_problem(_problem([_model("a", "llama-3.1-8b", 40.0, None)]), cat)
    shared = solve_problem(_problem([_model("a", "llama-3.1-8b", 40.0, sharing)]), cat)
    assert alone.status is SolveStatus.OPTIMAL and shared.status is SolveStatus.OPTIMAL
    assert shared.cost_usd_per_hour == pytest.approx(alone.cost_usd_per_hour)
    assert shared.gpus == alone.gpus


def test_tight_e2e_target_rules_out_time_sliced_shares(cat) -> None:
    """Time-slicing stretches every step 4x: with an e2e target the whole GPU meets and a
    quarter-GPU cannot, the co-located candidates all carry the e2e violation."""
    p = _problem([_model("a", "llama-3.1-8b", 0.2, {"colocate": [4]}, e2e=4000.0)])
    (t,) = build_tables(p, cat)
    shared = [c for c in t.candidates if c.partition == "shared 1/4"]
    whole = [c for c in t.candidates if not c.partition]
    assert shared and all(c.violations for c in shared)
    assert any(not c.violations for c in whole)


def test_brute_force_agrees_with_cp_sat_on_shared_gpus(cat) -> None:
    sharing = {"mig": {"h100-sxm": ["1g.20gb", "3g.40gb"]}, "colocate": [2]}
    p = _problem([_model("a", "llama-3.1-8b", 0.5, sharing), _model("b", "qwen2.5-7b", 1.5, sharing)],
                 power_kw=2.0)
    tables = build_tables(p, cat)
    # MIG profiles mixed on one GPU (layouts from the catalog) and one profile per GPU
    for ip in (encode(tables, p.fleet, mig_profiles={"h100-sxm": cat.accelerator("h100-sxm").mig_profiles}),
               encode(tables, p.fleet)):
        sol = FleetModel(ip).solve()
        assert sol.status is SolveStatus.OPTIMAL and sol.cost_cents == brute_force(ip).cost_cents
    assert ip.gpu_shares, "expected candidates on GPU shares"
    sol = FleetModel(ip).solve()
    ref = brute_force(ip)
    assert sol.status is SolveStatus.OPTIMAL
    assert sol.cost_cents == ref.cost_cents
    # the optimum puts replicas on a share, and both count the same whole GPUs for them
    on_share = [i for i, r in enumerate(sol.replicas) if r and ip.candidates[i].gpu_share >= 0]
    assert on_share
    assert ref.replicas is not None and any(r and ip.candidates[i].gpu_share >= 0 for i, r in enumerate(ref.replicas))


def test_inventory_counts_shared_gpus_exactly(cat) -> None:
    """Three small models on 1/2 shares fit 2 GPUs; an inventory of 1 GPU cannot hold them
    (no three replicas fit one GPU split in two) but one of 2 can."""
    sharing = {"colocate": [2]}
    models = [_model(n, "llama-3.1-8b", 0.1, sharing) for n in ("a", "b", "c")]
    ok = solve_problem(_problem(models, inventory={"h100-sxm": 2}), cat)
    assert ok.status is SolveStatus.OPTIMAL and ok.gpus == 2
    assert solve_problem(_problem(models, inventory={"h100-sxm": 1}), cat).status is SolveStatus.INFEASIBLE


# -- the verifier -----------------------------------------------------------------------------

def _shared_plan(cat):
    sharing = {"mig": {"h100-sxm": H100_MIG}, "colocate": [2, 4]}
    p = _problem([_model("a", "llama-3.1-8b", 0.2, sharing), _model("b", "qwen2.5-7b", 0.2, sharing)])
    plan, _ = Session.prepare(p, cat).run()
    return p, plan


def test_verifier_recounts_shared_gpus(cat) -> None:
    p, plan = _shared_plan(cat)
    assert violations(plan, p, cat) == []
    # a share with fewer replicas per GPU than the plan claims: the GPUs no longer add up
    bad = dataclasses.replace(plan, deployments=tuple(dataclasses.replace(d, partition="shared 1/2", replicas_per_gpu=2)
                                                      for d in plan.deployments))
    assert violations(bad, p, cat)
    # a MIG profile the accelerator lacks
    wrong = dataclasses.replace(plan, deployments=(dataclasses.replace(plan.deployments[0], partition="mig 1g.18gb"),)
                                + plan.deployments[1:])
    assert any(v.family == "shape" and "1g.18gb" in v.message for v in violations(wrong, p, cat))


def test_verifier_refuses_a_share_the_problem_does_not_allow(cat) -> None:
    p, plan = _shared_plan(cat)
    strict = _problem([_model("a", "llama-3.1-8b", 0.2, None), _model("b", "qwen2.5-7b", 0.2, None)])
    assert any(v.family == "gpu_sharing" for v in violations(plan, strict, cat))


def test_plan_json_states_the_share(cat) -> None:
    _, plan = _shared_plan(cat)
    d = plan.to_dict()["deployments"][0]
    assert d["partition"] in {"shared 1/2", "shared 1/4"} or d["partition"].startswith("mig ")
    assert d["gpu_share_per_replica"] == pytest.approx(1 / d["replicas_per_gpu"])


# -- the encoding, by hand and against brute force on random small fleets ---------------------

_SYS = {"gpu-a": ("sys-a", 8, 2.0, 700.0), "gpu-b": ("sys-b", 4, 3.0, 400.0)}


def _cand(model: str, gpu: str, cap: float, k: int = 1, gpus: int = 1, partition: str | None = None) -> Candidate:
    """A synthetic candidate: ``k`` replicas per GPU, on ``partition`` (default: ``shared 1/k``)."""
    system, per_node, price, tdp = _SYS[gpu]
    if partition is None:
        partition = f"shared 1/{k}" if k > 1 else ""
    return Candidate(
        model=model, shape=Shape("llama-3.1-8b", gpu, system, "fp8", "fp8", gpus), max_batch=8,
        gpus_per_replica=gpus, gpus_per_node=per_node, usd_per_gpu_hour=price,
        price_id=f"{gpu}-price", tdp_w=tdp, quality_loss_points=0.0, capacity_rps_per_replica=cap, ttft_p99_ms=100.0,
        ttft_min_ms=50.0, tpot_p99_ms=40.0, e2e_p99_ms=1000.0, e2e_min_ms=900.0, service_s=1.0,
        max_concurrency=64, partition=partition, per_gpu=k)


def _table(name: str, rps: float, cands: list) -> ModelTable:
    from solver.problem import LatencyTarget, ModelDemand, Slo, TokenLengths, Traffic

    lengths = TokenLengths(p50=100, p90=200, p99=400)
    d = ModelDemand(name=name, model="llama-3.1-8b", min_replicas=1, headroom=0.0,
                    traffic=Traffic(peak_rps=rps, input_tokens=lengths, output_tokens=lengths),
                    slo=Slo(tpot=LatencyTarget(max_ms=50)))
    return ModelTable(d, tuple(cands), ())


def test_four_quarter_gpu_replicas_of_two_models_take_one_gpu_and_one_power_slot() -> None:
    """a and b each need 2 replicas of a quarter-GPU (0.6 req/s each for 1 req/s): 4 quarters
    = 1 GPU = 200 cents/h and 700 W; whole GPUs would take 2. A 0.7 kW limit leaves only the
    shared plan; with thirds instead of quarters, 4 replicas need 2 GPUs and no plan fits."""
    from solver.problem import Fleet

    def tables(k: int) -> list:
        return [_table(m, 1.0, [_cand(m, "gpu-a", 5.0), _cand(m, "gpu-a", 0.6, k=k)]) for m in ("a", "b")]

    ip = encode(tables(4), Fleet(max_configs_per_model=1, power_kw=0.7))
    sol = FleetModel(ip).solve()
    assert sol.status is SolveStatus.OPTIMAL and sol.cost_cents == 200 and sol.provisioned == (1,)
    assert brute_force(ip).cost_cents == 200
    assert encode(tables(4), Fleet(max_configs_per_model=1)).gpu_shares[0].per_gpu == 4
    ip3 = encode(tables(3), Fleet(max_configs_per_model=1, power_kw=0.7))
    assert FleetModel(ip3).solve().status is SolveStatus.INFEASIBLE and brute_force(ip3).cost_cents is None


@pytest.mark.parametrize("seed", range(20))
def test_random_small_fleets_with_shares_match_brute_force(seed: int) -> None:
    import random

    from solver.problem import Fleet

    rng = random.Random(5000 + seed)
    tables = []
    for m in range(rng.choice([1, 2, 3])):
        name = f"m{m}"
        cands = [_cand(name, rng.choice(list(_SYS)), round(rng.uniform(0.3, 3.0), 3), k=rng.choice([1, 2, 3, 4]))
                 for _ in range(rng.randint(1, 3))]
        tables.append(_table(name, rng.choice([0.5, 1.0, 2.5]), cands))
    inv = {g: rng.choice([1, 2, 4]) for g in _SYS if rng.random() < 0.4} or None
    fleet = Fleet(inventory=inv, whole_nodes=rng.random() < 0.25, power_kw=rng.choice([None, 1.4, 3.0]),
                  budget_usd_per_hour=rng.choice([None, 6.0, 12.0]), max_configs_per_model=rng.choice([1, 2]))
    ip = encode(tables, fleet)
    sol = FleetModel(ip).solve()
    ref = brute_force(ip)
    if ref.cost_cents is None:
        assert sol.status is SolveStatus.INFEASIBLE
    else:
        assert sol.status is SolveStatus.OPTIMAL and sol.cost_cents == ref.cost_cents


def test_plan_notes_say_who_shares_which_gpus(cat) -> None:
    _, plan = _shared_plan(cat)
    notes = [n for n in plan.notes if n.startswith("GPU share ")]
    assert len(notes) == 1
    k = plan.deployments[0].replicas_per_gpu
    assert f"{plan.deployments[0].partition} on h100-sxm: 2 replicas (a 1, b 1) on 1 GPU(s), {k} per GPU" in notes[0]
