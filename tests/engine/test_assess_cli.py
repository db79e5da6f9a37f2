"""``python -m engine evaluate`` and the worker's ``evaluate`` request, end to end on small files."""

from __future__ import annotations

import io
import json

import numpy as np
from assess_files import write_class_raster, write_label_raster

from engine.cli import main

UTM = (500000.0, 1.0, 0.0, 5650000.0, 0.0, -1.0)


def files(tmp_path):
    rng = np.random.default_rng(11)
    labels = rng.integers(1, 3, (50, 60))
    codes = np.where(rng.random((50, 60)) < 0.8, labels, 3 - labels).astype(np.uint8)
    codes[:5] = 255
    prediction = write_class_raster(tmp_path / "map.tif", labels, ["building", "road"], gt=UTM)
    reference = write_label_raster(tmp_path / "ref.tif", codes, gt=UTM, epsg=32632)
    agree = int(((codes == labels) & (codes != 255)).sum())
    return prediction, reference, agree / int((codes != 255).sum())


def test_command_line_writes_report_csv_and_figure(tmp_path, capsys):
    prediction, reference, accuracy = files(tmp_path)
    before = (tmp_path / "map.tif").read_bytes()
    report = tmp_path / "report.json"
    argv = ["evaluate", prediction, "--reference", reference, "--ignore", "255", "--report", str(report)]
    code = main([*argv, "--csv", str(tmp_path / "cm.csv"), "--plot", str(tmp_path / "cm.png"), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    assert f"overall accuracy {accuracy:.4f}" in out and str(report) in out
    data = json.loads(report.read_text())
    assert data["overall_accuracy"] == accuracy
    assert data["classes"] == ["building", "road"]
    assert (tmp_path / "cm.csv").exists() and (tmp_path / "cm.png").exists()
    # An output naming an input is refused and the input is untouched; so is a bad --ignore.
    assert main(["evaluate", prediction, "--reference", reference, "--report", prediction, "--quiet"]) == 2
    assert "--report" in capsys.readouterr().err
    assert (tmp_path / "map.tif").read_bytes() == before
    assert main([*argv, "--ignore", "x", "--quiet"]) == 2
    assert "integer" in capsys.readouterr().err


def test_worker_evaluate_request_reports_progress_and_the_report(tmp_path):
    import engine.cli.worker as worker_module

    prediction, reference, accuracy = files(tmp_path)
    stream = io.StringIO()
    worker = worker_module.Worker(worker_module.Channel(stream))
    args = {
        "prediction": prediction,
        "reference": reference,
        "ignore": [255],
        "report": str(tmp_path / "r.json"),
        "plot": str(tmp_path / "r.png"),
    }
    worker.handle({"id": "e1", "command": "evaluate", "args": args})
    worker.handle({"id": "e2", "command": "evaluate", "args": {**args, "colour": "red"}})
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    first = [e for e in events if e["id"] == "e1"]
    assert first[-1]["event"] == "result"
    assert {e["stage"] for e in first if e["event"] == "progress"} >= {"open", "assess", "done"}
    result = first[-1]["result"]
    assert result["overall_accuracy"] == accuracy == result["report"]["overall_accuracy"]
    assert result["files"]["report"] == str(tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["miou"] == result["miou"]
    second = [e for e in events if e["id"] == "e2"]
    assert second[-1]["event"] == "error" and second[-1]["kind"] == "user"
    assert "colour" in second[-1]["message"]


def test_missing_or_unnamed_inputs_are_user_errors(tmp_path, capsys):
    from assess_files import write_label_raster as plain_raster

    prediction, reference, _ = files(tmp_path)
    assert (
        main(
            [
                "evaluate",
                str(tmp_path / "nope.tif"),
                "--reference",
                reference,
                "--report",
                str(tmp_path / "r.json"),
                "--quiet",
            ]
        )
        == 2
    )
    assert "map not found" in capsys.readouterr().err
    unnamed = plain_raster(tmp_path / "unnamed.tif", np.ones((4, 4), np.uint8), gt=UTM, epsg=32632)
    assert (
        main(["evaluate", unnamed, "--reference", reference, "--report", str(tmp_path / "r.json"), "--quiet"])
        == 2
    )
    assert "no class names" in capsys.readouterr().err
    assert (
        main(
            [
                "evaluate",
                prediction,
                "--reference",
                str(tmp_path / "none.gpkg"),
                "--report",
                str(tmp_path / "r.json"),
                "--quiet",
            ]
        )
        == 2
    )
    assert "reference not found" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()
