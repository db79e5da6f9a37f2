"""Build the plugin zip the QGIS plugin repository accepts, or link the plugin into a QGIS profile.

The zip holds one top folder, ``rs_ovseg_qgis/``, with the plugin package, ``metadata.txt``,
``LICENSE``, the resources the plugin uses, and the engine source (installed into its own
environment by the plugin's "set up engine" action, together with ``pyproject.toml`` and
``constraints.txt``). Caches and compiled files are never included.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOP = "rs_ovseg_qgis"
EXCLUDED_PARTS = {"__pycache__", ".git", ".pytest_cache", ".ruff_cache"}
EXCLUDED_SUFFIXES = {".pyc", ".pyo"}
# (source in the repository, destination inside the plugin folder)
LAYOUT = [
    ("rs_ovseg_qgis", "."),
    ("engine", "engine"),
    ("resources/icons", "resources/icons"),
    ("resources/presets", "resources/presets"),
    ("metadata.txt", "metadata.txt"),
    ("LICENSE", "LICENSE"),
    ("pyproject.toml", "pyproject.toml"),
    ("constraints.txt", "constraints.txt"),
]


def plugin_files() -> list[tuple[Path, str]]:
    """Every (file, path inside the plugin folder) that belongs in a release."""
    files = []
    for source, destination in LAYOUT:
        path = ROOT / source
        if path.is_file():
            files.append((path, destination))
            continue
        if not path.is_dir():
            continue
        for file in sorted(path.rglob("*")):
            relative = file.relative_to(path)
            if file.is_dir() or EXCLUDED_PARTS & set(relative.parts) or file.suffix in EXCLUDED_SUFFIXES:
                continue
            files.append((file, os.path.normpath(f"{destination}/{relative.as_posix()}")))
    return files


def build_zip(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target, then renamed: a failed build never leaves a half zip behind.
    handle, temporary = tempfile.mkstemp(prefix=".partial-", suffix=".zip", dir=out.parent)
    os.close(handle)
    try:
        with zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as archive:
            for file, inside in plugin_files():
                archive.write(file, f"{TOP}/{inside}")
        os.replace(temporary, out)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return out


def deploy(profile: Path) -> Path:
    """Make ``profile/python/plugins/rs_ovseg_qgis`` a tree of links to the working copy."""
    target = profile / "python" / "plugins" / TOP
    if target.is_symlink() or target.is_file():
        target.unlink()
    target.mkdir(parents=True, exist_ok=True)
    for file, inside in plugin_files():
        link = target / inside
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(file)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--out", type=Path, help="zip file to build")
    group.add_argument("--deploy", type=Path, metavar="PROFILE_DIR", help="QGIS profile folder")
    args = parser.parse_args(argv)
    if args.out:
        print(f"built {build_zip(args.out)}")
    else:
        print(f"deployed into {deploy(args.deploy)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
