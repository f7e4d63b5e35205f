"""Synthetic cities (合成城市): exact multi-level coverages with planted problems, seeded.

For tests, benchmarks and the demo. Every level is an *exact* coverage: grids are cells of a
jittered lattice whose vertices (four corners plus one bent vertex on each edge) are shared by the
cells that meet there, communities are blocks of cells, streets blocks of communities, and each
parent is the coverage union of its children, so neighbours share identical vertices at every level.

Planted problems (:class:`PlantedProblem`) are the ground truth: exactly what a correct validator
reports, as ``(type, codes)`` compared order-insensitively by :func:`problem_key` (for
``split_building`` the building's code first). With ``gridmap.validate.validate_hierarchy`` on
``city.layers()`` and ``city.building`` each planting gives exactly one problem, and a city with
nothing planted validates with no problem at all:

================= ============================================== ===================================
type              what is done                                   codes reported (severity)
================= ============================================== ===================================
gap               grid A's middle vertex on its edge with grid B ``[community, A, B]`` (error);
                  (same community) pulled 0.08 cell into A       ``[A, B]`` without parents
overlap           the same vertex pushed 0.08 cell into B        ``[A, B]`` (error)
outside_parent    A's middle vertex on the district's outer      ``[A, community]`` (error); nothing
                  border pushed 0.08 cell outwards (no           without parents
                  neighbour there, so no overlap)
split_building    a building centred on a vertex that grids A    ``[building, A, B]`` (error)
                  and B share (``straddle_per_grid`` of them)
duplicate_code    the last grid of a community takes the code    ``[code]`` (error)
                  of the one before it (serials stay in order)
bad_code          the last grid of a community gets a 14-digit   ``[new code]`` (error)
                  code (one serial digit dropped)
invalid_geometry  a 2 m triangle pinched into A's ring at a      ``[A]`` (error); the loop turns
                  vertex (ring self-intersection, a bow-tie      like the ring and lies inside A,
                  knot)                                          so the repaired grid is exactly A
no_worker         ``worker`` emptied                             ``[A]`` (warning)
size_out_of_range households set to 320 (urban) or 100 (rural),  ``[A]`` (warning)
                  spread over A's buildings
================= ============================================== ===================================

Gap and overlap regions touch only A and B: the shared edge gets two extra vertices (in both grids)
either side of the moved one. Plantings stay clear of buildings; each lies in its own community,
preferably one with no planted neighbour, and no straddling building is placed in a planted
community.
"""

from __future__ import annotations

from gridmap.synth.city import (PLANT_TYPES, WGS84, City, PlantedProblem, default_plant,
                                metres_per_degree, problem_key)
from gridmap.synth.households import households_for, straddle_box
from gridmap.synth.lattice import lattice_cells, make_city
from gridmap.synth.outline import clip_city_to_outline
from gridmap.synth.plant import bow_tie, plant_problems, push_shared_vertex

__all__ = ["PLANT_TYPES", "PlantedProblem", "City", "make_city", "problem_key",
           "default_plant", "lattice_cells", "households_for", "metres_per_degree",
           "push_shared_vertex", "bow_tie", "straddle_box", "clip_city_to_outline",
           "plant_problems"]
