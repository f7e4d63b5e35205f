"""gridmap: the geospatial core of grid-based community governance (网格化管理).

Load boundary layers, prove that each level tiles its parent, and report every problem.
"""

__version__ = "0.1.0"
