"""Communication time of one pipeline-stage pass, on the links :mod:`solver.topology` reads.

One collective over a group of ``n`` GPUs on a link of datasheet bandwidth ``BW`` costs

    t = latency + wire_bytes / (BW x eff(S)),   eff(S) = eff_max x min(1, S / S_sat)^ramp

where ``S`` is the message size per GPU. ``latency`` is the link kind's software latency
(``catalogs/engines.yaml`` ``links``: the collective kernel's launch and synchronisation) plus the
path latency of the group's slowest link (``catalogs/systems.yaml``). ``eff`` rises with the
message size: nccl-tests' ``all_reduce_perf`` bus bandwidth (https://github.com/NVIDIA/nccl-tests,
``doc/PERFORMANCE.md`` defines busbw) climbs from a few percent of the link at KB messages to its
plateau only at tens of MB, so MB-sized decode all-reduces get a fraction of the plateau.

* TP all-reduce, two per layer (after attention and after the FFN), ring: ``2 (n-1)/n x S`` per
  GPU on the wire, S = the rank's tokens x hidden x 2 bytes.
* EP all-to-all, two per MoE layer (dispatch and combine), under attention DP only: each GPU
  sends its tokens' ``k`` expert copies, ``(ep-1)/ep`` of them to other GPUs. With attention TP
  over the whole stage (``tp = stage_gpus``) every GPU already holds every token after the
  attention all-reduce: each runs its own experts on the rows routed to them and the FFN's
  all-reduce combines the partial outputs (vLLM/SGLang/TensorRT-LLM without attention DP use no
  all-to-all), so nothing is dispatched.
* PP point-to-point: the activations of the pass cross one stage boundary.

Every function broadcasts over numpy arrays and returns seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

F = NDArray[np.float64]


@dataclass(frozen=True)
class LinkCost:
    """What one collective pays on one link: datasheet bandwidth per GPU (one direction, bytes/s),
    latency (software + path, seconds), the plateau efficiency, the message size (bytes) where
    the plateau is reached and the ramp exponent below it."""

    bandwidth_bytes_s: float
    latency_s: float
    bw_efficiency: float
    saturation_bytes: float
    ramp: float


NO_LINK = LinkCost(float("inf"), 0.0, 1.0, 0.0, 0.0)
"""A group of one GPU: nothing on the wire."""


def link_efficiency(msg_bytes: ArrayLike, link: LinkCost) -> F:
    """Achieved / datasheet bandwidth for a message of ``msg_bytes``: eff_max x min(1, S/S_sat)^ramp."""
    s = np.asarray(msg_bytes, dtype=float)
    sat = np.asarray(link.saturation_bytes, dtype=float)
    ramped = np.minimum(1.0, np.maximum(s, 1.0) / np.where(sat > 0, sat, 1.0)) ** link.ramp
    return link.bw_efficiency * np.where(sat > 0, ramped, 1.0)


def collective_s(wire_bytes: ArrayLike, msg_bytes: ArrayLike, link: LinkCost) -> F:
    """latency + wire_bytes / (bandwidth x eff(msg_bytes)) seconds; 0 when nothing moves."""
    w = np.asarray(wire_bytes, dtype=float)
    t = link.latency_s + w / (link.bandwidth_bytes_s * link_efficiency(msg_bytes, link))
    return np.where(w > 0, t, 0.0)


def allreduce_s(msg_bytes: ArrayLike, n: int, link: LinkCost) -> F:
    """Ring all-reduce of ``msg_bytes`` per GPU over ``n`` GPUs (0 for n = 1)."""
    s = np.asarray(msg_bytes, dtype=float)
    return np.where(np.asarray(n) > 1, collective_s(2.0 * (n - 1) / n * s, s, link), 0.0)


def alltoall_s(send_bytes: ArrayLike, n: int, link: LinkCost) -> F:
    """All-to-all where each GPU holds ``send_bytes`` for the group, ``(n-1)/n`` of it leaving."""
    s = np.asarray(send_bytes, dtype=float)
    return np.where(np.asarray(n) > 1, collective_s((n - 1) / n * s, s, link), 0.0)


def p2p_s(msg_bytes: ArrayLike, link: LinkCost) -> F:
    """One point-to-point send of ``msg_bytes``."""
    s = np.asarray(msg_bytes, dtype=float)
    return collective_s(s, s, link)


def stage_comm_s(
    *,
    rank_tokens: ArrayLike,
    stage_tokens: ArrayLike,
    hidden_size: int,
    act_bytes: int,
    layers: float,
    moe_layers: float,
    tp: int,
    ep: int,
    stage_gpus: int,
    experts_per_token: int,
    pp: int,
    tp_link: LinkCost,
    ep_link: LinkCost,
    pp_link: LinkCost,
    expert_tp: int = 1,
    expert_tp_link: LinkCost = NO_LINK,
) -> F:
    """All communication of one stage pass (seconds), on the busiest GPU.

    ``rank_tokens``: tokens of the busiest attention rank (its all-reduce message);
    ``stage_tokens``: tokens of the whole stage (their expert copies are dispatched evenly over
    its GPUs); ``layers``/``moe_layers``: the stage's layers. ``expert_tp > 1``: each of the ``ep``
    expert groups is split over ``expert_tp`` GPUs that all-reduce the partial outputs of the token
    copies the group receives (``stage_tokens x k / ep`` rows), once per MoE layer (expert TP
    inside attention DP; without DP the TP all-reduce already sums them).
    """
    r = np.asarray(rank_tokens, dtype=float)
    st = np.asarray(stage_tokens, dtype=float)
    ar = 2.0 * layers * allreduce_s(r * hidden_size * act_bytes, tp, tp_link)
    send = st / stage_gpus * experts_per_token * hidden_size * act_bytes
    # dispatch/combine only under attention DP: with attention TP over the whole stage every GPU
    # already holds every token after the attention all-reduce, so each GPU runs its own experts
    # on the rows routed to them and the MoE output's all-reduce (counted in ``ar``) combines them
    a2a = np.where((np.asarray(ep) > 1) & (np.asarray(moe_layers) > 0) & (np.asarray(stage_gpus) > np.asarray(tp)),
                   2.0 * moe_layers * alltoall_s(send, ep, ep_link), 0.0)
    rows = st * experts_per_token / np.maximum(ep, 1)
    a2a = a2a + np.where((np.asarray(expert_tp) > 1) & (np.asarray(moe_layers) > 0),
                         moe_layers * allreduce_s(rows * hidden_size * act_bytes, expert_tp,
                                                  expert_tp_link), 0.0)
    p2p = np.where(np.asarray(pp) > 1, p2p_s(st / stage_gpus * hidden_size * act_bytes, pp_link), 0.0)
    return ar + a2a + p2p
