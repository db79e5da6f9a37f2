"""The parts folder of a run in blocks: what it accepts to resume, and what it refuses."""

from __future__ import annotations

import json

import pytest

from engine.errors import UserError
from engine.pipeline.blocks import Block
from engine.pipeline.parts import PartsFolder, parts_folder_for


def test_parts_are_reused_only_by_the_same_run(tmp_path):
    out = tmp_path / "map.tif"
    first = PartsFolder.open(out, {"options": {"gsd": 1}, "tiles": [2, 2]}, resume=False)
    assert first.folder == parts_folder_for(out) == tmp_path / "map.tif.parts"
    # Nothing finished yet: another run may take the folder over.
    taken = PartsFolder.open(out, {"options": {"gsd": 2}, "tiles": [2, 2]}, resume=True)
    assert json.loads((taken.folder / "manifest.json").read_text())["options"] == {"gsd": 2}
    taken.path(Block(0, (0, 1), (0, 1)), "record").write_text("{}")
    assert taken.done(Block(0, (0, 1), (0, 1))) and not taken.done(Block(1, (0, 1), (1, 2)))
    # A finished block: only the same run continues, another is refused naming what differs.
    assert PartsFolder.open(out, {"options": {"gsd": 2}, "tiles": [2, 2]}, resume=True).done(
        Block(0, (0, 1), (0, 1))
    )
    with pytest.raises(UserError, match=r"different run \(differs in: options\)"):
        PartsFolder.open(out, {"options": {"gsd": 3}, "tiles": [2, 2]}, resume=True)
    with pytest.raises(UserError, match="pass --resume to continue it"):
        PartsFolder.open(out, {"options": {"gsd": 2}, "tiles": [2, 2]}, resume=False)
    taken.remove()
    assert not taken.folder.exists()


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"executor": "spark"}, "--executor must be one of local, dask"),
        ({"block_tiles": 0}, "--block-tiles must be at least 1"),
        ({"retries": -1}, "--retries must be at least 0"),
        ({"output_format": "png"}, "--format must be one of gtiff, cog"),
    ],
)
def test_scale_options_are_checked(bad, message):
    from engine.options import SegmentOptions

    with pytest.raises(UserError, match=message):
        SegmentOptions.from_mapping({"input": "in.tif", **bad})


def test_a_resumed_run_removes_only_its_own_stale_temporaries(tmp_path):
    from engine.pipeline.partitioned import _remove_stale_temporaries

    names = [
        ".map.partial-0123abcd.tif",  # a run killed while assembling left these
        ".map.partial-0123abcd.tif.aux.xml",
        ".map.partial-89abcdef.json",
        ".map.partial-notours.tif",  # not AtomicFiles' pattern
        ".other.partial-0123abcd.tif",  # another output's
        "map.tif",
    ]
    for name in names:
        (tmp_path / name).write_text("x")
    _remove_stale_temporaries([tmp_path / "map.tif", tmp_path / "map.json"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".map.partial-notours.tif",
        ".other.partial-0123abcd.tif",
        "map.tif",
    ]
