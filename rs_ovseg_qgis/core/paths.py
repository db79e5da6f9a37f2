"""Where the plugin finds its own files and the bundled engine."""

from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parent.parent
ICON_PATH = PLUGIN_DIR / "resources" / "icons" / "rs_ovseg.svg"
if not ICON_PATH.exists():  # development checkout: resources/ sits beside the plugin package
    ICON_PATH = PLUGIN_DIR.parent / "resources" / "icons" / "rs_ovseg.svg"


def engine_source_dir() -> Path:
    """The folder holding the ``engine`` package: bundled in the plugin zip, or the repository's."""
    bundled = PLUGIN_DIR / "engine"
    return bundled if bundled.is_dir() else PLUGIN_DIR.parent / "engine"
