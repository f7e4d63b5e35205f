"""The command line as users run it: a real subprocess, exit codes, one-line errors, JSON report."""

from __future__ import annotations

import json
import subprocess
import sys

import geopandas as gpd
import pytest
from shapely.geometry import box

GRIDMAP = [sys.executable, "-m", "gridmap.cli"]
ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def run(*args, cwd=None):
    return subprocess.run([*GRIDMAP, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def one_line_error(result):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gridmap: error: ")
    return lines[0]


def test_clean_layer_exits_0(tmp_path):
    cells = [box(111.50 + 0.001 * i, 36.05, 111.501 + 0.001 * i, 36.051) for i in range(3)]
    grids = gpd.GeoDataFrame({"code": [f"141002004003{i + 1:03d}" for i in range(3)],
                              "worker": ["甲", "乙", "丙"], "households": [200, 190, 210]},
                             geometry=cells, crs="EPSG:4326")
    grids.to_file(tmp_path / "g.geojson")
    result = run("validate", tmp_path / "g.geojson")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "clean" in result.stdout and "0 errors" in result.stdout


def test_ri_precincts_json_report_and_geojson(tmp_path, data):
    zipped = data("ri_precincts/RI_precincts.zip")
    out = tmp_path / "problems.geojson"
    result = run("validate", zipped, "--field", "code=NAME", "--no-codes", "--json",
                 "--geojson", out)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    summary = report["summary"]
    assert summary["grids"] == 419 and summary["clean"] is False
    assert summary["problems"]["overlap"] == len([p for p in report["problems"]
                                                  if p["type"] == "overlap"])
    overlap = next(p for p in report["problems"] if p["type"] == "overlap")
    assert set(overlap) >= {"type", "severity", "codes", "area_m2", "geometry", "message"}
    assert overlap["geometry"]["type"] in ("Polygon", "MultiPolygon")
    lon, lat = _first_xy(overlap["geometry"]["coordinates"])
    assert -72 < lon < -71 and 41 < lat < 42.1  # WGS84 lon/lat in Rhode Island
    features = json.loads(out.read_text())["features"]
    assert len(features) == len([p for p in report["problems"] if p["geometry"]])


def _first_xy(coords):
    while isinstance(coords[0], list):
        coords = coords[0]
    return coords


def test_readable_summary_lists_the_largest_problems(data):
    result = run("validate", data("shanghai_streets/shanghai_street.shp"), "--crs", "wgs84",
                 "--no-codes", "--limit", "3")
    assert result.returncode == 1
    assert "251 grids" in result.stdout and "overlap" in result.stdout
    assert "overlap by 7118005" in result.stdout  # the 7.1 km² overlap is shown first


def test_strict_fails_on_warnings(data):
    path = data("hongkong_dcca_2001/dcca.shp")
    result = run("validate", path, "--crs", "EPSG:2326", "--field", "code=DCCA", "--no-codes",
                 "--tolerance", "1", "--json")
    assert result.returncode == 1  # two self-intersecting rings
    summary = json.loads(result.stdout)["summary"]
    assert summary["problems"]["invalid_geometry"] == 2 and summary["errors"] == 2


@pytest.mark.parametrize("args,words", [
    (["validate", "no/such/file.gpkg"], "no such file"),
    (["validate", "{hk}"], "no CRS"),
    (["validate", "{hk}", "--crs", "EPSG:999999"], "CRS"),
    (["validate", "{hk}", "--crs", "wgs84"], "outside lon"),
    (["validate", "{sh}", "--crs", "EPSG:2326"], "look like lon/lat"),
    (["validate", "{ri}", "--field", "code=NOPE"], "no field 'NOPE'"),
    (["validate", "{ri}", "--field", "code"], "ours=theirs"),
    (["validate", "{ri}", "--parents", "{hk}", "--parents-crs", "EPSG:2326"], "do not overlap"),
    (["validate", "{bund}"], "choose one with --layer"),
    (["validate", "{bund}", "--layer", "roads"], "needs polygons"),
    (["validate", "{bund}", "--layer", "nope"], "no layer 'nope'"),
])
def test_unusable_input_is_one_line_and_exit_2(data, args, words):
    paths = {"hk": "hongkong_dcca_2001/dcca.shp", "sh": "shanghai_streets/shanghai_street.shp",
             "ri": "ri_precincts/RI_precincts.zip",
             "bund": "shanghai_bund_osm/shanghai_bund_tilezen_osm.gpkg"}
    filled = [a.format(**{k: data(v) for k, v in paths.items()}) if "{" in a else a for a in args]
    line = one_line_error(run(*filled))
    assert words in line


def test_broken_file_and_negative_tolerance(tmp_path):
    bad = tmp_path / "bad.geojson"
    bad.write_text('{"type": "FeatureCollection", "features": [')
    one_line_error(run("validate", bad))
    result = run("validate", bad, "--tolerance", "-1")
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_help_for_every_command():
    result = run("validate", "--help")
    assert result.returncode == 0 and "--parents" in result.stdout and "--json" in result.stdout


def test_import_publish_and_versions_through_the_cli(tmp_path):
    from gridmap.io import read_layer

    store = tmp_path / "s.gpkg"
    demo = ROOT / "boundaries" / "demo.gpkg"
    for level in ("city", "district", "street", "community", "grid", "building"):
        result = run("import", demo, "--layer", level, "--level", level, "--store", store)
        assert result.returncode == 0, result.stdout + result.stderr
    dry = run("publish", "--store", store)
    assert dry.returncode == 0 and "dry run" in dry.stdout and "2122 added" in dry.stdout.replace(",", "")
    assert run("publish", "--commit", "--store", store).returncode == 0
    grids = read_layer(demo, layer="grid")
    broken = grids.copy()
    broken.loc[broken.index[0], "geometry"] = broken.geometry.iloc[0].buffer(0.005)
    broken.to_file(tmp_path / "broken.gpkg", layer="grid")
    before = store.read_bytes()
    refused = run("import", tmp_path / "broken.gpkg", "--level", "grid", "--store", store)
    assert refused.returncode == 1 and "refused" in refused.stderr and "overlap" in refused.stdout
    assert store.read_bytes() == before  # nothing written
    nothing = run("publish", "--store", store)
    assert nothing.returncode == 2 and "nothing to publish" in nothing.stderr


def test_lookup_one_point_and_a_csv(tmp_path):
    demo = ROOT / "boundaries" / "demo.gpkg"
    hit = run("lookup", demo, "--lon", "111.52", "--lat", "36.08")
    assert hit.returncode == 0
    answer = json.loads(hit.stdout)
    assert answer["grid"]["code"].startswith("141002") and answer["district"]["code"] == "141002"
    miss = run("lookup", demo, "--lon", "110", "--lat", "36.08")
    assert miss.returncode == 1 and json.loads(miss.stdout)["nearest"]
    (tmp_path / "p.csv").write_text("id,lon,lat\na,111.52,36.08\nb,110,36.08\n")
    done = run("lookup", demo, "--points", tmp_path / "p.csv", "-o", tmp_path / "o.csv")
    assert done.returncode == 0, done.stderr
    rows = (tmp_path / "o.csv").read_text().splitlines()
    assert rows[0].startswith("id,lon,lat,grid_code")
    assert rows[1].split(",")[3] == answer["grid"]["code"] and rows[2].split(",")[3] == ""
    assert run("lookup", demo).returncode == 2
