"""Which method explains this model best, on this data: methods x metrics over examples.

An :class:`Evaluator` holds the model once (through the explanation workflow's
:class:`~igkit.workflow.explainer.Explainer`, so inputs are read, predicted and their targets
chosen exactly as ``igkit explain`` does) and, for a batch of examples, computes every method's
attributions (``igkit.attribute``) and every metric of them (``igkit.metrics``), batched through
the model. It returns :class:`EvaluatedBatch`: one row per (example, method, metric) and the
perturbation curves' sums, which :mod:`igkit.evaluation.outputs` writes and draws. The local
run and the Ray run (:mod:`igkit.evaluation.ray_run`) call the same :meth:`Evaluator.evaluate`.

Attributions an earlier ``explain-dataset`` store holds are reused for the method it ran
(``integrated_gradients``): ``Evaluator.evaluate(..., stored=...)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from igkit.workflow.explainer import Explainer, Prediction
from igkit.workflow.settings import ExplainSettings

__all__ = [
    "CONTROLS",
    "EvaluateSettings",
    "EvaluatedBatch",
    "Evaluator",
    "parse_methods",
    "parse_metrics",
]

#: The methods that explain nothing, always offered: a method must beat them.
CONTROLS = ("random", "sobel")

#: ``--methods`` shorthands.
_SHORT = {"ig": "integrated_gradients"}


def parse_methods(text: str) -> tuple[str, ...]:
    """``ig,smoothgrad,random`` -> registered method names (shorthands expanded), checked.

    Raises:
        ValueError: An unknown name (listing the choices), a repeated one, or none.
    """
    from igkit.methods import method_names

    names = [_SHORT.get(n.strip(), n.strip()) for n in text.split(",") if n.strip()]
    if not names:
        raise ValueError("name at least one method, e.g. --methods ig,smoothgrad,random")
    known = set(method_names())
    for name in names:
        if name not in known:
            raise ValueError(
                f"unknown method {name!r}; choose from ig, {', '.join(sorted(known))}"
            )
    if len(set(names)) != len(names):
        raise ValueError(f"a method is named twice in {text!r}")
    return tuple(names)


def _metric_function(name: str) -> Any:
    """The public ``igkit.metrics`` function behind the registered metric ``name``."""
    import igkit.metrics as metrics

    for base in (name, name.rsplit("_", 1)[0]):
        if hasattr(metrics, base) and callable(getattr(metrics, base)):
            return getattr(metrics, base)
    return None


def compute_metric(name: str, model: object, x: np.ndarray, attributions: np.ndarray,
                   **kwargs: Any) -> Any:
    """``igkit.metrics.evaluate_metric(name, ...)`` with the keywords the metric takes among
    ``kwargs`` (target, channel_axis, output, batch_size, explain, masks, seed, ...)."""
    import inspect

    from igkit.metrics import evaluate_metric

    fn = _metric_function(name)
    accepted = set(inspect.signature(fn).parameters) if fn is not None else set(kwargs)
    call = {k: v for k, v in kwargs.items() if k in accepted}
    if "masks" in kwargs and kwargs["masks"] is not None:
        call["masks"] = kwargs["masks"]
    return evaluate_metric(name, model, x, attributions, **call)


def parse_metrics(text: str, *, masks: bool = False) -> tuple[str, ...]:
    """``deletion,insertion`` -> metric names (``igkit.metrics.metric_names()``), checked like
    :func:`parse_methods`. Metrics that need ground-truth masks are refused unless ``masks``
    (the run has ``--masks``)."""
    from igkit.metrics import get_metric, metric_names

    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ValueError("name at least one metric, e.g. --metrics deletion,insertion")
    known = [n for n in metric_names() if masks or "masks" not in get_metric(n).needs]
    for name in names:
        if name not in known:
            why = ("needs ground-truth masks: pass --masks DIR, or "
                   if name in metric_names() else "")
            raise ValueError(f"metric {name!r}: {why or 'unknown metric; '}choose one of "
                             f"{', '.join(known)}")
    if len(set(names)) != len(names):
        raise ValueError(f"a metric is named twice in {text!r}")
    return tuple(names)


@dataclass(frozen=True)
class EvaluateSettings:
    """What an evaluation computes: the model and inputs (as for ``igkit explain``), the
    methods (with options per method) and the metrics. Plain, frozen, picklable (Ray ships it).

    Attributes:
        explain: The model, preprocessing, output, batch size, seed and IG settings.
        methods: Registered method names (controls included when asked for).
        metrics: Registered metric names.
        method_options: Per method, its options (``igkit.attribute(**options)``).
        metric_options: Per metric, its options.
    """

    explain: ExplainSettings
    methods: tuple[str, ...]
    metrics: tuple[str, ...]
    method_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    metric_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass
class EvaluatedBatch:
    """What one batch of examples gave.

    Attributes:
        rows: One dict per (example, method, metric): ``example``, ``path``, ``target``,
            ``method``, ``metric``, ``value``, ``higher_is_better``.
        curves: Per (method, metric) of curve metrics: ``(fractions, sum of curves, count)``.
        failures: ``(path, message)`` of methods or metrics that could not run on an example.
        notes: ``(method, message)`` of the warnings the methods raised (an all-zero map of a
            saturated output, IG missing its tolerance): the command prints them, so no
            degenerate map goes into the table unsaid.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    curves: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, int]] = field(
        default_factory=dict
    )
    failures: list[tuple[str, str]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)

    def merge(self, other: EvaluatedBatch) -> None:
        self.rows.extend(other.rows)
        self.failures.extend(other.failures)
        self.notes.extend(other.notes)
        for key, (fractions, total, count) in other.curves.items():
            if key in self.curves:
                f0, t0, c0 = self.curves[key]
                self.curves[key] = (f0, t0 + total, c0 + count)
            else:
                self.curves[key] = (fractions, total.copy(), count)


class Evaluator:
    """The model loaded once; methods and metrics of batches of examples.

    Raises:
        igkit.workflow.InputError: If the model cannot be loaded or does not fit the settings.
    """

    def __init__(self, settings: EvaluateSettings, explainer: Explainer | None = None) -> None:
        self.settings = settings
        self.explainer = explainer or Explainer(settings.explain)

    @property
    def model(self) -> Any:
        return self.explainer.model

    def attributions(self, method: str, x: np.ndarray, targets: np.ndarray,
                     notes: list[tuple[str, str]] | None = None) -> np.ndarray:
        """One method's attributions of a batch ``x`` (model layout), shaped like ``x``; the
        warnings it raises are appended to ``notes`` as ``(method, message)``."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            attr = self._attribute(self.model.model, method, x, targets, self._options(method))
        if notes is not None:
            notes.extend((method, str(w.message)) for w in caught)
        return attr

    def _options(self, method: str) -> dict[str, Any]:
        """``method``'s options: the method's own, and for IG the run's IG settings (steps,
        rule, tol, max_steps) unless the method's options say otherwise."""
        s = self.settings.explain
        options = dict(self.settings.method_options.get(method, {}))
        if method == "integrated_gradients":
            for key, value in (("steps", s.steps), ("rule", s.method), ("tol", s.tol),
                               ("max_steps", s.max_steps)):
                options.setdefault(key, value)
        return options

    def _attribute(self, model: object, method: str, x: np.ndarray, targets: np.ndarray,
                   options: Mapping[str, Any]) -> np.ndarray:
        """``igkit.attribute`` of ``model`` with the run's baseline, output, batch size, seed
        and layout, and ``options``."""
        import igkit

        s = self.settings.explain
        result = igkit.attribute(
            model, x, method, target=targets, baseline=list(s.baseline),
            output=self.explainer.output, batch_size=s.batch_size, seed=s.seed,
            channel_axis=self.model.channel_axis, input_range=(0.0, 1.0), batched=True,
            **options,
        )
        return np.asarray(result.attributions)

    def evaluate(
        self,
        predictions: Sequence[Prediction],
        ids: Sequence[int] | None = None,
        stored: Mapping[str, np.ndarray] | None = None,
        masks: np.ndarray | None = None,
    ) -> EvaluatedBatch:
        """Every method and metric on a batch of predicted examples (their first target).

        Args:
            predictions: From ``Explainer.prepare`` / ``predict``.
            ids: An id per example for the rows (default: their position).
            stored: Attributions already computed, per method: ``(N, *model layout)``.
            masks: ``(N, H, W)`` ground-truth regions for the localisation metrics (all False
                where an example has none).
        """
        out = EvaluatedBatch()
        if not predictions:
            return out
        ids = list(range(len(predictions))) if ids is None else list(ids)
        x = self.model.to_model_layout(
            np.stack([self.explainer.pixels(p.image) for p in predictions])
        )
        targets = np.asarray([p.targets[0] for p in predictions], dtype=np.int64)
        paths = [p.input.where for p in predictions]
        s = self.settings.explain
        for method in self.settings.methods:
            attr = (stored or {}).get(method)
            if attr is None:
                attr = self.attributions(method, x, targets, out.notes)
            for metric in self.settings.metrics:
                options = dict(self.settings.metric_options.get(metric, {}))
                res = compute_metric(
                    metric, self.model.model, x, attr, target=targets,
                    channel_axis=self.model.channel_axis, output=self.explainer.output,
                    batch_size=s.batch_size,
                    explain=lambda model, xs, t, _m=method: self._explain_with(_m, model, xs, t),
                    seed=s.seed, masks=masks, **options,
                )
                values = np.asarray(res.values, dtype=np.float64)
                for i in range(len(predictions)):
                    out.rows.append({
                        "example": int(ids[i]), "path": paths[i], "target": int(targets[i]),
                        "method": method, "metric": metric, "value": float(values[i]),
                        "higher_is_better": bool(res.higher_is_better),
                    })
                scores = getattr(res, "scores", None)
                fractions = getattr(res, "fractions", None)
                if scores is not None and fractions is not None:
                    curves = np.asarray(scores, dtype=np.float64)
                    out.merge(EvaluatedBatch(curves={
                        (method, metric): (np.asarray(fractions), curves.sum(axis=0),
                                           curves.shape[0])
                    }))
        return out

    def _explain_with(
        self, method: str, model: object, x: np.ndarray, targets: np.ndarray
    ) -> np.ndarray:
        """``method``'s attributions of ``x`` for another model (a randomised copy, for the
        sanity checks), with the run's baseline, output, method options and IG settings, so
        that the randomised model's map is made as the run's own was."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return self._attribute(model, method, x, targets, self._options(method))
