"""GPU sharing of a plan in words (:mod:`solver.costmodel.partition`): which replicas share GPUs,
as MIG instances or co-located replicas, and how full those GPUs are; and which models were
allowed to share but run on whole GPUs (sharing was not cheaper for them)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

from solver.catalog import Catalog
from solver.mig import mig_gpus
from solver.plan import Deployment
from solver.problem import Problem


def sharing_notes(problem: Problem, deployments: list[Deployment] | tuple[Deployment, ...],
                  cat: Catalog | None = None) -> tuple[str, ...]:
    """One sentence per GPU share in use and per model that may share but does not. With
    ``cat``, MIG replicas of several profiles on one system are one sentence naming the layout
    of each GPU (profiles mixed on a GPU where that saves GPUs)."""
    groups: dict[tuple[str, str], list[Deployment]] = defaultdict(list)
    pools: dict[tuple[str, str], list[Deployment]] = defaultdict(list)
    for x in deployments:
        if _mig_profile(x) is not None and cat is not None:
            pools[(x.accelerator, x.system)].append(x)
        elif x.partition:
            groups[(x.accelerator, x.partition)].append(x)
    for key, deps in list(pools.items()):
        if len({x.partition for x in deps}) == 1:  # one profile: said as a share kind below
            groups[(key[0], deps[0].partition)].extend(deps)
            del pools[key]
    out = []
    for (acc, part), deps in sorted(groups.items()):
        k = deps[0].replicas_per_gpu
        n = sum(x.replicas for x in deps)
        gpus = -(-n // k)
        who = ", ".join(f"{x.model} {x.replicas}" for x in deps)
        out.append(f"GPU share {part} on {acc}: {n} replicas ({who}) on {gpus} GPU(s), {k} per GPU"
                   + (f", {gpus * k - n} slot(s) free" if gpus * k > n else ""))
    for (acc, system), deps in sorted(pools.items()):
        assert cat is not None
        counts = _mig_instances(deps)[(acc, system)]
        layouts: dict[str, int] = defaultdict(int)
        for gpu in mig_gpus(cat, acc, counts):
            layouts[" + ".join(f"{k} x {p}" for p, k in sorted(gpu.items()))] += 1
        who = ", ".join(f"{x.model} {x.replicas} on {_mig_profile(x)}" for x in deps)
        lays = "; ".join(f"{g} GPU(s) as {lay}" for lay, g in sorted(layouts.items()))
        out.append(f"GPU share mixed MIG on {acc} ({system}): {sum(counts.values())} instances ({who}) "
                   f"on {sum(layouts.values())} GPU(s): {lays}")
    used = {x.model for x in deployments if x.partition}
    for d in problem.models:
        if d.gpu_sharing is not None and d.name not in used and any(x.model == d.name for x in deployments):
            out.append(f"{d.name}: GPU sharing allowed but not used: whole GPUs are as cheap or cheaper here")
    return tuple(out)


def gpus_by_system(cat: Catalog, deployments: list[Deployment] | tuple[Deployment, ...]) -> dict[tuple[str, str], int]:
    """Whole GPUs per (accelerator, system) the deployments fill: whole-GPU replicas x their
    GPUs; co-located replicas ``ceil(n / k)`` per share kind, all models together; MIG replicas
    the fewest GPUs whose layouts hold them (:func:`~solver.mig.mig_gpus`)."""
    out: dict[tuple[str, str], int] = defaultdict(int)
    kinds: dict[tuple[str, str, str], list[int]] = {}
    for x in deployments:
        key = (x.accelerator, x.system)
        if _mig_profile(x) is not None:
            continue  # counted below, all profiles of a system together
        if x.partition:
            kinds.setdefault((*key, x.partition), [0, x.replicas_per_gpu])[0] += x.replicas
        else:
            out[key] += x.total_gpus
    for (a, s, _), (n, k) in kinds.items():
        out[(a, s)] += -(-n // k)
    for key, counts in _mig_instances(deployments).items():
        out[key] += len(mig_gpus(cat, key[0], counts))
    return dict(out)


def attribute_mig_costs(cat: Catalog, deployments: list[Deployment]) -> list[Deployment]:
    """The deployments with each MIG deployment's cost scaled so that those of one (accelerator,
    system) never add up to more than the GPUs their layouts fill: a replica costs ``1 / k`` of
    a GPU (``k`` instances of its profile per GPU), which overcounts when profiles mix (e.g.
    2g.20gb + 2g.20gb + 3g.40gb on one H100: 1/3 + 1/3 + 1/2 = 7/6 GPU); the factor is then
    GPUs / sum(replicas / k), and 1 otherwise (idle slots stay unattributed, as before)."""
    factor = mig_cost_factors(cat, deployments)
    return [replace(x, cost_usd_per_hour=x.cost_usd_per_hour * factor[(x.accelerator, x.system)])
            if _mig_profile(x) is not None else x for x in deployments]


def mig_cost_factors(cat: Catalog, deployments: list[Deployment] | tuple[Deployment, ...]) -> dict[tuple[str, str], float]:
    """Per (accelerator, system) with MIG deployments: min(1, GPUs / sum(replicas / k)) (see
    :func:`attribute_mig_costs`)."""
    share: dict[tuple[str, str], float] = defaultdict(float)
    for x in deployments:
        if _mig_profile(x) is not None:
            share[(x.accelerator, x.system)] += x.replicas / x.replicas_per_gpu
    return {key: min(1.0, len(mig_gpus(cat, key[0], c)) / share[key])
            for key, c in _mig_instances(deployments).items()}


def _mig_profile(x: Deployment) -> str | None:
    """The MIG profile ``x``'s replicas run on (``1g.10gb`` for ``mig 1g.10gb``); None: whole
    GPUs or a co-located share."""
    return x.partition.removeprefix("mig ") if x.partition and x.partition.startswith("mig ") else None


def _mig_instances(deployments: list[Deployment] | tuple[Deployment, ...]) -> dict[tuple[str, str], dict[str, int]]:
    """MIG replicas per (accelerator, system) and profile, all models together (in the order
    the deployments first name them)."""
    out: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for x in deployments:
        profile = _mig_profile(x)
        if profile is not None:
            out[(x.accelerator, x.system)][profile] += x.replicas
    return out
