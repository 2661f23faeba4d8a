"""Attribution methods of the layers family: Grad-CAM, guided backprop, DeconvNet, Guided
Grad-CAM and the layer methods (activation, gradient x activation, integrated gradients and
conductance at a named layer).

Layers are named as the framework names them: torch module names (``model.named_modules()``),
Keras layer names (``model.get_layer``). The framework work (hooks, sub-models, the modified
ReLU backward) is in ``igkit.backends.torch_layers`` and ``igkit.backends.keras_layers``, reached
through ``_LAYER_BACKENDS``; this module is NumPy only. A bare JAX function has no named layers
and is refused by name with the fix (explain the function after the layer on the layer's
activations).

Shapes: ``grad_cam`` (``upsample=True``), ``guided_backprop``, ``deconvnet`` and
``guided_grad_cam`` give attributions of the input's shape. The layer methods
(``layer_activation``, ``layer_gradient_x_activation``, ``layer_integrated_gradients``,
``layer_conductance``) and ``grad_cam(upsample=False)`` give attributions of the LAYER's shape
(``(N, *layer_shape)``, a target axis after the batch axis for several targets): they attribute
to the layer's units, not to input features; ``Result.inputs`` still holds the inputs.

Batching: every model call goes through the backend helper in batches of ``batch_size`` rows,
with at most ``MethodContext.chunk`` rows on the host at once; all explanations' rows (several
targets of one input, all path points) are packed into the same batches, and what does not
depend on the target (activations at the inputs and baselines) is computed once per input.

Why one module: the eight methods share the layer lookup and its refusals, the layer-shaped
Result and the streaming of path rows; Guided Grad-CAM is Grad-CAM's map times guided backprop,
so splitting the family would split it in two.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Protocol

import numpy as np

from igkit.core.checks import unchanged
from igkit.core.completeness import completeness
from igkit.core.quadrature import available_methods as _rules
from igkit.core.quadrature import nodes_and_weights
from igkit.core.result import Result
from igkit.methods.context import MethodContext, _warn_all_zero
from igkit.methods.options import choice, positive_float, positive_int
from igkit.methods.registry import MethodSpec, Option, register_method

__all__ = ["resize"]

#: Backend name -> "module:class" of its layer helper (``Layers`` below).
_LAYER_BACKENDS = {
    "torch": "igkit.backends.torch_layers:TorchLayers",
    "tensorflow": "igkit.backends.keras_layers:KerasLayers",
}

_JAX_LAYERS = (
    "a bare JAX function has no named layers: split it at the layer, f(x) = head(body(x)), "
    "and explain head at the layer's activations, e.g. igkit.attribute(head, body(x), "
    "method='integrated_gradients', baseline=body(x_baseline)) for layer integrated gradients "
    "or method='input_x_gradient' for gradient x activation"
)
_JAX_RELU = (
    "a bare JAX function's ReLUs cannot be swapped from outside: write the model with a ReLU "
    "whose jax.custom_vjp passes relu(grad) * (x > 0) (guided) or relu(grad) (deconvnet), and "
    "explain it with method='saliency', abs=False"
)


class Layers(Protocol):
    """What a backend's layer helper gives (``TorchLayers``, ``KerasLayers``)."""

    channel_axis: int
    naming: str  # how the framework names layers, for refusals
    no_layers: str  # why a model without named layers has none, and the fix

    def names(self) -> list[str]: ...

    def output_shapes(self, point: np.ndarray) -> list[tuple[str, tuple[int, ...]]]: ...

    def activations(self, layer: str, points: np.ndarray, batch_size: int) -> np.ndarray: ...

    def gradients(
        self, layer: str, points: np.ndarray, targets: np.ndarray, batch_size: int,
        replace: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def scores_replaced(
        self, layer: str, points: np.ndarray, targets: np.ndarray, replace: np.ndarray,
        batch_size: int,
    ) -> np.ndarray: ...

    def relu_gradients(
        self, points: np.ndarray, targets: np.ndarray, batch_size: int, rule: str
    ) -> np.ndarray: ...


def _layers(ctx: MethodContext) -> Layers:
    module, cls = _LAYER_BACKENDS[ctx.backend.name].split(":")
    return getattr(importlib.import_module(module), cls)(ctx.session, ctx.model)


def _layer_of(
    ctx: MethodContext, options: Mapping[str, Any], *, auto: bool = False
) -> tuple[Layers, str]:
    """The layer helper and the checked ``layer=`` name (refused before any further call);
    with ``auto``, ``layer="auto"`` picks the last convolutional feature map."""
    helper = _layers(ctx)
    layer = options["layer"]
    names = helper.names()
    if not names:
        raise ValueError(helper.no_layers)
    if layer is None:
        shown = ", ".join(names[-8:]) if names else "none"
        raise ValueError(
            f"method={ctx.method!r} needs layer=: the name of the layer to attribute at "
            f"({len(names)} named layers; the last ones: {shown})"
        )
    if auto and layer == "auto" and "auto" not in names:
        return helper, _last_feature_map(ctx, helper)
    if layer not in names:
        near = difflib.get_close_matches(layer, names, n=6, cutoff=0.3) or names[:6]
        raise ValueError(
            f"the model has no layer named {layer!r} ({helper.naming}); closest: "
            f"{', '.join(near)}"
        )
    return helper, layer


def _last_feature_map(ctx: MethodContext, helper: Layers) -> str:
    """``layer="auto"``: the last layer, in call order, whose output has the input's number of
    axes and a spatial extent above 1 (the last convolutional feature map), found by one
    forward pass of one input."""
    c = helper.channel_axis % ctx.x.ndim
    found = [
        name for name, shape in helper.output_shapes(ctx.x[:1])
        if len(shape) + 1 == ctx.x.ndim
        and any(d > 1 for a, d in enumerate(shape, start=1) if a != c)
    ]
    ctx.forward_evaluations += 1
    if not found:
        raise ValueError(
            "layer='auto' found no layer with a spatial feature map (outputs with the input's "
            "axes); pass layer= the name of a convolutional layer"
        )
    return found[-1]


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError("pass the layer's name (a non-empty str)")
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError("pass True or False")
    return bool(value)


# -- resizing (framework-free, as torch.nn.functional.interpolate with align_corners=False) --


def _resize_axis(a: np.ndarray, axis: int, size: int, mode: str) -> np.ndarray:
    n = a.shape[axis]
    if n == size:
        return a
    dst = np.arange(size, dtype=np.float64)
    if mode == "nearest":
        idx = np.minimum(np.floor(dst * (n / size)).astype(np.int64), n - 1)
        return np.take(a, idx, axis=axis)
    src = np.maximum((dst + 0.5) * (n / size) - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(np.int64), n - 1)
    hi = np.minimum(lo + 1, n - 1)
    lam = (src - lo).reshape((-1,) + (1,) * (a.ndim - axis - 1))
    return np.take(a, lo, axis=axis) * (1.0 - lam) + np.take(a, hi, axis=axis) * lam


def resize(maps: np.ndarray, size: tuple[int, ...], mode: str = "bilinear") -> np.ndarray:
    """``(R, *spatial)`` maps resized to ``(R, *size)``: "bilinear" (linear along each axis) or
    "nearest", with the pixel-centre convention of ``torch.nn.functional.interpolate``
    (``align_corners=False``), so a Grad-CAM map upsampled here equals Captum's."""
    if maps.ndim - 1 != len(size):
        raise ValueError(f"{maps.ndim - 1} spatial axes cannot be resized to {size}")
    out = np.asarray(maps, dtype=np.float64)
    for k, n in enumerate(size):
        out = _resize_axis(out, k + 1, int(n), mode)
    return out


# -- results of the layer's shape -----------------------------------------------------------


def _layer_result(
    ctx: MethodContext,
    attributions: np.ndarray,
    *,
    evaluations: int,
    steps: int = 1,
    baseline_score: np.ndarray | None = None,
    tol: float = 0.01,
    of_output: bool = True,
) -> Result:
    """The Result of per-pair attributions of the LAYER's shape ``(R, *layer_shape)``.

    ``MethodContext.result`` checks for the input's shape, so it builds everything else (from
    a stand-in of ones) and the attributions (and, with ``baseline_score``, the completeness
    numbers) are put in here. ``of_output``: the attributions explain the output, so an
    all-zero map warns as ``MethodContext.result`` warns (not so for activations).
    """
    r = ctx.n_pairs
    res = ctx.result(
        np.ones((r, *ctx.x.shape[1:]), dtype=ctx.x.dtype), evaluations=evaluations,
        steps=steps, baseline_score=baseline_score, tol=tol,
    )
    attr = np.asarray(attributions).astype(ctx.x.dtype, copy=False)
    if of_output:
        _warn_all_zero(attr, ctx.plan, ctx.method, ctx.output)
    plan = ctx.plan
    fields: dict[str, Any] = {"attributions": plan.scatter(attr, 0)}
    if baseline_score is not None:
        score = ctx.pair_score
        delta, rel = completeness(attr, score, baseline_score,
                                  unchanged(score, baseline_score, ctx.x.dtype))
        fields.update(
            delta=plan.scatter(delta, np.nan), relative_error=plan.scatter(rel, np.nan),
            converged=plan.scatter(rel <= tol, False),
        )
    return replace(res, **fields)


def _row_chunks(ctx: MethodContext, rows: int) -> list[np.ndarray]:
    """``rows`` path rows (pair-major) in chunks of whole batches: at most about
    ``ctx.chunk`` rows on the host at once, and every batch but the very last full, whatever
    the pairs' boundaries."""
    size = ctx.batch_size * max(1, ctx.chunk // ctx.batch_size)
    return [np.arange(s, min(rows, s + size)) for s in range(0, rows, size)]


def _sum_by_pair(values: np.ndarray, pairs: np.ndarray, out: np.ndarray) -> None:
    """Adds the rows of ``values`` into ``out[pairs]`` (``pairs`` sorted)."""
    if not pairs.shape[0]:
        return
    uniq, starts = np.unique(pairs, return_index=True)
    out[uniq] += np.add.reduceat(values, starts, axis=0)


# -- Grad-CAM, guided backprop, DeconvNet -----------------------------------------------------


def _cam(ctx: MethodContext, helper: Layers, layer: str, relu: bool) -> np.ndarray:
    """``(R, *spatial)`` Grad-CAM maps at the layer's resolution (Selvaraju et al.): the
    channels weighted by the spatial mean of the score's gradient, summed, rectified."""
    acts, grads, _ = helper.gradients(layer, ctx.pair_inputs, ctx.plan.pair_target,
                                      ctx.batch_size)
    ctx.gradient_evaluations += ctx.n_pairs
    if acts.ndim < 3:
        raise ValueError(
            f"layer {layer!r} has outputs of shape {acts.shape[1:]}, without spatial axes; "
            "Grad-CAM needs a convolutional layer (channels and at least one spatial axis)"
        )
    c = helper.channel_axis % acts.ndim
    spatial = tuple(a for a in range(1, acts.ndim) if a != c)
    weights = grads.mean(axis=spatial, keepdims=True)
    cam = (weights * acts).sum(axis=c)
    return np.maximum(cam, 0.0) if relu else cam


def _upsampled(ctx: MethodContext, cam: np.ndarray, mode: str) -> np.ndarray:
    """``(R, *spatial)`` maps resized to the input's spatial axes and repeated over its
    channels: the input's shape."""
    ca = None if ctx.channel_axis is None else ctx.channel_axis % ctx.x.ndim
    spatial = [d for a, d in enumerate(ctx.x.shape) if a not in (0, ca)]
    if len(spatial) != cam.ndim - 1:
        raise ValueError(
            f"the layer's map has {cam.ndim - 1} spatial axes and the input {len(spatial)}; "
            "pass upsample=False for the map at the layer's resolution"
        )
    up = resize(cam, tuple(spatial), mode)
    if ca is not None:
        up = np.expand_dims(up, ca)
    return np.broadcast_to(up, (cam.shape[0], *ctx.x.shape[1:]))


def _grad_cam(ctx: MethodContext, options: Mapping[str, Any]) -> Result:
    helper, layer = _layer_of(ctx, options, auto=True)
    cam = _cam(ctx, helper, layer, options["relu"])
    if options["upsample"]:
        return ctx.result(_upsampled(ctx, cam, options["interpolation"]), evaluations=1)
    # The layer's resolution, with its channel axis kept (size 1), as Captum's LayerGradCam.
    return _layer_result(ctx, np.expand_dims(cam, helper.channel_axis), evaluations=1)


def _relu_rule(rule: str):
    def run(ctx: MethodContext, options: Mapping[str, Any]) -> Result:
        del options
        grads = _layers(ctx).relu_gradients(ctx.pair_inputs, ctx.plan.pair_target,
                                            ctx.batch_size, rule)
        ctx.gradient_evaluations += ctx.n_pairs
        return ctx.result(grads, evaluations=1)

    return run


def _guided_grad_cam(ctx: MethodContext, options: Mapping[str, Any]) -> Result:
    helper, layer = _layer_of(ctx, options, auto=True)
    cam = _upsampled(ctx, _cam(ctx, helper, layer, True), options["interpolation"])
    guided = helper.relu_gradients(ctx.pair_inputs, ctx.plan.pair_target, ctx.batch_size,
                                   "guided")
    ctx.gradient_evaluations += ctx.n_pairs
    return ctx.result(guided * cam, evaluations=2)


# -- layer methods ----------------------------------------------------------------------------


def _layer_activation(ctx: MethodContext, options: Mapping[str, Any]) -> Result:
    helper, layer = _layer_of(ctx, options)
    acts = helper.activations(layer, ctx.x, ctx.batch_size)  # once per input
    ctx.forward_evaluations += ctx.x.shape[0]
    return _layer_result(ctx, acts[ctx.plan.pair_input], evaluations=0, of_output=False)


def _layer_gradient_x_activation(ctx: MethodContext, options: Mapping[str, Any]) -> Result:
    helper, layer = _layer_of(ctx, options)
    acts, grads, _ = helper.gradients(layer, ctx.pair_inputs, ctx.plan.pair_target,
                                      ctx.batch_size)
    ctx.gradient_evaluations += ctx.n_pairs
    return _layer_result(ctx, acts * grads, evaluations=1)


def _layer_integrated_gradients(ctx: MethodContext, options: Mapping[str, Any]) -> Result:
    """IG over the layer's output: the model runs on the input x with the layer's output
    replaced by ``A(x') + alpha (A(x) - A(x'))``; the attributions ``(A(x) - A(x')) * integral
    of dF/dA`` add up to ``F(x) - F(x; A(x'))``, F at x with the layer's output at the
    baseline's (F(x') when the layer carries all of F's dependence on the input)."""
    helper, layer = _layer_of(ctx, options)
    alphas, weights = nodes_and_weights(options["rule"], options["steps"])
    steps = alphas.shape[0]
    pair_in, targets = ctx.plan.pair_input, ctx.plan.pair_target
    act_x = helper.activations(layer, ctx.x, ctx.batch_size)
    total = np.zeros((ctx.n_pairs, *act_x.shape[1:]))
    base_score = np.zeros(ctx.n_pairs)
    baselines = ctx.baselines()
    for _, base in baselines:
        act_b = helper.activations(layer, base, ctx.batch_size)
        ctx.forward_evaluations += 2 * ctx.x.shape[0]
        diff = act_x - act_b
        summed = np.zeros_like(total)
        for rows in _row_chunks(ctx, ctx.n_pairs * steps):
            pair, k = np.divmod(rows, steps)
            a = alphas[k].reshape((-1,) + (1,) * (diff.ndim - 1))
            inputs = pair_in[pair]
            _, grads, _ = helper.gradients(layer, ctx.x[inputs], targets[pair], ctx.batch_size,
                                           replace=act_b[inputs] + a * diff[inputs])
            _sum_by_pair(grads * weights[k].reshape(a.shape), pair, summed)
        total += diff[pair_in] * summed
        base_score += helper.scores_replaced(layer, ctx.pair_inputs, targets, act_b[pair_in],
                                             ctx.batch_size)
    ctx.gradient_evaluations += ctx.n_pairs * steps * len(baselines)
    return _layer_result(
        ctx, total / len(baselines), evaluations=steps * len(baselines), steps=steps,
        baseline_score=base_score / len(baselines), tol=options["tol"],
    )


def _layer_conductance(ctx: MethodContext, options: Mapping[str, Any]) -> Result:
    """Conductance (Dhamdhere et al.): along the input path x' + alpha (x - x') at ``steps + 1``
    points, each unit's gradient times the change of its activation to the next point,
    summed; the units' conductances add up to about F(x) - F(x') (exactly in the limit, when
    the points run from 0 to 1 and F depends on the input through the layer only)."""
    helper, layer = _layer_of(ctx, options)
    alphas, _ = nodes_and_weights(options["rule"], options["steps"] + 1)
    alphas = np.sort(alphas)
    k = alphas.shape[0]
    pair_in, targets = ctx.plan.pair_input, ctx.plan.pair_target
    baselines = ctx.baselines()
    total: Any = 0.0
    base_score = np.zeros(ctx.n_pairs)
    for _, base in baselines:
        diff = ctx.x - base
        part = np.zeros(0)
        carry: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # a chunk's last row
        for rows in _row_chunks(ctx, ctx.n_pairs * k):
            pair, step = np.divmod(rows, k)
            a = alphas[step].reshape((-1,) + (1,) * (diff.ndim - 1))
            inputs = pair_in[pair]
            acts, grads, _ = helper.gradients(layer, base[inputs] + a * diff[inputs],
                                              targets[pair], ctx.batch_size)
            if carry is not None:  # the previous chunk's last row, for its step to this one
                acts = np.concatenate([carry[0], acts])
                grads = np.concatenate([carry[1], grads])
                pair = np.concatenate([carry[2], pair])
            if part.size == 0:
                part = np.zeros((ctx.n_pairs, *acts.shape[1:]))
            # Row i's gradient times its unit's change to row i + 1, within one pair.
            same = pair[1:] == pair[:-1]
            steps_taken = grads[:-1][same] * (acts[1:][same] - acts[:-1][same])
            _sum_by_pair(steps_taken, pair[:-1][same], part)
            carry = (acts[-1:], grads[-1:], pair[-1:])
        total = total + part
        base_score += ctx.scores(base[pair_in], np.arange(ctx.n_pairs))
    ctx.gradient_evaluations += ctx.n_pairs * k * len(baselines)
    return _layer_result(
        ctx, total / len(baselines), evaluations=k * len(baselines), steps=k,
        baseline_score=base_score / len(baselines), tol=options["tol"],
    )


# -- registration -----------------------------------------------------------------------------

_LAYER = Option("layer", None, "the layer's name: a torch module name "
                "(model.named_modules()) or a Keras layer name (model.get_layer)", _name)
_CAM_LAYER = Option("layer", "auto", "the layer's name (torch module name, Keras layer name), "
                    "or 'auto' (default): the last convolutional feature map", _name)
_INTERP = ("bilinear", "nearest")
_WHY_NOT_LAYERS = {"jax": _JAX_LAYERS}
_WHY_NOT_RELU = {"jax": _JAX_RELU}


def _path_options(default_rule: str) -> tuple[Option, ...]:
    return (
        _LAYER,
        Option("steps", 50, "points along the path", positive_int),
        Option("rule", default_rule, "where along the path (igkit.available_methods())",
               choice([r for r in _rules() if r not in ("adaptive", "auto", "secant")])),
        Option("tol", 0.01, "relative completeness tolerance", positive_float),
    )


register_method(MethodSpec(
    name="grad_cam",
    answers="which regions of a convolutional layer's map raise the score (channels weighted "
    "by their mean gradient), upsampled to the input",
    cost="1 gradient",
    run=_grad_cam,
    options=(
        _CAM_LAYER,
        Option("upsample", True, "resize the map to the input (False: the layer's resolution, "
               "the layer's shape with one channel)", _flag),
        Option("interpolation", "bilinear", "how to upsample: bilinear or nearest",
               choice(_INTERP)),
        Option("relu", True, "keep only the positive evidence (Selvaraju et al.)", _flag),
    ),
    frameworks=("torch", "tensorflow"),
    why_not=_WHY_NOT_LAYERS,
))

register_method(MethodSpec(
    name="guided_backprop",
    answers="the gradient with only positive signals passed back through every ReLU "
    "(sharp, class-insensitive edges)",
    cost="1 gradient",
    run=_relu_rule("guided"),
    frameworks=("torch", "tensorflow"),
    why_not=_WHY_NOT_RELU,
))

register_method(MethodSpec(
    name="deconvnet",
    answers="the signal passed back through every ReLU by the sign of the gradient alone "
    "(Zeiler & Fergus's deconvolution)",
    cost="1 gradient",
    run=_relu_rule("deconvnet"),
    frameworks=("torch", "tensorflow"),
    why_not=_WHY_NOT_RELU,
))

register_method(MethodSpec(
    name="guided_grad_cam",
    answers="guided backprop masked by the upsampled Grad-CAM map: fine detail inside the "
    "class's regions",
    cost="2 gradients",
    run=_guided_grad_cam,
    options=(
        _CAM_LAYER,
        Option("interpolation", "bilinear", "how Grad-CAM is upsampled: bilinear or nearest",
               choice(_INTERP)),
    ),
    frameworks=("torch", "tensorflow"),
    why_not={"jax": _JAX_LAYERS},
))

register_method(MethodSpec(
    name="layer_activation",
    answers="the layer's output itself (attributions of the layer's shape)",
    cost="1 forward pass per input",
    run=_layer_activation,
    options=(_LAYER,),
    frameworks=("torch", "tensorflow"),
    why_not=_WHY_NOT_LAYERS,
))

register_method(MethodSpec(
    name="layer_gradient_x_activation",
    answers="each unit's activation times the score's gradient with respect to it (layer's "
    "shape)",
    cost="1 gradient",
    run=_layer_gradient_x_activation,
    options=(_LAYER,),
    frameworks=("torch", "tensorflow"),
    why_not=_WHY_NOT_LAYERS,
))

register_method(MethodSpec(
    name="layer_integrated_gradients",
    answers="how much each unit of the layer moved the score from the baseline's activations "
    "to the input's (layer's shape; they add up to F(x) - F(x; A(x')))",
    cost="steps gradients per baseline, plus 3 forward passes",
    run=_layer_integrated_gradients,
    options=_path_options("gauss_legendre"),
    frameworks=("torch", "tensorflow"),
    uses_baseline=True,
    complete=True,
    why_not=_WHY_NOT_LAYERS,
))

register_method(MethodSpec(
    name="layer_conductance",
    answers="how much of the score's change from the baseline flows through each unit of the "
    "layer (layer's shape; adds up to about F(x) - F(x'))",
    cost="steps + 1 gradients per baseline",
    run=_layer_conductance,
    options=_path_options("riemann_trapezoid"),
    frameworks=("torch", "tensorflow"),
    uses_baseline=True,
    complete=True,
    why_not=_WHY_NOT_LAYERS,
))
