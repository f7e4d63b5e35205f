"""Hierarchical codes (统一赋码编号): which digits each level has and how a code names its parent.

City and district codes are GB/T 2260 (6 digits, a city's ending in 00); a street adds 3 digits, a
community 3 more (the 12-digit statistical division code), and a grid a 3-digit serial numbered
within its community west to east, north to south.

>>> code_problem("141002004003007", "grid", parent="141002004003")
>>> code_problem("14100200400307", "grid")
'has 14 digits; a grid code has 15'
>>> parent_of("141002004003007")
'141002004003'
"""

from __future__ import annotations

import re

__all__ = ["DIGITS", "code_problem", "parent_of"]

DIGITS = {"city": 6, "district": 6, "street": 9, "community": 12, "grid": 15}
_PARENT_DIGITS = {15: 12, 12: 9, 9: 6}
_ALL_DIGITS = re.compile(r"^[0-9]+$")


def code_problem(code: str | None, level: str, parent: str | None = None) -> str | None:
    """What is wrong with ``code`` at ``level`` (and under ``parent``), or None when it is right."""
    if code is None or code == "":
        return "has no code"
    if not _ALL_DIGITS.match(code):
        return f"code {code!r} is not all digits"
    want = DIGITS.get(level)
    if want is not None and len(code) != want:
        return f"has {len(code)} digits; a {level} code has {want}"
    if level == "city" and not code.endswith("00"):
        return "a city code (GB/T 2260) ends in 00"
    if level == "grid" and code.endswith("000"):
        return "grid serial 000 is not used; serials start at 001"
    if parent and level != "district" and not code.startswith(parent):
        return f"does not start with its parent's code {parent}"
    if parent and level == "district" and code[:4] != parent[:4]:
        return f"district code does not belong to city {parent}"
    return None


def parent_of(code: str) -> str | None:
    """The parent's code read off a code: a grid's first 12 digits are its community's."""
    if level_digits := _PARENT_DIGITS.get(len(code)):
        return code[:level_digits]
    if len(code) == 6 and not code.endswith("00"):
        return code[:4] + "00"
    return None

