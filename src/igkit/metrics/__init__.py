"""Is an explanation faithful to the model? Metrics of attributions, by name.

Each metric takes a batch of inputs ``(N, ...)``, their attributions ``(N, ...)`` and targets,
runs the model forward only in full batches of ``batch_size`` (any model igkit runs: torch,
Keras/TF, JAX, a ``LoadedModel``), and returns a dataclass deriving from ``MetricResult``:
``metric``, ``values`` (one number per input), ``higher_is_better`` and the metric's own arrays
(curves, per-layer similarities), ready to be written as rows.

* faithfulness: :func:`deletion`, :func:`insertion`, :func:`pixel_flipping` (MoRF/LeRF),
  :func:`road` (noisy linear imputation);
* robustness: :func:`infidelity`, :func:`max_sensitivity`;
* randomisation: :func:`mprt` (cascading, top-down), :func:`random_logit`;
* localisation (ground-truth masks): :func:`pointing_game`, :func:`mask_share`,
  :func:`relevance_rank_accuracy`;
* completeness and stability: :func:`completeness`, :func:`completeness_of`, :func:`stability`.

:func:`evaluate_metric` runs any of them by its registered name (:func:`metric_names`), as a
command line or a comparison of methods over a dataset would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from igkit.metrics import randomisation
from igkit.metrics._model import forward
from igkit.metrics._results import MetricResult
from igkit.metrics.completeness import completeness, completeness_of, stability
from igkit.metrics.faithfulness import deletion, insertion, pixel_flipping, road
from igkit.metrics.localisation import mask_share, pointing_game, relevance_rank_accuracy
from igkit.metrics.randomisation import mprt, random_logit
from igkit.metrics.robustness import infidelity, max_sensitivity

__all__ = [
    "MetricResult",
    "MetricSpec",
    "completeness",
    "completeness_of",
    "deletion",
    "evaluate_metric",
    "forward",
    "get_metric",
    "infidelity",
    "insertion",
    "mask_share",
    "max_sensitivity",
    "metric_names",
    "mprt",
    "pixel_flipping",
    "pointing_game",
    "random_logit",
    "randomisation",
    "relevance_rank_accuracy",
    "road",
    "stability",
]


@dataclass(frozen=True)
class MetricSpec:
    """A registered metric.

    Attributes:
        name: Its name in :func:`metric_names`.
        run: ``run(model, x, attributions, explain=..., masks=..., **options)``.
        needs: What it needs beyond the attributions: "model", "explain" (an attribution
            function ``explain(model, x, target)``), "masks" (ground-truth regions).
        higher_is_better: Whether a larger value is a better explanation.
        summary: One line for listings.
    """

    name: str
    run: Callable[..., MetricResult]
    needs: tuple[str, ...]
    higher_is_better: bool
    summary: str


_METRICS: dict[str, MetricSpec] = {}


def _register(name: str, needs: tuple[str, ...], higher: bool, summary: str,
              run: Callable[..., MetricResult]) -> None:
    _METRICS[name] = MetricSpec(name, run, needs, higher, summary)


_register("deletion", ("model",), False, "AUC of the score as top features are removed",
          lambda m, x, a, **o: deletion(m, x, a, **o))
_register("insertion", ("model",), True, "AUC of the score as top features are put back",
          lambda m, x, a, **o: insertion(m, x, a, **o))
_register("pixel_flipping_morf", ("model",), False, "AUC, most relevant flipped first",
          lambda m, x, a, **o: pixel_flipping(m, x, a, order="morf", **o))
_register("pixel_flipping_lerf", ("model",), True, "AUC, least relevant flipped first",
          lambda m, x, a, **o: pixel_flipping(m, x, a, order="lerf", **o))
_register("road_morf", ("model",), False, "mean score, most relevant imputed first",
          lambda m, x, a, **o: road(m, x, a, order="morf", **o))
_register("road_lerf", ("model",), True, "mean score, least relevant imputed first",
          lambda m, x, a, **o: road(m, x, a, order="lerf", **o))
_register("infidelity", ("model",), False, "squared error of the predicted score change",
          lambda m, x, a, **o: infidelity(m, x, a, **o))
_register("max_sensitivity", ("model", "explain"), False,
          "largest relative change of the map under small input noise",
          lambda m, x, a, *, explain, **o: max_sensitivity(m, x, a, explain, **o))
_register("mprt", ("model", "explain"), False,
          "similarity to maps of top-down randomised models",
          lambda m, x, a, *, explain, **o: mprt(m, x, a, explain, **o))
_register("random_logit", ("model", "explain"), False, "similarity to the map of another class",
          lambda m, x, a, *, explain, **o: random_logit(m, x, a, explain, **o))
_register("pointing_game", ("masks",), True, "the map's maximum lies in the mask",
          lambda m, x, a, *, masks, **o: pointing_game(a, masks, **o))
_register("mask_share", ("masks",), True, "share of the positive mass inside the mask",
          lambda m, x, a, *, masks, **o: mask_share(a, masks, **o))
_register("relevance_rank_accuracy", ("masks",), True, "share of the top-|mask| in the mask",
          lambda m, x, a, *, masks, **o: relevance_rank_accuracy(a, masks, **o))
_register("completeness", ("model",), False, "|sum(a) - (f(x) - f(baseline))| relative",
          lambda m, x, a, **o: completeness(m, x, a, **o))


def metric_names() -> list[str]:
    """The registered metric names, sorted."""
    return sorted(_METRICS)


def get_metric(name: str) -> MetricSpec:
    """The registered metric ``name``; an unknown name is refused with the choices."""
    try:
        return _METRICS[name]
    except KeyError:
        raise ValueError(
            f"unknown metric {name!r}; choose one of {', '.join(metric_names())}"
        ) from None


def evaluate_metric(
    name: str,
    model: object,
    x: object,
    attributions: object,
    *,
    explain: Callable[[object, Any, Any], object] | None = None,
    masks: object = None,
    **options: Any,
) -> MetricResult:
    """Runs the metric ``name`` on a batch of inputs and their attributions.

    Args:
        name: A name of :func:`metric_names`.
        model: The model explained (unused by the localisation metrics; may be None there).
        x: ``(N, ...)`` the inputs.
        attributions: ``(N, ...)`` their attributions.
        explain: ``explain(model, x, target) -> attributions`` for the metrics that explain
            again ("max_sensitivity", "mprt", "random_logit").
        masks: Ground-truth regions for "pointing_game", "mask_share" and
            "relevance_rank_accuracy".
        **options: The metric's keyword options (``target``, ``batch_size``, ``channel_axis``,
            ...; see its function).

    Raises:
        ValueError: An unknown name, or a missing ``explain`` / ``masks`` / ``model``, before
            any model call.
    """
    spec = get_metric(name)
    given = {"model": model is not None, "explain": explain is not None,
             "masks": masks is not None}
    missing = [n for n in spec.needs if not given[n]]
    if missing:
        raise ValueError(
            f"metric {name!r} needs {' and '.join(missing)}: pass "
            + ", ".join(f"{n}=" for n in missing)
        )
    extra: dict[str, Any] = {}
    if "explain" in spec.needs:
        extra["explain"] = explain
    if "masks" in spec.needs:
        extra["masks"] = masks
    return spec.run(model, x, attributions, **extra, **options)
