"""``package.module:function``: an importable function that builds the model.

The function may return a :class:`~igkit.models.spec.LoadedModel` (used as is), a
``torch.nn.Module``, a Keras model or a ``tf.Module``; each framework's object gets that
framework's defaults. It receives ``weights=PATH`` when ``--weights`` is given.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from typing import Any

from igkit.models.sources._common import DEFAULT_INPUT_SIZE
from igkit.models.sources._registry import LoadOptions, ModelLoadError, available_schemes
from igkit.models.sources._torch_common import torch_classifier
from igkit.models.sources.keras import describe_keras_model, keras_backend
from igkit.models.spec import LoadedModel

_ENTRY_POINT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def looks_like_entry_point(spec: str) -> bool:
    """Whether ``spec`` has the form ``package.module:function`` (dotted names, one colon)."""
    return bool(_ENTRY_POINT.match(spec))


def load_entry_point(spec: str, options: LoadOptions) -> LoadedModel:
    """Call ``package.module:function`` and describe what it returns."""
    module_name, _, attr_path = spec.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name.split(".")[0]:
            raise ModelLoadError(
                f"model {spec!r}: importing {module_name!r} failed ({exc})"
            ) from exc
        raise ModelLoadError(
            f"unknown model {spec!r}: {module_name!r} is neither a model scheme nor an importable "
            f"module; use one of: {', '.join(available_schemes())}"
        ) from exc
    except ImportError as exc:
        raise ModelLoadError(
            f"model {spec!r}: cannot import {module_name!r} ({exc}); is it installed or on "
            "PYTHONPATH?"
        ) from exc
    for attr in attr_path.split("."):
        if not hasattr(target, attr):
            raise ModelLoadError(f"model {spec!r}: {module_name!r} has no attribute {attr_path!r}")
        target = getattr(target, attr)
    if not callable(target):
        raise ModelLoadError(f"model {spec!r}: {attr_path!r} is not a function")
    kwargs: dict[str, Any] = {}
    if options.weights is not None:
        try:
            accepts = "weights" in inspect.signature(target).parameters
        except (TypeError, ValueError):
            accepts = False
        if not accepts:
            raise ModelLoadError(
                f"model {spec!r}: --weights given but {attr_path}() takes no weights argument"
            )
        kwargs["weights"] = str(options.weights)
    made = target(**kwargs)
    if isinstance(made, LoadedModel):
        return made
    return _describe_object(made, spec)


def _describe_object(obj: Any, spec: str) -> LoadedModel:
    """A LoadedModel for a model object of a known framework, with that framework's defaults."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(obj, torch.nn.Module):
        return torch_classifier(obj, name=spec, description=f"torch module from {spec}")
    keras = sys.modules.get("keras")
    if keras is not None and isinstance(obj, keras.Model):
        keras_backend()
        return describe_keras_model(
            obj,
            name=spec,
            preprocess="resize",
            labels=None,
            default_output=None,
            description=f"Keras model from {spec}",
        )
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(obj, tf.Module) and callable(obj):
        return LoadedModel(
            model=obj,
            framework="tensorflow",
            channels_first=False,
            input_size=DEFAULT_INPUT_SIZE,
            preprocess="pad",
            labels=None,
            name=spec,
            default_output="softmax",
            description=f"tf.Module from {spec}",
        )
    raise ModelLoadError(
        f"model {spec!r} returned a {type(obj).__name__}, not a torch.nn.Module, Keras model or "
        "tf.Module; for a plain function (e.g. JAX) return igkit.models.spec.LoadedModel(...) "
        "to say its framework, layout and input size"
    )
