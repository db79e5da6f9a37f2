"""`make package` builds a zip the QGIS plugin repository accepts."""

import configparser
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REQUIRED_METADATA = [
    "name",
    "description",
    "about",
    "version",
    "qgisMinimumVersion",
    "qgisMaximumVersion",
    "author",
    "email",
    "tracker",
    "repository",
    "tags",
    "category",
    "hasProcessingProvider",
    "supportsQt6",
]


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist") / "rs_ovseg_qgis-test.zip"
    subprocess.run(
        [sys.executable, str(ROOT / "resources/scripts/package.py"), "--out", str(out)], check=True, cwd=ROOT
    )
    with zipfile.ZipFile(out) as archive:
        yield archive


def test_single_top_folder(package):
    assert {name.split("/")[0] for name in package.namelist()} == {"rs_ovseg_qgis"}


def test_no_caches_or_repository_files(package):
    for name in package.namelist():
        parts = name.split("/")
        assert "__pycache__" not in parts and ".git" not in parts, name
        assert not name.endswith((".pyc", ".pyo")), name


def test_plugin_files_engine_and_icon_are_inside(package):
    names = set(package.namelist())
    for required in [
        "rs_ovseg_qgis/__init__.py",
        "rs_ovseg_qgis/plugin.py",
        "rs_ovseg_qgis/metadata.txt",
        "rs_ovseg_qgis/LICENSE",
        "rs_ovseg_qgis/engine/__init__.py",
        "rs_ovseg_qgis/engine/__main__.py",
        "rs_ovseg_qgis/constraints.txt",
        "rs_ovseg_qgis/pyproject.toml",
    ]:
        assert required in names, required
    metadata = configparser.ConfigParser(interpolation=None)
    metadata.read_string(package.read("rs_ovseg_qgis/metadata.txt").decode())
    assert f"rs_ovseg_qgis/{metadata['general']['icon']}" in names


def test_metadata_has_every_required_field(package):
    metadata = configparser.ConfigParser(interpolation=None)
    metadata.read_string(package.read("rs_ovseg_qgis/metadata.txt").decode())
    general = metadata["general"]
    for key in REQUIRED_METADATA:
        assert general.get(key, "").strip(), f"metadata.txt lacks {key}"
    assert int(general["qgisMaximumVersion"].split(".")[0]) >= 4, "must cover QGIS 4"
    assert general["supportsQt6"].lower() in {"true", "yes"}
    assert general["version"].count(".") == 2
    assert general["repository"].startswith("https://")


def test_class_factory_is_importable_from_the_unpacked_zip(package, tmp_path):
    package.extractall(tmp_path)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import rs_ovseg_qgis; "
        "from rs_ovseg_qgis.core.paths import engine_source_dir; "
        "print(callable(rs_ovseg_qgis.classFactory), engine_source_dir())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["True", str(tmp_path / "rs_ovseg_qgis" / "engine")]
