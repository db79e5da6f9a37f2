"""Where the plugin finds its own files and the bundled engine."""

from __future__ import annotations

from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parent.parent


def _resource(*parts: str) -> Path:
    """A file under ``resources/``: inside the plugin zip, or beside the package in a checkout."""
    bundled = PLUGIN_DIR.joinpath("resources", *parts)
    return bundled if bundled.exists() else PLUGIN_DIR.parent.joinpath("resources", *parts)


ICON_PATH = _resource("icons", "rs_ovseg.svg")
PRESETS_DIR = _resource("presets")


def engine_source_dir() -> Path:
    """The folder holding the ``engine`` package: bundled in the plugin zip, or the repository's."""
    bundled = PLUGIN_DIR / "engine"
    return bundled if bundled.is_dir() else PLUGIN_DIR.parent / "engine"


def is_inside_plugin(path: str | Path) -> bool:
    """True if ``path`` lies in the plugin's own folder, where nothing may be written."""
    try:
        Path(path).resolve().relative_to(PLUGIN_DIR)
    except ValueError:
        return False
    return True
