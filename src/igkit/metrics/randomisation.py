"""Randomisation sanity checks (Adebayo et al., NeurIPS 2018; Sixt et al. 2020).

* :func:`mprt`, the cascading model-parameter randomisation test: the layers of the model are
  re-initialised one after another from the output towards the input (top-down, each step
  keeping the earlier ones random), the explanation is recomputed after each step, and its
  similarity to the original explanation measured. An explanation that stays similar while the
  model it explains is destroyed does not explain the model. Similarities are those of the
  paper: Spearman rank correlation of absolute values ("spearman_abs") and of signed values
  ("spearman"), SSIM ("ssim") and the correlation of HOG features ("hog") of the maps.
* :func:`random_logit`: the similarity of the explanation of the target to that of a random
  other class; low is good.

Which layers exist and how a layer is re-initialised is read from the model without importing
its framework: a torch module's submodules that own parameters (``named_modules``), a Keras
model's layers that hold weights (``get_weights``/``set_weights``). New values are drawn with
NumPy from ``default_rng([seed, layer])`` from a normal law of the parameter's own standard
deviation (so a layer keeps its scale), written into a deep copy of a torch module, and into a
Keras model in place and restored afterwards. Any other model takes ``randomise=``.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from igkit.metrics._model import check_attributions, open_model, targets_of
from igkit.metrics._results import MetricResult
from igkit.metrics.robustness import Explain

__all__ = [
    "SIMILARITIES",
    "MPRTResult",
    "RandomLogitResult",
    "hog_similarity",
    "model_layers",
    "mprt",
    "random_logit",
    "spearman",
    "ssim",
]

#: ``randomise(model, layers, seed) -> model``: a copy of ``model`` (or the model changed in
#: place) with the named layers re-initialised.
Randomise = Callable[[object, Sequence[str], int], object]


def _ranks(v: np.ndarray) -> np.ndarray:
    """Ranks of a 1-D array, ties given their average rank."""
    _, inverse, counts = np.unique(v, return_inverse=True, return_counts=True)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return (starts + (counts - 1) / 2.0)[inverse]


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else float("nan")


def spearman(a: object, b: object, *, absolute: bool = False) -> np.ndarray:
    """``(N,)`` Spearman rank correlation of each pair of maps (of ``|a|``, ``|b|`` with
    ``absolute``); NaN where a map is constant."""
    fa = np.asarray(a, dtype=np.float64)
    fa = fa.reshape(fa.shape[0], -1)
    fb = np.asarray(b, dtype=np.float64).reshape(fa.shape[0], -1)
    if absolute:
        fa, fb = np.abs(fa), np.abs(fb)
    return np.array([_pearson(_ranks(p), _ranks(q)) for p, q in zip(fa, fb, strict=True)])


def _to_2d(maps: np.ndarray, channel_axis: int | None) -> np.ndarray:
    m = np.asarray(maps, dtype=np.float64)
    if channel_axis is not None:
        m = m.sum(axis=channel_axis)
    if m.ndim != 3:
        raise ValueError(
            f"ssim and hog compare 2-D maps: pass maps (N, H, W), or with channel_axis (summed), "
            f"got shape {np.shape(maps)}"
        )
    return m


def ssim(
    a: object, b: object, *, channel_axis: int | None = None, win_size: int = 7
) -> np.ndarray:
    """``(N,)`` mean structural similarity of each pair of 2-D maps (channels summed), as
    ``skimage.metrics.structural_similarity`` defines it: uniform ``win_size`` windows, sample
    covariances, K1 = 0.01, K2 = 0.03, the data range the pair's max - min, the mean over the
    windows that lie wholly inside the map."""
    ma, mb = _to_2d(np.asarray(a), channel_axis), _to_2d(np.asarray(b), channel_axis)
    if min(ma.shape[1:]) < win_size:
        raise ValueError(f"maps of {ma.shape[1:]} are smaller than the SSIM window {win_size}")
    out = np.empty(ma.shape[0])
    npix = win_size * win_size
    cov_norm = npix / (npix - 1.0)
    for k, (p, q) in enumerate(zip(ma, mb, strict=True)):
        rng = float(max(p.max(), q.max()) - min(p.min(), q.min()))
        c1, c2 = (0.01 * rng) ** 2, (0.03 * rng) ** 2

        def mean(z: np.ndarray) -> np.ndarray:
            windows = np.lib.stride_tricks.sliding_window_view(z, (win_size, win_size))
            return np.asarray(windows.mean(axis=(-2, -1)))

        ux, uy = mean(p), mean(q)
        vx = cov_norm * (mean(p * p) - ux * ux)
        vy = cov_norm * (mean(q * q) - uy * uy)
        vxy = cov_norm * (mean(p * q) - ux * uy)
        with np.errstate(invalid="ignore", divide="ignore"):
            s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
        out[k] = float(s.mean()) if rng > 0 else 1.0
    return out


def hog_similarity(
    a: object, b: object, *, channel_axis: int | None = None, pixels_per_cell: int | None = None
) -> np.ndarray:
    """``(N,)`` Pearson correlation of the HOG features (``skimage.feature.hog``, 9
    orientations, 2 x 2 cells per block) of each pair of 2-D maps; cells of
    ``pixels_per_cell`` (default: an eighth of the smaller side, at least 2)."""
    try:
        from skimage.feature import hog
    except ImportError as exc:  # pragma: no cover - scikit-image is in the test extra
        raise ImportError(
            "the HOG similarity needs scikit-image: pip install scikit-image"
        ) from exc
    ma, mb = _to_2d(np.asarray(a), channel_axis), _to_2d(np.asarray(b), channel_axis)
    cell = pixels_per_cell or max(2, min(ma.shape[1:]) // 8)
    opts: dict[str, Any] = dict(orientations=9, pixels_per_cell=(cell, cell),
                                cells_per_block=(2, 2), feature_vector=True)
    return np.array([_pearson(hog(p, **opts), hog(q, **opts)) for p, q in zip(ma, mb, strict=True)])


SIMILARITIES: dict[str, Callable[..., np.ndarray]] = {
    "spearman_abs": lambda a, b, ch: spearman(a, b, absolute=True),
    "spearman": lambda a, b, ch: spearman(a, b),
    "ssim": lambda a, b, ch: ssim(a, b, channel_axis=ch),
    "hog": lambda a, b, ch: hog_similarity(a, b, channel_axis=ch),
}


def _check_similarities(names: Sequence[str]) -> list[str]:
    names = [names] if isinstance(names, str) else list(names)
    unknown = [n for n in names if n not in SIMILARITIES]
    if unknown or not names:
        raise ValueError(
            f"unknown similarity {', '.join(map(repr, unknown)) or '(none given)'}; choose from "
            f"{', '.join(SIMILARITIES)}"
        )
    return names


def _is_torch_module(model: object) -> bool:
    return hasattr(model, "named_modules") and hasattr(model, "named_parameters")


def _is_keras_model(model: object) -> bool:
    return hasattr(model, "layers") and hasattr(model, "get_weights")


def model_layers(model: object) -> list[str]:
    """Names of the layers that hold parameters, from the output to the input (the order of
    the cascade): a torch module's submodules owning parameters, a Keras model's layers with
    weights."""
    if _is_torch_module(model):
        named = [name for name, mod in model.named_modules()  # type: ignore[attr-defined]
                 if any(True for _ in mod.named_parameters(recurse=False))]
        return named[::-1]
    if _is_keras_model(model):
        layers = model.layers  # type: ignore[attr-defined]
        return [layer.name for layer in layers if layer.get_weights()][::-1]
    raise TypeError(
        f"cannot list the layers of a {type(model).__name__}: pass layers= and randomise= "
        "(randomise(model, layer_names, seed) -> model with those layers re-initialised)"
    )


def _redraw(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    std = float(values.std())
    return rng.normal(0.0, std if std > 0 else 0.01, size=values.shape)


def _randomise_torch(model: Any, layers: Sequence[str], seed: int, index: dict[str, int]) -> None:
    modules = dict(model.named_modules())
    for name in layers:
        rng = np.random.default_rng([seed, index[name]])
        for _, p in sorted(modules[name].named_parameters(recurse=False)):
            current = p.detach().cpu().double().numpy()
            p.data.copy_(p.data.new_tensor(_redraw(current, rng)))


def _randomise_keras(model: Any, layers: Sequence[str], seed: int, index: dict[str, int]) -> None:
    by_name = {layer.name: layer for layer in model.layers}
    for name in layers:
        rng = np.random.default_rng([seed, index[name]])
        layer = by_name[name]
        layer.set_weights([_redraw(np.asarray(w, dtype=np.float64), rng).astype(np.asarray(w).dtype)
                           for w in layer.get_weights()])


@contextlib.contextmanager
def _cascade(
    model: object, layers: Sequence[str], seed: int, randomise: Randomise | None
) -> Iterator[Callable[[int], object]]:
    """Yields ``step(k)``: the model with ``layers[: k + 1]`` random (call with k = 0, 1, ...)."""
    if randomise is not None:
        yield lambda k: randomise(model, list(layers[: k + 1]), seed)
        return
    index = {name: i for i, name in enumerate(layers)}
    if _is_torch_module(model):
        work = copy.deepcopy(model)

        def torch_step(k: int) -> object:
            _randomise_torch(work, [layers[k]], seed, index)
            return work

        yield torch_step
        return
    if _is_keras_model(model):
        saved = model.get_weights()  # type: ignore[attr-defined]

        def keras_step(k: int) -> object:
            _randomise_keras(model, [layers[k]], seed, index)
            return model

        try:
            yield keras_step
        finally:
            model.set_weights(saved)  # type: ignore[attr-defined]
        return
    model_layers(model)  # raises the TypeError naming randomise=


@dataclass(frozen=True)
class MPRTResult(MetricResult):
    """The cascading randomisation test.

    Attributes:
        layers: The layers in the order they were randomised (output first).
        similarity: Similarity name to ``(N, L)``: column ``k`` compares the original
            explanation with that of the model whose first ``k + 1`` layers are random.
        target: ``(N,)`` the explained class.
        values: ``(N,)`` the first similarity averaged over the cascade; low is good.
    """

    layers: tuple[str, ...]
    similarity: dict[str, np.ndarray]
    target: np.ndarray


def mprt(
    model: object,
    x: object,
    attributions: object,
    explain: Explain,
    *,
    target: object = None,
    similarities: Sequence[str] = ("spearman_abs", "spearman", "ssim", "hog"),
    layers: Sequence[str] | None = None,
    randomise: Randomise | None = None,
    channel_axis: int | None = None,
    seed: int = 0,
    output: object = "raw",
    batch_size: int | None = None,
) -> MPRTResult:
    """Cascading model-parameter randomisation, top-down (Adebayo et al. 2018).

    Args:
        model: A torch module or Keras model (or any model, with ``layers`` and ``randomise``).
        x: ``(N, ...)`` the inputs.
        attributions: ``(N, ...)`` the explanations of the trained model.
        explain: ``explain(model, x, target) -> attributions``, run on each randomised model.
        target: None (each input's top class at the trained model), an int, or one per input;
            the same classes are explained at every step.
        similarities: Names in ``SIMILARITIES``; the first gives ``values``.
        layers: The layers to randomise, in order (default: :func:`model_layers`).
        randomise: ``randomise(model, layer_names, seed) -> model`` for models igkit cannot
            re-initialise itself.
        channel_axis: Summed before "ssim" and "hog".
        seed: Seeds the new parameters.
        output, batch_size: For the forward pass that resolves ``target``.
    """
    names = _check_similarities(similarities)
    if not callable(explain):
        raise TypeError("explain must be a function explain(model, x, target) -> attributions")
    order = list(layers) if layers is not None else model_layers(model)
    if not order:
        raise ValueError("the model has no layer with parameters to randomise")
    xa = np.asarray(x)
    a = np.array(check_attributions(xa, attributions))
    with open_model(model, xa, output=output, batch_size=batch_size) as (_, xs, out):
        targets = targets_of(target, out)
    sims = {n: np.empty((xs.shape[0], len(order))) for n in names}
    with _cascade(model, order, seed, randomise) as step:
        for k in range(len(order)):
            random_model = step(k)
            b = np.asarray(explain(random_model, xs, targets), dtype=np.float64)
            for n in names:
                sims[n][:, k] = SIMILARITIES[n](a, b, channel_axis)
    return MPRTResult("mprt", sims[names[0]].mean(axis=1), False, tuple(order), sims, targets)


@dataclass(frozen=True)
class RandomLogitResult(MetricResult):
    """The random-logit test: ``values`` the similarity to the explanation of ``off_target``."""

    target: np.ndarray
    off_target: np.ndarray


def random_logit(
    model: object,
    x: object,
    attributions: object,
    explain: Explain,
    *,
    target: object = None,
    off_target: object = None,
    similarity: str = "ssim",
    channel_axis: int | None = None,
    seed: int = 0,
    output: object = "raw",
    batch_size: int | None = None,
) -> RandomLogitResult:
    """Similarity of each explanation to the explanation of another class, drawn uniformly
    from the other classes (``default_rng(seed)``) unless ``off_target`` gives one per input;
    low is good (Sixt et al. 2020)."""
    name = _check_similarities([similarity])[0]
    xa = np.asarray(x)
    a = check_attributions(xa, attributions)
    with open_model(model, xa, output=output, batch_size=batch_size) as (_, xs, out):
        targets = targets_of(target, out)
        classes = out.shape[1]
    if classes < 2:
        raise ValueError("the random-logit test needs a model with at least two classes")
    if off_target is None:
        draw = np.random.default_rng(seed).integers(0, classes - 1, size=xs.shape[0])
        off = draw + (draw >= targets)  # skips each input's own target
    else:
        off = np.asarray(off_target, dtype=np.int64).reshape(-1)
        if off.shape[0] != xs.shape[0] or np.any(off == targets) or np.any(
                (off < 0) | (off >= classes)):
            raise ValueError("off_target must give each input a class other than its target")
    b = np.asarray(explain(model, xs, off), dtype=np.float64)
    values = SIMILARITIES[name](np.asarray(a), b, channel_axis)
    return RandomLogitResult("random_logit", values, False, targets, off)
