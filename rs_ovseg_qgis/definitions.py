"""Names and choices shared by the dock, the Processing algorithm and the engine client.

Kept in one place so that a method or device added to the engine is added to the plugin once.
"""

from __future__ import annotations

PROVIDER_ID = "rs_ovseg"
SEGMENT_ALGORITHM_ID = "segment"
ASSESS_ALGORITHM_ID = "assess"

# (engine name, label shown to the user); the first is the default.
METHODS: list[tuple[str, str]] = [
    ("segearth-ov", "SegEarth-OV (fast, CLIP only)"),
    ("reseg-clip", "ReSeg-CLIP (CLIP + SAM masks, slower)"),
    ("segearth-ov3", "SegEarth-OV3 (SAM 3, most accurate; needs a GPU)"),
]
# SegEarth-OV3's presets (the engine's --sam3-preset: each benchmark's window, instance confidence and
# threshold from the reference configs); the first is the default. tests/plugin checks them against the
# engine's engine/methods/segearth_ov3/settings.py.
SAM3_PRESETS: list[tuple[str, str]] = [
    ("openearthmap", "OpenEarthMap (512 px windows, threshold 0.1)"),
    ("loveda", "LoveDA (1024 px, 0.5)"),
    ("isaid", "iSAID (896 px, 0.5)"),
    ("potsdam", "Potsdam (512 px, 0.1)"),
    ("vaihingen", "Vaihingen (512 px, 0.1)"),
    ("uavid", "UAVid (1008 px, 0.3)"),
    ("udd5", "UDD5 (1008 px, 0.1)"),
    ("vdd", "VDD (1008 px, 0.3)"),
]
# "auto" lets the engine pick CUDA, then Apple's MPS, then the CPU.
DEVICES: list[tuple[str, str]] = [
    ("auto", "Automatic (GPU if present)"),
    ("cpu", "CPU"),
    ("cuda", "CUDA GPU"),
    ("mps", "Apple GPU (MPS)"),
]

# QgsSettings keys (user preferences) and project entries (per-project state).
SETTINGS_GROUP = "rs_ovseg"
SETTING_PYTHON = f"{SETTINGS_GROUP}/engine_python"
SETTING_BASE_PYTHON = f"{SETTINGS_GROUP}/base_python"
PROJECT_SCOPE = "rs_ovseg"
PROJECT_VOCABULARY = "vocabulary"
PROJECT_OUTPUT_DIR = "output_dir"

# Environment variable that makes the engine use random weights (tests, machines without weights).
RANDOM_WEIGHTS_ENV = "RS_OVSEG_RANDOM_WEIGHTS"

# Rendering "what the map shows" beyond this many pixels a side is refused: the temporary GeoTIFF
# would not fit comfortably in memory (QImage holds 4 bytes per pixel).
MAX_RENDER_SIDE_PX = 16384

# The dock's input choices (indices of its "Input" list): a raster layer, or what the map shows.
SOURCE_LAYER, SOURCE_MAP = 0, 1
