"""The raster pipeline against a slow, obvious re-implementation of SegEarth-OV's inference geometry.

A small context-dependent method stands in for CLIP (every crop's logits depend on its pixels AND on
the crop's mean colour, so averaging overlapping crops matters and a wrong crop grid shows).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from osgeo import gdal, osr
from raster_files import write_raster

from engine.errors import Cancelled
from engine.pipeline.progress import CancelToken
from engine.pipeline.segment import PipelineSettings, SegmentRequest, estimate, prepare, segment
from engine.raster.writer import category_names
from engine.vocabulary import build_vocabulary

gdal.UseExceptions()
CROP, STRIDE = 32, 16


class ContextMethod:
    """logits[q] = W[q]·pixel + V[q]·mean(crop pixels): position-exact and crop-dependent."""

    name = "context-test"

    def __init__(self, crop_size: int = CROP, crop_stride: int = STRIDE, seed: int = 0) -> None:
        self.crop_size, self.crop_stride, self.seed = crop_size, crop_stride, seed
        self.seen_min = 255
        self.calls = 0

    def set_queries(self, queries: list[str]) -> None:
        generator = torch.Generator().manual_seed(self.seed)
        self.w = torch.randn(len(queries), 3, generator=generator, dtype=torch.float64) * 0.2
        self.v = torch.randn(len(queries), 3, generator=generator, dtype=torch.float64) * 0.2

    def crop_logits(self, crops: torch.Tensor) -> torch.Tensor:
        assert crops.dtype == torch.uint8 and crops.shape[1] == 3
        assert crops.shape[2] <= self.crop_size and crops.shape[3] <= self.crop_size
        self.calls += 1
        self.seen_min = min(self.seen_min, int(crops.min()))
        x = crops.double() / 255.0
        mean = x.mean(dim=(2, 3))
        logits = torch.einsum("qc,bchw->bqhw", self.w, x) + (mean @ self.v.T)[:, :, None, None]
        return logits.float()

    def describe(self) -> dict:
        return {"method": self.name, "crop_size": self.crop_size}


def random_image(height, width, seed=0, low=0, high=256):
    rng = np.random.default_rng(seed)
    base = rng.integers(low, high, size=(3, height // 8 + 2, width // 8 + 2)).astype(np.float64)
    # Smooth-ish content (blocks + noise) so neighbouring crops differ but not only by noise.
    image = np.kron(base, np.ones((8, 8)))[:, :height, :width] + rng.normal(0, 10, (3, height, width))
    return np.clip(image, low, high - 1).astype(np.uint8)


# ---------------------------------------------------------------- slow reference


def slow_bilinear(src: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Per-pixel bilinear at half-pixel centres with edge clamping (cv2 INTER_LINEAR's convention)."""
    channels, in_h, in_w = src.shape
    out = np.zeros((channels, out_h, out_w))
    for y in range(out_h):
        sy = min(max((y + 0.5) * in_h / out_h - 0.5, 0.0), in_h - 1)
        y0 = int(np.floor(sy))
        y1, fy = min(y0 + 1, in_h - 1), sy - y0
        for x in range(out_w):
            sx = min(max((x + 0.5) * in_w / out_w - 0.5, 0.0), in_w - 1)
            x0 = int(np.floor(sx))
            x1, fx = min(x0 + 1, in_w - 1), sx - x0
            top = src[:, y0, x0] * (1 - fx) + src[:, y0, x1] * fx
            bottom = src[:, y1, x0] * (1 - fx) + src[:, y1, x1] * fx
            out[:, y, x] = top * (1 - fy) + bottom * fy
    return out


def slow_segment(image, work_h, work_w, method, query_to_class, thresholds, scale=50.0):
    """The reference's inference, written plainly: resize, slide, average, resize back, score."""
    _, height, width = image.shape
    working = np.rint(slow_bilinear(image.astype(np.float64), work_h, work_w)).astype(np.uint8)
    q = len(query_to_class)
    total = np.zeros((q, work_h, work_w))
    count = np.zeros((work_h, work_w))
    rows = max(work_h - CROP + STRIDE - 1, 0) // STRIDE + 1
    cols = max(work_w - CROP + STRIDE - 1, 0) // STRIDE + 1
    for i in range(rows):
        for j in range(cols):
            y2, x2 = min(i * STRIDE + CROP, work_h), min(j * STRIDE + CROP, work_w)
            y1, x1 = max(y2 - CROP, 0), max(x2 - CROP, 0)
            crop = torch.from_numpy(working[None, :, y1:y2, x1:x2].copy())
            total[:, y1:y2, x1:x2] += method.crop_logits(crop)[0].double().numpy()
            count[y1:y2, x1:x2] += 1
    logits = slow_bilinear(total / count, height, width) * scale
    probs = np.exp(logits - logits.max(0))
    probs /= probs.sum(0)
    n_classes = max(query_to_class) + 1
    class_probs = np.stack(
        [probs[[k for k, c in enumerate(query_to_class) if c == ci]].max(0) for ci in range(n_classes)]
    )
    winner = class_probs.argmax(0)
    confidence = class_probs.max(0)
    labels = np.where(confidence < np.asarray(thresholds)[winner], 0, winner + 1)
    return labels, confidence, class_probs


def read(path):
    return gdal.Open(str(path)).ReadAsArray()


# ---------------------------------------------------------------- tests

VOCAB = build_vocabulary(["building,roof", "road", "water,river,lake", "tree"])


def run(tmp_path, src, name, settings, gsd=None, method=None, **request):
    prepared = prepare(
        SegmentRequest(input=src, out=str(tmp_path / f"{name}.tif"), gsd=gsd, **request),
        crop_size=CROP,
        crop_stride=STRIDE,
        settings=settings,
    )
    method = method or ContextMethod()
    try:
        return segment(prepared, VOCAB, method, settings=settings), method
    finally:
        prepared.source.close()


def test_matches_slow_reference_and_is_independent_of_tile_size(tmp_path):
    image = random_image(150, 130, seed=1)
    src = write_raster(tmp_path / "in.tif", image)
    gsd = 0.5 * 1.7  # working grid 88 x 76: several crops each way, non-integer scale
    small, _ = run(
        tmp_path, src, "small", PipelineSettings(tile_working=20, batch_size=2, score_pixels=7 * 20), gsd
    )
    large, _ = run(
        tmp_path, src, "large", PipelineSettings(tile_working=4000, batch_size=64), gsd, confidence=None
    )
    assert small.record["windows"]["tiles"] > 9 and large.record["windows"]["tiles"] == 1
    labels_small, labels_large = read(small.out), read(large.out)
    assert np.array_equal(labels_small, labels_large), "labels depend on the read-tile size (seams)"

    work_h, work_w = small.record["settings"]["working_size"][::-1]
    assert (work_h, work_w) == (round(150 / 1.7), round(130 / 1.7))
    method = ContextMethod()
    method.set_queries(VOCAB.queries())
    ref_labels, _ref_conf, ref_probs = slow_segment(
        image, work_h, work_w, method, VOCAB.query_to_class(), VOCAB.thresholds(0.1)
    )
    # Compare where the decision is not a float tie (top-2 gap and threshold gap above 1e-4).
    top2 = np.sort(ref_probs, axis=0)[-2:]
    decided = (top2[1] - top2[0] > 1e-4) & (np.abs(top2[1] - 0.1) > 1e-4)
    assert decided.mean() > 0.95
    assert np.array_equal(labels_small[decided], ref_labels[decided])
    assert len(np.unique(ref_labels)) >= 3  # the test is not trivially uniform


def test_confidence_matches_reference_and_tiles(tmp_path):
    image = random_image(70, 90, seed=2)
    src = write_raster(tmp_path / "in.tif", image)
    conf_a = tmp_path / "a_conf.tif"
    conf_b = tmp_path / "b_conf.tif"
    run(tmp_path, src, "a", PipelineSettings(tile_working=17, batch_size=1), 0.5, confidence=str(conf_a))
    run(tmp_path, src, "b", PipelineSettings(tile_working=999), 0.5, confidence=str(conf_b))
    # Logits are bit-identical across tile sizes; torch's vectorised softmax may differ by one float32
    # ulp depending on the strip's shape (SIMD tail handling).
    np.testing.assert_allclose(read(conf_a), read(conf_b), rtol=0, atol=3e-7)
    method = ContextMethod()
    method.set_queries(VOCAB.queries())
    _labels, ref_conf, _ = slow_segment(image, 70, 90, method, VOCAB.query_to_class(), VOCAB.thresholds(0.1))
    np.testing.assert_allclose(read(conf_a), ref_conf, atol=2e-5)


def test_outputs_georeferencing_legend_and_sidecar(tmp_path):
    src = write_raster(tmp_path / "in.tif", random_image(60, 80))
    result, _ = run(tmp_path, src, "out", PipelineSettings(), None)
    ds = gdal.Open(result.out)
    assert ds.GetGeoTransform() == (500000.0, 0.5, 0.0, 5650000.0, 0.0, -0.5)
    assert osr.SpatialReference(wkt=ds.GetProjection()).GetAuthorityCode(None) == "25832"
    band = ds.GetRasterBand(1)
    assert band.DataType == gdal.GDT_Byte
    assert ds.GetMetadata("IMAGE_STRUCTURE").get("COMPRESSION") == "DEFLATE"
    assert band.GetBlockSize() == [256, 256]
    table = band.GetRasterColorTable()
    assert table.GetColorEntry(0)[:3] == (0, 0, 0)
    assert table.GetColorEntry(1)[:3] == VOCAB.classes[0].colour
    assert list(category_names(result.out)) == ["unclassified", "building", "road", "water", "tree"]
    record = json.loads((tmp_path / "out.json").read_text())
    assert record["queries"] == VOCAB.queries()
    assert record["vocabulary"][2]["synonyms"] == ["water", "river", "lake"]
    assert record["method"] == {"method": "context-test", "crop_size": CROP}
    assert record["settings"]["working_size"] == [round(80 * 448 / 1000), round(60 * 448 / 1000)]
    for stage in ("statistics", "text", "read", "scoring", "write", "total"):
        assert record["timings_s"][stage] >= 0
    assert record["peak_memory"]["rss_bytes"] > 10_000_000
    assert record["windows"]["crops_evaluated"] >= record["windows"]["unique_crops"] > 0
    assert record["engine"]["version"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "out.json", "out.tif", "out.tif.aux.xml"]


def test_nodata_never_reaches_the_model_and_stays_zero(tmp_path):
    image = random_image(64, 64, seed=3, low=50, high=200)
    image[:, 10:30, 5:40] = 7
    image[:, 50:, 50:] = 7
    src = write_raster(tmp_path / "in.tif", image, nodata=7)
    conf = tmp_path / "c.tif"
    result, method = run(tmp_path, src, "out", PipelineSettings(tile_working=24), 0.5, confidence=str(conf))
    labels = read(result.out)
    nodata = (image == 7).all(axis=0)
    assert (labels[nodata] == 0).all()
    assert (labels[~nodata] > 0).mean() > 0.5
    assert (read(conf)[nodata] == -1).all()
    assert method.seen_min >= 50, "a nodata value was fed to the model"


def test_all_nodata_tiles_skip_the_model(tmp_path):
    image = random_image(64, 64)
    image[:] = 0
    src = write_raster(tmp_path / "in.tif", image, nodata=0)
    result, method = run(tmp_path, src, "out", PipelineSettings(tile_working=16), 0.5)
    assert method.calls == 0
    assert (read(result.out) == 0).all()
    assert result.record["windows"]["tiles_skipped_nodata"] == result.record["windows"]["tiles"]


def test_uint16_is_stretched_by_percentiles(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(1000, 3000, size=(3, 40, 40)).astype(np.uint16)
    src = write_raster(tmp_path / "in16.tif", data)
    result, method = run(tmp_path, src, "out", PipelineSettings(), 0.5)
    stretch = result.record["input"]["stretch"]
    for band in range(3):
        lo, hi = np.percentile(data[band].astype(float), [2, 98])
        assert stretch["low"][band] == pytest.approx(lo)
        assert stretch["high"][band] == pytest.approx(hi)
    assert method.seen_min == 0  # values below the 2nd percentile map to 0


def test_bbox_output_grid(tmp_path):
    src = write_raster(tmp_path / "in.tif", random_image(80, 100))
    # 10 m x 5 m box starting 5 m east and 4 m south of the corner → 20 x 10 px at column 10, row 8.
    bbox = (500005.0, 5650000.0 - 9.0, 500015.0, 5650000.0 - 4.0)
    result, _ = run(tmp_path, src, "out", PipelineSettings(), 0.5, bbox=bbox, bbox_crs="EPSG:25832")
    ds = gdal.Open(result.out)
    assert (ds.RasterXSize, ds.RasterYSize) == (20, 10)
    assert ds.GetGeoTransform() == (500005.0, 0.5, 0.0, 5650000.0 - 4.0, 0.0, -0.5)


def test_cancellation_and_errors_leave_nothing(tmp_path):
    src = write_raster(tmp_path / "in.tif", random_image(64, 64))
    settings = PipelineSettings(tile_working=16, batch_size=1)
    token = CancelToken()
    prepared = prepare(
        SegmentRequest(input=src, out=str(tmp_path / "o.tif"), confidence=str(tmp_path / "c.tif"), gsd=0.5),
        CROP,
        STRIDE,
        settings,
    )
    events = []

    def progress(event):
        events.append(event)
        if event.stage == "inference" and len(events) > 3:
            token.cancel()

    with pytest.raises(Cancelled):
        segment(prepared, VOCAB, ContextMethod(), settings=settings, progress=progress, cancel=token)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"]

    class Broken(ContextMethod):
        def crop_logits(self, crops):
            if self.calls >= 2:
                raise RuntimeError("boom")
            return super().crop_logits(crops)

    prepared = prepare(
        SegmentRequest(input=src, out=str(tmp_path / "o.tif"), gsd=0.5), CROP, STRIDE, settings
    )
    with pytest.raises(RuntimeError, match="boom"):
        segment(prepared, VOCAB, Broken(), settings=settings)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"]


def test_progress_is_monotonic_and_completes(tmp_path):
    src = write_raster(tmp_path / "in.tif", random_image(50, 50))
    events = []
    settings = PipelineSettings(tile_working=16, batch_size=2)
    prepared = prepare(
        SegmentRequest(input=src, out=str(tmp_path / "o.tif"), gsd=0.5), CROP, STRIDE, settings
    )
    segment(prepared, VOCAB, ContextMethod(), settings=settings, progress=events.append)
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and events[-1].stage == "done"
    assert any(e.stage == "inference" for e in events)


def test_estimate_needs_no_model_and_writes_nothing(tmp_path):
    src = write_raster(tmp_path / "in.tif", random_image(1000, 1000)[:, :1000, :1000])
    summary = estimate(SegmentRequest(input=src))
    assert summary["working_size"] == [448, 448]  # the reference's 1000² → 448²
    assert summary["crops"] == 9  # 3 x 3 crops of 224 with stride 112 over 448
    assert summary["pixels"] == 1_000_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"]


# ---------------------------------------------------------------- window hook (ReSeg-CLIP's contract)


class WindowMethod(ContextMethod):
    """A ContextMethod with the window hook: it keeps the prepared tile image and its origin, and checks
    that every crop handed to ``crop_logits`` is exactly the prepared image's pixels at its origin."""

    def __init__(self, *args, oom_once: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.window = None
        self.windows: list[tuple[tuple[int, int], tuple[int, int]]] = []  # (origin, (H, W))
        self.released = 0
        self.crops_checked = 0
        self.oom_once = oom_once
        self.batch_sizes: list[int] = []

    def prepare_window(self, window: torch.Tensor, origin=None) -> None:
        assert self.window is None, "the previous window was not released"
        assert window.dtype == torch.uint8 and window.shape[0] == 3
        self.window = window.clone()
        self.windows.append((tuple(origin), tuple(window.shape[1:])))

    def release_window(self) -> None:
        self.window = None
        self.released += 1

    def crop_logits(self, crops: torch.Tensor, origins=None) -> torch.Tensor:
        assert self.window is not None and origins is not None and len(origins) == len(crops)
        self.batch_sizes.append(len(crops))
        if self.oom_once and len(crops) > 1:
            self.oom_once = False
            raise RuntimeError("CUDA out of memory. Tried to allocate 2 GiB (simulated)")
        h, w = crops.shape[-2:]
        for crop, (r, c) in zip(crops, origins):
            assert torch.equal(crop, self.window[:, r : r + h, c : c + w]), (r, c)
            self.crops_checked += 1
        return super().crop_logits(crops)


def test_window_hook_gets_each_tile_with_its_origin_and_crops_with_theirs(tmp_path):
    image = random_image(90, 110, seed=4)
    src = write_raster(tmp_path / "in.tif", image)
    settings = PipelineSettings(tile_working=40, batch_size=3)
    plain, _ = run(tmp_path, src, "plain", settings, 0.5)
    method = WindowMethod(oom_once=True)
    hooked, _ = run(tmp_path, src, "hooked", settings, 0.5, method=method)
    # Same crops and logits as a method without the hook (the hook only adds information).
    assert np.array_equal(read(plain.out), read(hooked.out))
    assert method.crops_checked == hooked.record["windows"]["crops_evaluated"]
    # One prepare/release per tile; each window's origin is its region's start in the working raster.
    prepared = prepare(SegmentRequest(input=src, gsd=0.5), CROP, STRIDE, settings, check_outputs=False)
    prepared.source.close()
    expected = [
        ((row.region[0], col.region[0]), (row.region[1] - row.region[0], col.region[1] - col.region[0]))
        for row, col in prepared.plan.tiles()
    ]
    assert method.windows == expected and len(expected) > 4
    assert method.released == len(expected)
    # The simulated out-of-memory error halved the batch; origins stayed aligned (checked per crop).
    assert method.batch_sizes[:2] == [3, 1] and hooked.record["windows"]["batch_size"] == 1
    assert "prepare_window" in hooked.record["timings_s"]


def test_window_is_released_when_a_crop_fails(tmp_path):
    src = write_raster(tmp_path / "in.tif", random_image(40, 40))

    class Failing(WindowMethod):
        def crop_logits(self, crops, origins=None):
            raise ValueError("broken model")

    method = Failing()
    with pytest.raises(ValueError, match="broken model"):
        run(tmp_path, src, "o", PipelineSettings(), 0.5, method=method)
    assert method.released == 1 and method.window is None
    assert not (tmp_path / "o.tif").exists()


def test_method_logit_scale_is_used_unless_the_settings_give_one(tmp_path):
    image = random_image(40, 50, seed=3)
    src = write_raster(tmp_path / "in.tif", image)

    class RawCosine(ContextMethod):
        logit_scale = 1.0

    method = RawCosine()
    result, _ = run(
        tmp_path, src, "raw", PipelineSettings(), 0.5, method=method, confidence=str(tmp_path / "c.tif")
    )
    assert result.record["settings"]["logit_scale"] == 1.0
    reference = RawCosine()
    reference.set_queries(VOCAB.queries())
    _labels, ref_conf, _ = slow_segment(
        image, 40, 50, reference, VOCAB.query_to_class(), VOCAB.thresholds(0.1), scale=1.0
    )
    np.testing.assert_allclose(read(tmp_path / "c.tif"), ref_conf, atol=2e-6)
    forced, _ = run(tmp_path, src, "forced", PipelineSettings(logit_scale=50.0), 0.5, method=RawCosine())
    assert forced.record["settings"]["logit_scale"] == 50.0
    plain, _ = run(tmp_path, src, "plain", PipelineSettings(), 0.5)
    assert plain.record["settings"]["logit_scale"] == 50.0
