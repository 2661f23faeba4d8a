"""The one-call entry for notebooks, :func:`explain`, and the inline HTML of its explanations.

``igkit.explain("cat.jpg")`` runs the same workflow as ``igkit explain cat.jpg``: the default
model, its preprocessing, the top class, Integrated Gradients with the completeness check. It
returns an :class:`Explanations` list that a notebook shows inline (each input's predictions,
the TF tutorial's panel and the completeness check in words); ``out=`` also writes the files the
command line writes.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from igkit.workflow.explainer import Explainer, Explanation
from igkit.workflow.inputs import Input, InputError, array_inputs, channel_inputs, photo_inputs
from igkit.workflow.settings import ExplainSettings, TargetSpec, parse_target

if TYPE_CHECKING:
    from igkit.core.result import Result
    from igkit.models.spec import LoadedModel

__all__ = ["Explanations", "explain", "explanation_html", "model_inputs"]


class Explanations(list):  # type: ignore[type-arg]
    """The explanations of :func:`explain`, one per input, shown inline in a notebook.

    A plain list of :class:`~igkit.workflow.explainer.Explanation`; :attr:`results` gives the
    Results (one per input and target) and :attr:`explainer` the workflow that made them.
    """

    explainer: Explainer

    @property
    def results(self) -> list[Result]:
        """One single-target Result per input and target, in order (original images only)."""
        return [
            te.result for e in self for te in e.targets if not te.variant.slug
        ]

    def _repr_html_(self) -> str:
        return "".join(explanation_html(e) for e in self)


def _targets(target: Any) -> tuple[TargetSpec, ...]:
    if target is None:
        return ()
    items = target if isinstance(target, (list, tuple)) else [target]
    return tuple(parse_target(str(t)) for t in items)


def _inputs(inputs: Any, settings: ExplainSettings) -> list[Input]:
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if isinstance(inputs, np.ndarray) or (
        isinstance(inputs, Sequence) and inputs and isinstance(inputs[0], np.ndarray)
    ):
        return array_inputs(inputs)
    paths = [Path(p) for p in inputs]
    if settings.multichannel:
        return channel_inputs(paths, settings.channels, settings.channel_files)
    return photo_inputs(paths)


def model_inputs(
    images: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | np.ndarray,
    model: LoadedModel,
    *,
    preprocess: str | None = None,
) -> np.ndarray:
    """Photos (files, folders or arrays) as a batch the model takes, values in [0, 1].

    Each image is read (8-bit files and integer arrays are scaled to [0, 1]), brought to the
    model's input size as the model's own preprocessing does (or ``preprocess``: "pad",
    "resize", "center_crop"), and the batch is put in the model's layout (NCHW for PyTorch).
    ``igkit.integrated_gradients(model, model_inputs("cat.jpg", model), ...)`` then explains
    it, exactly as ``igkit explain`` does.

    Raises:
        InputError: For a file that cannot be read or an array of the wrong shape.
    """
    from igkit.io.images import preprocess as resize

    items = _inputs(images, ExplainSettings(model=model.name))
    mode = preprocess or model.preprocess
    try:
        pixels = [resize(item.read(), model.input_size, mode) for item in items]  # type: ignore[arg-type]
    except ValueError as exc:
        raise InputError(str(exc)) from None
    return model.to_model_layout(np.stack(pixels))


def explain(
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | np.ndarray,
    model: str | LoadedModel = "efficientnet_lite0",
    *,
    target: int | str | Sequence[int | str] | None = None,
    out: str | os.PathLike[str] | None = None,
    replace: bool = False,
    **settings: Any,
) -> Explanations:
    """Explain photos, multi-channel examples or arrays in one call.

    Args:
        inputs: An image file, a folder, a list of them, or images as arrays (``(H, W, C)`` or
            ``(N, H, W, C)``, channels last, values in [0, 1]).
        model: A model name, file or spec (as for ``igkit explain --model``), or a model from
            :func:`igkit.load_model`.
        target: What to explain per input: ``"top1"`` (default), ``"top3"``, a class index or
            a class name, or a list of these.
        out: Also write the npz files, figures and ``summary.csv`` there, as the CLI does.
        replace: Replace an earlier run in ``out`` (only the files its record lists).
        **settings: Any field of :class:`~igkit.workflow.settings.ExplainSettings`
            (``steps``, ``method``, ``baseline``, ``output``, ``figures``, ``channels``,
            ``multilabel``...). ``baseline`` may be a name or a list; ``figures`` defaults to
            none unless ``out`` is given.

    Returns:
        One :class:`~igkit.workflow.explainer.Explanation` per input.

    Raises:
        InputError: For anything the user can fix, before any attribution.
    """
    if isinstance(settings.get("baseline"), (str, float, int)):
        settings["baseline"] = (settings["baseline"],)
    for key in ("baseline", "figures", "channels", "model_channels", "augment"):
        if isinstance(settings.get(key), list):
            settings[key] = tuple(settings[key])
    settings.setdefault("figures", ("panel",) if out is not None else ())
    try:
        specs = _targets(target)
        loaded = None if isinstance(model, str) else model
        name = model if isinstance(model, str) else loaded.name  # type: ignore[union-attr]
        config = ExplainSettings(model=name, **settings)
        config = config.replace(targets=specs or (() if config.multilabel else config.targets))
        config.check()
    except (TypeError, ValueError) as exc:
        raise InputError(str(exc)) from None
    items = _inputs(inputs, config)
    explainer = Explainer(config, loaded)
    folder = None
    if out is not None:
        from igkit.workflow.outputs import OutputFolder

        folder = OutputFolder(out, explainer, replace=replace)
        folder.check()
    done = Explanations()
    done.explainer = explainer
    rows: list[dict[str, Any]] = []
    predictions = explainer.prepare(items)
    if folder is not None:
        folder.plan(predictions)
        folder.begin()
    for prediction in predictions:
        explanation = explainer.explain(
            prediction,
            explainer.variants(prediction),
            trace=folder is not None and folder.needs_trace,
        )
        done.append(explanation)
        if folder is not None:
            rows.extend(folder.write(explanation))
    if folder is not None:
        folder.finish(rows, [e.prediction.input.name for e in done])
    return done


def explanation_html(explanation: Explanation) -> str:
    """One input's explanation as HTML: its top predictions, then per target and variant the
    completeness check in words, the numbers and the tutorial's panel
    (:func:`igkit.viz.result_html`). Every string from data is escaped."""
    from igkit.viz.notebook import result_html

    p = explanation.prediction
    parts = [f"<div class='igkit-explanation'><h4>{html.escape(p.input.name)}</h4><ol>"]
    for k, name, score in explanation.top:
        parts.append(f"<li>{html.escape(name)} ({k}): {score:.4f}</li>")
    parts.append("</ol>")
    for te in explanation.targets:
        on = f" on the {te.variant.name} image" if te.variant.slug else ""
        what = f"{te.label} ({te.target}){on}, rank {te.rank}"
        parts.append(f"<p>{html.escape(what)}</p>")
        parts.append(result_html(te.result, labels={te.target: te.label}))
    parts.append("</div>")
    return "".join(parts)
