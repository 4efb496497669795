"""GPU sharing of a plan in words (:mod:`solver.costmodel.partition`): which replicas share GPUs,
as MIG instances or co-located replicas, and how full those GPUs are; and which models were
allowed to share but run on whole GPUs (sharing was not cheaper for them)."""

from __future__ import annotations

from collections import defaultdict

from solver.plan import Deployment
from solver.problem import Problem


def sharing_notes(problem: Problem, deployments: list[Deployment] | tuple[Deployment, ...]) -> tuple[str, ...]:
    """One sentence per GPU share in use and per model that may share but does not."""
    groups: dict[tuple[str, str], list[Deployment]] = defaultdict(list)
    for x in deployments:
        if x.partition:
            groups[(x.accelerator, x.partition)].append(x)
    out = []
    for (acc, part), deps in sorted(groups.items()):
        k = deps[0].replicas_per_gpu
        n = sum(x.replicas for x in deps)
        gpus = -(-n // k)
        who = ", ".join(f"{x.model} {x.replicas}" for x in deps)
        out.append(f"GPU share {part} on {acc}: {n} replicas ({who}) on {gpus} GPU(s), {k} per GPU"
                   + (f", {gpus * k - n} slot(s) free" if gpus * k > n else ""))
    used = {x.model for x in deployments if x.partition}
    for d in problem.models:
        if d.gpu_sharing is not None and d.name not in used and any(x.model == d.name for x in deployments):
            out.append(f"{d.name}: GPU sharing allowed but not used: whole GPUs are as cheap or cheaper here")
    return tuple(out)
