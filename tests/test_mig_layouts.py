"""Mixed MIG layouts (issue 11 item 5 leftovers): MIG profiles of the H100 PCIe, H100 NVL, B200
and GB200 by hand; the valid layouts of one GPU (NVIDIA's placements: memory slices that never
overlap, at most 7 compute slices); the fewest GPUs holding a mix of profiles; CP-SAT against
brute force and the verifier when replicas of different profiles share GPUs."""

from __future__ import annotations

import random

import pytest

from solver.candidates import Candidate
from solver.catalog import load_catalog
from solver.costmodel import Shape, shape_terms
from solver.costmodel.partition import mig_partition, partition_terms
from solver.mig import _fits, mig_cover, mig_gpus, mig_layouts
from solver.optimize.brute import brute_force, provisioned
from solver.optimize.cpsat import FleetModel, max_capacity
from solver.optimize.encode import encode
from solver.plan import SolveStatus
from solver.problem import Fleet, Problem
from solver.session import Session
from solver.units import GIB
from solver.verify import violations
from test_gpu_sharing import _SYS, _table
from test_gpu_sharing import _cand as _sharing_cand


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


def _prof(cat, acc: str, name: str):
    return next(p for p in cat.accelerator(acc).mig_profiles if p.name == name)


# -- the new accelerators' profiles, by hand ----------------------------------------------------

@pytest.mark.parametrize("acc, name, hbm_gib, tb_s, fp8_tflops, mem, sm", [
    # H100 PCIe 1g.10gb: 1/8 of 80 GiB = 10 GiB, 1/8 of 2.0 TB/s = 0.25 TB/s, 1/7 of 1,513 TFLOP/s
    ("h100-pcie", "1g.10gb", 80, 2.0, 1513, 1, 1),
    # H100 NVL 3g.47gb: 4/8 of 94 GiB = 47 GiB, 4/8 of 3.9 TB/s = 1.95 TB/s, 3/7 of 1,670.5
    ("h100-nvl", "3g.47gb", 94, 3.9, 1670.5, 4, 3),
    # B200 2g.45gb: 2/8 of 180 GiB = 45 GiB, 2/8 of 7.7 TB/s = 1.925 TB/s, 2/7 of 4,500
    ("b200", "2g.45gb", 180, 7.7, 4500, 2, 2),
    # B200 1g.45gb: two memory slices (45 GiB) but one compute slice (1/7 of 4,500)
    ("b200", "1g.45gb", 180, 7.7, 4500, 2, 1),
    # GB200 1g.23gb: 1/8 of 186 GiB = 23.25 GiB, 1/8 of 7.7 TB/s = 0.9625 TB/s, 1/7 of 4,500
    ("gb200", "1g.23gb", 186, 7.7, 4500, 1, 1),
])
def test_new_accelerators_mig_slices(cat, acc, name, hbm_gib, tb_s, fp8_tflops, mem, sm) -> None:
    prof = _prof(cat, acc, name)
    assert (prof.memory_slices, prof.compute_slices) == (mem, sm)
    whole = shape_terms(cat, Shape("llama-3.1-8b", acc, None, "fp8", "fp8", 1, 1, 1))
    t = partition_terms(whole, mig_partition(prof.name, mem, sm, prof.max_count), "total-fraction", 0.9)
    assert t.hbm_bytes == pytest.approx(hbm_gib * GIB * mem / 8)
    assert t.peak_bw_bytes_s == pytest.approx(tb_s * 1e12 * mem / 8)
    assert t.peak_flop_s == pytest.approx(fp8_tflops * 1e12 * sm / 7)


def test_b300_has_no_mig_profiles_until_nvidia_documents_them(cat) -> None:
    assert cat.accelerator("b300").mig_profiles == []


# -- layouts of one GPU -----------------------------------------------------------------------

# NVIDIA GPU operator's "all-balanced" layout per accelerator (a layout NVIDIA ships as valid)
BALANCED = {
    "a100-40gb": {"1g.5gb": 2, "2g.10gb": 1, "3g.20gb": 1},
    "a100-80gb": {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1},
    "h100-sxm": {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1},
    "h100-pcie": {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1},
    "h100-nvl": {"1g.12gb": 2, "2g.24gb": 1, "3g.47gb": 1},
    "h200-sxm": {"1g.18gb": 2, "2g.35gb": 1, "3g.71gb": 1},
    "b200": {"1g.23gb": 2, "2g.45gb": 1, "3g.90gb": 1},
    "gb200": {"1g.23gb": 2, "2g.47gb": 1, "3g.93gb": 1},
}


@pytest.mark.parametrize("acc", sorted(BALANCED))
def test_nvidia_balanced_layout_fits_and_single_profile_counts_match(cat, acc) -> None:
    profiles = cat.accelerator(acc).mig_profiles
    bal = BALANCED[acc]
    assert _fits(profiles, [bal.get(p.name, 0) for p in profiles])
    for i, p in enumerate(profiles):  # max_count instances of one profile fit, one more does not
        one = [0] * len(profiles)
        one[i] = p.max_count
        assert _fits(profiles, one)
        one[i] += 1
        assert not _fits(profiles, one)


def test_h100_layouts_by_hand(cat) -> None:
    """On an H100: 3g.40gb + two 2g.20gb fit (memory 4+2+2 = 8 slices, compute 3+2+2 = 7);
    two 3g.40gb + a 1g.10gb do not (9 memory slices); 4g.40gb + 3g.40gb fit (slices 0-3 and
    4-7); two 4g.40gb do not (both start at slice 0); three 2g.20gb + a 1g.10gb fit (2g at 0,
    2, 4, the 1g at 6; compute 7); four 2g.20gb do not (8 compute slices, no fourth start)."""
    ps = cat.accelerator("h100-sxm").mig_profiles
    idx = {p.name: i for i, p in enumerate(ps)}

    def fits(**n: int) -> bool:
        v = [0] * len(ps)
        for k, c in n.items():
            v[idx[k.replace("_", ".")]] = c
        return _fits(ps, v)

    assert fits(**{"3g_40gb": 1, "2g_20gb": 2})
    assert not fits(**{"3g_40gb": 2, "1g_10gb": 1})
    assert fits(**{"4g_40gb": 1, "3g_40gb": 1})
    assert not fits(**{"4g_40gb": 2})
    assert fits(**{"2g_20gb": 3, "1g_10gb": 1})
    assert not fits(**{"2g_20gb": 4})
    # 1g.20gb starts at even slices only: four of them fill memory, nothing else fits beside
    assert fits(**{"1g_20gb": 4}) and not fits(**{"1g_20gb": 4, "1g_10gb": 1})
    # the maximal layouts over {2g.20gb, 3g.40gb}: three 2g, 2g+2g+3g, two 3g
    sub = [ps[idx["2g.20gb"]], ps[idx["3g.40gb"]]]
    assert mig_layouts(sub) == ((3, 0), (2, 1), (0, 2))


def test_fewest_gpus_for_a_mix_of_profiles() -> None:
    """Four 2g.20gb and two 3g.40gb: two GPUs as 2g+2g+3g each; one profile per GPU would take
    ceil(4/3) + ceil(2/2) = 3. Five 2g and one 3g: 2g+2g+3g and 2g+2g+2g."""
    layouts = ((3, 0), (2, 1), (0, 2))
    assert mig_cover((4, 2), layouts) == ((2, 1), (2, 1))
    assert sorted(mig_cover((5, 1), layouts)) == [(2, 1), (3, 0)]
    assert mig_cover((0, 0), layouts) == ()
    assert len(mig_cover((0, 5), layouts)) == 3


def test_large_demands_go_to_the_integer_program_with_the_same_optimum(cat) -> None:
    """The memoised search and the integer program (used past 20,000 demand states) agree on
    random demands over the H100's 28 layouts; a large demand is solved at once (7g.80gb alone
    on its GPUs: 10 of them take 10 GPUs; 200 1g.10gb take ceil(200 / 7) = 29)."""
    from solver.mig import _cover_milp

    layouts = mig_layouts(cat.accelerator("h100-sxm").mig_profiles)
    rng = random.Random(7)
    for _ in range(30):
        d = tuple(rng.randint(0, 6) for _ in range(6))
        assert len(mig_cover(d, layouts)) == (len(_cover_milp(d, layouts)) if any(d) else 0), d
    assert len(mig_cover((200, 0, 0, 0, 0, 10), layouts)) == 29 + 10


def test_mig_gpus_names_each_gpu_layout(cat) -> None:
    gpus = mig_gpus(cat, "h100-sxm", {"3g.40gb": 1, "2g.20gb": 2})
    assert gpus == ({"2g.20gb": 2, "3g.40gb": 1},)


def test_profile_without_placements_shares_a_gpu_with_itself_only(cat) -> None:
    ps = [p.model_copy(update={"placements": []}) if p.name == "2g.20gb" else p
          for p in cat.accelerator("h100-sxm").mig_profiles if p.name in ("2g.20gb", "3g.40gb")]
    assert mig_layouts(ps) == ((3, 0), (0, 2))


# -- the optimiser: CP-SAT, brute force and the verifier --------------------------------------

_PER_GPU = {"1g.10gb": 7, "1g.20gb": 4, "2g.20gb": 3, "3g.40gb": 2, "4g.40gb": 1}


def _cand(model: str, gpu: str, cap: float, share: str = "") -> Candidate:
    """test_gpu_sharing's synthetic candidate on ``share`` (``mig PROFILE``, ``shared 1/k`` or whole)."""
    k = _PER_GPU[share.removeprefix("mig ")] if share.startswith("mig ") else (
        int(share.split("/")[1]) if share else 1)
    return _sharing_cand(model, gpu, cap, k=k, partition=share)


def _profiles(cat) -> dict:
    h100 = cat.accelerator("h100-sxm").mig_profiles
    return {"gpu-a": h100, "gpu-b": h100}


def test_two_models_on_different_profiles_share_gpus(cat) -> None:
    """a: 4 replicas of 2g.20gb (0.26 req/s each for 1 req/s); b: 2 of 3g.40gb (0.6 each for
    1.2). Mixed, 2 GPUs (2g+2g+3g twice) = 400 cents/h; one profile per GPU 3 GPUs = 600."""
    tables = [_table("a", 1.0, [_cand("a", "gpu-a", 0.26, "mig 2g.20gb")]),
              _table("b", 1.2, [_cand("b", "gpu-a", 0.6, "mig 3g.40gb")])]
    mixed = encode(tables, Fleet(), mig_profiles=_profiles(cat))
    alone = encode(tables, Fleet())
    assert mixed.mig_pools[0].layouts == ((3, 0), (2, 1), (0, 2))
    sol = FleetModel(mixed).solve()
    assert sol.status is SolveStatus.OPTIMAL and sol.cost_cents == 400 and sol.provisioned == (2,)
    assert brute_force(mixed).cost_cents == 400
    assert provisioned(mixed, dict(enumerate(sol.replicas))) == [2]
    assert FleetModel(alone).solve().cost_cents == 600 and brute_force(alone).cost_cents == 600


def test_free_owned_gpus_are_not_overcounted_in_a_pool(cat) -> None:
    """Owned GPUs cost nothing: a pool GPU more would not raise the cost, but the plan still
    counts the fewest GPUs (the objective's tie-break), as brute force does."""
    tables = [_table("a", 1.0, [_cand("a", "gpu-a", 0.26, "mig 2g.20gb")]),
              _table("b", 1.2, [_cand("b", "gpu-a", 0.6, "mig 3g.40gb")])]
    ip = encode(tables, Fleet(owned={"gpu-a": 8}), mig_profiles=_profiles(cat))
    sol = FleetModel(ip).solve()
    assert sol.status is SolveStatus.OPTIMAL and sol.cost_cents == 0 and sol.provisioned == (2,)
    assert sol.bound_cents == 0


@pytest.mark.parametrize("seed", range(15))
def test_random_fleets_with_mixed_mig_match_brute_force(cat, seed: int) -> None:
    rng = random.Random(9100 + seed)
    shares = ["", "shared 1/2", "mig 1g.10gb", "mig 1g.20gb", "mig 2g.20gb", "mig 3g.40gb", "mig 4g.40gb"]
    tables = []
    for m in range(rng.choice([1, 2, 3])):
        name = f"m{m}"
        cands = [_cand(name, rng.choice(list(_SYS)), round(rng.uniform(0.2, 2.5), 3), rng.choice(shares))
                 for _ in range(rng.randint(1, 3))]
        tables.append(_table(name, rng.choice([0.5, 1.0, 2.0]), cands))
    inv = {g: rng.choice([1, 2, 3]) for g in _SYS if rng.random() < 0.4} or None
    fleet = Fleet(inventory=inv, whole_nodes=rng.random() < 0.2, power_kw=rng.choice([None, 1.4, 3.0]),
                  budget_usd_per_hour=rng.choice([None, 6.0, 12.0]), max_configs_per_model=rng.choice([1, 2]),
                  owned={"gpu-a": 2} if rng.random() < 0.3 else None)
    ip = encode(tables, fleet, mig_profiles=_profiles(cat))
    sol = FleetModel(ip).solve()
    ref = brute_force(ip)
    if ref.cost_cents is None:
        assert sol.status is SolveStatus.INFEASIBLE
    else:
        assert sol.status is SolveStatus.OPTIMAL and sol.cost_cents == ref.cost_cents
        assert list(sol.provisioned) == provisioned(ip, dict(enumerate(sol.replicas)))


def _model(name: str, rps: float, profile: str) -> dict:
    return {
        "name": name, "model": "llama-3.1-8b",
        "traffic": {"peak_rps": rps, "input_tokens": {"p50": 300, "p90": 600, "p99": 1000},
                    "output_tokens": {"p50": 100, "p90": 200, "p99": 300}},
        "slo": {"ttft": {"max_ms": 2000.0}}, "allowed_accelerators": ["h100-sxm"],
        "allowed_quantizations": ["fp8"], "allowed_kv_dtypes": ["fp8"], "min_replicas": 1,
        "gpu_sharing": {"mig": {"h100-sxm": [profile]}},
    }


def test_catalog_plan_puts_two_profiles_on_one_gpu_and_verifies(cat) -> None:
    """Two light models, one allowed only 3g.40gb and one only 2g.20gb, one replica each: both
    instances fit one H100 (3 + 2 compute slices, 4 + 2 memory slices), so the plan provisions
    one GPU where one profile per GPU took two; the verifier recounts it from the catalog."""
    p = Problem.model_validate({"name": "t", "models": [_model("a", 0.05, "3g.40gb"), _model("b", 0.05, "2g.20gb")],
                                "fleet": {"max_configs_per_model": 1}})
    plan, _ = Session.prepare(p, cat).run()
    assert plan.status is SolveStatus.OPTIMAL
    assert {d.partition for d in plan.deployments} == {"mig 3g.40gb", "mig 2g.20gb"}
    assert plan.gpus == 1
    assert violations(plan, p, cat) == []
    assert any("mixed MIG on h100-sxm" in n and "1 GPU(s) as 1 x 2g.20gb + 1 x 3g.40gb" in n for n in plan.notes)


# -- capacity with shares, and the --mig / --colocate flags ----------------------------------

def test_max_capacity_fills_a_gpu_with_a_mixed_layout() -> None:
    """One GPU, two configurations: whole 1,000 mreq/s; three 2g at 500 = 1,500; 2g+2g+3g =
    500+500+700 = 1,700; two 3g = 1,400. The mixed layout is the most."""
    status, reps = max_capacity([1, 1, 1], [1000, 500, 700], 1, 2, share=[-1, 0, 1], per_gpu=[3, 2],
                                pools=[((0, 1), ((3, 0), (2, 1), (0, 2)))])
    assert status is SolveStatus.OPTIMAL and reps == (0, 2, 1)
    # without the pool (one profile per GPU) one GPU holds one kind only: three 2g, 1,500
    status, reps = max_capacity([1, 1, 1], [1000, 500, 700], 1, 2, share=[-1, 0, 1], per_gpu=[3, 2])
    assert reps == (0, 3, 0)


def _cli(*args: str):
    from click.testing import CliRunner

    from solver.cli import main

    return CliRunner().invoke(main, ["query", "--model", "llama-3.1-8b", "--isl", "300", "--osl", "100",
                                     "--rps", "0.2", "--ttft-p99-ms", "2000", *args])


@pytest.mark.parametrize("args, expect", [
    (["--gpu", "h100-pcie", "--mig", "1g.5gb"], "--mig: h100-pcie has no MIG profile '1g.5gb'; its profiles: 1g.10gb"),
    (["--gpu", "mi300x", "--mig", "3g.40gb"], "--mig: mi300x (amd) has no MIG profiles in the catalog"),
    (["--gpu", "b300", "--mig", "1g.23gb"], "--mig: b300 (nvidia) has no MIG profiles in the catalog"),
    (["--gpu", "h100-sxm", "--gpu", "b200", "--mig", "1g.18gb"], "--mig: no allowed accelerator has MIG profile '1g.18gb'"),
    (["--mig", "9g.1gb"], "--mig: no catalog accelerator has MIG profile '9g.1gb'"),
    (["--colocate", "9"], "'--colocate': 9 is not in the range 2<=x<=8"),
])
def test_bad_sharing_flags_one_line_exit_2(args, expect) -> None:
    res = _cli(*args)
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and "Traceback" not in res.output, res.output
    assert expect in lines[0], res.output


def test_mig_flag_applies_each_profile_where_the_accelerator_has_it(cat) -> None:
    from solver.problem import query_problem

    p = query_problem("llama-3.1-8b", 1.0, (300, 300, 300), (100, 100, 100), 2000.0, None, None,
                      gpus=["h100-sxm", "b200"], mig=["3g.40gb", "2g.45gb"], colocate=[2], cat=cat)
    s = p.models[0].gpu_sharing
    assert s is not None and s.mig == {"h100-sxm": ["3g.40gb"], "b200": ["2g.45gb"]} and s.colocate == [2]


def test_mixed_gpu_cost_is_split_without_overcounting(cat) -> None:
    """a: 2 replicas of 2g.20gb (min_replicas 2), b: 1 of 3g.40gb: one H100 as 2g+2g+3g. At
    1/k of a GPU each they would cost 2/3 + 1/2 = 7/6 GPU; scaled by 6/7 they cost 4/7 and 3/7
    of the one GPU, adding up to the plan's cost; the verifier recomputes the same split."""
    a = {**_model("a", 0.05, "2g.20gb"), "min_replicas": 2}
    p = Problem.model_validate({"name": "t", "models": [a, _model("b", 0.05, "3g.40gb")],
                                "fleet": {"max_configs_per_model": 1}})
    plan, _ = Session.prepare(p, cat).run()
    assert plan.gpus == 1 and violations(plan, p, cat) == []
    price = plan.deployments[0].usd_per_gpu_hour
    cost = {d.model: d.cost_usd_per_hour for d in plan.deployments}
    assert cost["a"] == pytest.approx(price * 4 / 7) and cost["b"] == pytest.approx(price * 3 / 7)
    assert sum(cost.values()) == pytest.approx(plan.cost_usd_per_hour)


# -- speculative decoding on a GPU share -------------------------------------------------------

def _spec_model(sharing: dict) -> dict:
    return {
        "name": "q", "model": "qwen2.5-32b",
        "traffic": {"peak_rps": 0.2, "input_tokens": {"p50": 1000, "p90": 1000, "p99": 1000},
                    "output_tokens": {"p50": 200, "p90": 200, "p99": 200}},
        "slo": {"tpot": {"max_ms": 200.0}}, "allowed_accelerators": ["h200-sxm"],
        "allowed_quantizations": ["fp8"], "allowed_kv_dtypes": ["fp8"], "min_replicas": 1,
        "speculative": {"draft": "qwen2.5-7b", "acceptance_rate": 0.7, "draft_tokens": 3},
        "gpu_sharing": sharing,
    }


def test_speculative_decoding_on_a_mig_share_by_hand(cat) -> None:
    """Qwen2.5-32B fp8 with a Qwen2.5-7B fp8 draft on an H200 3g.71gb instance (4/8 of 141 GiB =
    70.5 GiB, 3/7 of the SMs). KV per token: target 2 x 64 layers x 8 KV heads x 128 x 1 B =
    131,072 B, draft 2 x 28 x 4 x 128 x 1 B = 28,672 B. Sequences held at 1,200 tokens: (the
    share's KV budget - the draft's weights) / (1,200 x (131,072 + 28,672)). The draft runs on
    the same instance: half the bandwidth and 3/7 of the FLOP/s of the whole GPU's draft."""
    from solver.candidates import TableCache, build_tables
    from solver.costmodel import kv_budget_bytes_gpu
    from solver.costmodel.partition import partition_speculation
    from solver.costmodel.speculative import max_concurrency_spec, speculation
    from solver.problem import ModelDemand

    target = Shape("qwen2.5-32b", "h200-sxm", None, "fp8", "fp8", 1, 1, 1)
    prof = _prof(cat, "h200-sxm", "3g.71gb")
    part = mig_partition(prof.name, prof.memory_slices, prof.compute_slices, prof.max_count)
    whole = shape_terms(cat, target)
    eng = cat.engine(whole.engine)
    t = partition_terms(whole, part, eng.kv_memory_policy, eng.kv_memory_fraction)
    assert t.hbm_bytes == pytest.approx(70.5 * GIB)
    sp_whole = speculation(cat, target, "qwen2.5-7b", 0.7, 3)
    sp = partition_speculation(sp_whole, part, eng.kv_memory_policy, eng.kv_memory_fraction)
    assert t.kv_full_bytes_per_token_gpu == 131_072 and sp.draft.kv_full_bytes_per_token_gpu == 28_672
    assert sp.draft.weight_bytes_gpu == sp_whole.draft.weight_bytes_gpu
    assert sp.draft.bw_bytes_s == pytest.approx(sp_whole.draft.bw_bytes_s / 2)
    assert sp.draft.peak_flop_s == pytest.approx(sp_whole.draft.peak_flop_s * 3 / 7)
    budget = kv_budget_bytes_gpu(t) - sp.draft.weight_bytes_gpu
    hand = int(budget // (1200 * (131_072 + 28_672)))
    assert hand > 0 and max_concurrency_spec(t, sp, 1200) == hand
    # the search offers it: a speculative candidate on the share, its memory limit the hand value
    p = Problem.model_validate({"name": "t", "models": [_spec_model({"mig": {"h200-sxm": ["3g.71gb"]}})],
                                "fleet": {"max_configs_per_model": 1}})
    d: ModelDemand = p.models[0]
    ev = TableCache().evaluate(cat, d, Shape("qwen2.5-32b", "h200-sxm", cat.systems_for("h200-sxm")[0].id,
                                             "fp8", "fp8", 1, 1, 1), spec=d.speculative, partition=part)
    assert ev.reason is None and ev.limit == hand and ev.speculation is not None
    (table,) = build_tables(p, cat, prune=False)
    assert any(c.partition == "mig 3g.71gb" and c.speculative for c in table.candidates)


def test_speculative_share_plan_verifies(cat) -> None:
    """A plan of speculative replicas on a share: the verifier rebuilds the draft on the share."""
    p = Problem.model_validate({"name": "t", "models": [_spec_model({"mig": {"h200-sxm": ["3g.71gb"]}, "colocate": [2]})],
                                "fleet": {"max_configs_per_model": 1}})
    sess = Session.prepare(p, cat, prune=False)
    plan, sol = sess.run()
    assert plan.status is SolveStatus.OPTIMAL and violations(plan, p, cat) == []
    # force the speculative share candidate and check the verifier accepts that plan too
    idx = [i for i, c in enumerate(sess.ip.source) if c.partition and c.speculative and not c.violations]
    assert idx
    from dataclasses import replace as dc_replace

    forced = dc_replace(sol, replicas=tuple(1 if i == idx[0] else 0 for i in range(len(sol.replicas))),
                        provisioned=tuple(1 if s == sess.ip.candidates[idx[0]].system else 0
                                          for s in range(len(sess.ip.systems))))
    fplan = sess.plan(forced, 0.0, verify=False)
    assert fplan.deployments[0].speculative and fplan.deployments[0].partition
    assert violations(fplan, p, cat) == []
