"""What a solve returns, apart from how it was found: the integer solution (replicas, GPUs,
cost, bound, termination) and a conflict among guards. Shared by the CP-SAT model
(:mod:`.cpsat`) and the exact one-model solve (:mod:`.single`); no solver library here, so
code that only reads solutions does not import OR-Tools."""

from __future__ import annotations

from dataclasses import dataclass

from solver.families import Guard
from solver.plan import SolveStatus, Termination

CORE_TIME_LIMIT_S = 10.0
"""Default seconds for conflict search (:meth:`solver.optimize.cpsat.FleetModel.core`)."""


@dataclass(frozen=True)
class IntSolution:
    status: SolveStatus
    replicas: tuple[int, ...] = ()
    provisioned: tuple[int, ...] = ()
    nodes: tuple[int, ...] = ()
    cost_cents: int | None = None
    bound_cents: float | None = None
    seconds: float = 0.0
    owned: tuple[int, ...] = ()
    """Owned GPUs in use per system (0 where none are owned)."""
    termination: Termination | None = None
    """Why the search stopped; see :class:`~solver.plan.Termination`."""
    provider: int = -1
    """``one_provider: fleet``: index into ``IntProblem.providers`` of the provider every rented
    GPU comes from; -1 without a provider choice."""

    @property
    def gap(self) -> float | None:
        if self.cost_cents is None or self.bound_cents is None:
            return None
        if self.cost_cents == 0:
            return 0.0
        return max(0.0, (self.cost_cents - self.bound_cents) / self.cost_cents)


@dataclass(frozen=True)
class Conflict:
    """What conflict search found: a set of guards that cannot hold together, and whether that
    is proven. ``termination`` is ``INFEASIBLE_PROVEN`` when CP-SAT proved the guards conflict
    (with every guard relaxed, empty ``guards`` then means no plan exists at all), and
    ``UNKNOWN_AT_TIME_LIMIT`` when the search ran out of time before it could tell (``guards``
    is then empty and says nothing). ``minimal``: every guard was shown to be needed (a
    deletion step that ran out of time keeps its guard and clears this)."""

    guards: tuple[Guard, ...]
    termination: Termination
    minimal: bool

    @property
    def proven(self) -> bool:
        return self.termination is Termination.INFEASIBLE_PROVEN
