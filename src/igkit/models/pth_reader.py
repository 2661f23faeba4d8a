"""Read a PyTorch tensor state dict (``torch.save`` of a dict of tensors) into numpy arrays
without importing torch, so that the Keras port of EfficientNet-Lite0 runs where torch is not
installed.

Both ``torch.save`` formats are read: the zip archive of PyTorch >= 1.6 and the older "legacy"
pickle stream (the shipped EfficientNet-Lite0 weights use it). Unpickling is restricted to
tensors and ordered dicts: any other global in the file is refused, so no code from the file
runs.
"""

from __future__ import annotations

import collections
import pickle
import struct
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = ["read_pth_without_torch"]

# Storage classes a tensor state dict may reference, and their numpy element types.
_TORCH_STORAGE_DTYPES: dict[str, type[np.generic]] = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
# Pickle magic of torch's pre-1.6 ("legacy") serialisation format, which the shipped file uses.
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


@dataclass(frozen=True)
class _StorageType:
    """Stand-in for ``torch.FloatStorage`` and friends while unpickling."""

    dtype: np.dtype[Any]


def _rebuild_tensor(
    storage: np.ndarray,
    offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    *_: Any,
) -> np.ndarray:
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: a strided view into the storage.

    A view (not a copy) because the legacy format fills storages only after the pickle.
    """
    if 0 in size:
        return np.zeros(size, dtype=storage.dtype)
    strides = tuple(s * storage.itemsize for s in stride)
    return np.lib.stride_tricks.as_strided(storage[offset:], shape=size, strides=strides)


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickler for tensor state dicts that refuses every global but the few needed."""

    def __init__(self, file: IO[bytes], load_storage: Callable[[tuple[Any, ...]], np.ndarray]):
        super().__init__(file)
        self._load_storage = load_storage

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _TORCH_STORAGE_DTYPES:
            return _StorageType(np.dtype(_TORCH_STORAGE_DTYPES[name]))
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: only tensor state dicts can be read without torch"
        )

    def persistent_load(self, pid: Any) -> np.ndarray:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        return self._load_storage(pid)


def read_pth_without_torch(path: Path) -> dict[str, np.ndarray]:
    """Read a PyTorch state dict (zip or legacy format) into numpy without importing torch."""
    if zipfile.is_zipfile(path):
        state = _read_pth_zip(path)
    else:
        state = _read_pth_legacy(path)
    if not isinstance(state, Mapping) or not all(isinstance(v, np.ndarray) for v in state.values()):
        raise ValueError(f"{path} does not hold a flat state dict of tensors")
    # Copy the strided views out of the storages.
    return {str(key): np.array(value) for key, value in state.items()}


def _read_pth_zip(path: Path) -> Any:
    """The ``torch.save`` format of PyTorch >= 1.6: a zip of ``data.pkl`` plus raw storages."""
    with zipfile.ZipFile(path) as archive:
        pickles = [name for name in archive.namelist() if name.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise ValueError(f"{path} is a zip file but not a torch.save archive")
        prefix = pickles[0][: -len("data.pkl")]
        if f"{prefix}byteorder" in archive.namelist():
            if archive.read(f"{prefix}byteorder").decode().strip() != "little":
                raise ValueError(f"{path}: big-endian archives are not supported")

        def load_storage(pid: tuple[Any, ...]) -> np.ndarray:
            _, storage_type, key, _location, numel = pid[:5]
            data = np.frombuffer(archive.read(f"{prefix}data/{key}"), dtype=storage_type.dtype)
            if data.size != numel:
                raise ValueError(f"{path}: storage {key} holds {data.size} elements, not {numel}")
            return data

        with archive.open(pickles[0]) as file:
            return _StateDictUnpickler(file, load_storage).load()


def _read_pth_legacy(path: Path) -> Any:
    """The pre-1.6 format: magic, protocol, sys-info and object pickles, then raw storages."""
    storages: dict[str, np.ndarray] = {}

    def load_storage(pid: tuple[Any, ...]) -> np.ndarray:
        _, storage_type, root_key, _location, numel, view = pid
        if root_key not in storages:
            # Filled in place below, after the object pickle; tensors are views of it.
            storages[root_key] = np.empty(numel, dtype=storage_type.dtype)
        root = storages[root_key]
        if view is not None:
            _view_key, offset, view_size = view
            return root[offset : offset + view_size]
        return root

    def no_storage(pid: tuple[Any, ...]) -> np.ndarray:
        raise pickle.UnpicklingError("unexpected storage in a legacy header pickle")

    with open(path, "rb") as file:
        header = [_StateDictUnpickler(file, no_storage).load() for _ in range(3)]
        magic, _protocol, sys_info = header
        if magic != _TORCH_LEGACY_MAGIC:
            raise ValueError(f"{path} is neither a zip nor a legacy torch.save file")
        if not sys_info.get("little_endian", True):
            raise ValueError(f"{path}: big-endian files are not supported")
        state = _StateDictUnpickler(file, load_storage).load()
        keys = _StateDictUnpickler(file, no_storage).load()
        for key in keys:
            (numel,) = struct.unpack("<q", file.read(8))
            buffer = storages[key].view(np.uint8)
            if numel != storages[key].size or file.readinto(buffer) != buffer.size:
                raise ValueError(f"{path}: storage {key} is truncated or malformed")
    return state
