"""Constraint families: named in one place, reused for enforcement literals, logs and explanations.

Every constraint of the optimisation model belongs to one family and one *scope* (a model of the
problem, an accelerator, or the whole fleet). Each (family, scope) pair is guarded by one Boolean
assumption literal in CP-SAT, so an infeasible problem can be explained by the families that
conflict (``SufficientAssumptionsForInfeasibility``).

Families that act on a single candidate (memory, latency targets, topology, formats, quality)
are enforced by forbidding the candidates that violate them; the others are linear constraints
over replica counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Family(str, Enum):
    MEMORY = "memory"
    TTFT = "ttft"
    TPOT = "tpot"
    E2E = "e2e"
    TOPOLOGY = "topology"
    QUANT = "quantization"
    QUALITY = "quality"
    CONFIGS = "max_configs"
    INVENTORY = "inventory"
    NODES = "whole_nodes"
    POWER = "power"
    BUDGET = "budget"
    CHAIN = "app_latency"
    PROVIDER = "one_provider"

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]

    @property
    def scope_kind(self) -> str:
        """'model', 'accelerator' or 'fleet': what one literal of this family covers."""
        if self in (Family.INVENTORY,):
            return "accelerator"
        if self in (Family.NODES, Family.POWER, Family.BUDGET, Family.PROVIDER):
            return "fleet"
        if self is Family.CHAIN:
            return "application"
        return "model"


_DESCRIPTIONS = {
    Family.MEMORY: "weights + KV cache at the batch cap fit in GPU memory",
    Family.TTFT: "time to first token within its percentile target",
    Family.TPOT: "time per output token within its percentile target",
    Family.E2E: "end-to-end latency within its percentile target",
    Family.TOPOLOGY: "a replica fills a whole number of nodes or fits inside one",
    Family.QUANT: "weight/KV formats are allowed by the problem",
    Family.QUALITY: "quality loss of the format within max_quality_loss_points",
    Family.CONFIGS: "at most max_configs_per_model distinct configurations per model",
    Family.INVENTORY: "GPUs used within the inventory of the accelerator",
    Family.NODES: "GPUs are provisioned as whole nodes",
    Family.POWER: "GPU power (TDP) within power_kw",
    Family.BUDGET: "cost within budget_usd_per_hour",
    Family.CHAIN: "every path of an application within its e2e_budget_ms (sum of stage e2e p99s)",
    Family.PROVIDER: "every rented GPU of the fleet from one provider (one_provider: fleet)",
}

CANDIDATE_FAMILIES = (
    Family.MEMORY, Family.TTFT, Family.TPOT, Family.E2E, Family.TOPOLOGY, Family.QUANT,
    Family.QUALITY,
)
"""Families decided per candidate (a candidate either satisfies them or is forbidden)."""


@dataclass(frozen=True, order=True)
class Guard:
    """One assumption literal: a family restricted to one scope (model name, accelerator id, or
    '' for the fleet)."""

    family: Family
    scope: str = ""

    @property
    def name(self) -> str:
        return f"{self.family.value}[{self.scope}]" if self.scope else self.family.value
