"""The plan states its router weights, and `fleetplan simulate` replays them by default (issue 12).

A plan splits each model's load over its deployments in proportion to their capacity
(``load_rps``); a plan mixing a small replica and a large one meets its targets only when requests
are split that way. The plan JSON gives each deployment's ``router_weight``: the share of the
model's requests one of its replicas receives (``load_rps / replicas / the model's load``)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from solver.api import solve
from solver.catalog import load_catalog
from solver.cli import main
from solver.problem import load_problem
from solver.simulate import plan_replicas

ROOT = Path(__file__).resolve().parents[1]
CHAT = ROOT / "problems" / "chat-assistant-70b.yaml"


@pytest.fixture(scope="module")
def chat():
    cat = load_catalog()
    return cat, solve(load_problem(CHAT, cat), cat)


def test_router_weight_is_each_replicas_share_of_its_models_load_hand_computed(chat) -> None:
    """Model a: 1 replica carrying 9 req/s and 2 carrying 3 req/s together (1.5 each): of 12
    req/s, the large replica takes 0.75 and each small one 0.125. Model b (one deployment of 4
    replicas) splits evenly, 0.25 each, whatever the other model does."""
    _, plan = chat
    big, small = plan.deployments[0], plan.deployments[-1]
    deps = (replace(big, model="a", replicas=1, load_rps=9.0), replace(small, model="a", replicas=2, load_rps=3.0),
            replace(small, model="b", replicas=4, load_rps=5.0))
    out = replace(plan, deployments=deps).to_dict()["deployments"]
    assert [d["router_weight"] for d in out] == pytest.approx([0.75, 0.125, 0.25])
    assert sum(d["router_weight"] * d["replicas"] for d in out if d["model"] == "a") == pytest.approx(1.0)


def test_the_chat_plan_states_weights_proportional_to_its_load_per_replica(chat) -> None:
    cat, plan = chat
    deps = plan.to_dict()["deployments"]
    total = sum(d["load_rps"] for d in deps)
    assert [d["router_weight"] for d in deps] == pytest.approx([d["load_rps"] / d["replicas"] / total for d in deps])
    sizes = sorted(d["total_capacity_rps"] / d["replicas"] for d in deps)
    assert sizes[-1] / sizes[0] > 3  # a mixed plan: one router weight differs from the other several-fold
    reps = plan_replicas(plan.to_dict(), cat, None, 6000)
    want = [d["router_weight"] for d in deps for _ in range(d["replicas"])]
    assert [s.weight for s in reps] == pytest.approx(want)


def test_the_weighted_router_reads_the_plans_router_weight(chat) -> None:
    """A plan whose stated weights differ from its load split: the stated weights are replayed
    (a gateway configured from the plan); plans written before router_weight fall back to
    load_rps per replica."""
    cat, plan = chat
    d = plan.to_dict()
    even = {**d, "deployments": [{**x, "router_weight": 1.0} for x in d["deployments"]]}
    assert {s.weight for s in plan_replicas(even, cat, None, 6000)} == {1.0}
    old = {**d, "deployments": [{k: v for k, v in x.items() if k != "router_weight"} for x in d["deployments"]]}
    assert [s.weight for s in plan_replicas(old, cat, None, 6000)] == pytest.approx(
        [x["load_rps"] / x["replicas"] for x in d["deployments"] for _ in range(x["replicas"])])


def test_simulate_defaults_to_the_plans_weights(chat, tmp_path: Path) -> None:
    _, plan = chat
    f = tmp_path / "plan.json"
    f.write_text(json.dumps(plan.to_dict()))
    runner = CliRunner()
    out = runner.invoke(main, ["simulate", str(f), "--poisson", "6", "--duration", "30", "--problem", str(CHAT),
                               "--json"])
    assert out.exit_code == 0, out.output
    got = json.loads(out.output)
    assert got["router"] == "plan: weighted"
    wr = runner.invoke(main, ["simulate", str(f), "--poisson", "6", "--duration", "30", "--problem", str(CHAT),
                              "--json", "--router", "weighted"])
    assert {k: v for k, v in json.loads(wr.output).items() if k != "router"} == \
        {k: v for k, v in got.items() if k != "router"}
    ll = runner.invoke(main, ["simulate", str(f), "--poisson", "6", "--duration", "30", "--problem", str(CHAT),
                              "--json", "--router", "least-loaded"])
    assert json.loads(ll.output)["router"] == "least-loaded" and json.loads(ll.output) != got
    assert "Default: plan" in " ".join(runner.invoke(main, ["simulate", "--help"]).output.split())


@pytest.mark.parametrize("weight", ["heavy", -1, float("nan")])
def test_a_bad_router_weight_is_one_line_exit_2(chat, tmp_path: Path, weight: object) -> None:
    _, plan = chat
    d = plan.to_dict()
    d["deployments"][0]["router_weight"] = weight
    f = tmp_path / "plan.json"
    f.write_text(json.dumps(d))
    res = CliRunner().invoke(main, ["simulate", str(f), "--poisson", "2", "--duration", "10", "--problem", str(CHAT)])
    assert res.exit_code == 2, res.output
    assert "deployments[0]: router_weight" in res.output and len(res.output.strip().splitlines()) == 1


def test_all_router_weights_zero_names_the_field(chat, tmp_path: Path) -> None:
    """Every deployment of a model stating router_weight 0 leaves the weighted router nothing to
    route to: one line naming the plan field, exit 2."""
    _, plan = chat
    d = plan.to_dict()
    zero = {**d, "deployments": [{**x, "router_weight": 0} for x in d["deployments"]]}
    f = tmp_path / "plan.json"
    f.write_text(json.dumps(zero))
    out = CliRunner().invoke(main, ["simulate", str(f), "--poisson", "6", "--duration", "30",
                                    "--problem", str(CHAT)])
    assert out.exit_code == 2, out.output
    lines = [ln for ln in out.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in out.output
    assert "deployments[*].router_weight" in lines[0] and "chat" in lines[0], lines[0]
