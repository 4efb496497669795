"""Scenario sweeps: one problem solved under many what-if variants, in parallel.

A grid (YAML, :class:`SweepGrid`) lists values along up to four axes; the variants are their
cartesian product, in the grid's order:

- ``traffic_growth``: factors on every model's ``peak_rps`` (1.5 = 50% more traffic);
- ``price_factor``: factors on every GPU-hour price, or maps ``{accelerator: factor}`` (others
  keep their price);
- ``slo_scale``: factors on every latency target (0.8 = 20% tighter);
- ``model_mix``: named mixes, each dropping model entries and/or scaling their traffic.

Each variant is a full, verified solve. Variants run on a local process pool by default, or on a
Ray cluster (``ray_address``: ``"auto"`` or ``"ray://host:port"``; ``pip install
'fleetplan[ray]'``). Each worker keeps one :class:`~solver.candidates.TableCache`, so variants
that change only targets, prices or demand reuse the cost model's evaluations; variants are
handed out in contiguous chunks to make that likely. Results come back in variant order and do
not depend on the runner or the number of workers (each solve is deterministic).
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from solver.catalog import Catalog, load_catalog
from solver.errors import InputError
from solver.loading import read_yaml, validate
from solver.optimize import DEFAULT_TIME_LIMIT_S
from solver.problem import LatencyTarget, Problem

Factor = Annotated[float, Field(gt=0)]


class ModelMix(BaseModel):
    """One mix of the problem's models: entries to leave out, traffic factors per entry."""

    model_config = ConfigDict(extra="forbid")
    name: str
    drop: list[str] = []
    scale: dict[str, Factor] = {}


class SweepGrid(BaseModel):
    """The axes of a sweep (each defaults to the unchanged problem)."""

    model_config = ConfigDict(extra="forbid")
    traffic_growth: Annotated[list[Factor], Field(min_length=1)] = [1.0]
    price_factor: Annotated[list[Factor | dict[str, Factor]], Field(min_length=1)] = [1.0]
    slo_scale: Annotated[list[Factor], Field(min_length=1)] = [1.0]
    model_mix: Annotated[list[ModelMix], Field(min_length=1)] = [ModelMix(name="all")]


def load_grid(path: Path | str) -> SweepGrid:
    """Read and validate a grid file; bad input is an ``InputError`` naming file and field."""
    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise InputError("expected a mapping at the top level", where=str(path))
    return validate(SweepGrid, data, where=str(path))


@dataclass(frozen=True)
class Variant:
    """One point of the grid."""

    traffic_growth: float
    price_factor: float | dict[str, float]
    slo_scale: float
    mix: ModelMix

    @property
    def price_text(self) -> str:
        """``0.8`` or ``h100-sxm:0.5,l40s:0.9``."""
        if isinstance(self.price_factor, float):
            return f"{self.price_factor:g}"
        return ",".join(f"{k}:{v:g}" for k, v in sorted(self.price_factor.items()))

    @property
    def name(self) -> str:
        return (f"growth {self.traffic_growth:g} | price {self.price_text} | slo {self.slo_scale:g} "
                f"| mix {self.mix.name}")


def variants(grid: SweepGrid) -> list[Variant]:
    return [Variant(float(g), p if isinstance(p, dict) else float(p), float(s), m)
            for g, p, s, m in itertools.product(grid.traffic_growth, grid.price_factor,
                                                grid.slo_scale, grid.model_mix)]


def check_grid(problem: Problem, grid: SweepGrid, cat: Catalog) -> None:
    """Names in the grid must exist in the problem and the catalog."""
    names = {d.name for d in problem.models}
    for mix in grid.model_mix:
        unknown = sorted((set(mix.drop) | set(mix.scale)) - names)
        if unknown:
            raise InputError(f"model_mix[{mix.name}]: unknown model entries {', '.join(unknown)} "
                             f"(the problem has {', '.join(sorted(names))})")
        if set(mix.drop) >= names:
            raise InputError(f"model_mix[{mix.name}]: drops every model")
    for p in grid.price_factor:
        if isinstance(p, dict):
            unknown = sorted(set(p) - set(cat.accelerators))
            if unknown:
                raise InputError(f"price_factor: unknown accelerators {', '.join(unknown)}")


def apply(problem: Problem, v: Variant) -> Problem:
    """The problem as variant ``v`` sees it (prices are applied to the catalog instead)."""
    models = []
    for d in problem.models:
        if d.name in v.mix.drop:
            continue
        rps = d.traffic.peak_rps * v.traffic_growth * v.mix.scale.get(d.name, 1.0)
        slo = d.slo.model_copy(update={
            axis: LatencyTarget(max_ms=t.max_ms * v.slo_scale, percentile=t.percentile)
            for axis in ("ttft", "tpot", "e2e") if (t := getattr(d.slo, axis)) is not None})
        models.append(d.model_copy(update={
            "traffic": d.traffic.model_copy(update={"peak_rps": rps}), "slo": slo}))
    return problem.model_copy(update={"models": models})


def priced(cat: Catalog, factor: float | dict[str, float]) -> Catalog:
    """The catalog with GPU-hour prices scaled (every other entry is the same object, so the
    cost model's cached evaluations still apply; see ``candidates.cost_model_key``)."""
    if factor == 1.0 or factor == {}:
        return cat

    def f(acc: str) -> float:
        return factor if isinstance(factor, float) else factor.get(acc, 1.0)

    prices = {k: p.model_copy(update={"usd_per_gpu_hour": p.usd_per_gpu_hour * f(p.accelerator)})
              for k, p in cat.prices.items()}
    return replace(cat, prices=MappingProxyType(prices))


@dataclass(frozen=True)
class VariantResult:
    """One row of the sweep table."""

    index: int
    variant: str
    traffic_growth: float
    price_factor: str
    slo_scale: float
    mix: str
    status: str
    termination: str | None
    cost_usd_per_hour: float | None
    gpus: int
    plan: str
    """The deployments in one line: ``model: replicas x accelerator quant TPn``."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- workers -----------------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _worker_state(catalog_folder: str) -> tuple[Catalog, Any, dict[str, Catalog]]:
    from solver.candidates import TableCache

    if _WORKER.get("folder") != catalog_folder:
        _WORKER.update(folder=catalog_folder, cat=load_catalog(catalog_folder), cache=TableCache(),
                       priced={})
    return _WORKER["cat"], _WORKER["cache"], _WORKER["priced"]


def solve_variant(problem_json: str, index: int, v: Variant, catalog_folder: str,
                  time_limit_s: float) -> VariantResult:
    """Solve one variant (runs in a worker; module-level so that it pickles)."""
    from solver.api import solve

    cat, cache, priced_cats = _worker_state(catalog_folder)
    key = repr(v.price_factor)
    if key not in priced_cats:
        priced_cats[key] = priced(cat, v.price_factor)
    problem = apply(Problem.model_validate_json(problem_json), v)
    plan = solve(problem, priced_cats[key], time_limit_s, cache=cache)
    line = "; ".join(f"{d.model}: {d.replicas}x {d.accelerator} {d.quant} TP{d.tp}"
                     + (f" PP{d.pp}" if d.pp > 1 else "") + (f" EP{d.ep}" if d.ep > 1 else "")
                     for d in plan.deployments)
    return VariantResult(
        index=index, variant=v.name, traffic_growth=v.traffic_growth, price_factor=v.price_text,
        slo_scale=v.slo_scale, mix=v.mix.name, status=plan.status.value,
        termination=plan.termination.value if plan.termination else None,
        cost_usd_per_hour=plan.cost_usd_per_hour, gpus=plan.gpus, plan=line or "-",
    )


def _solve_chunk(args: tuple[str, list[tuple[int, Variant]], str, float]) -> list[VariantResult]:
    problem_json, chunk, folder, time_limit_s = args
    return [solve_variant(problem_json, i, v, folder, time_limit_s) for i, v in chunk]


@dataclass(frozen=True)
class SweepResult:
    problem: str
    runner: str
    workers: int
    seconds: float
    rows: tuple[VariantResult, ...]

    @property
    def scenarios_per_minute(self) -> float:
        return 60 * len(self.rows) / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"problem": self.problem, "runner": self.runner, "workers": self.workers,
                "seconds": self.seconds, "scenarios_per_minute": self.scenarios_per_minute,
                "variants": [r.to_dict() for r in self.rows]}


def _chunks(items: list[Any], n: int) -> list[list[Any]]:
    """``n`` contiguous chunks, sizes differing by at most one."""
    n = max(1, min(n, len(items)))
    k, r = divmod(len(items), n)
    out, start = [], 0
    for i in range(n):
        end = start + k + (1 if i < r else 0)
        out.append(items[start:end])
        start = end
    return out


def run_sweep(
    problem: Problem, grid: SweepGrid, cat: Catalog | None = None, workers: int | None = None,
    ray_address: str | None = None, time_limit_s: float = DEFAULT_TIME_LIMIT_S,
    progress: Callable[[int, int], None] | None = None,
) -> SweepResult:
    """Solve every variant of ``grid``; see the module docstring. ``workers``: processes of the
    local pool (default: CPU count; 1 runs in this process)."""
    cat = cat or load_catalog()
    check_grid(problem, grid, cat)
    items = list(enumerate(variants(grid)))
    folder = str(cat.folder)
    pj = problem.model_dump_json()
    t0 = time.perf_counter()
    if ray_address is not None:
        rows, runner, n = _run_ray(pj, items, folder, time_limit_s, ray_address, workers, progress)
    else:
        n = max(1, min(workers or os.cpu_count() or 1, len(items)))
        runner = "process pool" if n > 1 else "in process"
        rows = _run_local(pj, items, folder, time_limit_s, n, progress)
    rows.sort(key=lambda r: r.index)
    return SweepResult(problem.name, runner, n, time.perf_counter() - t0, tuple(rows))


def _run_local(pj: str, items: list[tuple[int, Variant]], folder: str, time_limit_s: float, n: int,
               progress: Callable[[int, int], None] | None) -> list[VariantResult]:
    if n == 1:
        rows = []
        for k, (i, v) in enumerate(items, 1):
            rows.append(solve_variant(pj, i, v, folder, time_limit_s))
            if progress:
                progress(k, len(items))
        return rows
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # several chunks per worker: contiguous variants share a cache, and progress still moves
    chunks = _chunks(items, min(len(items), 4 * n))
    rows = []
    with ProcessPoolExecutor(max_workers=n) as pool:
        futures = [pool.submit(_solve_chunk, (pj, c, folder, time_limit_s)) for c in chunks]
        for f in as_completed(futures):
            rows += f.result()
            if progress:
                progress(len(rows), len(items))
    return rows


def _run_ray(pj: str, items: list[tuple[int, Variant]], folder: str, time_limit_s: float,
             address: str, workers: int | None,
             progress: Callable[[int, int], None] | None) -> tuple[list[VariantResult], str, int]:
    try:
        import ray
    except ImportError:
        raise InputError("--ray: Ray is not installed; pip install 'fleetplan[ray]'") from None
    started = not ray.is_initialized()
    if started:
        ray.init(address=None if address == "local" else address, ignore_reinit_error=True,
                 log_to_driver=False)
    try:
        n = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        remote = ray.remote(_solve_chunk)
        refs = [remote.remote((pj, c, folder, time_limit_s)) for c in _chunks(items, min(len(items), 4 * n))]
        rows: list[VariantResult] = []
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            rows += ray.get(done[0])
            if progress:
                progress(len(rows), len(items))
        return rows, f"ray ({address})", n
    finally:
        if started:
            ray.shutdown()


def sweep_plot(result: SweepResult, path: Path) -> Path:
    """A bar chart of cost per variant (no bar: no plan), written as SVG or PNG by suffix."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result.rows
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.32 * len(rows) + 1)))
    costs = [r.cost_usd_per_hour or 0.0 for r in rows]
    ax.barh(range(len(rows)), costs, color=["#4c72b0" if r.cost_usd_per_hour is not None else "#cccccc" for r in rows])
    ax.set_yticks(range(len(rows)), [r.variant for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("cost, USD per hour")
    ax.set_title(f"{result.problem}: cost per variant ({len(rows)} variants)")
    for k, r in enumerate(rows):
        if r.cost_usd_per_hour is None:
            ax.text(0, k, f"  {r.status}", va="center", fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Date": None} if path.suffix == ".svg" else None)
    plt.close(fig)
    return path


def sweep_markdown(result: SweepResult, plot: str | None) -> str:
    """The sweep as a Markdown report: one table row per variant, and the plot."""
    lines = [f"# Sweep of {result.problem}", "",
             f"{len(result.rows)} variants ({result.runner}, {result.workers} worker(s)).", ""]
    if plot:
        lines += [f"![cost per variant]({plot})", ""]
    lines += ["| # | variant | status | cost $/h | GPUs | plan |", "|---|---|---|---|---|---|"]
    for r in result.rows:
        cost = f"{r.cost_usd_per_hour:,.2f}" if r.cost_usd_per_hour is not None else "-"
        lines.append(f"| {r.index} | {r.variant} | {r.status} | {cost} | {r.gpus} | {r.plan.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def same_results(a: Sequence[VariantResult], b: Sequence[VariantResult]) -> bool:
    """Whether two runs gave the same table (rows compared whole)."""
    return [r.to_dict() for r in a] == [r.to_dict() for r in b]
