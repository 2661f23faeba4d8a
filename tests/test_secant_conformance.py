"""One conformance suite for ``method="secant"`` on every backend (``igkit.core.secant_rules``).

The same networks, built from the same seeded float64 weights in every framework
(``tests/secant_cases.py``), must give: every piece complete to rounding (the session's
``piece_residual``); the same secant attributions on every backend (<= ``AGREE`` relative, the
rules being one table); and, on analytic units, one piece of secant equal to the exact IG.
"""

from __future__ import annotations

import functools
import importlib
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import secant_cases as cases

import igkit
from igkit.backends.base import SessionOptions
from igkit.core import secant_rules
from igkit.core.pieces import uniform_pieces
from igkit.core.planner import all_rows

#: The backends the suite runs on: one tuple, one place.
BACKENDS = ("torch", "jax", "tensorflow")
#: The secant module of each backend, where its name is not the backend's.
_SECANT_MODULE = {"tensorflow": "tf"}
PIECES = 32
# Secant attributions of the same weights on two backends, relative L2: the rules are one table,
# so what is left is float64 rounding (JAX sees LayerNorm as mean, square, rsqrt and a product,
# and still applies PyTorch's rule for F.layer_norm: the normalising map averaged over the piece).
AGREE = 1e-4
# Each piece's |completeness residual| summed, relative to the summed |score change|.
ROUNDING = 1e-9


@pytest.fixture(scope="module")
def frameworks() -> Iterator[None]:
    """64-bit JAX for this module (the flag is process-wide, so it is restored)."""
    jax = pytest.importorskip("jax") if "jax" in BACKENDS else None
    old = bool(jax.config.jax_enable_x64) if jax is not None else False
    if jax is not None:
        jax.config.update("jax_enable_x64", True)
    try:
        yield None
    finally:
        if jax is not None:
            jax.config.update("jax_enable_x64", old)


@functools.cache
def _model(backend: str, case: str) -> Any:
    return cases.build(backend, case)


@functools.cache
def _secant(backend: str, case: str) -> igkit.Result:
    return igkit.integrated_gradients(_model(backend, case), cases.images(), target=[0, 2],
                                      method="secant", steps=PIECES, batch_size=16)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_every_backend_maps_its_operations_into_the_one_table() -> None:
    for backend in BACKENDS:
        name = _SECANT_MODULE.get(backend, backend)
        module = importlib.import_module(f"igkit.backends.{name}_secant")
        table = getattr(module, "OP_CLASSES", None) or module.RULES
        unknown = sorted(set(table.values()) - set(secant_rules.CLASSES))
        assert not unknown, (backend, unknown)
        assert importlib.import_module(f"igkit.backends.{backend}").CAPABILITIES \
            .interval_accumulation


@pytest.mark.parametrize("case", cases.CASES)
def test_builders_agree(frameworks: None, case: str) -> None:
    """The cases are one function in every framework (Keras included, for its backend)."""
    x = cases.images()
    outs = {fw: cases.forward(fw, cases.build(fw, case), x)
            for fw in ("torch", "jax", "tensorflow")}
    for fw, out in outs.items():
        assert out.shape == (2, cases.CLASSES)
        # Keras computes LayerNorm or GELU partly in float32 (2e-8 here).
        np.testing.assert_allclose(out, outs["torch"], rtol=1e-7, atol=1e-10, err_msg=fw)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", cases.CASES)
def test_every_piece_is_complete_to_rounding(frameworks: None, backend: str, case: str) -> None:
    """Through the session contract: each piece maps the input's change to the score's."""
    module = importlib.import_module(f"igkit.backends.{backend}")
    session = module.open_session(_model(backend, case), SessionOptions(
        output="raw", batch_size=16, dtype=np.dtype(np.float64)))
    try:
        x = cases.images()
        session.set_paths(x, np.zeros_like(x), np.array([0, 1]), np.array([1, 3]))
        ends, weights = uniform_pieces(12)
        rows = all_rows([0, 1], [ends, ends], [weights, weights])
        counts = session.accumulate_intervals(rows, 5)
        taken = session.take()
        assert counts.tolist() == [12, 12]  # the baseline point is not evaluated
        change = np.abs(np.diff(taken.scores.reshape(2, -1), axis=1)).sum()
        residual = session.piece_residual / change
        print(f"\n{backend} {case}: piece residual {residual:.1e} of |score changes|")
        assert residual <= ROUNDING, residual
        assert not session.unhandled_ops, session.unhandled_ops
        # The pieces' sums are the attributions: complete to rounding too.
        gap = taken.scores.reshape(2, -1)[:, -1] - taken.scores.reshape(2, -1)[:, 0]
        attr = (taken.sums * x).reshape(2, -1).sum(1)
        np.testing.assert_allclose(attr, gap, rtol=1e-9, atol=1e-12)
    finally:
        session.close()


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "torch"])
@pytest.mark.parametrize("case", cases.CASES)
def test_backends_give_the_same_secant_attributions(frameworks: None, backend: str,
                                                    case: str) -> None:
    ref = _secant("torch", case)
    res = _secant(backend, case)
    assert res.method == "secant"
    diff = _rel(res.attributions, ref.attributions)
    print(f"\n{case}: {backend} vs torch secant ({PIECES} pieces): relative L2 {diff:.1e}")
    assert diff <= AGREE, diff
    np.testing.assert_array_equal(res.evaluations, ref.evaluations)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", cases.ANALYTIC)
def test_one_piece_is_the_exact_ig_of_an_analytic_unit(frameworks: None, backend: str,
                                                       name: str) -> None:
    """A ReLU unit, a product of two linear units and the maximum of two: every operation's
    input moves linearly, so one secant piece is the exact IG (each switches inside it)."""
    exact = cases.analytic_exact(name)
    res = igkit.integrated_gradients(cases.build_analytic(backend, name), cases.analytic_input(),
                                     method="secant", steps=1)
    np.testing.assert_allclose(res.attributions, exact, rtol=1e-12, atol=1e-14)
    # A point rule misses the kink; the product (quadratic in alpha) it integrates exactly.
    if name != "product":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", igkit.NotConvergedWarning)
            gl = igkit.integrated_gradients(cases.build_analytic(backend, name),
                                            cases.analytic_input(), method="gauss_legendre",
                                            steps=8)
        assert _rel(gl.attributions, exact) > 1e-3
