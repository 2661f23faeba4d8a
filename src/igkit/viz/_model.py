"""What :func:`igkit.viz.explain_figures` needs of the model: the input in the model's layout,
the baseline rebuilt as the engine builds it, and the extra IG runs of the ``baselines`` style.

Private to :mod:`igkit.viz`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from igkit.core.result import Result
from igkit.viz._draw import _hwc, _target

#: The baselines the ``baselines`` style compares, as the TF tutorial and the Keras example do.
COMPARED_BASELINES: tuple[str, ...] = ("black", "white", "uniform", "blur")


@dataclass(frozen=True)
class _Setting:
    """One input as the model sees it, and how to get back to channels-last for drawing."""

    x: np.ndarray  # batch of one, model layout
    channel_axis: int  # of the batch
    input_range: tuple[float, float]
    to_hwc: Callable[[np.ndarray], np.ndarray]  # one example, model layout -> (H, W, C)
    given_to_hwc: Callable[[np.ndarray], np.ndarray]  # one example, caller's layout -> HWC
    net: object | None
    output: object


def _setting(
    image: ArrayLike,
    model: object | None,
    output: object | None,
    channel_axis: int | None,
    input_range: tuple[float, float] | None,
) -> _Setting:
    """Resolve the model (a plain one or a :class:`~igkit.models.spec.LoadedModel`) and layout."""
    from igkit.api import _infer_range
    from igkit.models.spec import LoadedModel

    if isinstance(model, LoadedModel):
        loaded = model
        img = _hwc(image, channel_axis, "image")
        return _Setting(
            x=loaded.to_model_layout(img[None]),
            channel_axis=loaded.channel_axis,
            input_range=input_range or (0.0, 1.0),
            to_hwc=loaded.to_hwc,
            given_to_hwc=lambda a: _hwc(a, channel_axis, "array"),
            net=loaded.model,
            output=output if output is not None else loaded.default_output,
        )
    arr = np.asarray(image)
    if arr.ndim != 3:
        raise ValueError(f"image must be one example, (H, W, C) or (C, H, W); got {arr.shape}")
    axis = 2 if channel_axis is None else channel_axis % 3
    x = arr[None].astype(np.float32) if arr.dtype.kind in "iub" else arr[None]
    return _Setting(
        x=x,
        channel_axis=axis + 1,
        input_range=input_range or _infer_range(x),
        to_hwc=lambda a: np.moveaxis(np.asarray(a), axis, -1),
        given_to_hwc=lambda a: np.moveaxis(np.asarray(a), axis, -1),
        net=model,
        output=output if output is not None else "raw",
    )


def _baseline_image(setting: _Setting, spec: str, seed: int) -> np.ndarray | None:
    """A named (or ``constant V``) baseline rebuilt as the engine builds it, channels-last."""
    from igkit.core.baselines import BaselineContext, available_baselines, make_baselines

    item: str | float
    if spec in available_baselines():
        item = spec
    elif spec.startswith("constant "):
        item = float(spec.split(" ", 1)[1])
    else:
        return None
    context = BaselineContext(
        inputs=setting.x.astype(np.float32),
        channel_axis=setting.channel_axis,
        input_range=setting.input_range,
        rng=np.random.default_rng(seed),
    )
    _, array = make_baselines([item], context)[0]
    return np.asarray(setting.to_hwc(array[0]), dtype=np.float32)


def _result_hwc(result: Result, setting: _Setting) -> Result:
    """The Result with channels-last attributions, so the figure functions can draw it."""
    from dataclasses import replace

    attrs = np.asarray(result.attributions)
    if attrs.ndim == setting.x.ndim:  # a batch
        moved = np.stack([np.asarray(setting.to_hwc(a)) for a in attrs])
    else:
        moved = np.asarray(setting.to_hwc(attrs))
    return replace(result, attributions=moved)


def _baseline_runs(
    setting: _Setting, result: Result, index: int, batch_size: int | None, seed: int
) -> list[tuple[str, np.ndarray, Result]]:
    """IG of the input against each of :data:`COMPARED_BASELINES`, at the Result's settings.

    The Result itself is reused for a deterministic baseline it was computed against.
    """
    import warnings

    import igkit
    from igkit.core.checks import NothingToAttributeWarning
    from igkit.core.engine import NotConvergedWarning

    runs = []
    for name in COMPARED_BASELINES:
        base = _baseline_image(setting, name, seed)
        assert base is not None  # every compared baseline is a registered name
        if tuple(result.baselines) == (name,) and name != "uniform" and len(result) == 1:
            runs.append((name, base, _result_hwc(result, setting)))
            continue
        with warnings.catch_warnings():
            # Each panel's title states its own completeness in words.
            warnings.simplefilter("ignore", NotConvergedWarning)
            warnings.simplefilter("ignore", NothingToAttributeWarning)
            other = igkit.integrated_gradients(
                setting.net,
                setting.x,
                target=_target(result, index),
                baseline=name,
                # The Result's own request: steps="auto" refines again for each baseline.
                steps=(
                    result.requested_steps
                    if result.requested_steps is not None
                    else int(np.asarray(result.steps).reshape(-1)[index])
                ),
                max_steps=result.max_steps if result.max_steps is not None else 1024,
                method=result.method,
                output=setting.output,
                batch_size=batch_size,
                tol=result.tol,
                seed=seed,
                channel_axis=setting.channel_axis,
                input_range=setting.input_range,
                batched=True,
            )
        runs.append((name, base, _result_hwc(other, setting)))
    return runs
