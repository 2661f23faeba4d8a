"""TensorFlow SavedModel folders, and how a restored SavedModel becomes a classifier (the
``tfhub:`` source restores its models the same way).

A SavedModel runs code of its own: its graphs may hold any TensorFlow op, including file I/O
(``tf.io.write_file``, ``tf.io.read_file``...), which runs when an endpoint is called. So a
SavedModel folder needs ``trust``; the dispatch refuses it before it is read (see
:func:`saved_model_risk`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from igkit.models.sources._common import DEFAULT_INPUT_SIZE, first_line, no_weights, require
from igkit.models.sources._registry import (
    LoadOptions,
    ModelLoadError,
    RunsCode,
    register_folder,
)
from igkit.models.spec import LoadedModel


@functools.cache
def _saved_model_wrapper() -> type:
    """A ``tf.Module`` around a restored SavedModel endpoint (defined on first use)."""
    import tensorflow as tf

    class SavedModelClassifier(tf.Module):
        """Calls one endpoint of a restored SavedModel with one image batch, returns one tensor."""

        def __init__(
            self,
            restored: Any,
            endpoint: Callable[..., Any],
            input_name: str | None,
            output_name: str | None,
        ) -> None:
            super().__init__(name="saved_model_classifier")
            self.restored = restored  # keeps the variables alive and tracked
            self._endpoint = endpoint
            self._input_name = input_name
            self._output_name = output_name

        def __call__(self, images: Any) -> Any:
            if self._input_name is None:
                out = self._endpoint(images)
            else:
                out = self._endpoint(**{self._input_name: images})
            if self._output_name is not None:
                out = out[self._output_name]
            return out

    return SavedModelClassifier


def _tensor_specs(structure: Any) -> list[Any]:
    import tensorflow as tf

    return [s for s in tf.nest.flatten(structure) if isinstance(s, tf.TensorSpec)]


SAVED_MODEL = RunsCode(
    what="a TensorFlow SavedModel",
    why="its graphs run when it is called and may hold any TensorFlow op, including ones that "
    "read and write files (tf.io.write_file)",
    instead="export the model as a .keras file without Lambda layers, which loads in Keras's "
    "safe mode",
)


def is_saved_model(path: Path) -> bool:
    """Whether the folder ``path`` holds a SavedModel (``saved_model.pb`` or ``.pbtxt``)."""
    return (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file()


def saved_model_risk(path: Path) -> RunsCode | None:
    """A SavedModel runs code; another folder is not one (the loader says so)."""
    return SAVED_MODEL if is_saved_model(path) else None


@register_folder("a SavedModel folder", runs_code=saved_model_risk)
def load_saved_model_folder(path: Path, options: LoadOptions) -> LoadedModel:
    """A local folder, which must be a SavedModel, named after the folder."""
    return load_saved_model(path, options, name=path.name or str(path))


def load_saved_model(
    path: Path,
    options: LoadOptions,
    *,
    name: str,
    load: Callable[[str], Any] | None = None,
) -> LoadedModel:
    """A SavedModel folder, restored with ``load`` (default ``tf.saved_model.load``)."""
    no_weights(options, f"the SavedModel {path}")
    if not is_saved_model(path):
        raise ModelLoadError(
            f"{path} is a folder but not a TensorFlow SavedModel (no saved_model.pb)"
        )
    if not options.trust:  # the dispatch refused it already; never restore it untrusted
        raise ModelLoadError(SAVED_MODEL.refusal(str(path)))
    tf = require("tensorflow", "tensorflow", "a SavedModel")
    try:
        restored = (load or tf.saved_model.load)(str(path))
    except Exception as exc:  # noqa: BLE001 - TF raises many types for a broken SavedModel
        raise ModelLoadError(
            f"{path}: the SavedModel cannot be loaded ({first_line(exc)})"
        ) from exc
    return describe_restored(restored, name=name, description=f"SavedModel {path}")


def describe_restored(restored: Any, *, name: str, description: str) -> LoadedModel:
    """Pick the callable endpoint of a restored SavedModel and read its input size."""
    endpoint, input_name, output_name, spec = _saved_model_endpoint(restored, name)
    shape = tuple(spec.shape) if spec is not None and spec.shape.rank == 4 else None
    if shape and shape[1] and shape[2]:
        size = (int(shape[1]), int(shape[2]))
    else:
        size = DEFAULT_INPUT_SIZE
    model = _saved_model_wrapper()(restored, endpoint, input_name, output_name)
    return LoadedModel(
        model=model,
        framework="tensorflow",
        channels_first=False,
        input_size=size,
        preprocess="pad",  # the TF tutorial's aspect-preserving resize with padding
        labels=None,
        name=name,
        default_output="softmax",
        description=description,
    )


def _saved_model_endpoint(
    restored: Any, name: str
) -> tuple[Callable[..., Any], str | None, str | None, Any]:
    """The function to call: ``__call__``, else ``serve``, else the serving_default signature."""
    for attr in ("__call__", "serve"):
        fn = getattr(restored, attr, None)
        # Restored tf.functions list their traced signatures; a plain method does not.
        concretes = getattr(fn, "concrete_functions", None)
        if concretes:
            specs = _tensor_specs(concretes[0].structured_input_signature)
            return fn, None, None, specs[0] if specs else None
    signatures = getattr(restored, "signatures", {})
    if "serving_default" in signatures:
        signature = signatures["serving_default"]
        inputs = signature.structured_input_signature[1]
        outputs = signature.structured_outputs
        if len(inputs) != 1:
            raise ModelLoadError(
                f"{name}: the serving signature takes {len(inputs)} inputs; "
                "igkit needs one image input"
            )
        ((input_name, spec),) = inputs.items()
        output_name = _pick_output(outputs, name)
        return signature, input_name, output_name, spec
    raise ModelLoadError(
        f"{name}: the SavedModel has no __call__, serve or serving_default endpoint to call"
    )


def _pick_output(outputs: Mapping[str, Any], name: str) -> str:
    if len(outputs) == 1:
        return next(iter(outputs))
    for preferred in ("logits", "predictions", "probabilities"):
        if preferred in outputs:
            return preferred
    raise ModelLoadError(
        f"{name}: the serving signature has several outputs ({', '.join(outputs)}) and none is "
        "named logits; wrap the model in a package.module:function that returns one tensor"
    )
