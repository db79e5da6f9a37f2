"""Bad inputs and faults as a table: every case must end in a message a user can act on, lose nothing.

Each row is one case: what to run (``python -m engine segment`` arguments, or a worker request), the
exit status (or the worker's answer), a pattern the message must match, and the named setups it needs.
For every case the test asserts: that status, that message, no Python traceback, no file left behind
(no temporary, no partial output) and every file that existed before byte-identical afterwards
(inputs, earlier outputs, the shared fixtures). Adding a case is adding one line to ``CASES``.

Runs: ``cli`` calls the command's entry point in this process (``engine.cli.main``, the very function
``python -m engine`` runs, minus ~3 s of interpreter and torch start-up per case); ``command`` starts
``python -m engine segment`` as a subprocess; ``signal-TERM`` / ``signal-INT`` start it and send the
signal once its temporary outputs exist; ``check`` is ``models check FILE``, which must diagnose a
non-checkpoint exactly as ``segment`` does; ``worker-signal-TERM`` gives a fresh worker one segment
request and sends SIGTERM mid-run; ``worker`` sends a request to one ``python -m engine worker``
shared by the worker rows, which must answer every one and stay alive. Read-only and full destinations
are real tmpfs mounts (the tests run as root); where mounting is not permitted those rows are skipped
and ``enospc-simulated`` still covers a full disk.
"""

# ruff: noqa: E501  (the table keeps one case per line, however long)
from __future__ import annotations

import errno
import hashlib
import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from osgeo import gdal
from raster_files import random_raster

from engine.cli import main

gdal.UseExceptions()
ROOT = Path(__file__).resolve().parents[2]
#: The tiny random-weight model every CLI case runs with, unless the case gives the flag itself.
TINY = {"--clip": "RSOVSeg-Tiny-ViT-16", "--upsampler": "none", "--templates": "remote-sensing"}
TINY_ARGS = {"clip": "RSOVSeg-Tiny-ViT-16", "upsampler": "none", "random_weights": True}
LONG_NAME = "a" * 2000
#: Class names a careless or hostile vocabulary holds (the outputs must carry them, whitespace-collapsed).
HOSTILE_NAMES = (
    'say "hi"',
    "it's <b>&amp;</b>",
    "line\nbreak\ttab",
    "\\ back\\slash ; rm -rf /",
    "ünïcødé 建筑 🏠",
    LONG_NAME,
)
OUT = ("out.tif", "out.tif.aux.xml", "out.json")  # what a successful run writes


@dataclass(frozen=True)
class Case:
    name: str
    run: str  # cli | command | signal-TERM | signal-INT | worker | worker-signal-TERM | check (models check)
    request: object  # CLI: argument string; worker: a request dict, or raw bytes sent as one line
    status: int | str  # exit status; worker: "user" / "internal" error kind, or "result"
    says: str  # regular expression the message must match
    setup: str = ""  # comma-separated SETUPS names
    makes: tuple[str, ...] = ()  # files a successful case creates (relative to its folder)


def seg(**args) -> dict:
    """A worker segment request on the tiny random model; "{here}" in values is the case folder."""
    return {
        "command": "segment",
        "args": {"input": "{here}/in.tif", "classes": ["road"], **TINY_ARGS, **args},
    }


# fmt: off
CASES = [
    # --- an output is an input, by every spelling (--overwrite changes nothing) ----------------------
    Case("out-is-input-relative", "cli", "in.tif --out in.tif --overwrite", 2, r"--out in\.tif would write over the input"),
    Case("out-is-input-dot-slash", "cli", "in.tif --out ./in.tif --overwrite", 2, r"would write over the input"),
    Case("out-is-input-absolute", "cli", "in.tif --out {here}/in.tif --overwrite", 2, r"would write over the input"),
    Case("out-is-input-dotdot", "cli", "in.tif --out sub/../in.tif --overwrite", 2, r"would write over the input", "subdir"),
    Case("out-is-input-symlink", "cli", "in.tif --out link.tif --overwrite", 2, r"--out link\.tif would write over", "symlink"),
    Case("out-is-input-hardlink", "cli", "in.tif --out hard.tif --overwrite", 2, r"--out hard\.tif would write over", "hardlink"),
    Case("out-is-input-linked-folder", "cli", "in.tif --out alias/in.tif --overwrite", 2, r"would write over the input", "linkdir"),
    Case("out-is-input-no-overwrite", "cli", "in.tif --out in.tif", 2, r"would write over the input.*--overwrite never"),
    Case("out-is-input-real-command", "command", "in.tif --out {here}/./in.tif --overwrite", 2, r"would write over the input"),
    Case("confidence-is-input", "cli", "in.tif --out out.tif --confidence in.tif --overwrite", 2, r"--confidence in\.tif would write over the input"),
    Case("confidence-is-input-symlink", "cli", "in.tif --out out.tif --confidence link.tif --overwrite", 2, r"--confidence link\.tif would write over", "symlink"),
    Case("out-is-vrt-source", "cli", "v.vrt --out in.tif --overwrite", 2, r"in\.tif, a file of the input v\.vrt", "vrt"),
    Case("out-is-aux-xml-of-input", "cli", "in.tif --out out.tif --confidence in.tif.aux.xml --overwrite", 2, r"in\.tif\.aux\.xml, a file of the input", "aux"),
    Case("sidecar-is-vocabulary", "cli", "in.tif --vocabulary town.json --out town.tif --overwrite", 2, r"sidecar town\.json would write over .*town\.json", "vocab_file"),
    Case("out-is-checkpoint", "cli", "in.tif --upsampler up.pt --out up.pt --overwrite", 2, r"--out up\.pt would write over", "checkpoint_file"),
    Case("sidecar-is-input", "cli", "in.json --out in.tif --overwrite", 2, r"would write over", "json_input"),
    # --- two outputs are one file ---------------------------------------------------------------------
    Case("out-is-confidence", "cli", "in.tif --out out.tif --confidence out.tif", 2, r"--out and --confidence are the same file"),
    Case("out-is-confidence-by-alias", "cli", "in.tif --out out.tif --confidence alias/out.tif", 2, r"--out and --confidence are the same file", "linkdir"),
    Case("confidence-is-sidecar", "cli", "in.tif --out out.tif --confidence out.json", 2, r"--confidence and sidecar are the same file"),
    Case("out-exists-no-overwrite", "cli", "in.tif --out out.tif", 2, r"already exists.*--overwrite", "old_out"),
    # --- rasters GDAL opens but cannot read -----------------------------------------------------------
    Case("truncated-geotiff", "cli", "{lib}/trunc.tif --out out.tif", 2, r"cannot read .*trunc\.tif: band 1, pixels x \d+-\d+, y \d+-\d+"),
    Case("jpeg-bad-header", "cli", "{lib}/bad_header.jpg --out out.tif", 2, r"cannot read .*bad_header\.jpg( as a raster)?:"),
    Case("jpeg-no-quantisation", "cli", "{lib}/bad_tables.jpg --out out.tif", 2, r"cannot read .*bad_tables\.jpg: band \d, pixels"),
    Case("vrt-missing-source", "cli", "{lib}/missing.vrt --out out.tif", 2, r"cannot read .*missing\.vrt: band 1, pixels .*gone\.tif"),
    Case("not-a-raster", "cli", "{lib}/notes.tif --out out.tif", 2, r"cannot read .*notes\.tif as a raster"),
    Case("input-missing", "cli", "nowhere.tif --out out.tif", 2, r"input raster not found: nowhere\.tif"),
    Case("input-is-folder", "cli", "sub --out out.tif", 2, r"cannot read sub as a raster", "subdir"),
    # --- files that are not checkpoints, or the wrong one -----------------------------------------------
    Case("clip-random-bytes", "cli", "in.tif --out out.tif --clip {lib}/random.safetensors", 2, r"named \.safetensors but is not a checkpoint.*Expected a safetensors file"),
    Case("clip-empty-file", "cli", "in.tif --out out.tif --clip {lib}/empty.pt", 2, r"empty \(0 bytes\), not a checkpoint"),
    Case("clip-folder", "cli", "in.tif --out out.tif --clip {lib}/weights", 2, r"is a folder, not a checkpoint file \(it holds model\.safetensors"),
    Case("clip-web-page", "cli", "in.tif --out out.tif --clip {lib}/page.pt", 2, r"web page \(HTML\)"),
    Case("clip-damaged-zip", "cli", "in.tif --out out.tif --clip {lib}/cut.pt", 2, r"cut\.pt is .*(damaged|not a readable)"),
    Case("clip-is-upsampler", "cli", "in.tif --out out.tif --clip {lib}/jbu768.pt", 2, r"holds upsampler weights .*not clip weights"),
    Case("upsampler-wrong-architecture", "cli", "in.tif --out out.tif --upsampler {lib}/jbu768.pt", 2, r"lifts 768-channel features, but .* gives \d+-channel"),
    Case("models-check-random-bytes", "check", "{lib}/random.safetensors", 1, r"named \.safetensors but is not a checkpoint.*Expected a safetensors file"),
    Case("models-check-empty-file", "check", "{lib}/empty.pt", 1, r"empty \(0 bytes\), not a checkpoint"),
    Case("models-check-folder", "check", "{lib}/weights", 1, r"is a folder, not a checkpoint file"),
    Case("upsampler-random-bytes", "cli", "in.tif --out out.tif --upsampler {lib}/random.safetensors", 2, r"not a checkpoint"),
    # --- destinations that cannot take the outputs ------------------------------------------------------
    Case("read-only-mount", "cli", "in.tif --out ro/out.tif", 2, r"not writable: .*ro \(it is on a read-only file system\)", "ro_mount"),
    Case("read-only-mount-overwrite", "cli", "in.tif --out ro/out.tif --overwrite", 2, r"read-only file system", "ro_mount"),
    Case("full-disk", "cli", "in.tif --out full/out.tif --confidence full/conf.tif --overwrite", 2, r"the disk is full: writing \w+\.tif in .*full", "full_mount"),
    Case("enospc-simulated", "cli", "in.tif --out out.tif --overwrite", 2, r"the disk is full: writing out\.json", "old_out,enospc_sidecar"),
    Case("out-folder-missing", "cli", "in.tif --out nowhere/out.tif", 2, r"output folder does not exist"),
    Case("out-is-folder", "cli", "in.tif --out sub --overwrite", 2, r"(is a folder|are the same file)", "subdir"),
    # --- stopped mid-run ----------------------------------------------------------------------------------
    Case("sigterm-mid-run", "signal-TERM", "{lib}/large.tif --out out.tif --confidence conf.tif --gsd 0.25 --tile-size 64", 143, r"stopped by SIGTERM: nothing was written"),
    Case("worker-sigterm-mid-run", "worker-signal-TERM", seg(input="{lib}/large.tif", out="{here}/out.tif", confidence="{here}/conf.tif", gsd=0.25, tile_size=64), 143, r"stopped by SIGTERM: the request in progress wrote nothing"),
    Case("sigint-mid-run", "signal-INT", "{lib}/large.tif --out out.tif --confidence conf.tif --gsd 0.25 --tile-size 64", 130, r"stopped by SIGINT: nothing was written"),
    # --- vocabularies ---------------------------------------------------------------------------------------
    Case("vocabulary-300-classes", "cli", "in.tif --out out.tif --vocabulary {lib}/300.json", 2, r"too many classes \(300\).*at most 255"),
    Case("vocabulary-empty-name", "cli", "in.tif --out out.tif --class ' , '", 2, r"a class needs a name"),
    Case("vocabulary-not-json", "cli", "in.tif --out out.tif --vocabulary {lib}/notes.json", 2, r"not valid JSON"),
    Case("vocabulary-control-character", "cli", "in.tif --out out.tif --vocabulary {lib}/control.json", 2, r"holds the control character U\+0000: class names are plain text"),
    Case("vocabulary-hostile-names", "cli", "in.tif --out out.tif --vocabulary {lib}/hostile.json", 0, r"RANDOM WEIGHTS", makes=OUT),
    Case("class-2000-characters", "cli", f"in.tif --out out.tif --class {LONG_NAME} --class road", 0, r"RANDOM WEIGHTS", makes=OUT),
    # --- the worker: malformed and hostile requests ------------------------------------------------------
    Case("worker-not-json", "worker", b"this is not json", "user", r"bad request: Expecting value"),
    Case("worker-not-an-object", "worker", b'["segment"]', "user", r"bad request: a request must be a JSON object"),
    Case("worker-not-utf8", "worker", b'{"command": "info", "id": "\xff\xfe"}', "user", r"bad request: not UTF-8 text"),
    Case("worker-nested-too-deep", "worker", b"[" * 200_000, "user", r"bad request: maximum recursion depth"),
    Case("worker-10-mb-line", "worker", b'{"id": "w10", "command": "' + b"x" * 10_000_000 + b'"}', "user", r"unknown command 'x{50}.*10,000,002 characters"),
    Case("worker-33-mb-line", "worker", b"y" * (33 * 2**20), "user", r"request line is longer than 32 MB"),
    Case("worker-unknown-command", "worker", {"command": "format-disk"}, "user", r"unknown command 'format-disk': use segment"),
    Case("worker-command-wrong-type", "worker", {"command": ["segment"]}, "user", r"unknown command \['segment'\]"),
    Case("worker-args-wrong-type", "worker", {"command": "segment", "args": "in.tif"}, "user", r'"args" must be a JSON object'),
    Case("worker-unknown-option", "worker", seg(out="{here}/o.tif", colour_depth=8), "user", r"unknown option\(s\): colour_depth"),
    Case("worker-gsd-wrong-type", "worker", seg(out="{here}/o.tif", gsd="fine"), "user", r"--gsd must be a number"),
    Case("worker-classes-wrong-type", "worker", seg(out="{here}/o.tif", classes=5), "user", r"--class must be a class name or a list of them"),
    Case("worker-out-is-input", "worker", seg(out="{here}/in.tif", overwrite=True), "user", r"--out .*in\.tif would write over the input"),
    Case("worker-out-is-confidence", "worker", seg(out="{here}/o.tif", confidence="{here}/o.tif"), "user", r"--out and --confidence are the same file"),
    Case("worker-300-classes", "worker", seg(out="{here}/o.tif", classes=[f"class {i}" for i in range(300)]), "user", r"too many classes \(300\)"),
    Case("worker-check-polygons-over-input", "worker", {"command": "check_outputs", "args": {"inputs": ["{here}/in.tif"], "outputs": {"Class polygons": "{here}/./in.tif"}}}, "user", r"Class polygons .*in\.tif would write over the input"),
    Case("worker-check-outputs-wrong-type", "worker", {"command": "check_outputs", "args": {"inputs": "{here}/in.tif"}}, "user", r'"inputs" must be a list of paths'),
    Case("worker-control-character", "worker", seg(out="{here}/o.tif", classes=["bell\u0007ringer"]), "user", r"control character U\+0007"),
    Case("worker-hostile-names", "worker", seg(out="{here}/out.tif", classes=[n.replace(",", " ") for n in HOSTILE_NAMES]), "result", r"", makes=OUT),
]
# fmt: on


# --- fixtures shared by every case ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def lib(tmp_path_factory) -> Path:
    """Inputs every case may read (never write): damaged rasters, non-checkpoints, vocabularies."""
    import torch

    from engine.upsamplers.stacks import build_upsampler

    lib = tmp_path_factory.mktemp("fault-library")
    small = random_raster(lib / "in.tif", 64, 48)
    random_raster(lib / "large.tif", 256, 256)
    gdal.Translate(
        str(lib / "tiled.tif"), small, creationOptions=["TILED=YES", "BLOCKXSIZE=16", "BLOCKYSIZE=16"]
    )
    data = (lib / "tiled.tif").read_bytes()
    (lib / "trunc.tif").write_bytes(data[: len(data) * 2 // 3])  # header intact, later tiles cut off
    (lib / "tiled.tif").unlink()
    gdal.Translate(str(lib / "good.jpg"), small, format="JPEG")
    jpeg = (lib / "good.jpg").read_bytes()
    (lib / "bad_header.jpg").write_bytes(jpeg[:4] + b"\xff\xff" + jpeg[6:])  # APP0 segment length wrong
    (lib / "bad_tables.jpg").write_bytes(jpeg[:3] + bytes(60) + jpeg[63:])  # quantisation tables gone
    for name in ("good.jpg", "good.jpg.aux.xml"):
        (lib / name).unlink(missing_ok=True)
    random_raster(lib / "gone.tif", 64, 48)
    gdal.BuildVRT(str(lib / "missing.vrt"), [str(lib / "gone.tif")])
    (lib / "gone.tif").unlink()
    (lib / "notes.tif").write_text("field notes, not a raster\n")
    (lib / "notes.json").write_text("{classes: [road}\n")
    (lib / "random.safetensors").write_bytes(bytes(range(7, 250)) * 40)
    (lib / "empty.pt").write_bytes(b"")
    (lib / "weights").mkdir()
    (lib / "weights" / "model.safetensors").write_bytes(b"")
    (lib / "page.pt").write_text("<!DOCTYPE html><html><body>Sign in to continue</body></html>\n")
    torch.save(build_upsampler("jbu_one", 768).state_dict(), lib / "jbu768.pt")
    (lib / "cut.pt").write_bytes((lib / "jbu768.pt").read_bytes()[:4096])
    (lib / "300.json").write_text(json.dumps([{"name": f"class {i}"} for i in range(300)]))
    (lib / "control.json").write_text(json.dumps([{"name": "road"}, {"name": "nul\u0000name"}]))
    (lib / "hostile.json").write_text(json.dumps([{"name": n} for n in HOSTILE_NAMES]), encoding="utf-8")
    return lib


def _mount(folder: Path, options: str) -> None:
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {done.stderr.decode().strip()}")


def _fill(folder: Path, leave: int) -> None:
    """Fill the file system of ``folder`` until ``leave`` bytes are free."""
    stats = os.statvfs(folder)
    (folder / "filler").write_bytes(bytes(max(0, stats.f_bavail * stats.f_frsize - leave)))


def _setup_old_outputs(folder: Path) -> None:
    for name in OUT:
        (folder / name).write_text(f"an earlier {name}, which must survive\n")


def _setup(name: str, here: Path, lib: Path, monkeypatch, mounts: list) -> None:
    if name == "subdir":
        (here / "sub").mkdir()
    elif name == "symlink":
        (here / "link.tif").symlink_to("in.tif")
    elif name == "hardlink":
        os.link(here / "in.tif", here / "hard.tif")
    elif name == "linkdir":
        (here / "alias").symlink_to(here, target_is_directory=True)
    elif name == "aux":
        gdal.Info(str(here / "in.tif"), stats=True)  # GDAL keeps the statistics in in.tif.aux.xml
        assert (here / "in.tif.aux.xml").exists()
    elif name == "vrt":
        gdal.BuildVRT(str(here / "v.vrt"), [str(here / "in.tif")])
    elif name == "json_input":
        gdal.Translate(str(here / "in.json"), str(here / "in.tif"), format="GTiff")  # a GeoTIFF named .json
    elif name == "vocab_file":
        (here / "town.json").write_text(json.dumps([{"name": "road"}, {"name": "roof"}]))
    elif name == "checkpoint_file":
        shutil.copy(lib / "jbu768.pt", here / "up.pt")
    elif name == "old_out":
        _setup_old_outputs(here)
    elif name == "ro_mount":
        _mount(here / "ro", "size=256k")
        mounts.append(here / "ro")
        _setup_old_outputs(here / "ro")
        subprocess.run(["mount", "-o", "remount,ro", str(here / "ro")], check=True)
    elif name == "full_mount":
        _mount(here / "full", "size=256k")
        mounts.append(here / "full")
        _setup_old_outputs(here / "full")
        _fill(here / "full", leave=4096)
    elif name == "enospc_sidecar":
        import engine.pipeline.segment as pipeline

        def full_disk(path, record):
            Path(path).write_text("{")  # a first byte made it, then the disk filled up
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

        monkeypatch.setattr(pipeline, "write_sidecar", full_disk)
    else:
        raise AssertionError(f"unknown setup {name!r}")


def snapshot(*folders: Path) -> dict[str, str]:
    """Every entry under ``folders`` (hidden ones too) → a digest of its bytes, a link's target, or "dir"."""
    state = {}
    for folder in folders:
        for base, dirs, files in os.walk(folder):
            for name in dirs + files:
                path = Path(base, name)
                if path.is_symlink():
                    state[str(path)] = "-> " + os.readlink(path)
                elif path.is_dir():
                    state[str(path)] = "dir"
                else:
                    state[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def _fill_placeholders(value, here: Path, lib: Path):
    if isinstance(value, str):
        return value.replace("{here}", str(here)).replace("{lib}", str(lib))
    if isinstance(value, list):
        return [_fill_placeholders(v, here, lib) for v in value]
    if isinstance(value, dict):
        return {k: _fill_placeholders(v, here, lib) for k, v in value.items()}
    return value


def _argv(case: Case, here: Path, lib: Path) -> list[str]:
    argv = shlex.split(_fill_placeholders(case.request, here, lib))
    if "--class" not in argv and "--vocabulary" not in argv:
        argv += ["--class", "road", "--class", "roof"]
    for flag, value in TINY.items():
        if flag not in argv:
            argv += [flag, value]
    return ["segment", *argv, "--random-weights", "--quiet"]


def _engine_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "RS_OVSEG_RANDOM_WEIGHTS"}
    env["RS_OVSEG_NO_DOWNLOAD"] = "1"
    return env


def _run_command(argv: list[str], here: Path, stop: str | None, stdin: str = "") -> tuple[int, str]:
    """``python -m engine ARGV`` in ``here`` (``stdin`` written to it); ``stop``: the signal's name, sent
    once a temporary output exists. Exit status and everything printed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "engine", *argv],
        cwd=here,
        env={**_engine_env(), "PYTHONPATH": str(ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    process.stdin.write(stdin + "\n" if stdin else "")
    process.stdin.flush()
    if stop:
        deadline = time.monotonic() + 120
        while not any(".partial-" in p.name for p in here.iterdir()):  # mid-run: outputs being written
            if process.poll() is not None:
                raise AssertionError(
                    "the run ended before it could be stopped: " + process.stderr.read()[-3000:]
                )
            assert time.monotonic() < deadline
            time.sleep(0.02)
        process.send_signal(getattr(signal, "SIG" + stop))
    out, err = process.communicate(timeout=120)
    return process.returncode, out + err


# --- the worker shared by the worker rows -------------------------------------------------------------


class Worker:
    def __init__(self, log) -> None:
        self.log = log  # the worker's stderr (a file: a pipe left unread would fill up and block it)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "engine", "worker"],
            cwd=ROOT,
            env=_engine_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
        )
        self.events: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.process.stdout:
            self.events.put(json.loads(line))  # every protocol line must be JSON
        self.events.put(None)

    def ask(self, payload: bytes, request_id: str | None) -> dict:
        """Send one line; the final event answering it (result or error)."""
        self.process.stdin.write(payload + b"\n")
        self.process.stdin.flush()
        while True:
            event = self.events.get(timeout=120)
            assert event is not None, "the worker died: " + self.stderr()[-2000:]
            if event.get("id") == request_id and event["event"] in ("result", "error"):
                return event

    def stderr(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.write(b'{"command": "shutdown"}\n')
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    with open(tmp_path_factory.mktemp("worker-log") / "stderr.txt", "w+b") as log:
        served = Worker(log)
        yield served
        alive = served.ask(b'{"id": "still-there", "command": "info"}', "still-there")
        served.close()
    assert alive["event"] == "result", "the worker did not survive the hostile requests"


# --- the test -------------------------------------------------------------------------------------------


def _category_names(path: Path) -> list[str]:
    dataset = gdal.Open(str(path))
    dataset.GetMetadata()  # loads the PAM side file
    return list(dataset.GetRasterBand(1).GetCategoryNames())


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fault(case: Case, lib: Path, tmp_path, monkeypatch, capsys, request):
    here = tmp_path / "case"
    here.mkdir()
    shutil.copy(lib / "in.tif", here / "in.tif")
    mounts: list[Path] = []
    try:
        for name in filter(None, case.setup.split(",")):
            _setup(name, here, lib, monkeypatch, mounts)
        before = snapshot(here, lib)
        if case.run == "worker":
            status, message = _ask_worker(case, here, lib, request.getfixturevalue("worker"))
        elif case.run in ("cli", "check"):
            monkeypatch.chdir(here)
            argv = ["models", "check", _fill_placeholders(case.request, here, lib)]
            status = main(_argv(case, here, lib) if case.run == "cli" else argv)
            captured = capsys.readouterr()
            message = captured.out + captured.err
        elif case.run.startswith("worker-signal-"):
            request = json.dumps({"id": case.name, **_fill_placeholders(case.request, here, lib)})
            status, message = _run_command(["worker"], here, case.run.split("-")[2], request)
        else:
            stop = case.run.split("-")[1] if case.run.startswith("signal-") else None
            status, message = _run_command(_argv(case, here, lib), here, stop)
        after = snapshot(here, lib)
    finally:
        for mount in reversed(mounts):
            subprocess.run(["umount", str(mount)], check=False)
    assert status == case.status, message[-3000:]
    assert re.search(case.says, message, re.S), message[-3000:]
    assert "Traceback" not in message, message[-3000:]
    if case.status not in (0, "result"):
        assert re.search(r"^(error|stopped by|cancelled)", message, re.M) or case.run == "worker", message
    created = {str(here / name) for name in case.makes}
    assert sorted(set(after) - set(before)) == sorted(created), "files left behind or missing"
    assert {k: after.get(k) for k in before} == before, "a file that existed before was changed or removed"
    if case.makes:
        names = _category_names(here / "out.tif")[1:]
        sidecar = json.loads((here / "out.json").read_text(encoding="utf-8"))
        expected = _expected_names(case)
        assert names == expected
        assert [sidecar["output"]["values"][str(i + 1)] for i in range(len(expected))] == expected


def _expected_names(case: Case) -> list[str]:
    """Class names as the outputs must carry them: as given, runs of whitespace made one space."""
    if "hostile" in case.name:
        given = [n.replace(",", " ") for n in HOSTILE_NAMES] if case.run == "worker" else list(HOSTILE_NAMES)
    else:
        given = [LONG_NAME, "road"]
    return [" ".join(n.split()) for n in given]


def _ask_worker(case: Case, here: Path, lib: Path, worker: Worker) -> tuple[str, str]:
    seen = len(worker.stderr())
    if isinstance(case.request, bytes):
        match = re.match(rb'\{"id": "(\w+)"', case.request)
        answer = worker.ask(case.request, match.group(1).decode() if match else None)
    else:
        message = {"id": case.name, **_fill_placeholders(case.request, here, lib)}
        answer = worker.ask(json.dumps(message).encode(), case.name)
    # A traceback on the worker's stderr counts too: the request must have been understood, not crashed.
    logged = worker.stderr()[seen:]
    text = answer.get("message", "") + ("\n" + logged if "Traceback" in logged else "")
    status = answer["kind"] if answer["event"] == "error" else "result"
    return status, text
