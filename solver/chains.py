"""Applications as model chains: the DAG of stages over a problem's models, the load each stage
receives, and the paths whose latencies must fit an application's end-to-end budget.

Pure functions over :class:`solver.problem.Application` (no solver code). An application is a
DAG whose nodes are model names and whose edges carry

- ``fraction`` (0..1): the share of requests reaching the source stage that go on to the target
  (a router sending 20% to a large model, or a cascade escalating 15%), and
- ``calls`` (>= 1): requests the target receives per request passed on (an agent making k tool
  calls). Calls are sequential: on a path the target stage counts ``calls`` times.

Load: the application's requests flow through the DAG: every entry stage (no incoming edge)
sees ``peak_rps`` of them, and a stage with incoming edges ``flow(v) = sum(flow(u) x fraction)``.
A stage's load is its flow times the calls it receives per flow:
``load(v) = sum(flow(u) x fraction x calls)`` (the entry stages: ``peak_rps``). So an agent's
planner -> 3 x tool -> summariser at 2 req/s sends 6 req/s to the tool and 2 to the summariser. A model's own
``traffic.peak_rps`` (direct traffic, 0 when omitted) and the load of every application it is a
stage of add up (:func:`application_rps`).

Latency: a path runs from an entry stage to an exit stage; its latency is the sum, over its
stages, of ``calls`` (1 for the entry) x the stage's e2e p99. Summing per-stage p99s is the
usual planning rule: exact when stage latencies move together, conservative for the typical
independent case, and not a proof of the path's p99 for arbitrary distributions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import networkx as nx

    from solver.problem import Application

# networkx is imported inside the functions that build a graph: only problems with applications
# need one, and importing it costs more than a one-model query's whole solve.

MAX_PATHS = 10_000
"""Most entry-to-exit paths one application may have (each is a constraint the verifier checks)."""


def graph(app: "Application") -> nx.DiGraph:
    """The application's DAG: nodes are model names (in ``stages`` order), edges carry
    ``fraction`` and ``calls``."""
    import networkx as nx

    g = nx.DiGraph()
    g.add_nodes_from(app.stages)
    for e in app.edges:
        g.add_edge(e.source, e.target, fraction=e.fraction, calls=e.calls)
    return g


def find_cycle(app: "Application") -> list[str] | None:
    """A cycle of stage names (first stage repeated at the end), or None for a DAG."""
    import networkx as nx

    try:
        cycle = nx.find_cycle(graph(app))
    except nx.NetworkXNoCycle:
        return None
    return [u for u, _ in cycle] + [cycle[0][0]]


def stage_loads(app: "Application") -> dict[str, float]:
    """Requests/s each stage receives from this application (see the module docstring)."""
    import networkx as nx

    g = graph(app)
    flow: dict[str, float] = {}
    load: dict[str, float] = {}
    for v in nx.lexicographical_topological_sort(g):
        preds = list(g.predecessors(v))
        if not preds:
            flow[v] = load[v] = app.peak_rps
        else:
            flow[v] = sum(flow[u] * g[u][v]["fraction"] for u in preds)
            load[v] = sum(flow[u] * g[u][v]["fraction"] * g[u][v]["calls"] for u in preds)
    return {v: load[v] for v in app.stages}


def application_rps(apps: Iterable["Application"]) -> dict[str, float]:
    """Requests/s per model summed over every application it is a stage of."""
    out: dict[str, float] = {}
    for app in apps:
        for v, rps in stage_loads(app).items():
            out[v] = out.get(v, 0.0) + rps
    return out


def paths(app: "Application") -> list[tuple[tuple[str, int], ...]]:
    """Every entry-to-exit path as ((stage, calls), ...), the entry stage with 1 call; in a
    stable order. Raises ValueError past :data:`MAX_PATHS`."""
    import networkx as nx

    g = graph(app)
    entries = [v for v in app.stages if g.in_degree(v) == 0]
    exits = [v for v in app.stages if g.out_degree(v) == 0]
    out: list[tuple[tuple[str, int], ...]] = []
    for s in entries:
        if s in exits:
            out.append(((s, 1),))
            continue
        for p in sorted(nx.all_simple_paths(g, s, exits)):
            out.append(((p[0], 1),) + tuple((v, int(g[u][v]["calls"])) for u, v in zip(p, p[1:])))
            if len(out) > MAX_PATHS:
                raise ValueError(f"more than {MAX_PATHS} entry-to-exit paths")
    return out


def path_latency_ms(path: Sequence[tuple[str, int]], stage_ms: Mapping[str, float]) -> float:
    """Latency of one path: sum of calls x stage latency (ms)."""
    return sum(calls * stage_ms[v] for v, calls in path)


def describe(path: Sequence[tuple[str, int]]) -> str:
    """A path as ``router -> 3 x tool -> summariser``."""
    return " -> ".join(v if calls == 1 else f"{calls} x {v}" for v, calls in path)


def path_rows(applications: Iterable["Application"], stage_ms: Mapping[str, float]) -> list[dict]:
    """Per application and path: the stages with their calls and e2e p99 (``stage_ms``: the
    slowest deployment of each model, ms), the path's latency and the budget (None: no budget).
    What plans and reports show."""
    out = []
    for app in applications:
        for p in paths(app):
            got = path_latency_ms(p, stage_ms)
            out.append({
                "application": app.name, "path": describe(p),
                "stages": [{"model": v, "calls": calls, "e2e_p99_ms": stage_ms.get(v, 0.0)} for v, calls in p],
                "latency_ms": got, "budget_ms": app.e2e_budget_ms,
            })
    return out
