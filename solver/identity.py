"""The deployment identity as read-only attributes of any record that embeds a ``Shape``.

Candidates, deployments and estimates each hold one :class:`~solver.costmodel.shape.Shape`
(the identity is declared there, once); this mixin lets readers keep writing ``c.accelerator``
or ``d.tp``. It imports nothing, so light commands that load plans stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from solver.costmodel.shape import Shape


class ShapeIdentity:
    """Read-only identity attributes delegating to ``self.shape``."""

    shape: "Shape"

    @property
    def model_id(self) -> str:
        """Catalog id of the model (``shape.model``)."""
        return self.shape.model

    @property
    def accelerator(self) -> str:
        return self.shape.accelerator

    @property
    def system(self) -> str:
        return str(self.shape.system)

    @property
    def quant(self) -> str:
        return self.shape.quant

    @property
    def kv_dtype(self) -> str:
        return self.shape.kv_dtype

    @property
    def tp(self) -> int:
        return self.shape.tp

    @property
    def pp(self) -> int:
        return self.shape.pp

    @property
    def ep(self) -> int:
        return self.shape.ep

    @property
    def moe_tp(self) -> int:
        """Expert TP inside attention DP (``Shape.moe_tp``; 0: derived from tp and ep)."""
        return self.shape.moe_tp
