"""The interconnect graph and the links TP/EP groups run over."""

from __future__ import annotations

import pytest

from solver.catalog import load_catalog
from solver.topology import LOCAL, build_topology, fits_scaleup, group_link, link_for_group


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


def test_hgx_graph_shape(cat):
    s = cat.system("hgx-h100-8")
    g = build_topology(s, 16)
    gpus = [n for n, d in g.nodes(data=True) if d["kind"] == "gpu"]
    assert len(gpus) == 16
    assert {"fabric0", "fabric1", "nic0", "nic1", "network"} <= set(g.nodes)
    assert g.edges["gpu0", "fabric0"]["bandwidth_gb_s"] == s.intra_node_gb_s


def test_group_inside_node_uses_nvlink(cat):
    s = cat.system("hgx-h100-8")
    link = link_for_group(s, 8)
    assert link.kind == "nvlink" and link.bandwidth_gb_s == s.intra_node_gb_s
    assert link.latency_us == pytest.approx(s.intra_node_latency_us)


def test_group_across_nodes_uses_network(cat):
    s = cat.system("hgx-h100-8")
    link = link_for_group(s, 16)
    assert link.kind == "scale-out" and link.bandwidth_gb_s == s.scaleout_gb_s_per_gpu
    assert not fits_scaleup(s, 16) and fits_scaleup(s, 8)


def test_nvl72_domain_spans_nodes(cat):
    s = cat.system("gb200-nvl72")
    link = link_for_group(s, 72)
    assert link.kind == "nvlink" and link.bandwidth_gb_s == s.intra_node_gb_s
    assert fits_scaleup(s, 72) and not fits_scaleup(s, 144)


def test_pcie_box_pays_pcie(cat):
    s = cat.system("pcie-l40s-8")
    link = link_for_group(s, 4)
    assert link.kind == "pcie" and link.bandwidth_gb_s == s.intra_node_gb_s


def test_single_gpu_is_local(cat):
    s = cat.system("hgx-h100-8")
    assert link_for_group(s, 1) is LOCAL
    assert group_link(build_topology(s, 4), [2]) is LOCAL
