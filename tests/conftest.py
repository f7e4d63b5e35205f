"""Shared fixtures: the real data sets in ../shared/data, and what to do when they are absent.

Tests that need the real data skip on a developer's machine without it, but CI (CI=true) has it,
so there a missing data set is a failure, never a silent skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
IN_CI = os.environ.get("CI", "").lower() == "true"


def need(relative: str) -> Path:
    """The path of a real data file, skipping the test (failing it in CI) when it is absent."""
    path = DATA / relative
    if not path.exists():
        if IN_CI:
            pytest.fail(f"{path} is missing in CI: the real data must be there")
        pytest.skip(f"{path} is not here")
    return path


@pytest.fixture
def data():
    return need
