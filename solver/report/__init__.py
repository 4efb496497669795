"""Reports a platform team can hand on: Markdown, a self-contained HTML page and JSON.

``make_report`` solves (with binding constraints and a Pareto sweep) and gathers the content;
``write_report`` renders it to ``PREFIX.md``, ``PREFIX.html`` and ``PREFIX.json``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from solver.api import DEFAULT_TIME_LIMIT_S, explain
from solver.catalog import Catalog
from solver.errors import InputError
from solver.explain import Binding
from solver.pareto import pareto
from solver.problem import Problem
from solver.report.content import ReportContent, build_content
from solver.report.render import to_html, to_json_text, to_markdown

if TYPE_CHECKING:
    from solver.candidates import TableCache


def binding_lines(bindings: Sequence[Binding]) -> tuple[str, ...]:
    """One line per binding family: what it is, what relaxing it costs, the detail."""
    lines = []
    for b in bindings:
        if not b.binding:
            continue
        line = f"{b.name}: {b.description}"
        if b.cost_if_relaxed_usd_per_hour is not None:
            line += f" (relaxed: ${b.cost_if_relaxed_usd_per_hour:,.2f}/h)"
        if b.detail:
            line += f" — {b.detail}"
        lines.append(line)
    return tuple(lines)


def make_report(
    problem: Problem, cat: Catalog, axes: Sequence[str] = ("ttft",), points: int = 6,
    time_limit_s: float = DEFAULT_TIME_LIMIT_S, progress: Callable[[int, int], None] | None = None,
) -> ReportContent:
    """Solve the problem, find what binds and sweep the Pareto set; gather the report content."""
    from solver.candidates import TableCache

    cache = TableCache()  # explain and every Pareto point share one cost-model evaluation
    ex = explain(problem, cat, time_limit_s, cache=cache)
    plan = ex.plan
    pts: tuple[dict, ...] = ()
    if plan.status.has_plan:
        res = pareto(problem, cat, axes, points, time_limit_s, progress=progress, base_plan=plan,
                     cache=cache)
        pts = tuple(p.to_dict() for p in res.points)
    conf = None
    if plan.status.has_plan and problem.confidence is not None:
        from solver.api import DEFAULT_WORKERS
        from solver.confidence import confidence_summary
        conf = confidence_summary(problem, cat, plan, time_limit_s, DEFAULT_WORKERS, cache)
    content = build_content(cat, problem, plan, ",".join(axes), pts, binding_lines(ex.bindings), conf)
    return _with_schedule(content, cat, time_limit_s, cache)


def _with_schedule(content: ReportContent, cat: Catalog, time_limit_s: float,
                   cache: TableCache | None = None) -> ReportContent:
    """Add the purchasing schedule when the problem gives hourly demand (issue 12); ``cache``:
    the shape evaluations (and tables) the plan was solved with, reused for the alternatives."""
    from dataclasses import replace

    from solver.demand import hours_of

    if not content.feasible or hours_of(content.problem) is None:
        return content
    from solver.purchase_plan import alternative_configs, schedule_for_plan
    from solver.session import Session

    k = content.problem.purchasing.alternatives  # as `fleetplan purchase` offers them
    extra = alternative_configs(Session.prepare(content.problem, cat, cache=cache), content.plan, k) if k else ()
    out = schedule_for_plan(content.problem, content.plan, cat, time_limit_s=time_limit_s,
                            alternatives=extra).to_dict()
    out.pop("peak_plan", None)
    out.pop("schedule_seconds", None)  # wall-clock: would make reports non-reproducible
    return replace(content, schedule=out)


def write_report(content: ReportContent, prefix: Path) -> list[Path]:
    """Write PREFIX.md, PREFIX.html and PREFIX.json; an unwritable folder is an InputError."""
    prefix = Path(prefix)
    folder = prefix.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--out: cannot create folder {folder}: {exc.strerror or exc}") from None
    outputs = {".md": to_markdown(content), ".html": to_html(content), ".json": to_json_text(content)}
    written = []
    for ext, text in outputs.items():
        path = prefix.with_name(prefix.name + ext)
        tmp = path.with_name(f".{path.name}.partial")
        try:  # whole files only: an interrupted write leaves no partial report behind
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            raise InputError(f"--out: cannot write {path}: {exc.strerror or exc}") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        written.append(path)
    return written
