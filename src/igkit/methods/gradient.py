"""Gradient methods: Integrated Gradients, saliency and input x gradient.

``integrated_gradients`` is ``igkit.integrated_gradients`` itself (its rule names are method
names too: ``method="secant"`` is integrated_gradients with ``rule="secant"``). ``saliency``
and ``input_x_gradient`` are one gradient per explanation, packed into the session's batches
with the other explanations' (several classes of one input share nothing but the batch).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from igkit.api import integrated_gradients as _integrated_gradients
from igkit.core.quadrature import available_methods as _rules
from igkit.core.result import Result
from igkit.methods.context import MethodContext
from igkit.methods.options import choice, positive_float, positive_int
from igkit.methods.registry import MethodSpec, Option, register_method

__all__: list[str] = []


def _steps(value: Any) -> int | str:
    return "auto" if value == "auto" else positive_int(value)


def _flag(value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError("pass True or False")
    return bool(value)


def _ig_entry(model: object, inputs: object, *, rule: str | None = None, **kwargs: Any) -> Result:
    if rule is not None:
        kwargs["method"] = rule
    return _integrated_gradients(model, inputs, **kwargs)


register_method(
    MethodSpec(
        name="integrated_gradients",
        answers="how much each input feature moved the score from the baseline to the input "
        "(the changes add up to F(x) - F(x'))",
        cost="steps gradients per baseline (rule='auto' picks and stops by itself)",
        run=lambda ctx, options: (_ for _ in ()).throw(AssertionError("entry method")),
        entry=_ig_entry,
        options=(
            Option("rule", None, "the quadrature rule (igkit.available_methods())",
                   choice(_rules())),
            Option("steps", None, "gradient evaluations per path, or 'auto'", _steps),
            Option("tol", None, "relative completeness / attribution-error tolerance",
                   positive_float),
            Option("max_steps", None, "ceiling of steps='auto'", positive_int),
            Option("return_path", None, "keep the scores along each path", _flag),
            Option("precision", None, "float32 (exact), tf32, bf16 or fp16 (torch)"),
        ),
        uses_baseline=True,
        complete=True,
    ),
    aliases={rule: {"rule": rule} for rule in _rules()},
)


def _saliency(ctx: MethodContext, options: Mapping[str, Any]) -> Result:
    grads = ctx.gradients(ctx.pair_inputs, np.arange(ctx.n_pairs))
    if options["abs"]:
        grads = np.abs(grads)
    return ctx.result(grads, evaluations=1)


def _input_x_gradient(ctx: MethodContext, options: Mapping[str, Any]) -> Result:
    del options
    x = ctx.pair_inputs
    return ctx.result(x * ctx.gradients(x, np.arange(ctx.n_pairs)), evaluations=1)


register_method(MethodSpec(
    name="saliency",
    answers="which features the score is most sensitive to at the input (|dF/dx|)",
    cost="1 gradient",
    run=_saliency,
    options=(Option("abs", True, "take the absolute value of the gradient (Simonyan et al.)",
                    _flag),),
))

register_method(MethodSpec(
    name="input_x_gradient",
    answers="the first-order contribution of each feature, x * dF/dx (a one-step IG from 0)",
    cost="1 gradient",
    run=_input_x_gradient,
))
