"""The walking network: OSM road lines → a noded, weighted graph in metres, and what a walk reaches.

Road data is drawn for cars as much as for people, so :func:`walkable_roads` first drops what
nobody walks along (rail, ferries, vehicle tunnels, elevated expressways, ``foot=no``). The lines
are then noded — every crossing becomes a vertex — because OSM ways, and Tilezen's tile-clipped
pieces of them, meet mid-line far more often than at their ends. Noding in 2-D cannot tell a
footbridge from a crossing under it: where the data has no levels, the graph connects both.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import networkx as nx
import numpy as np
import pyproj
import shapely
import shapely.ops

from gridmap.crs import local_metric_crs, to_wgs84
from gridmap.errors import CRSMissing, EmptyLayer, InputError

__all__ = ["JOIN_M", "WalkNetwork", "build_network", "reach_lines", "walkable_roads"]

# Not walkable, by Tilezen/OSM tags. Trunk roads and motorways in Chinese cities are elevated or
# fenced expressways (延安高架路); road tunnels under the Huangpu have no footway.
_NOT_WALKED_KINDS = {"rail", "ferry", "aerialway", "aeroway"}
_NOT_WALKED_DETAILS = {"motorway", "motorway_link", "trunk", "trunk_link", "subway", "funicular"}
_YES = {"true", "yes", "1"}
# Endpoints closer than this are one node: Tilezen clips lines at tile edges and the two sides
# of a cut agree to far better than a centimetre, but not always bit for bit.
_SNAP_M = 0.05
#: A dead end this close to another line is joined to it. OSM footways often stop at the kerb, a
#: few metres short of the road's centreline, and Tilezen simplifies lines per zoom, which moves a
#: T-junction's far side off the end that met it. On the Bund data 235 of 526 dead ends lie within
#: 10 m of another line (and 77 more than 30 m away): joining them is what a pedestrian does. The
#: Huangpu, hundreds of metres wide, is never bridged this way.
JOIN_M = 10.0


def _column(roads: gpd.GeoDataFrame, name: str) -> np.ndarray:
    if name not in roads:
        return np.full(len(roads), "", dtype=object)
    return roads[name].fillna("").astype(str).str.lower().to_numpy()


def walkable_roads(roads: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The rows of `roads` a pedestrian can walk along; lines without OSM tags are all kept.

    Dropped: kinds rail/ferry, expressways (motorway, trunk), tunnels that are not paths (a road
    tunnel has no footway; a pedestrian underpass is kind ``path``), and ``foot=no`` or
    ``access=no`` unless ``foot`` says yes.
    """
    kind, detail = _column(roads, "kind"), _column(roads, "kind_detail")
    tunnel = np.isin(_column(roads, "is_tunnel"), list(_YES)) | np.isin(
        _column(roads, "tunnel"), list(_YES))
    foot, access = _column(roads, "foot"), _column(roads, "access")
    foot_ok = np.isin(foot, ["yes", "designated", "permissive"])
    drop = (np.isin(kind, list(_NOT_WALKED_KINDS)) | np.isin(detail, list(_NOT_WALKED_DETAILS))
            | (tunnel & (kind != "path")) | (foot == "no") | ((access == "no") & ~foot_ok))
    return roads[~drop]


@dataclass(frozen=True)
class WalkNetwork:
    """A noded walking network in a metric CRS.

    ``edges`` are LineStrings, edge ``i`` running from node ``u[i]`` to node ``v[i]`` with length
    ``length[i]`` metres; ``graph`` holds the shortest edge between each pair of nodes.
    """

    crs: pyproj.CRS
    edges: np.ndarray
    u: np.ndarray
    v: np.ndarray
    length: np.ndarray
    graph: nx.Graph
    tree: shapely.STRtree

    @property
    def n_nodes(self) -> int:
        return self.graph.number_of_nodes()


def build_network(roads: gpd.GeoDataFrame, *, crs: pyproj.CRS | None = None,
                  walkable: bool = True, join_m: float = JOIN_M) -> WalkNetwork:
    """Node the road lines and build the graph, in `crs` (default: a local LAEA on the roads).

    A dead end within `join_m` of another line is joined to it by a short connector (see JOIN_M).
    """
    if roads.crs is None:
        raise CRSMissing("the roads layer has no CRS")
    if walkable:
        roads = walkable_roads(roads)
    geoms = roads.geometry.to_numpy()
    geoms = geoms[~(shapely.is_missing(geoms) | shapely.is_empty(geoms))]
    types = set(shapely.get_type_id(geoms).tolist())
    if not geoms.size:
        raise EmptyLayer("the roads layer has no walkable lines")
    if not types <= {1, 5}:  # LineString, MultiLineString
        raise InputError("the roads layer must hold lines (LineString/MultiLineString)")
    if crs is None:
        crs = local_metric_crs(to_wgs84(np.array([shapely.box(*roads.total_bounds)]), roads.crs))
    lines = gpd.GeoSeries(geoms, crs=roads.crs).to_crs(crs).to_numpy()
    # union_all nodes the linework (splits every line where another crosses it) and drops
    # the duplicated pieces that tile clipping and overlapping ways leave.
    edges = _node(shapely.set_precision(lines, _SNAP_M))
    if join_m > 0:
        edges = _node(np.concatenate([edges, _joins(edges, join_m)]))
    u, v = _end_nodes(edges)
    length = shapely.length(edges)
    graph = nx.Graph()
    order = np.argsort(-length)  # the shortest of parallel edges is added last and kept
    graph.add_weighted_edges_from(zip(u[order].tolist(), v[order].tolist(), length[order].tolist()))
    return WalkNetwork(crs, edges, u, v, length, graph, shapely.STRtree(edges))


def _node(lines: np.ndarray) -> np.ndarray:
    """Split every line where another crosses or touches it; drop duplicated pieces.

    union_all nodes linework, which also removes the overlaps that tile clipping and shared
    ways leave.
    """
    edges = shapely.get_parts(shapely.union_all(lines))
    return edges[shapely.length(edges) > 0]


def _ends(edges: np.ndarray) -> np.ndarray:
    """Start and end coordinates, shape (2 * n, 2): all starts, then all ends."""
    first, last = shapely.get_point(edges, 0), shapely.get_point(edges, -1)
    return shapely.get_coordinates(np.concatenate([first, last]))


def _end_nodes(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keys = np.round(_ends(edges) / _SNAP_M).astype(np.int64)
    _, node = np.unique(keys, axis=0, return_inverse=True)
    node = node.ravel()
    return node[: len(edges)], node[len(edges):]


def _joins(edges: np.ndarray, join_m: float) -> np.ndarray:
    """Connectors from each dead end to the nearest point of another edge within `join_m`."""
    u, v = _end_nodes(edges)
    nodes = np.concatenate([u, v])
    degree = np.bincount(nodes)
    own = np.concatenate([np.arange(len(edges))] * 2)
    dead = np.flatnonzero(degree[nodes] == 1)
    points = shapely.points(_ends(edges)[dead])
    pi, ei = shapely.STRtree(edges).query(points, predicate="dwithin", distance=join_m)
    other = ei != own[dead][pi]
    pi, ei = pi[other], ei[other]
    if not pi.size:
        return np.empty(0, dtype=object)
    dist = shapely.distance(points[pi], edges[ei])
    order = np.lexsort((dist, pi))
    first = order[np.unique(pi[order], return_index=True)[1]]
    pi, ei = pi[first], ei[first]
    targets = shapely.line_interpolate_point(edges[ei], shapely.line_locate_point(edges[ei],
                                                                                  points[pi]))
    joins = shapely.shortest_line(points[pi], targets)
    return joins[shapely.length(joins) > 0]


def _distances(net: WalkNetwork, node: int, start: float, budget: float) -> dict[int, float]:
    if start > budget:
        return {}
    found = nx.single_source_dijkstra_path_length(net.graph, node, cutoff=budget - start)
    return {n: d + start for n, d in found.items()}


def _merge(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for a, b in sorted(i for i in intervals if i[1] > i[0]):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def reach_lines(net: WalkNetwork, point: shapely.Point, budget: float) -> shapely.Geometry:
    """The parts of the network within `budget` metres' walk of `point` (in the network's CRS).

    The walk starts on the nearest edge, at the point's projection onto it, after walking the
    access leg from the point there (that leg's length is taken off the budget). Edges reached
    from one or both ends are cut at the remaining distance; the access leg is included.
    """
    nearest = net.tree.query_nearest(point, return_distance=True)
    e, access = int(nearest[0][0]), float(nearest[1][0])
    budget = budget - access
    snapped = shapely.line_interpolate_point(net.edges[e], net.edges[e].project(point))
    leg = shapely.LineString([point, snapped]) if access > 0 else point
    if budget <= 0:
        # Farther from every road than the whole walk (e.g. a road layer of another area): the
        # walk ends on the way there, not at the far end of a leg of any length.
        return shapely.ops.substring(leg, 0.0, budget + access) if access > 0 else leg
    p, length = net.edges[e].project(point), net.length[e]
    dist = np.full(net.n_nodes, np.inf)
    for node, start in ((net.u[e], p), (net.v[e], length - p)):
        for n, d in _distances(net, int(node), start, budget).items():
            dist[n] = min(dist[n], d)
    left_u, left_v = budget - dist[net.u], budget - dist[net.v]
    touched = (left_u > 0) | (left_v > 0)
    touched[e] = False
    full = touched & (np.maximum(left_u, 0) + np.maximum(left_v, 0) >= net.length)
    pieces = list(net.edges[full])
    for i in np.flatnonzero(touched & ~full):
        pieces += _cut(net.edges[i], [(0.0, left_u[i]), (net.length[i] - left_v[i], net.length[i])])
    pieces += _cut(net.edges[e], [(0.0, left_u[e]), (length - left_v[e], length),
                                  (p - budget, p + budget)])
    return shapely.union_all(pieces + [leg])


def _cut(line, intervals) -> list:
    length = line.length
    clipped = [(max(0.0, a), min(length, b)) for a, b in intervals]
    return [shapely.ops.substring(line, a, b) for a, b in _merge(clipped)]
