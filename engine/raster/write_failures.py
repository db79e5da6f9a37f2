"""The one place that turns a failed write (a full disk, a read-only file system, an IO error) into a
UserError naming the output and its folder.

GDAL rarely says why a write failed: a full disk reaches Python as "TIFFWriteDirectoryTagData: IO error
writing tag data" from ``FlushCache``. So the message is decided from what the system reports about the
destination (``errno``, then the free space left there), not from GDAL's wording. The caller removes
its temporary files; this module only explains.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from engine.errors import UserError

#: Less free space than this after a failed write means the disk filled up (GDAL writes whole blocks,
#: and file systems keep a reserve, so a disk that refused a write rarely reports exactly 0).
FULL_BELOW_BYTES = 1 * 2**20
_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}
_FULL_WORDS = ("no space left", "disk full", "free disk space", "disk quota")


def mount_point(path: Path) -> Path:
    """The mount point holding ``path`` (its nearest existing folder's), for saying which disk is full."""
    path = Path(os.path.realpath(path))
    while not path.exists():
        path = path.parent
    while not os.path.ismount(path):
        path = path.parent
    return path


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"


def write_failure(error: BaseException, final: str | Path) -> UserError:
    """A UserError explaining why writing ``final`` (the user's output path) failed."""
    final = Path(final)
    folder = final.parent if str(final.parent) else Path(".")
    code = getattr(error, "errno", None)
    text = str(error).strip()
    free = _free_bytes(folder)
    where = f"{folder} (on {mount_point(folder)})"
    if (
        code in _FULL_ERRNOS
        or any(w in text.lower() for w in _FULL_WORDS)
        or (free is not None and free < FULL_BELOW_BYTES)
    ):
        left = f"{_size(free)} free" if free is not None else "no free space"
        return UserError(
            f"the disk is full: writing {final.name} in {where} failed with {left}; free some space "
            "there or write the outputs to another disk. Nothing was written; earlier files are unchanged"
        )
    if code == errno.EROFS or "read-only file system" in text.lower():
        return UserError(
            f"cannot write {final.name}: {where} is on a read-only file system; choose another output "
            "folder. Nothing was written"
        )
    return UserError(f"cannot write {final} ({text or type(error).__name__}). Nothing was written")


@contextlib.contextmanager
def reporting_write_failures(final: str | Path) -> Iterator[None]:
    """Re-raise GDAL write errors (RuntimeError) and OSErrors inside the block as ``write_failure``."""
    try:
        yield
    except (RuntimeError, OSError) as error:
        raise write_failure(error, final) from None
