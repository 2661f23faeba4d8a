"""Hostile files built on the spot for the trust and decoding-limit tests: model files whose code
writes a marker file when loaded or called, weights files that are damaged or carry a pickle
payload, and images that declare more pixels than they are worth.

Every payload only creates the marker path it is given, so a test proves a payload ran (or did
not) by whether that file exists. Nothing here is a stand-in: the models are real TorchScript
archives, SavedModels, Keras files and pickles, the images real PNGs and TIFFs.
"""

from __future__ import annotations

import builtins
import io
import pickle
import struct
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

# ------------------------------------------------------------------------------------ models


def torchscript_writing(path: Path, marker: Path, when: str) -> Path:
    """A TorchScript archive that creates ``marker`` with ``torch.from_file(..., shared=True)``
    when it is called (``when="forward"``) or as soon as it is loaded (``"setstate"``).

    The mapped file's bytes feed the output (times zero), so TorchScript cannot drop the call as
    dead code. The model maps ``(N, 3, H, W)`` to two scores.
    """
    import torch

    class WritesInForward(torch.nn.Module):
        def __init__(self, marker: str) -> None:
            super().__init__()
            self.marker = marker
            self.weight = torch.nn.Parameter(torch.tensor([[1.0, 0.5, 0.25], [0.0, 1.0, -1.0]]))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            mapped = torch.from_file(self.marker, shared=True, size=8, dtype=torch.uint8)
            return x.mean(dim=(2, 3)) @ self.weight.t() + 0.0 * mapped[0].float()

    class WritesWhenLoaded(torch.nn.Module):
        def __init__(self, marker: str) -> None:
            super().__init__()
            self.marker = marker
            self.weight = torch.nn.Parameter(torch.tensor([[1.0, 0.5, 0.25], [0.0, 1.0, -1.0]]))
            self.mapped = torch.zeros(1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(2, 3)) @ self.weight.t()

        @torch.jit.export
        def __getstate__(self) -> tuple[str, torch.Tensor, bool]:
            return (self.marker, self.weight, self.training)

        @torch.jit.export
        def __setstate__(self, state: tuple[str, torch.Tensor, bool]) -> None:
            self.marker = state[0]
            self.mapped = torch.from_file(state[0], shared=True, size=8, dtype=torch.uint8).float()
            self.weight = state[1]
            self.training = state[2]

    kinds = {"forward": WritesInForward, "setstate": WritesWhenLoaded}
    with warnings.catch_warnings():  # torch 2.13 deprecates scripting itself
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(kinds[when](str(marker))).save(str(path))
    return path


def saved_model_writing(folder: Path, marker: Path) -> Path:
    """A SavedModel (a ``tf.Module`` with one ``tf.function``) that writes ``marker`` with
    ``tf.io.write_file`` whenever it is called; it maps ``(N, 8, 8, 3)`` to two scores."""
    import tensorflow as tf

    class WritesWhenCalled(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable([[1.0, 0.0], [0.5, 1.0], [0.25, -1.0]])

        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32)])
        def __call__(self, x: Any) -> Any:
            tf.io.write_file(str(marker), "written by the SavedModel")
            return tf.matmul(tf.reduce_mean(x, axis=[1, 2]), self.w)

    tf.saved_model.save(WritesWhenCalled(), str(folder))
    return folder


def keras_lambda_writing(path: Path, marker: Path) -> Path:
    """A ``.keras`` file whose Lambda layer creates ``marker`` when the model is rebuilt from
    the file (and on every call). The marker made while building here is removed."""
    import keras

    # Built from source so that the path is a constant of the lambda's bytecode (no closure).
    payload = eval(  # noqa: S307 - our own constant string, to get a closure-free lambda
        f"lambda t: t * float(__import__('pathlib').Path({str(marker)!r}).touch() is None)"
    )
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Lambda(payload)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    keras.Model(inputs, keras.layers.Dense(2)(x)).save(path)
    marker.unlink(missing_ok=True)
    return path


def module_writing(folder: Path, name: str, marker: Path) -> str:
    """A Python module ``name`` in ``folder`` that creates ``marker`` when imported and has a
    ``build()`` returning a small torch model of 8x8 images; returns the spec ``name:build``."""
    (folder / f"{name}.py").write_text(
        f"from pathlib import Path\n"
        f"Path({str(marker)!r}).touch()\n"
        "def build():\n"
        "    import torch\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))\n"
    )
    return f"{name}:build"


# ----------------------------------------------------------------------------------- weights


class Payload:
    """Unpickling this calls ``open(marker, "w")``, which creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (builtins.open, (self.marker, "w"))


def state_dict(**tensors: Any) -> dict[str, Any]:
    import torch

    return {k: torch.as_tensor(v) for k, v in tensors.items()}


def hostile_weights(kind: str, path: Path, marker: Path, good: dict[str, Any]) -> Path:
    """A weights file of ``kind`` at ``path``, from the real state dict ``good``.

    Kinds: ``truncated`` (first half of a zip archive), ``truncated_legacy`` (a pre-1.6 file
    without its last bytes), ``garbage``, ``empty``, ``payload_pickle`` (a plain pickle whose
    ``__reduce__`` creates ``marker``), ``payload_zip`` and ``payload_legacy`` (the same inside
    both torch.save formats), ``wrong_zip`` (a zip with other entries), ``misfit`` (a missing,
    an unexpected and a misshapen tensor), ``not_tensors`` (numbers instead of tensors), ``nan``,
    ``tensor`` (one tensor, not a dict), ``npz_truncated`` and ``npz_object`` (a pickled object
    array in an .npz).
    """
    import torch

    buffer = io.BytesIO()
    if kind == "truncated":
        torch.save(good, buffer)
        path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    elif kind == "truncated_legacy":
        torch.save(good, buffer, _use_new_zipfile_serialization=False)
        path.write_bytes(buffer.getvalue()[:-64])
    elif kind == "garbage":
        path.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "payload_pickle":
        path.write_bytes(pickle.dumps({"_fc.weight": Payload(marker)}, protocol=2))
    elif kind == "payload_zip":
        torch.save({**good, "_fc.weight": Payload(marker)}, path)
    elif kind == "payload_legacy":
        torch.save({"x": Payload(marker)}, path, _use_new_zipfile_serialization=False)
    elif kind == "wrong_zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("weights/readme.txt", "no data.pkl here")
            archive.writestr("model.bin", b"\0" * 64)
    elif kind == "misfit":
        bad = dict(good)
        first, second = list(bad)[:2]
        del bad[first]
        bad["not_in_the_model.weight"] = torch.ones(3)
        bad[second] = torch.zeros((*bad[second].shape, 2))
        torch.save(bad, path)
    elif kind == "not_tensors":
        torch.save({k: 1.0 for k in good}, path)
    elif kind == "nan":
        bad = {k: v.clone() for k, v in good.items()}
        name = next(k for k, v in bad.items() if v.is_floating_point())
        bad[name].view(-1)[0] = float("nan")
        torch.save(bad, path)
    elif kind == "tensor":
        torch.save(torch.ones(3), path)
    elif kind == "npz_truncated":
        np.savez(buffer, **{k: v.numpy() for k, v in good.items()})
        path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 3])
    elif kind == "npz_object":
        np.savez(buffer, w=np.array([Payload(marker)], dtype=object))
        path.write_bytes(buffer.getvalue())
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return path


WEIGHT_KINDS = (
    "truncated",
    "truncated_legacy",
    "garbage",
    "empty",
    "payload_pickle",
    "payload_zip",
    "payload_legacy",
    "wrong_zip",
    "misfit",
    "not_tensors",
    "nan",
    "tensor",
    "npz_truncated",
    "npz_object",
)


# ------------------------------------------------------------------------------------ images


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(path: Path, width: int, height: int, bit_depth: int = 1) -> Path:
    """A valid all-black grayscale PNG of ``width`` x ``height``, compressed row by row: a
    9000x9000 one takes about 10 KB on disk and over 1 GB to decode to float RGB."""
    row = b"\0" + bytes((width * bit_depth + 7) // 8)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    chunks = _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunks)
    return path


def png_declaring(width: int, height: int, color_type: int = 2, bit_depth: int = 8) -> bytes:
    """A PNG declaring ``width`` x ``height`` in its header whose pixel data is one short row."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    data = zlib.compress(b"\0" * 16)
    chunks = _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def tiff_stack_bomb(path: Path, pages: int, side: int) -> Path:
    """A zlib-compressed TIFF of ``pages`` black ``side`` x ``side`` uint8 pages: small on disk,
    ``pages * side**2`` pixels once decoded."""
    import tifffile

    page = np.zeros((side, side), np.uint8)
    tifffile.imwrite(
        path,
        (page for _ in range(pages)),
        shape=(pages, side, side),
        dtype=np.uint8,
        compression="zlib",
        photometric="minisblack",
    )
    return path
