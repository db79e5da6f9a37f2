"""Query embeddings kept on disk, so a fresh engine process does not encode a known vocabulary again.

Encoding a vocabulary means one text-encoder pass per query and template: 16 queries × 80 templates is
≈ 7.6 TFLOP, ≈ 4 s on a 2-core CPU, paid by every new worker before its first run (the in-memory
cache, ``engine.clip.text``, lives as long as the process). Here each query's embedding is a small
``.npy`` file whose name is a hash of everything it depends on: the text tower's weights (hashed
tensor by tensor, so a fine-tuned or random-weights model never reuses another's embeddings), the
templates, the query, the device type and the dtype. Files are read without pickle, checked for
shape and finiteness, and written to a temporary name and renamed, so concurrent engines and
interrupted writes never leave a half file; any unreadable or unwritable file only costs the encoding.

Folder: ``RS_OVSEG_TEXT_CACHE`` if set (``off`` disables it), else ``<engine home>/text-embeddings``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import weakref
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

TEXT_CACHE_ENV = "RS_OVSEG_TEXT_CACHE"
#: Parameter-name prefixes of an open_clip CLIP that belong to the image tower (not hashed: the text
#: embeddings do not depend on them).
IMAGE_TOWER_PREFIXES = ("visual.",)

_fingerprints: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def text_tower_fingerprint(model: torch.nn.Module) -> str:
    """sha256 over the names, shapes, dtypes and bytes of every text-side parameter and buffer of
    ``model`` (once per model object; ≈ 0.2 s for ViT-B/16's 250 MB text tower)."""
    known = _fingerprints.get(model)
    if known is not None:
        return known
    digest = hashlib.sha256()
    for name, tensor in sorted({**dict(model.named_parameters()), **dict(model.named_buffers())}.items()):
        if name.startswith(IMAGE_TOWER_PREFIXES):
            continue
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{tuple(data.shape)}|{data.dtype}\n".encode())
        digest.update(memoryview(data.reshape(-1).view(torch.uint8).numpy()))
    fingerprint = digest.hexdigest()
    _fingerprints[model] = fingerprint
    return fingerprint


class TextEmbeddingStore:
    """One ``.npy`` per (model, templates, query, device type, dtype) under ``folder``."""

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)
        self._write_failed = False

    def key(
        self, fingerprint: str, query: str, templates: tuple[str, ...], device: torch.device, dtype
    ) -> str:
        """The file name's hash: everything the embedding depends on."""
        text = json.dumps([fingerprint, list(templates), query, device.type, str(dtype)], ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npy"

    def load(self, key: str, dim: int | None = None) -> torch.Tensor | None:
        """The stored (D,) float32 embedding, or None when absent or not a sound one."""
        path = self._path(key)
        try:
            array = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:  # truncated, not .npy, pickled objects: recompute
            log.warning("ignoring the cached text embedding %s: %s", path, error)
            return None
        if array.dtype != np.float32 or array.ndim != 1 or (dim is not None and array.shape[0] != dim):
            log.warning("ignoring the cached text embedding %s: shape %s, %s", path, array.shape, array.dtype)
            return None
        if not np.isfinite(array).all():
            log.warning("ignoring the cached text embedding %s: not finite", path)
            return None
        return torch.from_numpy(array.copy())

    def save(self, key: str, embedding: torch.Tensor) -> None:
        """Write ``embedding`` (D,) float32 under ``key`` (temporary file, then rename); never raises."""
        if self._write_failed:
            return
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(prefix=".", suffix=".npy.tmp", dir=path.parent)
            try:
                with os.fdopen(handle, "wb") as file:
                    np.save(file, embedding.detach().to("cpu", torch.float32).numpy(), allow_pickle=False)
                os.replace(temporary, path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError as error:
            # A read-only or full disk: encode again next time, and say so once.
            log.warning(
                "cannot cache text embeddings in %s (%s); encoding them each time", self.folder, error
            )
            self._write_failed = True


def default_text_store() -> TextEmbeddingStore | None:
    """The store in ``RS_OVSEG_TEXT_CACHE`` (``off``: none), else in the engine's home folder."""
    setting = os.environ.get(TEXT_CACHE_ENV, "").strip()
    if setting.lower() in ("off", "0", "none", "false"):
        return None
    if setting:
        return TextEmbeddingStore(Path(setting).expanduser())
    from engine.models.cache import home_dir

    return TextEmbeddingStore(home_dir() / "text-embeddings")
