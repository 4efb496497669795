"""Drawings of application chains (:mod:`solver.chains`) with the plan of each stage.

:func:`chain_figure` lays an application's DAG out (pure: stages in columns by their depth from
the entry stages) and writes each stage's plan into its box -- the configurations chosen for it
(replicas x accelerator, GPU share, format, parallelism), its e2e p99 in the plan and the share
of the application's latency it takes (calls x e2e p99 over the budget, or over the slowest
path without a budget). :func:`chain_svg` draws it with matplotlib (imported only when called),
for the HTML report; :func:`chain_mermaid` writes it as a Mermaid flowchart, which Markdown
viewers such as GitHub's render as a diagram.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import networkx as nx

from solver import chains
from solver.plan import Deployment
from solver.problem import Application


@dataclass(frozen=True)
class StageBox:
    """One stage of a drawn chain: its name, the text lines under it and its place (column, row)."""

    name: str
    lines: tuple[str, ...]
    column: int
    row: float


@dataclass(frozen=True)
class ChainFigure:
    """An application ready to draw: stage boxes and edges ``(source, target, label)``."""

    application: str
    stages: tuple[StageBox, ...]
    edges: tuple[tuple[str, str, str], ...]
    caption: str


def _plan_lines(deps: Sequence[Deployment]) -> list[str]:
    """One line per configuration of a stage: ``2x h100-sxm (mig 3g.40gb) fp8 TP1 b64`` (b: batch cap)."""
    out = []
    for d in deps:
        share = f" ({d.partition})" if d.partition else ""
        par = f"TP{d.tp}" + (f" PP{d.pp}" if d.pp > 1 else "") + (f" EP{d.ep}" if d.ep > 1 else "")
        out.append(f"{d.replicas}x {d.accelerator}{share} {d.quant} {par} b{d.max_batch}")
    return out or ["not planned"]


def _edge_label(fraction: float, calls: int) -> str:
    label = "" if fraction >= 1.0 else f"{fraction:.0%}"
    if calls > 1:
        label = (label + " " if label else "") + f"x{calls}"
    return label


def chain_figure(app: Application, deployments: Sequence[Deployment]) -> ChainFigure:
    """The drawing of ``app`` under a plan's ``deployments`` (see the module docstring)."""
    by_model: dict[str, list[Deployment]] = {}
    for d in deployments:
        by_model.setdefault(d.model, []).append(d)
    stage_ms = {m: max(d.e2e_p99_ms for d in ds) for m, ds in by_model.items()}
    paths = chains.paths(app)
    calls = {v: max((k for p in paths for u, k in p if u == v), default=1) for v in app.stages}
    slowest = max((chains.path_latency_ms(p, {v: stage_ms.get(v, 0.0) for v in app.stages}) for p in paths),
                  default=0.0)
    denom = app.e2e_budget_ms or slowest
    what = "budget" if app.e2e_budget_ms else "slowest path"
    g = chains.graph(app)
    order = {v: i for i, v in enumerate(app.stages)}
    boxes = []
    for col, gen in enumerate(nx.topological_generations(g)):
        members = sorted(gen, key=order.__getitem__)
        for i, v in enumerate(members):
            lines = _plan_lines(by_model.get(v, []))
            if v in stage_ms:
                ms = calls[v] * stage_ms[v]
                share = f", {ms / denom:.0%} of {what}" if denom > 0 else ""
                lines.append(f"e2e p99 {stage_ms[v]:,.0f} ms" + (f" x{calls[v]}" if calls[v] > 1 else "") + share)
            boxes.append(StageBox(v, tuple(lines), col, i - (len(members) - 1) / 2))
    boxes.sort(key=lambda b: order[b.name])
    edges = tuple((e.source, e.target, _edge_label(e.fraction, e.calls)) for e in app.edges)
    budget = f", budget {app.e2e_budget_ms:,.0f} ms" if app.e2e_budget_ms else ""
    caption = (f"Application {app.name} ({app.peak_rps:g} req/s{budget}): each stage with its planned "
               f"configurations and its share of the end-to-end latency; edges carry the share of "
               f"requests passed on and the calls per request.")
    return ChainFigure(app.name, tuple(boxes), edges, caption)


def chain_figures(applications: Sequence[Application], deployments: Sequence[Deployment]) -> list[ChainFigure]:
    return [chain_figure(a, deployments) for a in applications]


def chain_mermaid(fig: ChainFigure) -> str:
    """The chain as a Mermaid flowchart (left to right), one node per stage with its plan lines."""
    ids = {b.name: f"s{i}" for i, b in enumerate(fig.stages)}
    out = ["flowchart LR"]
    for b in fig.stages:
        text = "<br/>".join([f"<b>{b.name}</b>", *b.lines]).replace('"', "'")
        out.append(f'  {ids[b.name]}["{text}"]')
    for u, v, label in fig.edges:
        out.append(f"  {ids[u]} -->{'|' + label + '|' if label else ''} {ids[v]}")
    return "\n".join(out)


def chain_svg(fig: ChainFigure) -> str:
    """The chain drawn with matplotlib as inline SVG (reproducible, see :mod:`.plots`)."""
    from solver.report import plots  # matplotlib loads here, only when a chain is drawn

    plt = plots.plt
    columns = max((b.column for b in fig.stages), default=0) + 1
    rows = max((sum(1 for b in fig.stages if b.column == c) for c in range(columns)), default=1)
    width, height = 0.6 + 3.0 * columns, 0.4 + 1.25 * rows
    f, ax = plt.subplots(figsize=(width, height), dpi=100)
    ax.set_axis_off()
    ax.set_xlim(-0.55, columns - 0.45)
    ax.set_ylim(-rows / 2, rows / 2)
    texts = {}
    for b in fig.stages:
        body = "\n".join([b.name, *b.lines])
        texts[b.name] = ax.text(
            b.column, -b.row, body, ha="center", va="center", fontsize=7.5, zorder=3,
            bbox={"boxstyle": "round,pad=0.4", "fc": "#eef3f9", "ec": plots.COLORS[0]})
    for u, v, label in fig.edges:
        a, c = texts[u], texts[v]
        ax.annotate("", xy=c.get_position(), xytext=a.get_position(), zorder=4,
                    arrowprops={"arrowstyle": "-|>", "color": "#555555", "shrinkA": 0, "shrinkB": 0,
                                "patchA": a.get_bbox_patch(), "patchB": c.get_bbox_patch()})
        if label:
            (x1, y1), (x2, y2) = a.get_position(), c.get_position()
            ax.text((x1 + x2) / 2, (y1 + y2) / 2 + 0.08, label, ha="center", va="bottom", fontsize=7,
                    color="#333333", zorder=5)
    return plots._svg(f)

