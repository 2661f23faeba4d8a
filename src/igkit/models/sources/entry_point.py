"""``package.module:function``: an importable function that builds the model.

The function may return a :class:`~igkit.models.spec.LoadedModel` (used as is), a
``torch.nn.Module``, a Keras model or a ``tf.Module``; each framework's object gets that
framework's defaults. It receives ``weights=PATH`` when ``--weights`` is given.

Importing a module runs its code and so does calling the function, so this source needs
``trust`` like every other format that runs code (:data:`ENTRY_POINT`). A spec whose top-level
package cannot be found is not taken for code: it stays an "unknown model" (a mistyped scheme
such as ``torchvison:resnet18`` should say that, not ask for ``--trust``). With ``trust``, a
function that exits the program, needs arguments, raises, or returns something that is not a
model is reported in one line rather than ending igkit or printing a traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import sys
from typing import Any

from igkit.models.sources._common import DEFAULT_INPUT_SIZE, first_line
from igkit.models.sources._registry import (
    LoadOptions,
    ModelLoadError,
    RunsCode,
    available_schemes,
    register_entry_point,
)
from igkit.models.sources._torch_common import torch_classifier
from igkit.models.sources.keras import describe_keras_model, keras_backend
from igkit.models.spec import LoadedModel

_ENTRY_POINT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def looks_like_entry_point(spec: str) -> bool:
    """Whether ``spec`` has the form ``package.module:function`` (dotted names, one colon)."""
    return bool(_ENTRY_POINT.match(spec))


ENTRY_POINT = RunsCode(
    what="a Python function to import and call (package.module:function)",
    why="importing its module runs that module, and the function can do anything, such as "
    "read and write files",
    instead="load a model file that is pure data (a built-in model with --weights, or a .keras "
    "file without Lambda layers)",
)


def entry_point_risk(spec: str) -> RunsCode | None:
    """Code, unless the top-level package does not exist (then it is an unknown model).

    Finding a top-level module imports nothing: the import system only searches for it.
    """
    top = spec.partition(":")[0].split(".")[0]
    try:
        found = top in sys.modules or importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        found = False
    return ENTRY_POINT if found else None


@register_entry_point(runs_code=entry_point_risk)
def load_entry_point(spec: str, options: LoadOptions) -> LoadedModel:
    """Call ``package.module:function`` and describe what it returns."""
    if not options.trust and entry_point_risk(spec) is not None:
        # The dispatch refused it already; never import it untrusted.
        raise ModelLoadError(ENTRY_POINT.refusal(spec))
    module_name, _, attr_path = spec.partition(":")
    try:
        target: Any = _import(module_name)
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
        raise ModelLoadError(
            f"model {spec!r}: {attr_path!r} is a {type(target).__name__}, not a function; "
            f"{_EXPECTED}"
        )
    try:
        parameters: dict[str, inspect.Parameter] | None = dict(inspect.signature(target).parameters)
    except (TypeError, ValueError):
        parameters = None  # some builtins have no signature: find out by calling
    kwargs: dict[str, Any] = {}
    if options.weights is not None:
        if parameters is None or "weights" not in parameters:
            raise ModelLoadError(
                f"model {spec!r}: --weights given but {attr_path}() takes no weights argument"
            )
        kwargs["weights"] = str(options.weights)
    if parameters is not None:
        required = [
            name
            for name, p in parameters.items()
            if p.default is p.empty
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            and name not in kwargs
        ]
        if required:
            raise ModelLoadError(
                f"model {spec!r}: {attr_path}() needs the argument(s) {', '.join(required)}, "
                f"which igkit cannot give; {_EXPECTED}"
            )
    made = _call(target, kwargs, spec, attr_path)
    if isinstance(made, LoadedModel):
        return made
    return _describe_object(made, spec)


_EXPECTED = (
    "--model package.module:function takes a function that builds the model when called with "
    "no arguments (or weights=PATH with --weights) and returns a torch.nn.Module, a Keras "
    "model, a tf.Module or an igkit LoadedModel"
)


def _import(module_name: str) -> Any:
    """Import ``module_name``; exiting or failing at import becomes one line (ImportError is
    left to the caller, which tells a missing module from a broken one)."""
    try:
        return importlib.import_module(module_name)
    except SystemExit as exc:
        raise ModelLoadError(
            f"model module {module_name!r}: importing it tried to exit the program "
            f"(SystemExit: {exc.code}); {_EXPECTED}"
        ) from exc
    except ImportError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's module: its error, in one line
        raise ModelLoadError(
            f"model module {module_name!r}: importing it raised {first_line(exc)}"
        ) from exc


def _call(target: Any, kwargs: dict[str, Any], spec: str, attr_path: str) -> Any:
    """``target(**kwargs)``; exiting, or any error of the user's function, becomes one line."""
    try:
        return target(**kwargs)
    except SystemExit as exc:
        raise ModelLoadError(
            f"model {spec!r}: calling {attr_path}() tried to exit the program "
            f"(SystemExit: {exc.code}), which a model function must not do; {_EXPECTED}"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - the user's code: its error, in one line
        raise ModelLoadError(
            f"model {spec!r}: {attr_path}() raised {first_line(exc)}; {_EXPECTED}"
        ) from exc


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
        "tf.Module; --model package.module:function takes a function that builds the model; for "
        "a plain function (e.g. JAX) return igkit.models.spec.LoadedModel(...) to say its "
        "framework, layout and input size"
    )
