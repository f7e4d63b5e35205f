"""Planner operations (规划): auto-partition of a community into grids, the edits around it,
repair, stable codes, and plans with their impact report.

- :func:`partition_community` draws a community's grids from its buildings;
- :mod:`~gridmap.planning.edit`: :func:`split_grid`, :func:`split_balanced`, :func:`merge_grids`,
  :func:`move_buildings`, :func:`replace_boundary`; :func:`rebalance` afterwards;
- :func:`repair_coverage` fills gaps and removes overlaps within a bound;
- :func:`renumber_grids` and :func:`carry_codes` keep codes stable across a redraw;
- :func:`apply_operation` (one operation on one community), :func:`impact_report`, and
  :mod:`~gridmap.planning.workflow` for plans kept in a store.
"""

from gridmap.planning.edit import (EditResult, merge_grids, move_buildings, replace_boundary,
                                   split_balanced, split_grid)
from gridmap.planning.impact import Impact, impact_report
from gridmap.planning.partition import Partition, PartitionReport, partition_community
from gridmap.planning.partition_synth import make_community
from gridmap.planning.plans import OPERATIONS, PlanStep, apply_operation
from gridmap.planning.rebalance import RebalanceResult, rebalance
from gridmap.planning.renumber import CodeCarry, carry_codes, renumber_grids
from gridmap.planning.repair import RepairResult, repair_coverage

__all__ = ["OPERATIONS", "CodeCarry", "EditResult", "Impact", "Partition", "PartitionReport",
           "PlanStep", "RebalanceResult", "RepairResult", "apply_operation", "carry_codes",
           "impact_report", "make_community", "merge_grids", "move_buildings",
           "partition_community", "rebalance", "renumber_grids", "repair_coverage",
           "replace_boundary", "split_balanced", "split_grid"]
