"""Reader (bands, masks, row/column sampling), stretch, writer (legend, atomic files)."""

from __future__ import annotations

import numpy as np
import pytest
from osgeo import gdal

from engine.errors import UserError
from engine.raster.grid import OutputGrid, PixelWindow
from engine.raster.reader import RasterSource, parse_bands
from engine.raster.stretch import compute_stretch
from engine.raster.writer import AtomicFiles, ClassRasterWriter, category_names, check_output_path
from engine.vocabulary import build_vocabulary

gdal.UseExceptions()


def make(path, bands=4, dtype=gdal.GDT_Byte, nodata=None, interp=None):
    ds = gdal.GetDriverByName("GTiff").Create(str(path), 30, 20, bands, dtype)
    for i in range(bands):
        band = ds.GetRasterBand(i + 1)
        band.WriteArray(np.full((20, 30), 10 * (i + 1)) + np.arange(30)[None, :])
        if nodata is not None:
            band.SetNoDataValue(nodata)
        if interp:
            band.SetColorInterpretation(interp[i])
    ds = None
    return str(path)


def test_band_choice(tmp_path):
    assert RasterSource(make(tmp_path / "a.tif")).bands == (1, 2, 3)
    interp = [gdal.GCI_Undefined, gdal.GCI_BlueBand, gdal.GCI_GreenBand, gdal.GCI_RedBand]
    assert RasterSource(make(tmp_path / "b.tif", interp=interp)).bands == (4, 3, 2)
    assert RasterSource(make(tmp_path / "c.tif"), parse_bands("4,1,2")).bands == (4, 1, 2)
    assert RasterSource(make(tmp_path / "d.tif", bands=1)).bands == (1, 1, 1)
    with pytest.raises(UserError, match=r"band 5 does not exist: .* has 4 bands"):
        RasterSource(make(tmp_path / "e.tif"), (1, 2, 5))
    with pytest.raises(UserError, match="three bands"):
        parse_bands("1,2")


def test_nodata_mask_and_row_column_sampling(tmp_path):
    path = make(tmp_path / "n.tif", bands=3, nodata=15)  # band 1 holds 15 at column 5
    source = RasterSource(path)
    data, valid = source.read(0, 0, 30, 20)
    assert not valid[:, 5].any() and valid[:, [0, 4, 6]].all()
    rows, cols = np.array([1, 2, 3, 9, 10, 19]), np.array([0, 5, 7, 29])
    sampled, sampled_valid = source.read_rows_cols(rows, cols)
    np.testing.assert_array_equal(sampled, data[:, rows][:, :, cols])
    np.testing.assert_array_equal(sampled_valid, valid[rows][:, cols])


def test_stretch_rules(tmp_path):
    source = RasterSource(make(tmp_path / "u8.tif", bands=3))
    stretch = compute_stretch(source, PixelWindow(0, 0, 30, 20))
    assert stretch.identity
    data, valid = source.read(0, 0, 30, 20)
    np.testing.assert_array_equal(stretch.to_uint8(data, valid), data)
    source16 = RasterSource(make(tmp_path / "u16.tif", bands=3, dtype=gdal.GDT_UInt16))
    s16 = compute_stretch(source16, PixelWindow(0, 0, 30, 20))
    data16, valid16 = source16.read(0, 0, 30, 20)
    lo, hi = np.percentile(data16[0].astype(float), [2, 98])
    assert s16.low[0] == pytest.approx(lo) and s16.high[0] == pytest.approx(hi)
    out = s16.to_uint8(data16, valid16)
    expected = np.clip(np.rint((data16[0] - lo) / (hi - lo) * 255), 0, 255)
    np.testing.assert_array_equal(out[0], expected)
    valid16[:, :3] = False
    assert (s16.to_uint8(data16, valid16)[:, :, :3] == np.array(s16.fill)[:, None, None]).all()


def test_writer_legend_and_atomic_commit(tmp_path):
    vocab = build_vocabulary(["building", "road"])
    grid = OutputGrid(PixelWindow(0, 0, 8, 6), (0, 1, 0, 0, 0, -1), "", (1.0, 1.0), True)
    final = tmp_path / "c.tif"
    files = AtomicFiles()
    writer = ClassRasterWriter(files.temporary_for(final), grid, vocab)
    writer.write(np.ones((6, 8), np.uint8) * 2, 0, 0)
    writer.close()
    assert not final.exists()
    files.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.tif", "c.tif.aux.xml"]
    assert list(category_names(final)) == ["unclassified", "building", "road"]
    assert (gdal.Open(str(final)).ReadAsArray() == 2).all()
    files = AtomicFiles()
    writer = ClassRasterWriter(files.temporary_for(tmp_path / "d.tif"), grid, vocab)
    writer.close()
    files.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.tif", "c.tif.aux.xml"]


def test_check_output_path(tmp_path):
    (tmp_path / "x.tif").write_text("")
    with pytest.raises(UserError, match="already exists"):
        check_output_path(tmp_path / "x.tif", overwrite=False)
    assert check_output_path(tmp_path / "x.tif", overwrite=True) == (tmp_path / "x.tif").resolve()
    with pytest.raises(UserError, match="does not exist"):
        check_output_path(tmp_path / "no" / "x.tif", overwrite=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.tif"]  # the write probe is cleaned up
