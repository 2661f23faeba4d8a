"""The public API on torch models: closed forms, layouts, dtypes, targets and error messages."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from analytic import cubic_ridge_ig, sigmoid_linear_ig

import igkit

ALL = ["riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gauss_legendre"]
SRC = Path(igkit.__file__).parent
#: The tolerance of tests about something other than completeness (layouts, batching, seeds,
#: result fields): they run a few steps, which miss 1 %, and a fixed step count that misses
#: ``tol`` warns NotConvergedWarning (tests/test_no_silent_numbers.py tests that warning).
LOOSE = 1e6


def loose_ig(*args, **kwargs):
    """``igkit.integrated_gradients`` with ``tol=LOOSE``."""
    return igkit.integrated_gradients(*args, tol=LOOSE, **kwargs)


class CountingModel(torch.nn.Module):
    """Wraps a module and counts forward calls, to prove validation happens before them."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


def small_cnn(seed: int = 0, dtype=torch.float32) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(6, 8, 3, stride=2), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 5),
    ).to(dtype)


class Ridge(torch.nn.Module):
    def __init__(self, u: np.ndarray, kind: str) -> None:
        super().__init__()
        self.u = torch.nn.Parameter(torch.as_tensor(u, dtype=torch.float64))
        self.kind = kind

    def forward(self, x):
        s = x.flatten(1) @ self.u
        out = s**4 if self.kind == "cubic" else torch.sigmoid(s)
        return out[:, None]


@pytest.fixture
def images(rng) -> np.ndarray:
    return rng.random((3, 3, 12, 12), dtype=np.float32)


def test_import_igkit_imports_no_framework_and_no_matplotlib():
    code = (
        "import sys, igkit, igkit.core.engine, igkit.api\n"
        "bad = [m for m in ('torch', 'tensorflow', 'jax', 'keras', 'matplotlib') "
        "if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_core_source_imports_only_numpy_and_the_standard_library():
    allowed = {"numpy", "igkit", "__future__"} | set(sys.stdlib_module_names)
    # The model spec too: a framework's forward pass lives in its backend.
    for path in [*(SRC / "core").glob("*.py"), SRC / "models" / "spec.py", SRC / "typing.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"


@pytest.mark.parametrize("method", ALL)
@pytest.mark.parametrize("steps", [2, 5])
def test_linear_model_is_exact_at_any_step_count(method, steps, rng):
    torch.manual_seed(0)
    model = torch.nn.Linear(7, 3).double()
    x = rng.normal(size=(4, 7))
    base = rng.normal(size=(4, 7))
    res = igkit.integrated_gradients(model, x, baseline=base, method=method, steps=steps,
                                     target=[0, 1, 2, 1])
    w = model.weight.detach().numpy()[[0, 1, 2, 1]]
    np.testing.assert_allclose(res.attributions, (x - base) * w, rtol=1e-12, atol=1e-14)
    assert res.attributions.dtype == np.float64
    assert np.all(np.abs(res.delta) < 1e-12)


def test_polynomial_model_matches_closed_form(rng):
    u = rng.normal(size=10) / 3
    x, base = rng.normal(size=(2, 10)), rng.normal(size=(2, 10))
    res = igkit.integrated_gradients(Ridge(u, "cubic"), x, baseline=base, steps=2)
    np.testing.assert_allclose(res.attributions, cubic_ridge_ig(u, x, base), rtol=1e-11)


def test_sigmoid_of_linear_map_matches_closed_form(rng):
    w = rng.normal(size=10)
    x = rng.normal(size=(2, 10))
    res = igkit.integrated_gradients(Ridge(w, "sigmoid"), x, steps=64)
    exact = sigmoid_linear_ig(w, x, np.zeros_like(x))
    np.testing.assert_allclose(res.attributions, exact, rtol=1e-10, atol=1e-14)


def test_completeness_is_reported_exactly_on_a_conv_net(images):
    model = small_cnn()
    res = igkit.integrated_gradients(model, images, output="softmax", steps=300,
                                     method="riemann_trapezoid")
    with torch.no_grad():
        fx = torch.softmax(model(torch.as_tensor(images)), -1).numpy()
        fb = torch.softmax(model(torch.zeros(1, 3, 12, 12)), -1).numpy()[0]
    t = res.target
    np.testing.assert_array_equal(t, fx.argmax(1))
    np.testing.assert_allclose(res.score, fx[np.arange(3), t], rtol=1e-6)
    np.testing.assert_allclose(res.baseline_score, fb[t], rtol=1e-4, atol=1e-9)
    total = res.attributions.reshape(3, -1).astype(np.float64).sum(1)
    np.testing.assert_allclose(res.delta, total - (res.score - res.baseline_score), atol=1e-12)
    assert np.all(res.relative_error < 0.01), res.relative_error


def test_single_example_keeps_its_shape(images):
    res = loose_ig(small_cnn(), images[0], steps=4)
    assert res.attributions.shape == images[0].shape
    assert res.delta.shape == (1,)


def test_torch_tensor_inputs_are_accepted(images):
    a = loose_ig(small_cnn(), torch.as_tensor(images), steps=4)
    b = loose_ig(small_cnn(), images, steps=4)
    np.testing.assert_array_equal(a.attributions, b.attributions)


def test_integer_images_keep_their_values(rng):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2)).double()
    x8 = rng.integers(0, 256, size=(2, 3, 2, 2), dtype=np.uint8)
    a = igkit.integrated_gradients(model, x8, steps=3, baseline="white")
    b = igkit.integrated_gradients(model, x8.astype(np.float64), steps=3,
                                   baseline=np.full((3, 2, 2), 255.0))
    np.testing.assert_allclose(a.attributions, b.attributions, rtol=1e-12)


def test_float64_models_compute_in_float64(images):
    res = loose_ig(small_cnn(dtype=torch.float64), images, steps=8)
    assert res.attributions.dtype == np.float64
    res32 = loose_ig(small_cnn(), images, steps=8)
    assert res32.attributions.dtype == np.float32


@pytest.mark.parametrize("batch_size", [1, 5, 64])
def test_batch_size_does_not_change_attributions(batch_size, images):
    ref = loose_ig(small_cnn(), images, steps=10, batch_size=16)
    res = loose_ig(small_cnn(), images, steps=10, batch_size=batch_size)
    np.testing.assert_allclose(res.attributions, ref.attributions, rtol=1e-5, atol=1e-8)


def test_targets_none_int_and_per_input(images):
    model = small_cnn()
    assert loose_ig(model, images, steps=2, target=3).target.tolist() == [3] * 3
    res = loose_ig(model, images, steps=2, target=[0, 4, 2])
    assert res.target.tolist() == [0, 4, 2]


@pytest.mark.parametrize("name", ["uniform", "gaussian"])
def test_random_baselines_are_reproducible_from_the_seed(name, images):
    model = small_cnn()
    a = loose_ig(model, images, steps=4, baseline=name, seed=7)
    b = loose_ig(model, images, steps=4, baseline=name, seed=7)
    c = loose_ig(model, images, steps=4, baseline=name, seed=8)
    np.testing.assert_array_equal(a.attributions, b.attributions)
    assert not np.allclose(a.attributions, c.attributions)


def test_a_list_of_baselines_averages_their_attributions(images):
    names = ["black", "white", "blur", 0.5]
    res = loose_ig(small_cnn(), images, steps=16, baseline=names)
    assert res.baselines == ("black", "white", "blur", "constant 0.5")
    singles = [loose_ig(small_cnn(), images, steps=16, baseline=n)
               for n in names]
    np.testing.assert_allclose(res.attributions,
                               np.mean([s.attributions for s in singles], axis=0), rtol=1e-5,
                               atol=1e-8)
    np.testing.assert_allclose(res.baseline_score,
                               np.mean([s.baseline_score for s in singles], axis=0), rtol=1e-5)


def test_repeated_random_baselines_draw_fresh_noise(images):
    # The Keras example's random-baseline IG: each entry of the list is a new draw.
    one = loose_ig(small_cnn(), images, steps=8, baseline="uniform")
    two = loose_ig(small_cnn(), images, steps=8, baseline=["uniform"] * 2)
    assert not np.allclose(one.baseline_score, two.baseline_score)


def test_blur_baseline_blurs_only_spatial_axes(images):
    from igkit.core.baselines import gaussian_blur
    blurred = gaussian_blur(images, 1.0, axes=(2, 3))
    np.testing.assert_allclose(blurred.mean(axis=(2, 3)), images.mean(axis=(2, 3)), rtol=0.05)
    assert blurred.std() < images.std()


def test_return_path_gives_saturation_data(images):
    res = loose_ig(small_cnn(), images, steps=9, method="riemann_trapezoid",
                                     output="softmax", return_path=True)
    assert res.path is not None
    a = res.path.alphas[0]
    np.testing.assert_allclose(a, np.linspace(0, 1, 9))
    assert res.path.scores[0][0] == pytest.approx(res.baseline_score[0], rel=1e-5)
    assert res.path.scores[0][-1] == pytest.approx(res.score[0], rel=1e-5)
    assert np.all(res.path.mean_abs_gradient[0] >= 0)


def test_steps_auto_meets_tolerance_on_a_conv_net(images):
    res = igkit.integrated_gradients(small_cnn(), images, steps="auto", tol=0.02,
                                     output="softmax", method="riemann_trapezoid")
    assert np.all(res.relative_error <= 0.02)
    assert len(set(res.steps.tolist())) >= 1


def test_gradients_equal_autograd(images):
    model = small_cnn()
    g = igkit.gradients(model, images, target=2)
    x = torch.as_tensor(images).requires_grad_(True)
    model(x)[:, 2].sum().backward()
    np.testing.assert_allclose(g, x.grad.numpy(), rtol=1e-6, atol=1e-9)


def test_model_is_left_in_the_mode_it_was_given():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.5),
                                torch.nn.Linear(4, 2))
    model.train()
    x = np.ones((2, 4), dtype=np.float32)
    a = igkit.integrated_gradients(model, x, steps=4)
    b = igkit.integrated_gradients(model, x, steps=4)
    np.testing.assert_array_equal(a.attributions, b.attributions)  # dropout was off
    assert model.training and model[1].training


def test_bare_torch_callable_is_recognised(images):
    model = small_cnn()
    res = loose_ig(lambda t: model(t), images, steps=4)
    ref = loose_ig(model, images, steps=4)
    np.testing.assert_array_equal(res.attributions, ref.attributions)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"baseline": np.zeros((3, 5, 5))}, r"baseline shape \(3, 5, 5\) does not match input"),
        ({"baseline": np.full((3, 12, 12), np.nan)}, "NaN or Inf"),
        ({"baseline": "sky"}, "unknown baseline 'sky'"),
        ({"baseline": []}, "baseline list is empty"),
        ({"steps": 0}, "needs steps >= 1"),
        ({"steps": "many"}, "positive integer or 'auto'"),
        ({"method": "simpson"}, "unknown method 'simpson'"),
        ({"output": "logsoftmax"}, "unknown output 'logsoftmax'"),
        ({"tol": 0}, "tol must be a positive number"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"target": [1, 2]}, "target has 2 entries but there are 3 inputs"),
        ({"target": "cat"}, "target must be None, an int, or one int per input"),
    ],
)
def test_bad_arguments_fail_before_any_path_evaluation(kwargs, message, images):
    model = CountingModel(small_cnn())
    with pytest.raises(ValueError, match=message):
        igkit.integrated_gradients(model, images, **kwargs)
    # Nothing past one forward pass of the inputs (used to pick targets) ran.
    assert model.calls <= 1


def test_nan_inputs_and_empty_batches_are_refused_before_the_model(images):
    model = CountingModel(small_cnn())
    bad = images.copy()
    bad[0, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="1 NaN or Inf"):
        igkit.integrated_gradients(model, bad)
    with pytest.raises(ValueError, match="empty batch"):
        igkit.integrated_gradients(model, images[:0])
    assert model.calls == 0


def test_target_out_of_range_names_the_valid_range(images):
    with pytest.raises(ValueError, match=r"target 5 is out of range: the model has 5 outputs"):
        igkit.integrated_gradients(small_cnn(), images, target=5)


def test_model_that_ignores_its_input_is_refused(images):
    class Constant(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.b = torch.nn.Parameter(torch.ones(3))

        def forward(self, x):
            return self.b.expand(x.shape[0], 3) * 1.0

    with pytest.raises(ValueError, match="does not depend on its input"):
        igkit.integrated_gradients(Constant(), images)


def test_non_model_is_refused():
    with pytest.raises(TypeError, match="load it first"):
        igkit.integrated_gradients("efficientnet_lite0", np.zeros((1, 3, 4, 4)))


class OomAbove(torch.nn.Module):
    """Raises torch's out-of-memory error for batches larger than ``limit``, like a full GPU."""

    def __init__(self, inner: torch.nn.Module, limit: int) -> None:
        super().__init__()
        self.inner, self.limit, self.sizes = inner, limit, []

    def forward(self, x):
        if x.shape[0] > self.limit and torch.is_grad_enabled():
            raise torch.OutOfMemoryError("simulated: CUDA out of memory")
        self.sizes.append(x.shape[0])
        return self.inner(x)


def test_out_of_memory_backs_off_to_smaller_batches(images):
    model = small_cnn()
    ref = loose_ig(model, images, steps=20, batch_size=64)
    tight = OomAbove(model, 7)
    res = loose_ig(tight, images, steps=20, batch_size=64)
    np.testing.assert_allclose(res.attributions, ref.attributions, rtol=1e-5, atol=1e-9)
    assert max(tight.sizes) <= 64


@pytest.mark.parametrize("method", ["adaptive", "gauss_legendre"])
def test_packed_images_equal_one_by_one(method, images):
    model = small_cnn()
    together = loose_ig(model, images, steps=24, method=method, batch_size=10)
    for i in range(images.shape[0]):
        alone = loose_ig(model, images[i : i + 1], steps=24, method=method,
                                           batch_size=10)
        np.testing.assert_allclose(together.attributions[i], alone.attributions[0], rtol=1e-5,
                                   atol=1e-9)


@pytest.mark.parametrize("precision", ["bf16", "tf32"])
def test_reduced_precision_is_close_and_keeps_float32_sums(precision, images):
    # On the CPU "tf32" changes nothing and bf16 autocast runs the convolutions in bfloat16:
    # the attributions stay close to exact ones, in float32, and completeness is still reported
    # against exact scores.
    model = small_cnn()
    exact = loose_ig(model, images, steps=32, output="softmax")
    fast = loose_ig(model, images, steps=32, output="softmax",
                                      precision=precision)
    assert fast.attributions.dtype == np.float32
    err = np.linalg.norm(fast.attributions - exact.attributions) / np.linalg.norm(
        exact.attributions)
    assert err < (1e-6 if precision == "tf32" else 0.1), err


def test_unknown_precision_is_refused(images):
    with pytest.raises(ValueError, match="unknown precision 'int8'"):
        igkit.integrated_gradients(small_cnn(), images, precision="int8")


# --- declared capabilities: one way to ask ------------------------------------------------------


def test_method_support_is_answered_from_declarations_without_importing_a_framework():
    code = (
        "import sys\n"
        "from igkit import api\n"
        "frameworks = ('torch', 'tensorflow', 'jax')\n"
        "for method in ('secant', 'auto', 'adaptive', 'gauss_legendre'):\n"
        "    assert all(api.method_supported(f, method) for f in frameworks), method\n"
        "assert all(api.capabilities(f).interval_accumulation for f in frameworks)\n"
        "why = api.why_unsupported('torch', 'secant', precision='bf16')\n"
        "assert \"pass precision='float32'\" in why, why\n"
        "why = api.why_unsupported('tensorflow', 'gauss_legendre', precision='fp16')\n"
        "assert 'supported for PyTorch models only' in why, why\n"
        "assert api.why_unsupported('torch', 'gauss_legendre', precision='bf16') is None\n"
        "assert api.capabilities('torch').interval_accumulation\n"
        "assert api.capabilities('jax').precisions == ('float32',)\n"
        "bad = [m for m in ('torch', 'tensorflow', 'jax', 'keras') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("caffe", "secant"), "unknown framework 'caffe'"),
        (("torch", "simpson"), "unknown method 'simpson'"),
    ],
)
def test_method_support_names_unknown_frameworks_and_methods(args, message):
    with pytest.raises(ValueError, match=message):
        igkit.api.method_supported(*args)
    with pytest.raises(ValueError, match="unknown precision 'int8'"):
        igkit.api.why_unsupported("torch", "secant", precision="int8")


def test_sessions_declare_what_their_backend_module_declares():
    from igkit.backends import torch as torch_backend
    from igkit.backends.base import SessionOptions

    session = torch_backend.open_session(small_cnn(), SessionOptions())
    try:
        assert session.capabilities is torch_backend.CAPABILITIES
        assert session.capabilities.row_accumulation and session.capabilities.closing
    finally:
        session.close()


def test_api_and_engine_do_not_probe_sessions_or_test_backend_names():
    for path in (SRC / "api.py", SRC / "core" / "engine.py", SRC / "core" / "strategies.py"):
        text = path.read_text()
        for probe in ('getattr(session', 'hasattr(session', 'name == "torch"',
                      'name != "torch"', 'rule.secant', 'rule.adaptive'):
            assert probe not in text, f"{path.name}: {probe}"


# --- LoadedModel wherever a model goes -----------------------------------------------------------


def _loaded(model, **kw):
    from igkit.models.spec import LoadedModel

    return LoadedModel(model=model, framework="torch", channels_first=True, input_size=(12, 12),
                       preprocess="pad", **kw)


def test_a_loaded_model_is_unwrapped_with_its_channel_axis_and_pixel_range(images):
    model = small_cnn()
    # Values up to 200 would be read as a 0..255 image; the loaded model says [0, 1].
    x = images * 200
    ref = loose_ig(model, x, steps=4, baseline="white", channel_axis=1,
                                     input_range=(0.0, 1.0))
    res = loose_ig(_loaded(model), x, steps=4, baseline="white")
    np.testing.assert_array_equal(res.attributions, ref.attributions)
    assert res.channel_axis == 1
    np.testing.assert_array_equal(res.baseline_inputs, np.ones_like(x))
    guessed = loose_ig(model, x, steps=4, baseline="white")
    assert guessed.baseline_inputs.max() == 255
    # What is given wins over what the loaded model says.
    given = loose_ig(_loaded(model), x, steps=4, baseline="white",
                                       input_range=(0.0, 255.0))
    np.testing.assert_array_equal(given.attributions, guessed.attributions)
    np.testing.assert_array_equal(igkit.gradients(_loaded(model), x), igkit.gradients(model, x))


def test_a_loaded_callable_runs_on_its_declared_framework_without_probing(images):
    model = small_cnn()
    calls = []

    def forward(t):
        calls.append(t.shape[0])
        return model(t)

    res = loose_ig(_loaded(forward), images, steps=4, batch_size=64)
    ref = loose_ig(model, images, steps=4)
    np.testing.assert_array_equal(res.attributions, ref.attributions)
    assert calls == [6, 12]  # F(x) and F(x') together, then the 12 path points: no probe call


# --- the Result carries what redoes and draws it ---------------------------------------------


def test_result_carries_inputs_baseline_and_settings(images):
    import warnings

    model = small_cnn()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", igkit.NotConvergedWarning)
        res = loose_ig(model, images, steps="auto", max_steps=64, seed=5,
                                         baseline=["uniform", "black"], output="softmax")
    assert res.output == "softmax" and res.seed == 5
    assert res.requested_steps == "auto" and res.max_steps == 64
    assert res.channel_axis == 1
    np.testing.assert_array_equal(res.inputs, images)
    assert res.inputs.dtype == res.attributions.dtype
    assert res.baseline_inputs.shape == images.shape
    again = loose_ig(model, images, steps=4, seed=5, baseline="uniform")
    np.testing.assert_array_equal(res.baseline_inputs, again.baseline_inputs)
    assert again.requested_steps == 4
    # The inputs are a copy: changing the caller's array later changes nothing.
    x = images.copy()
    kept = loose_ig(model, x, steps=2)
    x[:] = 0
    np.testing.assert_array_equal(kept.inputs, images)
    custom = loose_ig(model, images, steps=2, output=lambda y: y * 2)
    assert custom.output == "callable"


def test_result_fields_follow_unbatching_and_per_target(images):
    model = small_cnn()
    one = loose_ig(model, images[0], steps=2, baseline="white")
    assert one.inputs.shape == one.baseline_inputs.shape == images[0].shape
    assert one.channel_axis == 1  # an axis of the batch, as channel_axis= takes it
    assert one.per_target() == [one]
    multi = loose_ig(model, images, steps=2, target=[[0, 1], [2], [3, 4]],
                                       baseline="uniform")
    assert multi.inputs.shape == images.shape
    singles = multi.per_target()
    assert [s.target[0] for s in singles] == [0, 1, 2, 3, 4]
    for single, (i, _) in zip(singles, multi.pairs(), strict=True):
        np.testing.assert_array_equal(single.inputs, images[i][None])
        np.testing.assert_array_equal(single.baseline_inputs, multi.baseline_inputs[i][None])
        assert single.channel_axis == 1 and single.output == "raw"
    batched = loose_ig(model, images, steps=2).per_target()
    np.testing.assert_array_equal(batched[2].inputs, images[2:3])


def test_repr_html_uses_the_notebook_view_and_falls_back_to_escaped_text(images, monkeypatch):
    import types

    res = loose_ig(small_cnn(), images[:2], steps=2)
    fake = types.ModuleType("igkit.viz.notebook")
    fake.result_html = lambda result: f"<div>{len(result)} explained</div>"
    monkeypatch.setitem(sys.modules, "igkit.viz.notebook", fake)
    assert res._repr_html_() == "<div>2 explained</div>"
    monkeypatch.setitem(sys.modules, "igkit.viz.notebook", None)  # the import fails
    text = res._repr_html_()
    assert text.startswith("<pre>") and text.endswith("</pre>")
    assert text.count("completeness") == 2
    assert "F(x) - F(x&#x27;)" in text and "F(x')" not in text
