"""EP dispatch/combine (all-to-all) only under attention DP: with attention TP over the whole
stage every GPU holds every token after the attention all-reduce, so the MoE needs no dispatch
(each GPU runs its experts on the rows routed to them; the MoE output's all-reduce combines)."""

from __future__ import annotations

import pytest

from solver.costmodel.comm import LinkCost, allreduce_s, alltoall_s, stage_comm_s

NVL = LinkCost(bandwidth_bytes_s=450e9, latency_s=5e-6, bw_efficiency=0.8, saturation_bytes=0.0, ramp=0.0)
BASE = dict(stage_tokens=16.0, hidden_size=4096, act_bytes=2, layers=10.0, moe_layers=10.0, ep=8,
            stage_gpus=8, experts_per_token=8, pp=1, tp_link=NVL, ep_link=NVL, pp_link=NVL)


def test_attention_tp_over_the_stage_needs_no_dispatch():
    # TP8 + EP8: 16 tokens replicated on all 8 GPUs; two all-reduces per layer of 16 x 4096 x 2 B
    # = 131,072 B: 5 us + 2 x 7/8 x 131,072 B / 360 GB/s = 5.637 us each, x 2 x 10 layers
    one = 5e-6 + 2 * 7 / 8 * 131_072 / 360e9
    assert float(allreduce_s(131_072, 8, NVL)) == pytest.approx(one)
    t = stage_comm_s(rank_tokens=16.0, tp=8, **BASE)
    assert float(t) == pytest.approx(20 * one)


def test_attention_dp_dispatches_and_combines():
    # DP8 + EP8 (attention TP1): no all-reduce; each GPU sends 16 / 8 tokens x 8 copies x 4096 x 2 B
    # = 131,072 B, 7/8 of it leaving: 5 us + 114,688 B / 360 GB/s = 5.319 us, dispatch + combine
    # per MoE layer
    send = 16 / 8 * 8 * 4096 * 2
    one = 5e-6 + 7 / 8 * send / 360e9
    assert float(alltoall_s(send, 8, NVL)) == pytest.approx(one)
    t = stage_comm_s(rank_tokens=2.0, tp=1, **BASE)
    assert float(t) == pytest.approx(2 * 10 * one)
