"""Part files: a resumable or distributed run writes each block to its own files beside the output.

``OUT.tif.parts/`` holds ``manifest.json`` (what run the parts belong to) and per finished block
``block-NNNNNN.classes.tif`` (uint8), ``block-NNNNNN.confidence.tif`` (float32, when asked for) and
``block-NNNNNN.json`` (its counters). Each is written under a temporary name and renamed; the JSON comes
last, so its presence means the block is complete. A run killed at any moment leaves complete parts and
at most some temporary files, which a resumed run ignores and overwrites. When every block is done the
client assembles the parts through a VRT (``assemble``) into the final raster, and the folder is removed
once the outputs and the sidecar are in place.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from engine.errors import UserError
from engine.pipeline.blocks import Block, BlockContext, BlockSink, process_block
from engine.raster.gdal_setup import gdal_module as _gdal
from engine.raster.writer import CONFIDENCE_NODATA, GTIFF_OPTIONS, colour_table_entries

MANIFEST = "manifest.json"


def parts_folder_for(out: Path) -> Path:
    return Path(out).with_name(Path(out).name + ".parts")


def _atomic_write_text(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.partial-{uuid.uuid4().hex[:8]}")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


class PartsFolder:
    """The parts of one run (``fingerprint``: what must match for a resumed run to reuse them)."""

    def __init__(self, folder: Path, fingerprint: dict) -> None:
        self.folder = Path(folder)
        self.fingerprint = fingerprint

    @classmethod
    def open(cls, out: Path, fingerprint: dict, resume: bool) -> PartsFolder:
        """The parts folder of ``out``: created, or (``resume``) reused when it belongs to the same run."""
        parts = cls(parts_folder_for(out), json.loads(json.dumps(fingerprint)))
        manifest = parts.folder / MANIFEST
        if parts.folder.exists():
            if not resume:
                raise UserError(
                    f"{parts.folder} holds the parts of an unfinished run: pass --resume to continue it, "
                    "or delete the folder to start again"
                )
            try:
                earlier = json.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                earlier = None
            if earlier != parts.fingerprint and not any(parts.folder.glob("block-*.json")):
                # No finished block: nothing to lose, the folder starts over for this run.
                _atomic_write_text(manifest, json.dumps(parts.fingerprint, indent=1, sort_keys=True))
                return parts
            if earlier != parts.fingerprint:
                changed = sorted(
                    k
                    for k in set(parts.fingerprint) | set(earlier or {})
                    if (earlier or {}).get(k) != parts.fingerprint.get(k)
                )
                raise UserError(
                    f"{parts.folder} holds the parts of a different run (differs in: "
                    f"{', '.join(changed) or 'its manifest'}): rerun with the same options, or delete the "
                    "folder to start again"
                )
            return parts
        parts.folder.mkdir()
        _atomic_write_text(manifest, json.dumps(parts.fingerprint, indent=1, sort_keys=True))
        return parts

    def path(self, block: Block | int, what: str) -> Path:
        index = block.index if isinstance(block, Block) else int(block)
        suffix = "json" if what == "record" else f"{what}.tif"
        return self.folder / f"block-{index:06d}.{suffix}"

    def done(self, block: Block) -> bool:
        return self.path(block, "record").exists()

    def record(self, block: Block) -> dict:
        return json.loads(self.path(block, "record").read_text(encoding="utf-8"))

    def remove(self) -> None:
        # Tried again: a worker still finishing a cancelled block may add a file while the tree is
        # removed; once the folder is gone no worker creates it again (part writers never make folders).
        for _ in range(5):
            shutil.rmtree(self.folder, ignore_errors=True)
            if not self.folder.exists():
                return
            time.sleep(0.1)


class _PartWriter:
    """One part GeoTIFF (no georeferencing: the VRT places it) under a temporary name until ``commit``."""

    def __init__(self, final: Path, width: int, height: int, data_type: int) -> None:
        gdal = _gdal()
        self.final = final
        self.temporary = final.with_name(f".{final.name}.partial-{uuid.uuid4().hex[:8]}.tif")
        driver = gdal.GetDriverByName("GTiff")
        self.dataset = driver.Create(str(self.temporary), width, height, 1, data_type, list(GTIFF_OPTIONS))

    def write(self, array: np.ndarray, x: int, y: int) -> None:
        self.dataset.GetRasterBand(1).WriteArray(np.ascontiguousarray(array), x, y)

    def commit(self) -> None:
        self.dataset.FlushCache()
        self.dataset = None
        os.replace(self.temporary, self.final)

    def discard(self) -> None:
        self.dataset = None
        with contextlib.suppress(FileNotFoundError):
            self.temporary.unlink()


class PartSink(BlockSink):
    """Writes a block's results into its part files (pixel offsets relative to the block)."""

    def __init__(self, parts: PartsFolder, block: Block, window, with_confidence: bool) -> None:
        gdal = _gdal()
        self.x0, self.y0, width, height = window
        self.writers = {"classes": _PartWriter(parts.path(block, "classes"), width, height, gdal.GDT_Byte)}
        if with_confidence:
            confidence = _PartWriter(parts.path(block, "confidence"), width, height, gdal.GDT_Float32)
            self.writers["confidence"] = confidence

    def write(self, labels, confidence, x, y) -> None:
        self.writers["classes"].write(labels.astype(np.uint8, copy=False), x - self.x0, y - self.y0)
        if confidence is not None and "confidence" in self.writers:
            self.writers["confidence"].write(
                confidence.astype(np.float32, copy=False), x - self.x0, y - self.y0
            )

    def commit(self) -> None:
        for writer in self.writers.values():
            writer.commit()

    def discard(self) -> None:
        for writer in self.writers.values():
            writer.discard()


def write_block_part(context: BlockContext, parts: PartsFolder, block: Block) -> dict:
    """Process ``block`` (engine.pipeline.blocks.process_block) into its part files; returns its record.
    The block function both executors call: in this process or on a Dask worker."""
    before = dict(context.done)
    began, batches = time.perf_counter(), context.run.batches
    sink = PartSink(parts, block, block.window(context.plan), context.with_confidence)
    try:
        process_block(context, block, sink)
        sink.commit()
    except BaseException:
        sink.discard()
        raise
    record = {
        "block": block.to_json(),
        "seconds": time.perf_counter() - began,
        "tiles": context.done["tiles"] - before["tiles"],
        "tiles_skipped_nodata": context.done["skipped"] - before["skipped"],
        "crops_evaluated": context.done["evaluated"] - before["evaluated"],
        "batches": context.run.batches - batches,
        "batch_size": context.run.batch_size,
        "kept_logits_peak_bytes": context.kept["peak_bytes"],
        "method": context.method.describe(),
        "logit_scale": context.logit_scale,
    }
    _atomic_write_text(parts.path(block, "record"), json.dumps(record, default=str))
    return record


def _vrt(parts: PartsFolder, blocks: list[Block], plan, width: int, height: int, what: str) -> Path:
    """A VRT mosaic of the blocks' ``what`` parts over the whole output grid."""
    data_type = "Byte" if what == "classes" else "Float32"
    nodata = "" if what == "classes" else f"<NoDataValue>{CONFIDENCE_NODATA:g}</NoDataValue>"
    sources = []
    for block in blocks:
        x0, y0, w, h = block.window(plan)
        name = escape(str(parts.path(block, what)))
        sources.append(
            f'<SimpleSource><SourceFilename relativeToVRT="0">{name}</SourceFilename>'
            f'<SourceBand>1</SourceBand><SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>'
            f'<DstRect xOff="{x0}" yOff="{y0}" xSize="{w}" ySize="{h}"/></SimpleSource>'
        )
    text = (
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">'
        f'<VRTRasterBand dataType="{data_type}" band="1">{nodata}{"".join(sources)}</VRTRasterBand>'
        "</VRTDataset>\n"
    )
    path = parts.folder / f"{what}.vrt"
    _atomic_write_text(path, text)
    return path


def assemble(
    parts: PartsFolder, blocks: list[Block], plan, grid, vocabulary, what: str, target: Path
) -> None:
    """Copy the mosaic of every block's ``what`` part ("classes" or "confidence") into a tiled GeoTIFF
    at ``target`` with the output grid's placement (and, for classes, the colour table and names)."""
    gdal = _gdal()
    vrt = _vrt(parts, blocks, plan, grid.width, grid.height, what)
    dataset = gdal.Translate(str(target), str(vrt), format="GTiff", creationOptions=list(GTIFF_OPTIONS))
    dataset = None  # closed: written
    dataset = gdal.Open(str(target), gdal.GA_Update)
    try:
        if grid.placement is not None:
            grid.placement.apply_to(dataset)
        else:
            if grid.geotransform is not None:
                dataset.SetGeoTransform(grid.geotransform)
            if grid.projection_wkt:
                dataset.SetProjection(grid.projection_wkt)
        band = dataset.GetRasterBand(1)
        if what == "classes":
            table = gdal.ColorTable()
            for value, rgba in enumerate(colour_table_entries(vocabulary)):
                table.SetColorEntry(value, rgba)
            band.SetRasterColorTable(table)
            band.SetRasterColorInterpretation(gdal.GCI_PaletteIndex)
            band.SetCategoryNames(vocabulary.category_names())
            band.SetDescription("class")
        else:
            band.SetNoDataValue(CONFIDENCE_NODATA)
            band.SetDescription("confidence")
        band = None
        dataset.FlushCache()
    finally:
        dataset = None
