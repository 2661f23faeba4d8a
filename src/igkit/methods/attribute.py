"""``igkit.attribute``: any registered attribution method, through one call.

The order of the checks is the contract of ``igkit.api``: the method's name and options, then
the arguments and the model's backend, then whether the method runs on that backend, and only
then the session and the first forward pass (outputs checked, targets resolved). A method runs
on the ``MethodContext`` built here and reaches the model only through it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from igkit.api import _channel_axis, _describe, _prepare, _Prepared, _session, _unbatch
from igkit.backends.base import Session
from igkit.core.checks import check_finite_outputs, check_output_transform
from igkit.core.engine import first_forward
from igkit.core.result import Result
from igkit.core.targets import resolve_target_plan
from igkit.methods.context import MethodContext
from igkit.methods.registry import resolve_method
from igkit.typing import BaselineSpec, OutputSpec, TargetSpec

__all__ = ["attribute", "checked_outputs"]


def checked_outputs(
    prep: _Prepared, session: Session, output: object, *, stacklevel: int
) -> tuple[np.ndarray, np.ndarray]:
    """The inputs in the session's dtype and their explained outputs from the first forward
    pass, checked: a failing model call is named from the inputs as given, NaN outputs are
    refused, and softmax over probabilities warns (``stacklevel`` points at the user's call)."""
    x = prep.x.astype(session.dtype, copy=False)
    n = x.shape[0]
    outputs, raw = first_forward(
        session, x, _describe(prep, session, "the inputs"),
        f"the {n} input{'s' if n > 1 else ''}",
    )
    check_finite_outputs(outputs, [f"input {i}" for i in range(n)])
    check_output_transform(output, outputs, raw, session.dtype, where="the inputs",
                           stacklevel=stacklevel)
    return x, np.asarray(outputs, dtype=np.float64)


def attribute(
    model: object,
    inputs: object,
    method: str = "integrated_gradients",
    *,
    target: TargetSpec = None,
    baseline: BaselineSpec = "black",
    output: OutputSpec = "raw",
    batch_size: int | None = None,
    seed: int = 0,
    channel_axis: int | None = None,
    input_range: tuple[float, float] | None = None,
    batched: bool | None = None,
    dtype: DTypeLike | None = None,
    noise: Mapping[str, Any] | None = None,
    **method_options: Any,
) -> Result:
    """Attributions of ``model`` at ``inputs`` by the attribution method ``method``.

    Args:
        model: Any model ``igkit.integrated_gradients`` takes (torch, Keras/TF, JAX, or a
            ``LoadedModel``).
        inputs: One example or a batch, in the model's layout.
        method: A name of ``igkit.attribution_methods()`` ("integrated_gradients",
            "saliency", ...), or an Integrated Gradients rule name ("auto", "secant",
            "gauss_legendre", ...), which means "integrated_gradients" with that ``rule``.
        target: As for ``igkit.integrated_gradients``: None (top-1), a class, one per input, or
            several per input (multi-target results).
        baseline: The reference input for methods that have one (see the method's options).
        output: "raw", "softmax", "sigmoid" or a callable from model output to class scores.
        batch_size: Rows per model call; None picks one from the input size. Every method
            packs its model calls into batches of at most this many rows.
        seed: Seeds every random draw of the method (noise, samples, random baselines).
        channel_axis, input_range, batched, dtype: As for ``igkit.integrated_gradients``.
        noise: Run the method on noisy copies of the inputs and aggregate (NoiseTunnel):
            ``{"samples": 50, "stdev": 0.15, "kind": "smoothgrad"}`` (``stdev`` a fraction of
            the input range; kind "smoothgrad", "smoothgrad_sq" or "vargrad"); see
            ``igkit.methods.noise``. None runs the method on the inputs themselves.
        **method_options: The method's own options (``igkit.methods.get_method(name).options``);
            an unknown one is refused with the list of valid ones.

    Returns:
        A ``Result`` with ``attribution_method`` the method's name. For methods that do not
        claim completeness, ``delta`` and ``relative_error`` are NaN.

    Raises:
        ValueError / TypeError: An unknown method or option, a bad value, or a method the
            model's backend cannot run (with the fix), before any model call.
    """
    if noise is not None:
        from igkit.methods.noise import attribute_with_noise

        return attribute_with_noise(
            model, inputs, method, noise, target=target, baseline=baseline, output=output,
            batch_size=batch_size, seed=seed, channel_axis=channel_axis,
            input_range=input_range, batched=batched, dtype=dtype,
            method_options=method_options,
        )
    spec, given = resolve_method(method, method_options)
    if spec.entry is not None:
        options = spec.bind(given, fill=False)
        result = spec.entry(
            model, inputs, target=target, baseline=baseline, output=output,
            batch_size=batch_size, seed=seed, channel_axis=channel_axis,
            input_range=input_range, batched=batched, dtype=dtype, **options,
        )
        return replace(result, attribution_method=spec.name)
    options = spec.bind(given)
    prep = _prepare(
        model, inputs, output=output, batch_size=batch_size, channel_axis=channel_axis,
        input_range=input_range, batched=batched, dtype=dtype,
    )
    problem = spec.unsupported(prep.backend.name) or spec.input_problem(prep.x.shape)
    if problem:
        raise ValueError(problem)
    with _session(prep) as session:
        x, outputs = checked_outputs(prep, session, output, stacklevel=4)
        ctx = MethodContext(
            session=session, backend=prep.backend, model=prep.model, x=x,
            outputs=outputs,
            plan=resolve_target_plan(target, outputs), baseline=baseline,
            channel_axis=_channel_axis(x, prep.channel_axis, session.default_channel_axis),
            input_range=prep.input_range, rng=np.random.default_rng(seed),
            batch_size=prep.options.batch_size, method=spec.name,
            output=output if isinstance(output, str) else "callable", seed=seed,
        )
        result = spec.run(ctx, options)
    if not prep.batched and not result.multi_target:
        result = _unbatch(result)
    return result
