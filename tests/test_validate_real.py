"""Acceptance on real third-party data (../shared/data): the figures each data set is known for."""

from __future__ import annotations

import pandas as pd
import pytest

from gridmap.config import ValidationOptions
from gridmap.io import read_layer
from gridmap.validate import validate_coverage

NO_CODES = ValidationOptions(check_codes=False)


def errors_of(report, kind):
    return [p for p in report.problems if p.type == kind and p.severity == "error"]


def all_of(report, kind):
    return [p for p in report.problems if p.type == kind]


def test_providence_blocks_tile_their_wards(data):
    blocks = read_layer(data("providence_blocks/Providence_blocks.zip"),
                        fields={"code": "GEOID10", "parent_code": "WARD"})
    wards = blocks.dissolve("parent_code").reset_index()[["parent_code", "geometry"]]
    wards = wards.rename(columns={"parent_code": "code"})
    report = validate_coverage(blocks, parents=wards, options=NO_CODES)
    assert report.counts["grids"] == 3014
    assert len(wards) == 15
    assert report.clean and report.problems == []


def test_providence_block_moved_to_wrong_ward_is_outside_and_leaves_a_gap(data):
    blocks = read_layer(data("providence_blocks/Providence_blocks.zip"),
                        fields={"code": "GEOID10", "parent_code": "WARD"})
    wards = blocks.dissolve("parent_code").reset_index()[["parent_code", "geometry"]]
    wards = wards.rename(columns={"parent_code": "code"})
    victim = blocks.to_crs(blocks.estimate_utm_crs()).area.idxmax()
    home = blocks.at[victim, "parent_code"]
    blocks.at[victim, "parent_code"] = "1" if home != "1" else "2"
    report = validate_coverage(blocks, parents=wards, options=NO_CODES)
    outside = errors_of(report, "outside_parent")
    gaps = errors_of(report, "gap")
    assert [p.codes[0] for p in outside] == [blocks.at[victim, "code"]]
    assert [p.codes[0] for p in gaps] == [home]
    assert gaps[0].area_m2 == pytest.approx(outside[0].area_m2, rel=1e-6)


def test_ri_precincts_overlaps_and_holes_are_measured(data):
    precincts = read_layer(data("ri_precincts/RI_precincts.zip"), fields={"code": "NAME"})
    # Every hole, down to the last mm², as SOURCES.md counted them: no noise floor.
    report = validate_coverage(precincts, options=ValidationOptions(check_codes=False, noise_area=0))
    overlaps = all_of(report, "overlap")
    # SOURCES.md: 9 overlapping pairs of 1 m² or more, 75.7 m² in all, the largest 29.7 m².
    assert len([p for p in overlaps if p.area_m2 >= 1.0]) == 9
    assert sum(p.area_m2 for p in overlaps) == pytest.approx(75.7, abs=0.2)
    assert max(p.area_m2 for p in overlaps) == pytest.approx(29.7, abs=0.05)
    assert all(len(p.codes) == 2 and p.geometry is not None for p in overlaps)
    # 501 holes in the union, 18 of them over 100 m², about 0.22 km² in all.
    gaps = all_of(report, "gap")
    real = [p for p in gaps if p.severity == "error"]
    slivers = [p for p in gaps if p.severity == "warning"]
    n_slivers = int(slivers[0].message.split()[0]) if slivers else 0
    assert len(real) + n_slivers == 501
    assert len([p for p in real if p.area_m2 > 100]) == 18
    assert sum(p.area_m2 for p in gaps) == pytest.approx(0.22e6, rel=0.01)
    assert not report.clean
    # By default, specks under 0.01 m² are float noise and left out; everything else stays.
    default = validate_coverage(precincts, options=NO_CODES)
    assert len([p for p in all_of(default, "overlap") if p.area_m2 >= 1.0]) == 9
    assert default.by_type("error") == report.by_type("error")


def test_hongkong_is_clean_within_a_metre_but_for_two_bad_rings(data):
    dcca = read_layer(data("hongkong_dcca_2001/dcca.shp"), crs="EPSG:2326",
                      fields={"code": "DCCA", "name": "DCCA_CHIN"})
    assert "中" in "".join(dcca["name"].dropna())  # the Big5 .dbf decoded, not mojibake
    opts = ValidationOptions(check_codes=False, gap_width=1.0, noise_area=0)
    report = validate_coverage(dcca, options=opts)
    assert report.by_type("error") == {"invalid_geometry": 2}
    assert all("Self-intersection" in p.message for p in errors_of(report, "invalid_geometry"))
    overlaps = all_of(report, "overlap")
    assert sum(p.area_m2 for p in overlaps) == pytest.approx(0.7, abs=0.1)
    assert report.by_type("warning")["unshared_edge"] > 300


def test_shanghai_streets_overlaps(data):
    streets = read_layer(data("shanghai_streets/shanghai_street.shp"), crs="wgs84")
    report = validate_coverage(streets, options=NO_CODES)
    overlaps = all_of(report, "overlap")
    # SOURCES.md: 84 overlapping pairs, 26.6 km² in all, the largest 7.1 km².
    assert len([p for p in overlaps if p.area_m2 >= 1.0]) == 84
    assert sum(p.area_m2 for p in overlaps) / 1e6 == pytest.approx(26.6, abs=0.05)
    assert max(p.area_m2 for p in overlaps) / 1e6 == pytest.approx(7.1, abs=0.05)
    assert not report.clean


def _districts(data, crs):
    folder = data("shanghai_districts_amap")
    parts = []
    for path in sorted(folder.glob("3101*.geojson")):
        if path.stem == "310100":
            continue
        layer = read_layer(path, crs=crs)
        layer["code"], layer["parent_code"] = path.stem, "310100"
        parts.append(layer)
    city = read_layer(folder / "310100.geojson", crs=crs)
    city["code"] = "310100"
    return pd.concat(parts, ignore_index=True), city


def test_shanghai_districts_read_as_gcj02_tile_the_city(data):
    districts, city = _districts(data, "gcj02")
    assert len(districts) == 16
    report = validate_coverage(districts, parents=city, level="district")
    assert report.clean and report.problems == []
    area = districts.to_crs(districts.estimate_utm_crs()).area.sum()
    assert area / 1e6 == pytest.approx(8002, rel=0.01)


def test_shanghai_districts_converted_from_gcj02_moved_hundreds_of_metres(data):
    as_is, _ = _districts(data, "wgs84")
    shifted, _ = _districts(data, "gcj02")
    utm = as_is.estimate_utm_crs()
    offset = as_is.to_crs(utm).centroid.distance(shifted.to_crs(utm).centroid)
    assert offset.between(300, 800).all()
