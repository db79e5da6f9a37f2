"""Local map servers on 127.0.0.1 for tests and desktop screenshots: XYZ tiles cut with gdal2tiles, and a
real WMS (QGIS Server) publishing a raster. Nothing leaves the machine; each server is a child process
started and ended by ``LocalServer`` (by its own process id).

    python tests/plugin/map_servers.py xyz TILES_DIR   # prints "PORT <n>", serves the folder
    python tests/plugin/map_servers.py wms RASTER.tif  # prints "PORT <n>", serves ?SERVICE=WMS&...
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HOST = "127.0.0.1"
#: Zoom levels cut from a 0.5 m tile (zoom 18 ≈ 0.37 m per pixel at Köln's latitude, 15 ≈ 3 m).
XYZ_ZOOMS = "15-18"
WMS_LAYER = "koeln"
START_TIMEOUT_S = 60


def cut_xyz_tiles(raster: str | Path, folder: str | Path, zooms: str = XYZ_ZOOMS) -> Path:
    """XYZ tiles (``{z}/{x}/{y}.png``, Web Mercator) of ``raster`` into ``folder`` with gdal2tiles."""
    folder = Path(folder)
    options = ["--xyz", "-z", zooms, "-w", "none", "-r", "bilinear", "--processes=1", "-q"]
    subprocess.run(
        ["gdal2tiles.py", *options, str(raster), str(folder)],
        check=True,
        timeout=300,
    )
    return folder


def xyz_uri(port: int, zoom_max: int = 18, zoom_min: int = 15) -> str:
    """A QGIS ``wms`` provider URI for the XYZ server on ``port``."""
    url = f"http://{HOST}:{port}/{{z}}/{{x}}/{{y}}.png"
    return f"type=xyz&url={url}&zmax={zoom_max}&zmin={zoom_min}"


def wms_uri(port: int, crs: str = "EPSG:25832") -> str:
    """A QGIS ``wms`` provider URI for the raster the WMS server publishes."""
    url = f"http://{HOST}:{port}/wms"
    return f"contextualWMSLegend=0&crs={crs}&dpiMode=7&format=image/png&layers={WMS_LAYER}&styles=&url={url}"


class LocalServer:
    """A server child process (``kind`` xyz or wms) on a free port; ``with`` ends it."""

    def __init__(self, kind: str, source: str | Path, python: str | None = None) -> None:
        env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
        self.process = subprocess.Popen(
            [python or sys.executable, __file__, kind, str(source)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        line = self.process.stdout.readline()
        if not line.startswith("PORT "):
            self.close()
            raise RuntimeError(f"the {kind} server did not start")
        self.port = int(line.split()[1])

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *_args) -> None:  # no request log: stdout carries only the PORT line
        pass


def serve(server: http.server.HTTPServer) -> None:
    print(f"PORT {server.server_address[1]}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


def serve_xyz(folder: str) -> None:
    handler = functools.partial(QuietHandler, directory=folder)
    serve(http.server.HTTPServer((HOST, 0), handler))


def wms_project(raster: str, folder: str) -> str:
    """A QGIS project publishing ``raster`` as WMS layer ``WMS_LAYER``; its path."""
    from qgis.core import QgsProject, QgsRasterLayer

    project = QgsProject()
    layer = QgsRasterLayer(raster, WMS_LAYER, "gdal")
    if not layer.isValid():
        raise SystemExit(f"cannot open {raster}")
    project.addMapLayer(layer)
    project.setCrs(layer.crs())
    extent = layer.extent()
    project.writeEntry("WMSServiceCapabilities", "/", True)
    project.writeEntry("WMSServiceTitle", "/", "RS OVSeg test WMS")
    coords = [extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum()]
    project.writeEntry("WMSExtent", "/", [f"{c:.3f}" for c in coords])
    project.writeEntry("WMSCrsList", "/", [layer.crs().authid(), "EPSG:3857", "EPSG:4326"])
    path = str(Path(folder) / "wms.qgs")
    if not project.write(path):
        raise SystemExit(f"cannot write {path}")
    return path


def serve_wms(raster: str) -> None:
    from qgis.core import QgsApplication
    from qgis.server import QgsBufferServerRequest, QgsBufferServerResponse, QgsServer

    app = QgsApplication([], False)
    app.initQgis()
    folder = tempfile.mkdtemp(prefix="rs_ovseg_wms_")
    project_path = wms_project(raster, folder)
    qgis_server = QgsServer()

    class WmsHandler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            separator = "&" if "?" in self.path else "?"
            url = f"http://{HOST}:{self.server.server_address[1]}{self.path}{separator}MAP={project_path}"
            request = QgsBufferServerRequest(url)
            response = QgsBufferServerResponse()
            qgis_server.handleRequest(request, response)
            body = bytes(response.body())
            self.send_response(response.statusCode())
            for name, value in response.headers().items():
                if name.lower() != "content-length":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args) -> None:
            pass

    serve(http.server.HTTPServer((HOST, 0), WmsHandler))  # one request at a time: QgsServer is not shared
    app.exitQgis()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("xyz", "wms"))
    parser.add_argument("source")
    args = parser.parse_args()
    (serve_xyz if args.kind == "xyz" else serve_wms)(args.source)


if __name__ == "__main__":
    main()
