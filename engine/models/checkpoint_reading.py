"""Read a checkpoint file's top-level object without executing anything it contains.

Containers:
- safetensors: a JSON header and raw tensors (read with ``safetensors``).
- ``torch.save`` files (zip or legacy): ``torch.load(weights_only=True)``, whose unpickler only builds
  tensors and plain containers and refuses anything else.
- TorchScript archives (OpenAI's ``ViT-B-16.pt``): ``torch.load`` refuses them under
  ``weights_only`` and ``torch.jit.load`` would run the archive's code, so ``_TorchScriptUnpickler``
  reads ``data.pkl`` with a whitelist: module objects become inert attribute holders, tensors are
  rebuilt from the archive's raw storages, anything else is refused.
The container is told from a file's first bytes (``identify_container``) before any loader touches it.
"""

from __future__ import annotations

import pickle
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from engine.errors import UserError


def _torchscript_root(archive: zipfile.ZipFile) -> str | None:
    """The archive's root folder if it is a TorchScript archive (has code/ or constants.pkl)."""
    names = archive.namelist()
    data = [n for n in names if n.endswith("/data.pkl")]
    if not data:
        return None
    root = data[0][: -len("data.pkl")]
    if any(n.startswith(root + "code/") or n == root + "constants.pkl" for n in names):
        return root
    return None


class _ScriptObject:
    """Stand-in for a TorchScript module object: keeps its attributes, runs nothing."""

    type_name = "?"

    def __init__(self, *args):
        self.attributes: dict = {}

    def __setstate__(self, state):
        self.attributes = dict(state) if isinstance(state, dict) else {"_state": state}


_STORAGE_DTYPES = {
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "DoubleStorage": "float64",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
}


@dataclass(frozen=True)
class _StorageType:
    dtype_name: str


def _identity_tag(value, *_type):
    return value


class _TorchScriptUnpickler(pickle.Unpickler):
    """Whitelisting unpickler for TorchScript ``data.pkl``: builds tensors and inert objects only."""

    def __init__(self, payload: bytes, archive: zipfile.ZipFile, root: str):
        import io

        super().__init__(io.BytesIO(payload))
        self.archive = archive
        self.root = root
        self.classes: dict[str, type] = {}

    def find_class(self, module: str, name: str):
        if module.startswith("__torch__"):
            qualified = f"{module}.{name}"
            if qualified not in self.classes:
                self.classes[qualified] = type(name, (_ScriptObject,), {"type_name": qualified})
            return self.classes[qualified]
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            import torch._utils

            return torch._utils._rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch.jit._pickle" and name.startswith("build_"):
            return list
        if module == "torch.jit._pickle" and name == "restore_type_tag":
            return _identity_tag
        raise pickle.UnpicklingError(f"refused global {module}.{name}: not a weight")

    def persistent_load(self, pid):
        import torch

        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"refused persistent id {pid!r}")
        storage_type, key = pid[1], str(pid[2])
        if not isinstance(storage_type, _StorageType) or not key.isdigit():
            raise pickle.UnpicklingError("refused storage reference")
        dtype = getattr(torch, storage_type.dtype_name)
        raw = bytearray(self.archive.read(f"{self.root}data/{key}"))
        untyped = (
            torch.frombuffer(raw, dtype=torch.uint8).untyped_storage() if raw else torch.UntypedStorage(0)
        )
        return torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)


def _flatten_script_object(obj, prefix: str, out: dict) -> None:
    import torch

    for name, value in obj.attributes.items():
        key = f"{prefix}{name}"
        if isinstance(value, torch.Tensor):
            out[key] = value
        elif isinstance(value, _ScriptObject):
            _flatten_script_object(value, key + ".", out)


def _read_torchscript(path: Path, archive: zipfile.ZipFile, root: str) -> dict:
    try:
        top = _TorchScriptUnpickler(archive.read(root + "data.pkl"), archive, root).load()
    except (pickle.UnpicklingError, AttributeError, KeyError, TypeError, ValueError, EOFError) as error:
        raise UserError(
            f"refused to read {path}: TorchScript archive with unexpected content ({error})"
        ) from None
    if not isinstance(top, _ScriptObject):
        raise UserError(f"refused to read {path}: TorchScript archive does not hold a module")
    tensors: dict = {}
    _flatten_script_object(top, "", tensors)
    return tensors


#: What a weight file must be, said in every refusal of a file that is not one.
EXPECTED_CONTAINERS = (
    "a safetensors file (.safetensors) or a PyTorch checkpoint (.pt, .pth, .bin, .ckpt: a torch.save "
    "zip archive, a legacy torch.save file or an OpenAI TorchScript archive)"
)
_ZIP_MAGIC = b"PK\x03\x04"
# torch.save's legacy format: a pickle (protocol 2+) whose first object is torch's magic number.
_PICKLE_PROTOCOLS = tuple(bytes([0x80, n]) for n in range(2, 6))


def _content_hint(head: bytes) -> str:
    """What a non-checkpoint file looks like it is, from its first bytes (for the message)."""
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html")):
        return "it is a web page (HTML): a download that was redirected to a login or error page"
    if text.startswith(b"version https://git-lfs"):
        return "it is a Git LFS pointer, not the weights it points to: fetch them with `git lfs pull`"
    if text.startswith((b"{", b"[")):
        return "it is JSON text"
    if head.startswith(b"\x89HDF"):
        return "it is an HDF5 file (Keras/TensorFlow weights)"
    if head.startswith(b"\x1f\x8b"):
        return "it is gzip-compressed: unpack it first"
    return f"its first bytes are {head[:8].hex(' ')}, which no weight format starts with"


def identify_container(path: str | Path) -> str:
    """Which container ``path`` is, judged from its first bytes before any loader touches it.

    Returns ``"safetensors"``, ``"zip"`` (torch.save archive or TorchScript) or ``"torch-legacy"``; a
    missing path, a folder, an empty file or anything else raises a UserError saying what the file is
    not and what is expected (``models check`` and every loader give the same diagnosis).
    """
    path = Path(path)
    if path.is_dir():
        inside = sorted(
            p.name for p in path.iterdir() if p.suffix in (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
        )
        hint = f" (it holds {', '.join(inside[:3])}: give one of them)" if inside else ""
        raise UserError(f"{path} is a folder, not a checkpoint file{hint}; expected {EXPECTED_CONTAINERS}")
    if not path.is_file():
        raise UserError(f"checkpoint file not found: {path}")
    size = path.stat().st_size
    if size == 0:
        raise UserError(
            f"{path} is empty (0 bytes), not a checkpoint: an interrupted download or copy? "
            f"Expected {EXPECTED_CONTAINERS}"
        )
    with open(path, "rb") as handle:
        head = handle.read(64)
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and 0 < header_len <= size - 8:
            return "safetensors"
    if head.startswith(_ZIP_MAGIC):
        return "zip"
    if head.startswith(_PICKLE_PROTOCOLS):
        return "torch-legacy"
    named = f"named {path.suffix} but is " if path.suffix else ""
    raise UserError(
        f"{path} is {named}not a checkpoint: {_content_hint(head)}. Expected {EXPECTED_CONTAINERS}"
    )


def read_raw(path: str | Path) -> tuple[object, str]:
    """The file's top-level object, read without running any code; and its container name.

    The container is identified first (``identify_container``); refusals and unreadable files raise
    UserError naming the file.
    """
    path = Path(path)
    container = identify_container(path)
    if container == "safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu"), "safetensors"
        except Exception as error:  # safetensors raises its own error types
            raise UserError(f"cannot read {path} as safetensors: {error}") from None
    import torch

    is_zip = container == "zip"
    if is_zip:
        try:
            with zipfile.ZipFile(path) as archive:
                root = _torchscript_root(archive)
                if root is not None:
                    return _read_torchscript(path, archive, root), "torchscript"
        except zipfile.BadZipFile as error:
            raise UserError(
                f"{path} is a damaged zip archive, not a readable checkpoint ({error}): an incomplete "
                f"download or copy? Expected {EXPECTED_CONTAINERS}"
            ) from None
    try:
        if is_zip and not path.name.endswith(".safetensors"):
            obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        else:  # a file object: given a name ending .safetensors, torch.load hands it to safetensors
            with open(path, "rb") as handle:
                obj = torch.load(handle, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(
            f"refused to read {path}: it holds pickled objects that would run code when loaded, which "
            f"plain weight files never need ({first}). Use a checkpoint from the official source."
        ) from None
    except Exception as error:  # torch raises many types for damaged files; none of them run code
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(
            f"{path} is not a readable PyTorch checkpoint ({detail}): damaged or incomplete? "
            f"Expected {EXPECTED_CONTAINERS}"
        ) from None
    return obj, "torch-zip" if is_zip else "torch-legacy"
