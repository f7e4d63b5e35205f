"""Reading the layers planners have, and refusing what cannot be used with one clear line."""

from __future__ import annotations

import shutil
import zipfile

import geopandas as gpd
import numpy as np
import pytest
import shapely
from shapely.geometry import Point, box

from gridmap import errors
from gridmap.io import parse_fields, read_layer

CRS_2326 = "EPSG:2326"


def small_layer(crs="EPSG:4326"):
    cells = [box(111.50 + 0.01 * i, 36.05, 111.51 + 0.01 * i, 36.06) for i in range(3)]
    return gpd.GeoDataFrame(
        {"GRID_ID": ["141002004003001", "141002004003002", "141002004003003"],
         "NAME": ["一", "二", "三"], "HH": [180, 210, 199]},
        geometry=cells, crs=crs,
    )


@pytest.mark.parametrize("suffix,driver", [(".geojson", "GeoJSON"), (".gpkg", "GPKG"),
                                           (".shp", "ESRI Shapefile"), (".fgb", "FlatGeobuf")])
def test_reads_common_formats_with_field_mapping(tmp_path, suffix, driver):
    path = tmp_path / f"grids{suffix}"
    small_layer().to_file(path, driver=driver)
    layer = read_layer(path, fields=parse_fields(["code=GRID_ID", "households=HH"]))
    layer = layer.sort_values("code")  # FlatGeobuf's spatial index may reorder features
    assert list(layer["code"]) == ["141002004003001", "141002004003002", "141002004003003"]
    assert list(layer["name"]) == ["一", "二", "三"]  # NAME found as ours without mapping
    assert list(layer["households"]) == [180, 210, 199]
    assert layer.crs.to_epsg() == 4326


def test_shapefile_field_names_cut_to_ten_characters_are_ours(tmp_path):
    frame = small_layer().rename(columns={"GRID_ID": "code"})
    frame["parent_code"] = "141002004003"
    with pytest.warns(RuntimeWarning, match="parent_cod"):
        frame.to_file(tmp_path / "grids.shp")
    assert "parent_cod" in gpd.read_file(tmp_path / "grids.shp").columns  # what the .dbf keeps
    layer = read_layer(tmp_path / "grids.shp")
    assert list(layer["parent_code"]) == ["141002004003"] * 3
    assert "parent_cod" not in layer.columns


def test_geopackage_layer_must_be_chosen_when_several(tmp_path):
    path = tmp_path / "two.gpkg"
    small_layer().to_file(path, layer="grid")
    small_layer().to_file(path, layer="community")
    with pytest.raises(errors.LayerNotFound, match="choose one with --layer"):
        read_layer(path)
    with pytest.raises(errors.LayerNotFound, match="no layer 'street'.*grid"):
        read_layer(path, layer="street")
    assert len(read_layer(path, layer="grid")) == 3


def test_geoparquet_and_csv(tmp_path):
    frame = small_layer()
    frame.to_parquet(tmp_path / "g.parquet")
    assert len(read_layer(tmp_path / "g.parquet")) == 3
    table = frame.drop(columns="geometry").assign(wkt=frame.geometry.to_wkt())
    table.to_csv(tmp_path / "wkt.csv", index=False)
    layer = read_layer(tmp_path / "wkt.csv", crs="wgs84", fields={"code": "GRID_ID"})
    assert layer.geometry.iloc[0].equals(frame.geometry.iloc[0])
    assert layer["code"].iloc[0] == "141002004003001"  # a long code stays text
    points = frame.drop(columns="geometry").assign(lon=[111.5, 111.6, 111.7], lat=36.05)
    points.to_csv(tmp_path / "pts.csv", index=False)
    layer = read_layer(tmp_path / "pts.csv", crs="wgs84", geometry="point")
    assert layer.geometry.iloc[1].equals(Point(111.6, 36.05))
    with pytest.raises(errors.CRSMissing, match="CSV file has no CRS"):
        read_layer(tmp_path / "pts.csv", geometry="point")


def test_csv_with_bad_numbers_names_the_row(tmp_path):
    (tmp_path / "p.csv").write_text("lon,lat\n111.5,36.0\nabc,36.1\n")
    with pytest.raises(errors.FileUnreadable, match="row 3"):
        read_layer(tmp_path / "p.csv", crs="wgs84", geometry="point")


def test_zipped_shapefile_with_macosx_entries(data):
    layer = read_layer(data("ri_precincts/RI_precincts.zip"))
    assert len(layer) == 419 and layer.crs.to_epsg() == 4269


def test_shapefile_without_prj_and_shx_needs_a_crs(tmp_path, data):
    source = data("hongkong_dcca_2001")
    for name in ("dcca.shp", "dcca.dbf"):
        shutil.copy(source / name, tmp_path / name)
    with pytest.raises(errors.CRSMissing, match="--crs"):
        read_layer(tmp_path / "dcca.shp")
    layer = read_layer(tmp_path / "dcca.shp", crs=CRS_2326)
    assert len(layer) == 390
    assert layer["DCCA_CHIN"].str.contains("灣").any()  # Big5 decoded


def test_legacy_encoding_can_be_given(tmp_path):
    frame = small_layer()
    frame.to_file(tmp_path / "gbk.shp", encoding="gb18030")
    (tmp_path / "gbk.cpg").unlink(missing_ok=True)
    layer = read_layer(tmp_path / "gbk.shp", encoding="gb18030")
    assert list(layer["name"]) == ["一", "二", "三"]
    with pytest.raises(errors.FileUnreadable, match="unknown encoding"):
        read_layer(tmp_path / "gbk.shp", encoding="no-such-codec")


def test_gcj02_layer_is_converted_to_wgs84(tmp_path):
    small_layer().to_file(tmp_path / "amap.geojson")
    plain = read_layer(tmp_path / "amap.geojson")
    shifted = read_layer(tmp_path / "amap.geojson", crs="gcj02")
    dx = shapely.get_coordinates(shifted.geometry.values) - shapely.get_coordinates(plain.geometry.values)
    # GCJ-02 lies a few hundred metres north-east of WGS84 around Linfen: WGS84 = GCJ-02 minus that.
    assert np.all(dx[:, 0] < -0.001) and np.all(np.abs(dx) < 0.01)
    assert shifted.crs.to_epsg() == 4326


@pytest.mark.parametrize("make,error,words", [
    (lambda p: p.write_text("not a shapefile"), errors.FileUnreadable, "cannot be read|not a readable"),
    (lambda p: None, errors.FileUnreadable, "no such file"),
])
def test_unreadable_files(tmp_path, make, error, words):
    path = tmp_path / "broken.geojson"
    make(path)
    with pytest.raises(error, match=words):
        read_layer(path)


def test_broken_zip(tmp_path):
    (tmp_path / "x.zip").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(errors.FileUnreadable, match="zip"):
        read_layer(tmp_path / "x.zip")
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as z:
        z.writestr("readme.txt", "nothing here")
    with pytest.raises(errors.FileUnreadable, match="no shapefile"):
        read_layer(tmp_path / "empty.zip")


def test_wrong_field_name_lists_the_fields(tmp_path):
    small_layer().to_file(tmp_path / "g.gpkg")
    with pytest.raises(errors.FieldMissing, match="no field 'GRID'.*GRID_ID"):
        read_layer(tmp_path / "g.gpkg", fields={"code": "GRID"})
    with pytest.raises(errors.FieldMissing, match="ours=theirs"):
        parse_fields(["code"])
    with pytest.raises(errors.FieldMissing, match="not one of ours"):
        parse_fields(["colour=RED"])


def test_swapped_axes_and_projected_coordinates_are_refused(tmp_path):
    swapped = small_layer()
    swapped["geometry"] = shapely.transform(swapped.geometry.values, lambda xy: xy[:, ::-1])
    swapped.to_file(tmp_path / "swapped.geojson")
    with pytest.raises(errors.CoordinatesOutOfRange, match="swapped"):
        read_layer(tmp_path / "swapped.geojson")
    metres = small_layer().to_crs(CRS_2326).set_crs("EPSG:4326", allow_override=True)
    metres.to_file(tmp_path / "metres.gpkg")
    with pytest.raises(errors.CoordinatesOutOfRange, match="projected"):
        read_layer(tmp_path / "metres.gpkg")
    degrees = small_layer().set_crs(CRS_2326, allow_override=True)
    degrees.to_file(tmp_path / "degrees.gpkg")
    with pytest.raises(errors.CoordinatesOutOfRange, match="look like lon/lat"):
        read_layer(tmp_path / "degrees.gpkg")


def test_empty_layer_and_non_polygons(tmp_path):
    small_layer().iloc[:0].to_file(tmp_path / "empty.gpkg")
    with pytest.raises(errors.EmptyLayer):
        read_layer(tmp_path / "empty.gpkg")
    lines = small_layer()
    lines["geometry"] = lines.boundary
    lines.to_file(tmp_path / "lines.gpkg")
    with pytest.raises(errors.NotPolygons, match="LineString"):
        read_layer(tmp_path / "lines.gpkg", fields={"code": "GRID_ID"})
