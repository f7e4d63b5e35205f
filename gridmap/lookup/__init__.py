"""Point → grid lookup (落格): which grid, community, street, district and city a point is in.

>>> index = LookupIndex.build(layers, version=3)                    # doctest: +SKIP
>>> index.answer(111.5190, 36.0880)["grid"]["code"]                 # doctest: +SKIP
'141002004003007'

Shared-edge rule
----------------
A point exactly on an edge shared by two or more grids, or on a vertex where several meet, belongs
to the grid whose **code sorts first** (as text; row order breaks ties between duplicate codes)
among the grids whose closed polygon holds it. The same rule settles a point inside an overlap
(which validation reports as an error). "Exactly" is GEOS's exact orientation test on the WGS84
doubles, so the answer is the same on every call, one point at a time or in a batch.

Near the boundary
-----------------
``near_boundary`` is true when the point lies within ``near_m`` metres of a stretch of its grid's
boundary that another grid shares; ``neighbour`` is that grid (the one across the nearest shared
stretch). A stretch is shared when the other grid has the same segment (a clean coverage shares its
vertices: validation reports ``unshared_edge`` otherwise) or, failing that, when a point 0.5 m
across its middle lies in the other grid. Distances are metres in a local Lambert equal-area
projection (0.003 % scale error 100 km from the centre), never degrees.

How it is fast (MapIt-style subdivision)
----------------------------------------
A raster of cells, square in metres, about 16 per grid, covers the grids' bounds. Cells no
edge touches and one grid covers answer by array lookup; cells no grid covers answer "none";
only the rest keep a list of candidate grids, sorted by code, tested in that order with GEOS's
prepared point-in-polygon (the first hit is the rule's answer). Distances to the edges are one
vectorized pass over the point's own grid's segments. A finer bit raster (cells about ``near_m``
square) marks where a shared edge may be within ``near_m``; ``locate(..., distances=False)``, the
batch path, runs the distance pass only for points in marked cells, and ``which`` (grid codes
only) skips it altogether. One point at a time (``find``/``answer``, what ``GET /lookup`` calls)
takes a scalar path of plain floats and ints through the same raster and segments — about 25 µs,
with the same answer to the bit as the vectorized path.

Modules: :mod:`~gridmap.lookup.index` (LookupIndex, Located, answers), :mod:`~gridmap.lookup.raster`
(cells, which grid), :mod:`~gridmap.lookup.edges` (segments, distances),
:mod:`~gridmap.lookup.coords` (input CRS), :mod:`~gridmap.lookup.stream` (CSV batches).
"""

from gridmap.lookup.coords import to_wgs84_points
from gridmap.lookup.index import CHAIN, Located, LookupIndex
from gridmap.lookup.stream import lookup_points

__all__ = ["LookupIndex", "Located", "lookup_points", "CHAIN", "to_wgs84_points"]
