"""Chain drawings in the report (issue 11 item 6): every application of the bundled chain
problems is drawn with every stage, its planned configurations and its latency share, as an SVG
figure in the HTML report and a Mermaid diagram in the Markdown report."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from solver.catalog import load_catalog
from solver.problem import load_problem
from solver.report.chain_figure import chain_figure, chain_mermaid, chain_svg
from solver.report.content import build_content
from solver.report.render import to_html, to_markdown
from solver.session import solve_problem

PROBLEMS = Path(__file__).resolve().parent.parent / "problems"
CHAINS = ("cascade-router", "rag-chain", "agent-chain")


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


@pytest.fixture(scope="module")
def solved(cat):
    out = {}
    for name in CHAINS:
        p = load_problem(PROBLEMS / f"{name}.yaml", cat)
        out[name] = (p, solve_problem(p, cat))
    return out


@pytest.mark.parametrize("name", CHAINS)
def test_every_stage_is_drawn_with_its_plan(solved, name: str) -> None:
    problem, plan = solved[name]
    assert plan.status.has_plan
    for app in problem.applications:
        fig = chain_figure(app, plan.deployments)
        assert [b.name for b in fig.stages] == list(app.stages)
        for b in fig.stages:
            mine = [d for d in plan.deployments if d.model == b.name]
            assert mine
            for d in mine:  # replicas x accelerator, format, TP and batch cap of each configuration
                assert f"{d.replicas}x {d.accelerator} {d.quant} TP{d.tp}" in " ".join(b.lines)
            assert any("e2e p99" in line and "of budget" in line for line in b.lines)
        assert len(fig.edges) == len(app.edges)
        svg = chain_svg(fig)
        assert svg.startswith("<svg")
        texts = " ".join(re.findall(r"<text[^>]*>([^<]*)", svg))
        for s in app.stages:
            assert s in texts, f"{s} not drawn"
        mermaid = chain_mermaid(fig)
        assert mermaid.startswith("flowchart LR")
        for s in app.stages:
            assert f"<b>{s}</b>" in mermaid


def test_latency_share_is_calls_times_stage_e2e_over_the_budget(solved) -> None:
    """agent: planner -> 3 x tool -> summariser; the tool's share is 3 x its e2e p99 / budget."""
    problem, plan = solved["agent-chain"]
    app = problem.applications[0]
    fig = chain_figure(app, plan.deployments)
    tool = next(b for b in fig.stages if b.name == "tool")
    e2e = max(d.e2e_p99_ms for d in plan.deployments if d.model == "tool")
    assert f"e2e p99 {e2e:,.0f} ms x3, {3 * e2e / app.e2e_budget_ms:.0%} of budget" in tool.lines
    assert ("planner", "tool", "x3") in fig.edges


def test_reports_carry_the_drawings(cat, solved) -> None:
    problem, plan = solved["cascade-router"]
    content = build_content(cat, problem, plan, "ttft", (), ())
    md = to_markdown(content)
    assert "```mermaid" in md and "### Chain support" in md
    assert re.search(r"s0 -->\|20%\| s1", md)
    html = to_html(content)
    assert '<figure id="chain-support"' in html
    for s in problem.applications[0].stages:
        assert s in html.split('<figure id="chain-support"')[1].split("</figure>")[0]


def test_drawing_is_deterministic(solved) -> None:
    problem, plan = solved["rag-chain"]
    fig = chain_figure(problem.applications[0], plan.deployments)
    assert chain_svg(fig) == chain_svg(fig)
