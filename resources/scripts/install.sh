#!/usr/bin/env bash
# Creates .venv/ (Debian's Python 3 with system site-packages, so that qgis.core and osgeo.gdal are
# visible) and installs the engine's and the tests' dependencies under constraints.txt.
# Idempotent: a stamp records the hash of what was installed; a second run with the same inputs
# only checks and returns.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
venv="$root/.venv"
debian_python=/usr/bin/python3
# gdal-bin (gdal2tiles) and qgis-server-wms: the plugin tests serve XYZ tiles and a WMS on 127.0.0.1.
debian_packages=(python3-qgis python3-gdal python3-venv xvfb xauth gdal-bin qgis-server-wms)
[ "${RS_OVSEG_WITH_DESKTOP:-0}" = 1 ] && debian_packages+=(qgis imagemagick)

missing=()
for pkg in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "install: installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "install: these Debian packages are missing; install them first:" >&2
    echo "  sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
fi

stamp="$venv/.rs_ovseg_installed"
want=$(cat constraints.txt pyproject.toml resources/scripts/install.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
  touch "$stamp"
  echo "install: .venv is up to date"
  exit 0
fi

[ -x "$venv/bin/python" ] || "$debian_python" -m venv --system-site-packages "$venv"
# The dependency lists live in pyproject.toml only; read them from there.
mapfile -t requirements < <("$venv/bin/python" - <<'PY'
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
print("\n".join(project["dependencies"] + project["optional-dependencies"]["test"]))
PY
)
echo "install: installing Python packages into .venv (log: .venv/pip.log)"
if ! "$venv/bin/python" -m pip install -c constraints.txt "${requirements[@]}" >"$venv/pip.log" 2>&1; then
  grep -v "is neither a file nor a directory" "$venv/pip.log" | tail -30 >&2
  echo "install: pip failed; the full log is .venv/pip.log" >&2
  exit 1
fi

# Make the repository's engine importable from the venv, and install the torchvision import hook
# (engine/compat/torchvision_ops.py; it acts only when torchvision's compiled ops fail to load).
site=$("$venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
{
  echo "$root"
  echo "import engine.compat.torchvision_ops as _rs_ovseg_tv; _rs_ovseg_tv.install_import_hook()"
} > "$site/rs_ovseg_dev.pth"

"$venv/bin/python" -c "import qgis.core, torch, open_clip, segment_anything; from osgeo import gdal"
echo "$want" > "$stamp"
echo "install: .venv ready ($("$venv/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
