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


def test_link_lookup_without_networkx_equals_the_networkx_graph(cat):
    """link_for_group walks a plain adjacency map; on every catalog system and group size it
    gives the link group_link reads from build_topology's networkx graph (whose path search is
    networkx's own all_simple_paths)."""
    import networkx as nx

    from solver.topology import _adjacency, _path_cost

    checked = 0
    for sid in sorted(cat.systems):
        s = cat.system(sid)
        for n in (2, 3, 4, 8, 9, 16, 72, 80):
            g = build_topology(s, n)
            best = None
            for path in nx.all_simple_paths(g, "gpu0", f"gpu{n - 1}", cutoff=4):
                es = [g.edges[u, v] for u, v in zip(path, path[1:])]
                cand = (min(e["bandwidth_gb_s"] for e in es), sum(e["latency_us"] for e in es),
                        min(es, key=lambda e: e["bandwidth_gb_s"])["kind"])
                if best is None or (cand[0], -cand[1]) > (best[0], -best[1]):
                    best = cand
            assert _path_cost(_adjacency(s, n), "gpu0", f"gpu{n - 1}") == best, (sid, n)
            link = link_for_group(s, n)
            assert (link.bandwidth_gb_s, link.latency_us, link.kind) == best, (sid, n)
            assert group_link(g, [0, n - 1]) == link
            checked += 1
    assert checked > 50
