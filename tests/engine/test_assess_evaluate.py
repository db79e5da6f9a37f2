"""engine.assess.evaluate_map: every figure against a plain per-pixel loop (tests/engine/assess_files.py),
on the map's own grid, on another CRS and resolution, against polygons, with empty classes and with
references that leave nothing to assess."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from assess_files import plain_assessment, write_class_raster, write_label_raster, write_polygons
from osgeo import gdal, ogr, osr

from engine.assess import evaluate_map
from engine.assess.pixel_area import row_areas
from engine.errors import UserError

NAMES = ["building", "road", "water", "tree"]  # "tree" is mapped nowhere and absent from the reference
UTM_2M = (500000.0, 2.0, 0.0, 5650000.0, 0.0, -2.0)


def compare(report, expected, names):
    assert report["classes"] == names
    assert report["confusion_matrix"] == expected["confusion"]
    for name in names:
        for key in ("iou", "precision", "recall", "f1"):
            got, want = report["per_class"][name][key], expected["per_class"][name][key]
            assert (got is None) == (want is None), (name, key)
            if want is not None:
                assert got == pytest.approx(want, abs=1e-12), (name, key)
    for key, want in (("overall_accuracy", "oa"), ("kappa", "kappa"), ("miou", "miou"), ("mf1", "mf1")):
        assert report[key] == pytest.approx(expected[want], abs=1e-12), key


@pytest.fixture()
def same_grid(tmp_path):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, (30, 40))  # 0 = unclassified, 1 building, 2 road; water never mapped
    codes = rng.choice([0, 1, 2, 3, 5, 9, 255], (30, 40), p=[0.1, 0.25, 0.25, 0.15, 0.1, 0.05, 0.1])
    prediction = write_class_raster(
        tmp_path / "map.tif", labels, NAMES, gt=UTM_2M, synonyms={"road": ["street"]}
    )
    # Category names: 1 by name (other case), 2 by the map's synonym, 3 by name, 5 matches nothing.
    names = ["", "BUILDING", "Street", "Water", "", "shadow"]
    reference = write_label_raster(
        tmp_path / "ref.tif", codes.astype(np.uint8), gt=UTM_2M, epsg=32632, nodata=0, names=names
    )
    return prediction, reference, labels, codes


def test_same_grid_by_name_with_synonyms_ignored_and_unmatched_codes(tmp_path, same_grid):
    prediction, reference, labels, codes = same_grid
    report = evaluate_map(
        prediction,
        reference,
        ignore=[255],
        report=str(tmp_path / "r.json"),
        csv=str(tmp_path / "cm.csv"),
        plot=str(tmp_path / "cm.png"),
    )
    by_code = {1: "building", 2: "road", 3: "water"}
    pairs, unmatched, ignored = [], {}, 0
    for r in range(labels.shape[0]):
        for c in range(labels.shape[1]):
            code = int(codes[r, c])
            if code == 0:
                continue
            if code == 255:
                ignored += 1
                continue
            if code not in by_code:
                unmatched[str(code)] = unmatched.get(str(code), 0) + 1
                continue
            mapped = "unclassified" if labels[r, c] == 0 else NAMES[labels[r, c] - 1]
            pairs.append((by_code[code], mapped))
    names = [*NAMES, "unclassified"]
    expected = plain_assessment(pairs, names)
    compare(report, expected, names)
    assert report["per_class"]["tree"]["iou"] is None  # empty class: undefined, outside the mean
    assert report["unmatched_reference_codes"] == unmatched
    assert report["not_assessed_pixels"]["ignored_reference_codes"] == ignored
    assert report["not_assessed_pixels"]["no_reference"] == int((codes == 0).sum())
    assert report["mapping"]["how"] == "by name"
    assert report["inputs"]["reference"]["sha256"] and report["inputs"]["prediction"]["sha256"]
    # Olofsson's area estimate of "road" by a plain sum over the strata (2 m pixels: 4 m² each).
    mapped = {n: 0 for n in names}
    for value in labels.ravel():
        mapped["unclassified" if value == 0 else NAMES[value - 1]] += 1
    sampled = [n for n in names if any(m == n for _, m in pairs)]
    total_ha = sum(mapped[n] for n in sampled) * 4 / 10_000
    area = 0.0
    for stratum in sampled:
        in_stratum = [r for r, m in pairs if m == stratum]
        share = sum(r == "road" for r in in_stratum) / len(in_stratum)
        area += mapped[stratum] * 4 / 10_000 / total_ha * share
    estimates = report["area_estimates"]
    assert estimates["unit"] == "ha"
    assert estimates["per_class"]["road"]["area"]["estimate"] == pytest.approx(area * total_ha)
    assert estimates["per_class"]["road"]["mapped_area"] == pytest.approx(mapped["road"] * 4 / 10_000)
    assert "water" in estimates["unsampled_strata"]
    # The files: the JSON is the report, the CSV the matrix, the PNG a PNG.
    assert json.loads((tmp_path / "r.json").read_text())["confusion_matrix"] == report["confusion_matrix"]
    rows = (tmp_path / "cm.csv").read_text().splitlines()
    assert rows[0].split(",")[1:-1] == names
    assert [int(v) for v in rows[1].split(",")[1:-1]] == expected["confusion"][0]
    assert (tmp_path / "cm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p.name for p in tmp_path.iterdir() if "partial" in p.name]


def test_all_ignored_reference_leaves_figures_undefined(tmp_path, same_grid):
    prediction, _, labels, _ = same_grid
    reference = write_label_raster(
        tmp_path / "all255.tif", np.full(labels.shape, 255, np.uint8), gt=UTM_2M, epsg=32632
    )
    report = evaluate_map(prediction, reference, ignore=[255], report=str(tmp_path / "r.json"))
    assert report["assessed_pixels"] == 0
    assert report["overall_accuracy"] is None and report["kappa"] is None
    assert report["miou"] is None and report["mf1"] is None
    assert all(report["per_class"][n]["iou"] is None for n in report["classes"])
    assert report["not_assessed_pixels"]["ignored_reference_codes"] == labels.size
    assert json.loads((tmp_path / "r.json").read_text())["assessed_pixels"] == 0


def test_mapping_by_codes_and_names(tmp_path, same_grid):
    prediction, reference, labels, codes = same_grid
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps({"building": [1, 5], "road": "street", "unclassified": [9]}))
    report = evaluate_map(prediction, reference, mapping=str(mapping), ignore=[255])
    # Codes the mapping leaves out still match by name (3 "Water"); 9 has no name and is mapped.
    target = {1: "building", 5: "building", 2: "road", 3: "water", 9: "unclassified"}
    pairs = [
        (target[int(code)], "unclassified" if value == 0 else NAMES[value - 1])
        for code, value in zip(codes.ravel(), labels.ravel())
        if int(code) in target
    ]
    names = [*NAMES, "unclassified"]
    compare(report, plain_assessment(pairs, names), names)
    assert report["unmatched_reference_codes"] == {}
    assert report["mapping"]["how"] == "mapping, then by name"
    with pytest.raises(UserError, match="not a class of the map"):
        evaluate_map(prediction, reference, mapping={"house": [1]})


def test_reference_in_another_crs_and_resolution(tmp_path):
    rng = np.random.default_rng(5)
    labels = rng.integers(1, 4, (24, 32))
    prediction = write_class_raster(tmp_path / "map.tif", labels, NAMES[:3], gt=UTM_2M)
    # Geographic reference, ~2.9 m × 3.3 m pixels, corner off the map's pixel edges, codes = map values.
    lon0, lat0, dlon, dlat = 9.00013, 51.00151, 4.1e-5, -3.0e-5
    ref_codes = rng.integers(1, 4, (40, 40)).astype(np.uint8)
    ref_gt = (lon0, dlon, 0.0, lat0, 0.0, dlat)
    reference = write_label_raster(tmp_path / "ref_wgs84.tif", ref_codes, gt=ref_gt, epsg=4326)
    report = evaluate_map(prediction, reference)
    utm, wgs84 = osr.SpatialReference(), osr.SpatialReference()
    utm.ImportFromEPSG(32632)
    wgs84.ImportFromEPSG(4326)
    wgs84.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    to_geo = osr.CoordinateTransformation(utm, wgs84)
    pairs = []
    for r in range(labels.shape[0]):
        for c in range(labels.shape[1]):
            x, y = UTM_2M[0] + (c + 0.5) * UTM_2M[1], UTM_2M[3] + (r + 0.5) * UTM_2M[5]
            lon, lat, _ = to_geo.TransformPoint(x, y)
            col, row = math.floor((lon - lon0) / dlon), math.floor((lat - lat0) / dlat)
            if 0 <= row < 40 and 0 <= col < 40:
                pairs.append((NAMES[ref_codes[row, col] - 1], NAMES[labels[r, c] - 1]))
    assert 0 < len(pairs) < labels.size  # the reference covers part of the map
    compare(report, plain_assessment(pairs, NAMES[:3]), NAMES[:3])
    assert report["mapping"]["how"] == "by value"
    assert report["inputs"]["reference"]["onto_map_grid"] == "warped (nearest)"
    assert report["not_assessed_pixels"]["no_reference"] == labels.size - len(pairs)


def triangle(x0, y0, *corners):
    """WKT of a triangle given as (east, south) offsets in metres from (x0, y0)."""
    points = [f"{x0 + dx} {y0 - dy}" for dx, dy in [*corners, corners[0]]]
    return f"POLYGON(({','.join(points)}))"


def test_polygon_reference_outside_polygons_not_assessed(tmp_path):
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 4, (20, 25))
    prediction = write_class_raster(tmp_path / "map.tif", labels, NAMES[:3], gt=UTM_2M)
    x0, y0 = UTM_2M[0], UTM_2M[3]
    polygons = [
        (
            triangle(x0, y0, (3.3, 2.7), (31.1, 4.9), (17.7, 27.3)),
            "Building",
        ),
        (
            f"POLYGON(({x0 + 30.3} {y0 - 20.1},{x0 + 47.9} {y0 - 20.1},{x0 + 47.9} {y0 - 37.9},"
            f"{x0 + 30.3} {y0 - 37.9},{x0 + 30.3} {y0 - 20.1}))",
            "water",
        ),
        (
            triangle(x0, y0, (2.1, 30.9), (20.9, 30.1), (12.2, 39.3)),
            "parking",
        ),
    ]
    reference = write_polygons(tmp_path / "ref.geojson", polygons, epsg=32632)
    report = evaluate_map(prediction, reference, mapping={"road": ["parking"]}, reference_field="landcover")
    shapes = [(ogr.CreateGeometryFromWkt(wkt), value) for wkt, value in polygons]
    to_class = {"Building": "building", "water": "water", "parking": "road"}
    pairs = []
    for r in range(labels.shape[0]):
        for c in range(labels.shape[1]):
            centre = ogr.Geometry(ogr.wkbPoint)
            centre.AddPoint_2D(x0 + (c + 0.5) * 2.0, y0 - (r + 0.5) * 2.0)
            inside = [value for shape, value in shapes if shape.Contains(centre)]
            if inside:
                mapped = "unclassified" if labels[r, c] == 0 else NAMES[labels[r, c] - 1]
                pairs.append((to_class[inside[-1]], mapped))
    names = [*NAMES[:3], "unclassified"]
    compare(report, plain_assessment(pairs, names), names)
    assert report["inputs"]["reference"]["kind"] == "polygons"
    assert report["not_assessed_pixels"]["no_reference"] == labels.size - len(pairs)
    # Without the mapping, "parking" matches no class: counted, not assessed.
    plain = evaluate_map(prediction, reference)
    assert sum(plain["unmatched_reference_codes"].values()) == sum(r == "road" for r, _ in pairs)
    assert list(plain["unmatched_reference_names"].values()) == ["parking"]
    # The same polygons in degrees are reprojected onto the map's grid: the same pixels, to a hair.
    gdal.VectorTranslate(str(tmp_path / "ref4326.gpkg"), reference, dstSRS="EPSG:4326", format="GPKG")
    degrees = evaluate_map(prediction, str(tmp_path / "ref4326.gpkg"), mapping={"road": ["parking"]})
    assert abs(degrees["assessed_pixels"] - report["assessed_pixels"]) <= 2


def test_outputs_never_replace_an_input(tmp_path, same_grid):
    prediction, reference, _, _ = same_grid
    with pytest.raises(UserError, match="over"):
        evaluate_map(prediction, reference, report=reference)
    with pytest.raises(UserError, match="same file"):
        evaluate_map(prediction, reference, report=str(tmp_path / "a.json"), csv=str(tmp_path / "a.json"))
    with pytest.raises(UserError, match="does not exist"):
        evaluate_map(prediction, reference, report=str(tmp_path / "missing" / "a.json"))


def test_geographic_pixel_area_matches_an_equal_area_projection():
    """Row areas on the WGS 84 ellipsoid against the planar area of the same cell, densified, in a
    Lambert azimuthal equal-area projection centred on it (an independent route to the same area)."""
    wgs84 = osr.SpatialReference()
    wgs84.ImportFromEPSG(4326)
    wgs84.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    gt = (10.0, 0.01, 0.0, 60.0, 0.0, -0.01)
    areas = row_areas(gt, wgs84.ExportToWkt(), 0, 3000)
    for row in (0, 1500, 2999):
        top, bottom = 60.0 - row * 0.01, 60.0 - (row + 1) * 0.01
        laea = osr.SpatialReference()
        laea.ImportFromProj4(f"+proj=laea +lat_0={(top + bottom) / 2} +lon_0=10.005 +ellps=WGS84 +units=m")
        laea.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        ring = ogr.Geometry(ogr.wkbLinearRing)
        steps = 50
        edge = [(10.0 + 0.01 * i / steps, top) for i in range(steps)]
        edge += [(10.01, top - 0.01 * i / steps) for i in range(steps)]
        edge += [(10.01 - 0.01 * i / steps, bottom) for i in range(steps)]
        edge += [(10.0, bottom + 0.01 * i / steps) for i in range(steps)]
        for lon, lat in [*edge, edge[0]]:
            ring.AddPoint_2D(lon, lat)
        cell = ogr.Geometry(ogr.wkbPolygon)
        cell.AddGeometry(ring)
        cell.Transform(osr.CoordinateTransformation(wgs84, laea))
        assert areas[row] == pytest.approx(cell.GetArea(), rel=1e-6)
    # Projected grids: one area for every row, |dx·dy| in the CRS unit squared.
    utm = osr.SpatialReference()
    utm.ImportFromEPSG(32632)
    assert row_areas(UTM_2M, utm.ExportToWkt(), 5, 2).tolist() == [4.0, 4.0]
    assert row_areas(None, "", 0, 2) is None


def test_bbox_limits_the_assessment_and_cancel_leaves_no_file(tmp_path):
    from engine.errors import Cancelled
    from engine.pipeline.progress import CancelToken

    rng = np.random.default_rng(13)
    labels = rng.integers(1, 3, (40, 1100))  # two blocks wide
    codes = rng.integers(1, 3, (40, 1100)).astype(np.uint8)
    prediction = write_class_raster(tmp_path / "map.tif", labels, NAMES[:2], gt=UTM_2M)
    reference = write_label_raster(tmp_path / "ref.tif", codes, gt=UTM_2M, epsg=32632)
    # Columns 10..29, rows 5..14 of the map (2 m pixels).
    bbox = [UTM_2M[0] + 20, UTM_2M[3] - 30, UTM_2M[0] + 60, UTM_2M[3] - 10]
    report = evaluate_map(prediction, reference, bbox=bbox)
    window = [(NAMES[codes[r, c] - 1], NAMES[labels[r, c] - 1]) for r in range(5, 15) for c in range(10, 30)]
    compare(report, plain_assessment(window, NAMES[:2]), NAMES[:2])
    assert report["area_estimates"]["mapped_pixels_total"] == 200
    token = CancelToken()

    def cancel_in_first_block(event):
        if event.stage == "assess":
            token.cancel()

    with pytest.raises(Cancelled):
        evaluate_map(
            prediction,
            reference,
            report=str(tmp_path / "r.json"),
            progress=cancel_in_first_block,
            cancel=token,
        )
    assert not (tmp_path / "r.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.json", "map.tif", "map.tif.aux.xml", "ref.tif"]


def test_integer_class_attribute_and_pixel_space_rasters(tmp_path):
    rng = np.random.default_rng(17)
    labels = rng.integers(1, 3, (12, 16))
    prediction = write_class_raster(tmp_path / "map.tif", labels, NAMES[:2], gt=UTM_2M)
    x0, y0 = UTM_2M[0], UTM_2M[3]
    driver = ogr.GetDriverByName("GPKG")
    source = driver.CreateDataSource(str(tmp_path / "codes.gpkg"))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32632)
    layer = source.CreateLayer("codes", srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("code", ogr.OFTInteger))
    feature = ogr.Feature(layer.GetLayerDefn())
    feature.SetField("code", 7)
    feature.SetGeometry(ogr.CreateGeometryFromWkt(triangle(x0, y0, (1.1, 1.3), (30.7, 2.2), (9.9, 22.8))))
    layer.CreateFeature(feature)
    source = None
    report = evaluate_map(
        prediction, str(tmp_path / "codes.gpkg"), reference_field="code", mapping={"road": 7}
    )
    shape = ogr.CreateGeometryFromWkt(triangle(x0, y0, (1.1, 1.3), (30.7, 2.2), (9.9, 22.8)))
    pairs = []
    for r in range(12):
        for c in range(16):
            centre = ogr.Geometry(ogr.wkbPoint)
            centre.AddPoint_2D(x0 + (c + 0.5) * 2.0, y0 - (r + 0.5) * 2.0)
            if shape.Contains(centre):
                pairs.append(("road", NAMES[labels[r, c] - 1]))
    compare(report, plain_assessment(pairs, NAMES[:2]), NAMES[:2])
    # Neither raster georeferenced, same size: compared pixel for pixel, areas in pixels.
    plain_map = write_class_raster(tmp_path / "plain.tif", labels, NAMES[:2], gt=None)
    codes = rng.integers(1, 3, (12, 16)).astype(np.uint8)
    plain_ref = write_label_raster(tmp_path / "plain_ref.tif", codes, gt=None, epsg=0)
    plain = evaluate_map(plain_map, plain_ref)
    pairs = [(NAMES[a - 1], NAMES[b - 1]) for a, b in zip(codes.ravel(), labels.ravel())]
    compare(plain, plain_assessment(pairs, NAMES[:2]), NAMES[:2])
    assert plain["area_estimates"]["unit"] == "pixels" and plain["confusion_matrix_ha"] is None
    assert plain["inputs"]["reference"]["onto_map_grid"] == "same grid"
