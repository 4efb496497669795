"""Communication time of one pipeline-stage pass, on the links :mod:`solver.topology` reads.

All functions return seconds for one pass of ``tokens`` tokens through one stage
(``num_layers / pp`` layers) and broadcast over numpy arrays.

* TP all-reduce, two per layer (after attention and after the FFN), ring cost
  ``2 (tp-1)/tp x message / (link_bw x efficiency) + latency``, message = tokens of one
  attention copy x hidden x 2 bytes.
* EP all-to-all, two per MoE layer (dispatch and combine): each GPU sends its tokens'
  ``k`` expert copies, ``(ep-1)/ep`` of them to other GPUs.
* PP point-to-point: the activations of the pass cross one stage boundary.

Latency per collective = the efficiency catalog's ``collective_latency_us`` (software: launch
and synchronisation) + the path latency of the group's link (hardware).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from solver.costmodel.shape import ACT_BYTES, ShapeTerms
from solver.topology import Link
from solver.units import GB, S_PER_US


def _transfer_s(terms: ShapeTerms, link: Link, nbytes: NDArray[np.float64]) -> NDArray[np.float64]:
    """Seconds to move ``nbytes`` per GPU over ``link`` plus one collective's latency."""
    bw = link.bandwidth_gb_s * GB * terms.collective_bw_efficiency
    return nbytes / bw + terms.collective_latency_s + link.latency_us * S_PER_US


def tp_allreduce_s(terms: ShapeTerms, tokens: ArrayLike) -> NDArray[np.float64]:
    """Two ring all-reduces per layer of the stage over the TP group (0 when tp = 1)."""
    t = np.asarray(tokens, dtype=float)
    if terms.tp == 1:
        return np.zeros_like(t)
    msg = t / terms.dp_attn * terms.hidden_size * ACT_BYTES
    one = _transfer_s(terms, terms.tp_link, 2 * (terms.tp - 1) / terms.tp * msg)
    return 2 * terms.num_layers / terms.pp * one


def ep_alltoall_s(terms: ShapeTerms, tokens: ArrayLike) -> NDArray[np.float64]:
    """Dispatch + combine all-to-all per MoE layer of the stage (0 when ep = 1)."""
    t = np.asarray(tokens, dtype=float)
    if terms.ep == 1 or terms.moe_layers == 0:
        return np.zeros_like(t)
    per_gpu = t / terms.stage_gpus * terms.experts_per_token * terms.hidden_size * ACT_BYTES
    one = _transfer_s(terms, terms.ep_link, per_gpu * (terms.ep - 1) / terms.ep)
    return 2 * terms.moe_layers / terms.pp * one


def pp_p2p_s(terms: ShapeTerms, tokens: ArrayLike) -> NDArray[np.float64]:
    """Activations of one pass sent to the next stage (0 when pp = 1)."""
    t = np.asarray(tokens, dtype=float)
    if terms.pp == 1:
        return np.zeros_like(t)
    msg = t / terms.stage_gpus * terms.hidden_size * ACT_BYTES
    return _transfer_s(terms, terms.pp_link, msg)


def comm_s(terms: ShapeTerms, tokens: ArrayLike) -> NDArray[np.float64]:
    """All communication of one stage pass of ``tokens`` tokens (seconds)."""
    return tp_allreduce_s(terms, tokens) + ep_alltoall_s(terms, tokens) + pp_p2p_s(terms, tokens)
