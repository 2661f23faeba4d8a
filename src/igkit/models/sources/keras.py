"""Keras models: ``keras:NAME`` (``keras.applications`` or a Keras port registered here) and
``.keras`` / ``.h5`` files, plus how a Keras model is described (used by other sources too).

A Keras file is pure data unless its config holds Python code: a ``Lambda`` layer (marshalled
bytecode), a ``TFSMLayer`` (a SavedModel) or custom objects (classes and functions of other
packages). :func:`keras_file_risk` reads the config as JSON, running nothing, so the dispatch
refuses those without ``trust``; the file then still loads with ``safe_mode=True`` unless
``trust`` is given. ``keras:NAME`` builds keras.applications' own models (library code, pure
weights). Keras runs on TensorFlow.
"""

from __future__ import annotations

import importlib
import inspect
import json
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from igkit.models.sources._common import (
    DEFAULT_INPUT_SIZE,
    first_line,
    is_network_failure,
    no_weights,
    require,
    stdout_to_stderr,
)
from igkit.models.sources._registry import (
    LoadOptions,
    ModelLoadError,
    NamedLoader,
    RunsCode,
    register_files,
    register_scheme,
)
from igkit.models.spec import LoadedModel

# keras:NAME names served by igkit's own Keras ports rather than keras.applications.
_PORTS: dict[str, NamedLoader] = {}


def register_keras_port(name: str) -> Callable[[NamedLoader], NamedLoader]:
    """Register the loader of ``keras:NAME`` for a model igkit ports to Keras itself."""

    def decorate(loader: NamedLoader) -> NamedLoader:
        key = name.casefold()
        if key in _PORTS:
            raise ValueError(f"a Keras port named {name!r} is already registered")
        _PORTS[key] = loader
        return loader

    return decorate


def keras_backend() -> ModuleType:
    """Keras, checked to run on TensorFlow."""
    keras = require("keras", "tensorflow", "a Keras model")
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise ModelLoadError(
            f"Keras is set to the {backend!r} backend; igkit runs Keras models on TensorFlow: "
            "set the environment variable KERAS_BACKEND=tensorflow"
        )
    return keras


def describe_keras_model(
    model: Any,
    *,
    name: str,
    preprocess: str,
    labels: list[str] | None,
    default_output: str | None,
    description: str,
) -> LoadedModel:
    """Describe a Keras model: layout and size from its input shape, output from its last layer."""
    if len(model.inputs) != 1:
        raise ModelLoadError(
            f"{name}: the model has {len(model.inputs)} inputs; igkit needs one image input"
        )
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4:
        raise ModelLoadError(
            f"{name}: the model input has shape {shape}; igkit needs (N, H, W, 3) images"
        )
    channels_first = shape[-1] not in (1, 3) and shape[1] == 3
    channels = shape[1] if channels_first else shape[-1]
    if channels not in (3, None):
        raise ModelLoadError(f"{name}: the model takes {channels}-channel images; igkit feeds RGB")
    height, width = (shape[2], shape[3]) if channels_first else (shape[1], shape[2])
    size = (int(height), int(width)) if height and width else DEFAULT_INPUT_SIZE
    if default_output is None:
        default_output = "raw" if _ends_in_probabilities(model) else "softmax"
    return LoadedModel(
        model=model,
        framework="tensorflow",
        channels_first=bool(channels_first),
        input_size=size,
        preprocess=preprocess,  # type: ignore[arg-type]
        labels=labels,
        name=name,
        default_output=default_output,
        description=description,
    )


def _ends_in_probabilities(model: Any) -> bool:
    """Whether the last layer already applies softmax or sigmoid (then explain it as is)."""
    last = model.layers[-1] if model.layers else None
    if last is None:
        return False
    if type(last).__name__ == "Softmax":
        return True
    activation = getattr(last, "activation", None)
    return getattr(activation, "__name__", "") in ("softmax", "sigmoid")


_KERAS_PYTHON = RunsCode(
    what="a Keras file with a Lambda layer or other Python code",
    why="Python code in a model file runs when it is loaded and called, so Keras safe mode "
    "refuses it",
    instead="rebuild the model without Lambda layers and custom objects",
)

#: Packages whose objects a Keras config may name without running code of the file's choosing.
_KERAS_PACKAGES = frozenset({"keras", "keras_hub", "keras_cv", "keras_nlp", "builtins"})
#: Layers that carry code: bytecode (Lambda) or a whole SavedModel (TFSMLayer).
_CODE_LAYERS = frozenset({"Lambda", "TFSMLayer"})
# A config larger than this is not a model config; the loader will say what is wrong.
_MAX_CONFIG_BYTES = 256 * 1024 * 1024


def keras_file_risk(path: Path) -> RunsCode | None:
    """What Python code the Keras file's config names (Lambda, TFSMLayer, custom objects).

    Reads ``config.json`` of a ``.keras`` zip or the ``model_config`` attribute of an HDF5 file
    as JSON; nothing in the file runs. A file without a readable config gives None: the loader
    reports the problem.
    """
    config = _keras_config(path)
    if config is None:
        return None
    layers: set[str] = set()
    custom: set[str] = set()
    for node in _json_objects(config):
        class_name = node.get("class_name")
        if not isinstance(class_name, str):
            continue
        if class_name in _CODE_LAYERS or class_name == "__lambda__":
            layers.add("Lambda" if class_name == "__lambda__" else class_name)
        module = node.get("module")
        registered = node.get("registered_name")
        function = node.get("config") if class_name == "function" else None
        if isinstance(function, str) and ">" in function:
            custom.add(function)  # a registered custom function, "package>name"
        elif isinstance(registered, str) and ">" in registered:
            custom.add(registered)  # a registered custom class, "package>Name"
        elif isinstance(module, str) and module.split(".")[0] not in _KERAS_PACKAGES:
            custom.add(f"{module}.{class_name}")
    if not layers and not custom:
        return None
    found = [f"a {name} layer" for name in sorted(layers)]
    if custom:
        found.append(f"custom objects ({', '.join(sorted(custom)[:3])})")
    return RunsCode(
        what=f"a Keras file with {' and '.join(found)}",
        why=_KERAS_PYTHON.why,
        instead=_KERAS_PYTHON.instead,
    )


def _keras_config(path: Path) -> object | None:
    """The model config of a ``.keras`` or HDF5 file, parsed, or None if there is none."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                info = archive.getinfo("config.json")
                if info.file_size > _MAX_CONFIG_BYTES:
                    return None
                return json.loads(archive.read(info))
        h5py = importlib.import_module("h5py")
        with h5py.File(path, "r") as file:
            raw = file.attrs.get("model_config")
        if raw is None:
            return None
        return json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else str(raw))
    except Exception:  # noqa: BLE001 - unreadable or not a model file: the loader reports it
        return None


def _json_objects(value: object) -> Iterator[dict]:
    """Every JSON object (dict) in ``value``, depth first, without recursion."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


@register_files(".keras", ".h5", ".hdf5", usage="a .keras/.h5 file", runs_code=keras_file_risk)
def load_keras_file(path: Path, options: LoadOptions) -> LoadedModel:
    """A Keras model file, loaded in safe mode unless ``trust`` (which the dispatch checked)."""
    no_weights(options, f"the Keras file {path}")
    keras = keras_backend()
    try:
        model = keras.saving.load_model(path, safe_mode=not options.trust, compile=False)
    except ValueError as exc:
        if "safe_mode" in str(exc) or "arbitrary code" in str(exc):
            # Safe mode caught code that the config scan did not name.
            raise ModelLoadError(_KERAS_PYTHON.refusal(str(path))) from exc
        raise ModelLoadError(f"{path}: not a loadable Keras model ({first_line(exc)})") from exc
    except (OSError, TypeError, KeyError) as exc:
        raise ModelLoadError(f"{path}: not a loadable Keras model ({first_line(exc)})") from exc
    if not isinstance(model, keras.Model):
        raise ModelLoadError(f"{path} does not hold a Keras model")
    model.trainable = False
    return describe_keras_model(
        model,
        name=path.stem,
        preprocess="resize",
        labels=None,
        default_output=None,
        description=f"Keras file {path}",
    )


def _keras_application(name: str) -> Callable[..., Any]:
    keras = keras_backend()
    apps = keras.applications
    builders = {
        attr.casefold(): getattr(apps, attr)
        for attr in dir(apps)
        if attr[:1].isupper() and callable(getattr(apps, attr))
    }
    builder = builders.get(name.casefold())
    if builder is None:
        raise ModelLoadError(
            f"keras.applications has no model {name!r}; choose one of "
            f"{', '.join(sorted(b.__name__ for b in builders.values()))}, or "
            f"{', '.join(sorted(_PORTS))}"
        )
    return builder


@register_scheme("keras", "keras:NAME", runs_code=False)
def load_keras_scheme(name: str, options: LoadOptions) -> LoadedModel:
    """``keras:efficientnet_lite0`` (the default model's Keras port) or a keras.applications model.

    A keras.applications model is wrapped as ``pixels -> x * 255 -> preprocess_input -> net``,
    so its own preprocessing is inside the differentiated function.
    """
    port = _PORTS.get(name.casefold())
    if port is not None:
        return port(options)
    builder = _keras_application(name)
    keras = keras_backend()
    from igkit.models.imagenet import imagenet_labels

    kwargs: dict[str, Any] = {"weights": str(options.weights) if options.weights else "imagenet"}
    # Logits out, so that "softmax" means the same thing as for every other model.
    returns_logits = "classifier_activation" in inspect.signature(builder).parameters
    if returns_logits:
        kwargs["classifier_activation"] = None
    try:
        with stdout_to_stderr():
            net = builder(**kwargs)
    except Exception as exc:  # noqa: BLE001 - keras raises bare Exception for failed downloads
        if options.weights is None and is_network_failure(exc):
            raise ModelLoadError(
                f"keras:{builder.__name__} needs its ImageNet weights, which are not in the Keras "
                "cache and cannot be downloaded (no network); pass --weights PATH to a local "
                "weights file (.weights.h5/.h5), or put the file in $KERAS_HOME/models "
                "(default ~/.keras/models)"
            ) from exc
        source = f"weights file {options.weights}" if options.weights else "ImageNet weights"
        raise ModelLoadError(
            f"keras:{builder.__name__}: could not load the {source} ({first_line(exc)})"
        ) from exc
    preprocess_input = importlib.import_module(builder.__module__).preprocess_input
    pixels = keras.Input(shape=tuple(net.input_shape[1:]), name="pixels")
    scaled = keras.layers.Rescaling(255.0, name="to_0_255")(pixels)
    model = keras.Model(pixels, net(preprocess_input(scaled)), name=f"{net.name}_on_pixels")
    model.trainable = False
    classes = int(net.output_shape[-1])
    return describe_keras_model(
        model,
        name=f"keras:{builder.__name__}",
        preprocess="resize",
        labels=imagenet_labels() if classes == 1000 else None,
        default_output="softmax" if returns_logits else "raw",
        description=f"keras.applications.{builder.__name__} with its preprocess_input inside",
    )
