#!/usr/bin/env bash
# The panel's paths in the real QGIS desktop under Xvfb, with screenshots (resources/scripts/qgis_tour.py):
#   desktop_tour.sh [OUT_DIR]     (default resources/screenshots)
# Cuts XYZ tiles from the Köln tile into a temporary folder (never into the project); the tour starts
# and stops its own servers on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(realpath -m "${1:-resources/screenshots}")
raster="$(pwd)/../shared/data/oem_koeln_50.tif"
[ -f "$raster" ] || { echo "desktop_tour: $raster is absent" >&2; exit 1; }
work=$(mktemp -d /tmp/rs_ovseg_tour.XXXXXX)
trap 'rm -rf "$work"' EXIT
gdal2tiles.py --xyz -z 15-18 -w none -r bilinear --processes=1 -q "$raster" "$work/tiles"
export RS_OVSEG_TILES="$work/tiles" RS_OVSEG_SCREENSHOT_DIR="$out"
export RS_OVSEG_CODE=resources/scripts/qgis_tour.py
HEADLESS=1 bash resources/scripts/run_qgis.sh "$work/profiles" "$work/unused.png"
# 256-colour PNGs: a fifth of the size, the panel's text as sharp.
for shot in panel extent_rectangle selected_features outputs_polygons_confidence outputs_confidence \
            xyz_map_view wms_layer; do
  [ -f "$out/$shot.png" ] && convert "$out/$shot.png" -colors 256 "PNG8:$out/$shot.png"
done
