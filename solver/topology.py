"""The interconnect of a replica as a graph, and the link a collective group runs over.

A :class:`~solver.schemas.System` entry describes one node shape. :func:`build_topology` turns
it into a ``networkx.Graph`` for ``n_gpus`` GPUs:

* each GPU is a vertex ``gpu<i>``, placed node by node (``gpus_per_node`` per node);
* each scale-up domain has one fabric vertex ``fabric<d>`` (an NVSwitch plane, a PCIe switch,
  the Infinity Fabric / RoCE mesh); every GPU of the domain has an edge to it with the
  system's ``intra_node_gb_s`` and half its ``intra_node_latency_us`` (two hops = one transfer).
  Racks such as NVL72 have domains spanning ``nodes_per_domain`` nodes;
* each node has a NIC vertex ``nic<n>``; GPUs reach it with ``scaleout_gb_s_per_gpu`` each; NICs
  join one ``network`` vertex (the scale-out fabric) with the node's aggregate NIC bandwidth.

Edges carry ``bandwidth_gb_s`` (per GPU, one direction), ``latency_us`` and ``kind``.
:func:`group_link` reads the bottleneck bandwidth and the path latency among a group's GPUs
from the graph: the link a TP all-reduce or an EP all-to-all among them pays.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

from solver.errors import InputError
from solver.schemas import System

if TYPE_CHECKING:
    import networkx as nx

# networkx is imported only where a graph object is asked for (build_topology): the link lookups
# of the cost model walk the same graph as a plain adjacency map, since importing networkx costs
# more than a whole one-model query.


@dataclass(frozen=True)
class Link:
    """The slowest link among a group of GPUs: per-GPU one-direction bandwidth and latency."""

    bandwidth_gb_s: float
    latency_us: float
    kind: str
    """``intra_node_link`` of the system (``nvlink``, ``pcie`` ...), ``scale-out`` or ``local``."""

    @property
    def is_scaleup(self) -> bool:
        return self.kind not in ("scale-out", "local")


LOCAL = Link(bandwidth_gb_s=float("inf"), latency_us=0.0, kind="local")
"""A group of one GPU: no communication."""


def domain_gpus(system: System) -> int:
    """GPUs in one scale-up domain (never fewer than one node's GPUs share a fabric)."""
    return max(1, system.scaleup_domain_gpus)


Edge = dict[str, object]
"""An edge's attributes: ``bandwidth_gb_s``, ``latency_us``, ``kind``."""


def _layout(system: System, n_gpus: int) -> tuple[list[tuple[str, dict]], list[tuple[str, str, Edge]]]:
    """The vertices (with attributes) and edges of ``n_gpus`` GPUs of ``system``, in the order
    :func:`build_topology` adds them (see the module docstring): the one description of the
    graph, read both as a ``networkx.Graph`` and as a plain adjacency map."""
    if n_gpus < 1:
        raise InputError(f"n_gpus must be >= 1, got {n_gpus}")
    nodes: list[tuple[str, dict]] = [("network", {"kind": "network"})]
    edges: list[tuple[str, str, Edge]] = []
    per_node = system.gpus_per_node
    per_domain = domain_gpus(system)
    n_nodes = -(-n_gpus // per_node)
    for n in range(n_nodes):
        nic = f"nic{n}"
        gpus_here = min(per_node, n_gpus - n * per_node)
        nodes.append((nic, {"kind": "nic", "node": n}))
        edges.append((nic, "network", {
            "bandwidth_gb_s": system.scaleout_gb_s_per_gpu * gpus_here,
            "latency_us": system.scaleout_latency_us / 2, "kind": "scale-out"}))
    fabrics: set[str] = set()
    for i in range(n_gpus):
        node = i // per_node
        domain = i // per_domain
        gpu, fabric = f"gpu{i}", f"fabric{domain}"
        nodes.append((gpu, {"kind": "gpu", "node": node, "domain": domain}))
        if fabric not in fabrics:
            fabrics.add(fabric)
            nodes.append((fabric, {"kind": system.intra_node_link, "domain": domain}))
        edges.append((gpu, fabric, {"bandwidth_gb_s": system.intra_node_gb_s,
                                    "latency_us": system.intra_node_latency_us / 2,
                                    "kind": system.intra_node_link}))
        edges.append((gpu, f"nic{node}", {"bandwidth_gb_s": system.scaleout_gb_s_per_gpu,
                                          "latency_us": system.scaleout_latency_us / 2,
                                          "kind": "scale-out"}))
    return nodes, edges


def build_topology(system: System, n_gpus: int) -> nx.Graph:
    """The graph of ``n_gpus`` GPUs laid out over as many nodes of ``system`` as they need."""
    import networkx as nx

    nodes, edges = _layout(system, n_gpus)
    g = nx.Graph(system=system.id)
    g.add_nodes_from(nodes)
    g.add_edges_from(edges)
    return g


def _adjacency(system: System, n_gpus: int) -> dict[str, dict[str, Edge]]:
    """The same graph as :func:`build_topology` as ``{vertex: {neighbour: edge}}``, neighbours
    in the order networkx keeps them (so a link lookup needs no networkx)."""
    nodes, edges = _layout(system, n_gpus)
    adj: dict[str, dict[str, Edge]] = {v: {} for v, _ in nodes}
    for u, v, e in edges:
        adj[u][v] = e
        adj[v][u] = e
    return adj


def _simple_paths(adj: Mapping[str, Mapping[str, Edge]], a: str, b: str, cutoff: int) -> Iterator[list[str]]:
    """Every simple a-b path of at most ``cutoff`` edges, depth first in neighbour order (the
    order of ``networkx.all_simple_paths``)."""
    path = [a]
    on_path = {a}

    def walk(v: str) -> Iterator[list[str]]:
        for w in adj[v]:
            if w in on_path:
                continue
            if w == b:
                yield path + [w]
            elif len(path) < cutoff:
                path.append(w)
                on_path.add(w)
                yield from walk(w)
                path.pop()
                on_path.discard(w)

    if a != b:
        yield from walk(a)


def _path_cost(g: "nx.Graph | Mapping[str, Mapping[str, Edge]]", a: str, b: str) -> tuple[float, float, str]:
    """Bottleneck bandwidth, latency and slowest-edge kind of the fastest a-b path.

    The fastest path is the one with the highest bottleneck bandwidth (ties: lowest latency);
    the scale-up fabric wins inside a domain, the network outside it. ``g``: a networkx graph
    or an adjacency map (:func:`_adjacency`).
    """
    adj = getattr(g, "adj", g)
    best: tuple[float, float, str] | None = None
    for path in _simple_paths(adj, a, b, cutoff=4):
        edges = [adj[u][v] for u, v in zip(path, path[1:])]
        bw = min(e["bandwidth_gb_s"] for e in edges)
        lat = sum(e["latency_us"] for e in edges)
        kind = min(edges, key=lambda e: e["bandwidth_gb_s"])["kind"]
        if best is None or (bw, -lat) > (best[0], -best[1]):
            best = (bw, lat, kind)
    if best is None:
        raise ValueError(f"no path between {a} and {b}")
    return best


def group_link(g: "nx.Graph | Mapping[str, Mapping[str, Edge]]", gpus: Iterable[int]) -> Link:
    """The link a collective among ``gpus`` runs over: the slowest pairwise fastest path.

    Collectives move data between every member, so the group's bandwidth is the minimum over
    members of the bottleneck to the first member, and its latency the largest path latency.
    ``g``: a networkx graph or an adjacency map.
    """
    members = [f"gpu{i}" for i in gpus]
    if len(members) <= 1:
        return LOCAL
    first = members[0]
    costs = [_path_cost(g, first, m) for m in members[1:]]
    bw = min(c[0] for c in costs)
    lat = max(c[1] for c in costs)
    kind = min(costs, key=lambda c: c[0])[2]
    return Link(bandwidth_gb_s=bw, latency_us=lat, kind=kind)


def link_for_group(system: System, group_size: int) -> Link:
    """The link a TP or EP group of ``group_size`` consecutive GPUs of ``system`` runs over.

    Scale-up (NVLink/PCIe switch/fabric) when the group fits one domain, else the scale-out
    network. Results are cached per (system, size); the graph has at most a few hundred vertices.
    """
    return _link_cached(system, group_size)


_CACHE: dict[tuple[str, int, int], Link] = {}


def _link_cached(system: System, group_size: int) -> Link:
    key = (system.id, id(system), group_size)
    if key not in _CACHE:
        if group_size <= 1:
            _CACHE[key] = LOCAL
        else:
            # Two GPUs suffice to read the path: the first and the last of the group.
            # (on the plain adjacency map: networkx is not imported for a lookup)
            _CACHE[key] = group_link(_adjacency(system, group_size), [0, group_size - 1])
    return _CACHE[key]


def fits_scaleup(system: System, group_size: int) -> bool:
    """Whether a group of ``group_size`` GPUs sits inside one scale-up domain."""
    return group_size <= domain_gpus(system)
