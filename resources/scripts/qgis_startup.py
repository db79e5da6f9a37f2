"""PYQGIS_STARTUP script: put the project's virtual environment first on sys.path."""

import os
import site
import sys
import sysconfig

venv = os.environ.get("RS_OVSEG_VENV")
if venv:
    before = list(sys.path)
    purelib = sysconfig.get_path("purelib", vars={"base": venv, "platbase": venv})
    site.addsitedir(purelib)
    added = [p for p in sys.path if p not in before]
    sys.path[:] = added + [p for p in sys.path if p not in added]
