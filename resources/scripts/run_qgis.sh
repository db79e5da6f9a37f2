#!/usr/bin/env bash
# Starts the QGIS desktop with the plugin linked into a dedicated profile and enabled.
#   run_qgis.sh PROFILES_DIR            the desktop, on the current display
#   HEADLESS=1 run_qgis.sh DIR OUT.png  under Xvfb: show the panel, save a screenshot, quit
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
profiles=$(realpath -m "$1")
shot=${2:-}
profile="$profiles/profiles/default"
mkdir -p "$profile/QGIS"
.venv/bin/python resources/scripts/package.py --deploy "$profile" >/dev/null

# Enable the plugin in the profile (QGIS reads this at start).
ini="$profile/QGIS/QGIS3.ini"
.venv/bin/python - "$ini" <<'PY'
import configparser, sys
ini = configparser.ConfigParser(strict=False, interpolation=None)
ini.optionxform = str
ini.read(sys.argv[1])
for section, key, value in [("PythonPlugins", "rs_ovseg_qgis", "true"),
                            ("qgis", "checkVersion", "false"),
                            ("qgis", "showTips", "false")]:
    ini.setdefault(section, {})
    ini[section][key] = value
with open(sys.argv[1], "w") as f:
    ini.write(f, space_around_delimiters=False)
PY

# QGIS runs Debian's Python: put the venv's packages first (Debian's older sympy would shadow torch's).
export PYQGIS_STARTUP="$root/resources/scripts/qgis_startup.py"
export RS_OVSEG_VENV="$root/.venv"
export RS_OVSEG_DEMO_RASTER="$root/../shared/data/oem_koeln_50.tif"
args=(--nologo --noversioncheck --profiles-path "$profiles")
if [ "${HEADLESS:-0}" = 1 ]; then
  mkdir -p "$(dirname "$shot")"
  export RS_OVSEG_SCREENSHOT="$(realpath -m "$shot")"
  exec xvfb-run -a -s "-screen 0 1600x1000x24" qgis "${args[@]}" --code "${RS_OVSEG_CODE:-resources/scripts/qgis_screenshot.py}"
fi
exec qgis "${args[@]}"
