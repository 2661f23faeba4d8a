"""No silent wrong numbers: every number igkit cannot stand behind is refused or said out loud.

One class of mistake per section, each on real (seeded) torch and Keras models:

1. softmax (or sigmoid) of a model that already returns probabilities;
2. nothing to attribute (F(x) = F(x')), and NaN/Inf in outputs or gradients;
3. a fixed step count whose attributions miss completeness;
4. (target names: tests/test_target_names.py)
5. layout and dtype mistakes that end in a framework's error;
6. step counts beyond what a run can do.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import torch
from analytic import NumpySession, cubic_ridge

import igkit
from igkit.core.checks import distribution_rows, unchanged
from igkit.core.completeness import completeness
from igkit.core.engine import run_integrated_gradients

nn = torch.nn


class Counting(nn.Module):
    """Counts forward calls, to prove a refusal comes before any path point."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


def conv_net(seed: int = 0, *, softmax: bool = False, sigmoid: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, stride=2), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
    ]
    if softmax:
        layers.append(nn.Softmax(dim=-1))
    if sigmoid:
        layers.append(nn.Sigmoid())
    return nn.Sequential(*layers).eval()


@pytest.fixture
def images(rng) -> np.ndarray:
    return rng.random((3, 3, 12, 12), dtype=np.float32)


@pytest.fixture(scope="module")
def keras() -> Any:
    import keras
    import tensorflow  # noqa: F401 - installed by make test: a regression fails, not skips
    if keras.backend.backend() != "tensorflow":
        pytest.skip("Keras runs on another backend here")
    return keras


def keras_net(keras: Any, *, softmax: bool) -> Any:
    keras.utils.set_random_seed(0)
    layers = keras.layers
    return keras.Sequential([
        keras.Input((12, 12, 3)),
        layers.Conv2D(4, 3, activation="relu"),
        layers.GlobalAveragePooling2D(),
        layers.Dense(5),
        *([layers.Softmax()] if softmax else []),
    ])


# --- 1. softmax of probabilities ------------------------------------------------------------


@pytest.mark.parametrize("output", ["softmax", "sigmoid"])
def test_a_torch_model_ending_in_softmax_is_refused_a_second_transform(output, images):
    model = Counting(conv_net(softmax=True))
    with pytest.raises(ValueError, match=r"already probabilities.*every row is non-negative "
                                         r"and sums to 1.*Pass output='raw'") as err:
        igkit.integrated_gradients(model, images, output=output, steps=16)
    assert f"output={output!r} would explain {output}(probabilities)" in str(err.value)
    assert model.calls == 1  # F(x) and F(x') only: refused before any path point
    # The fix named in the message works, and explains the model's own probabilities.
    res = igkit.integrated_gradients(model.inner, images, output="raw", steps=64, tol=0.05)
    with torch.no_grad():
        probs = model.inner(torch.as_tensor(images)).numpy()
    np.testing.assert_allclose(res.score, probs[np.arange(3), res.target], rtol=1e-6)
    assert res.converged.all()


def test_a_keras_model_ending_in_softmax_is_refused_softmax(keras, rng):
    x = rng.random((2, 12, 12, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="already probabilities.*Pass output='raw'"):
        igkit.integrated_gradients(keras_net(keras, softmax=True), x, output="softmax",
                                   steps=16)
    # Every keras.applications model ends like this; its logits twin is explained as asked.
    res = igkit.integrated_gradients(keras_net(keras, softmax=False), x, output="softmax",
                                     steps=64, tol=0.05)
    assert res.converged.all()


def test_plain_gradients_refuse_softmax_of_probabilities_too(images):
    with pytest.raises(ValueError, match="already probabilities"):
        igkit.gradients(conv_net(softmax=True), images, output="softmax")


def test_sigmoid_over_outputs_in_0_1_warns_but_runs(images):
    """Values in [0, 1] whose rows do not sum to 1 may be logits by chance: a warning, not a
    refusal, and the numbers are still computed."""
    with pytest.warns(igkit.OutputTransformWarning, match=r"lies in \[0, 1\].*output='raw'"):
        res = igkit.integrated_gradients(conv_net(sigmoid=True), images, output="sigmoid",
                                         steps=32, tol=1e6)
    assert np.all((res.score > 0.5) & (res.score < 0.74))  # sigmoid of probabilities


def test_logit_models_are_explained_without_complaint(images):
    # Warnings are errors in this suite: no OutputTransformWarning on a logit model.
    res = igkit.integrated_gradients(conv_net(), images, output="softmax", steps=256,
                                     method="riemann_trapezoid", tol=0.05)
    assert res.converged.all()


def test_softmax_over_one_output_is_refused(rng):
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    with pytest.raises(ValueError, match="single output is 1 everywhere.*output='sigmoid'"):
        igkit.integrated_gradients(model, rng.random((2, 4), dtype=np.float32),
                                   output="softmax")


def test_only_distributions_count_as_probabilities(rng):
    logits = rng.normal(size=(4, 1000))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert distribution_rows(probs.astype(np.float32), np.float32)
    assert not distribution_rows(logits, np.float32)
    assert not distribution_rows(np.abs(logits) / 3, np.float32)  # in range, sums far from 1
    shifted = probs.copy()
    shifted[:, 0] -= 2 * shifted[:, 0].max()  # sums to 1 minus a little, one value negative
    assert not distribution_rows(shifted, np.float32)
    assert not distribution_rows(probs[:, :1], np.float32)  # one class: nothing to tell


# --- 2. nothing to attribute; NaN and Inf ---------------------------------------------------


def zero_weight_net() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 12 * 12, 4))
    nn.init.zeros_(model[1].weight)
    return model


def test_a_zero_weight_model_says_there_is_nothing_to_attribute(images):
    with pytest.warns(igkit.NothingToAttributeWarning,
                      match=r"nothing to attribute for 3 of 3 explanations \(input 0"):
        res = igkit.integrated_gradients(zero_weight_net(), images, steps=8)
    assert np.isnan(res.relative_error).all()
    assert not res.converged.any()
    assert res.nothing_to_attribute.all()
    np.testing.assert_array_equal(res.attributions, 0.0)
    report = res.completeness_report(0)
    assert report.startswith("nothing to attribute: F(x) = F(x') = ")
    assert "completeness cannot be checked" in report and "within" not in report


def test_an_input_equal_to_its_baseline_is_not_reported_as_within_tolerance(images):
    model = conv_net()
    baseline = np.zeros_like(images)
    baseline[1] = images[1]  # only the second input has no path to walk
    with pytest.warns(igkit.NothingToAttributeWarning, match=r"1 of 3 .*input 1 \(class"):
        res = igkit.integrated_gradients(model, images, baseline=baseline, steps=256,
                                         method="riemann_trapezoid", tol=0.05, output="softmax")
    assert res.nothing_to_attribute.tolist() == [False, True, False]
    assert res.converged.tolist() == [True, False, True]
    assert np.isnan(res.relative_error[1]) and np.isfinite(res.relative_error[[0, 2]]).all()
    assert "nothing to attribute" in res.completeness_report(1)
    assert res.completeness_report(0).startswith("completeness within 5.0%")


@pytest.mark.parametrize("method", ["gauss_legendre", "riemann_trapezoid", "adaptive"])
def test_auto_stops_at_once_when_there_is_nothing_to_attribute(method, images):
    """Completeness has nothing to be relative to: "auto" does not chase it to max_steps
    (and so raises no NotConvergedWarning), it stops on the attributions' own change."""
    with pytest.warns(igkit.NothingToAttributeWarning):
        res = igkit.integrated_gradients(zero_weight_net(), images, steps="auto",
                                         method=method, max_steps=512)
    assert res.steps.max() < 64 and not res.converged.any()


def test_relative_error_of_a_zero_change_is_nan_not_zero_or_infinity():
    attr = np.array([[0.0, 0.0], [1.0, -1.0], [1e-9, 0.0], [0.5, 0.5]])
    score, base = np.array([2.0, 2.0, 2.0, 2.0]), np.array([2.0, 2.0, 2.0, 1.0])
    delta, rel = completeness(attr, score, base)
    assert np.isnan(rel[:3]).all() and rel[3] == 0.0
    np.testing.assert_array_equal(delta, [0.0, 0.0, 1e-9, 0.0])
    # Equal to rounding counts as unchanged; a real change of a small score does not.
    assert unchanged(np.array([1.0, 1e-30]), np.array([1.0 + 1e-7, 1e-31]), np.float32).tolist() \
        == [True, False]


def test_engine_flags_nothing_to_attribute_on_an_exact_session(rng):
    """On the NumPy session: the input equal to its baseline is flagged, the other is not."""
    u = rng.normal(size=4)
    x = rng.normal(size=(2, 4))
    baseline = np.stack([np.zeros(4), x[1]])
    with pytest.warns(igkit.NothingToAttributeWarning, match="1 of 2"):
        res = run_integrated_gradients(NumpySession(cubic_ridge(u)), x, [("b", baseline)],
                                       target=0, method="gauss_legendre", steps=3, tol=1e-9,
                                       batch_size=8)
    assert res.converged.tolist() == [True, False]
    assert res.nothing_to_attribute.tolist() == [False, True]


class LogShift(nn.Module):
    """log(sum(x) - shift): NaN wherever the pixel sum is below ``shift``."""

    def __init__(self, shift: float) -> None:
        super().__init__()
        self.shift = shift

    def forward(self, x):
        return torch.log(x.flatten(1).sum(1, keepdim=True) - self.shift)


def test_nan_outputs_are_refused_naming_where(images):
    model = Counting(LogShift(100.0))  # the black baseline sums to 0: NaN there
    with pytest.raises(ValueError, match=r"NaN at the 'black' baseline of input 0 \(F\(x'\)\)"):
        igkit.integrated_gradients(model, images)
    assert model.calls == 1
    dim = images.copy()
    dim[1] *= 0.1  # this input's sum falls below the shift
    with pytest.raises(ValueError, match=r"NaN at input 1 \(F\(x\)\)"):
        igkit.integrated_gradients(LogShift(100.0), dim, baseline="white")


def test_infinite_scores_are_refused(images):
    class Inf(nn.Module):
        def forward(self, x):
            return (x.flatten(1).sum(1, keepdim=True) + 1.0) / 0.0

    with pytest.raises(ValueError, match=r"F\(x\) of class 0 is inf at input 0"):
        igkit.integrated_gradients(Inf(), images)


class RootSum(nn.Module):
    """sum(sqrt(x)): finite everywhere on [0, 1], its gradient infinite at 0."""

    def forward(self, x):
        return torch.sqrt(x.flatten(1)).sum(1, keepdim=True)


def test_nan_gradients_are_refused_naming_the_alpha():
    x = np.full((1, 3, 4, 4), 0.5, dtype=np.float32)
    with pytest.raises(ValueError, match=r"on the path of input 0 \(class 0\) from its 'black' "
                                         r"baseline, the gradient is not finite at alpha=0 "
                                         r"\(the baseline\).*method='gauss_legendre'"):
        igkit.integrated_gradients(RootSum(), x, steps=8, method="riemann_trapezoid")
    # Gauss-Legendre never evaluates the end, so the same path integrates (slowly: 1/sqrt).
    with pytest.warns(igkit.NotConvergedWarning):
        res = igkit.integrated_gradients(RootSum(), x, steps=8)
    assert np.isfinite(res.attributions).all()


def test_a_nan_gradient_inside_the_path_is_found_by_bisection():
    class Kink(nn.Module):
        """|s - 0.3|^0.5 with s the mean pixel: its gradient is infinite where s = 0.3, i.e.
        at alpha = 0.5 for an input of 0.6, a node of a 9-point trapezoid rule."""

        def forward(self, x):
            s = x.flatten(1).mean(1, keepdim=True)
            return (s - 0.3).abs().sqrt()

    x = np.full((1, 3, 4, 4), 0.6, dtype=np.float32)
    with pytest.raises(ValueError, match=r"gradient is not finite at alpha=0\.5\b"):
        igkit.integrated_gradients(Kink(), x, steps=9, method="riemann_trapezoid")


# --- 3. fixed steps that miss ---------------------------------------------------------------


def test_fixed_steps_that_miss_completeness_warn_naming_inputs_errors_and_the_fix(images):
    with pytest.warns(igkit.NotConvergedWarning) as record:
        res = igkit.integrated_gradients(conv_net(), images, steps=4)
    (warning,) = record
    text = str(warning.message)
    missed = np.flatnonzero(res.relative_error > res.tol)
    assert missed.size and not res.converged[missed].any()
    assert f"at a fixed 4 steps (gauss_legendre) for {missed.size} of 3 explanations" in text
    for i in missed:
        assert f"input {i} (class {res.target[i]}) {res.relative_error[i]:.1%}" in text
    assert "Pass more steps, or steps='auto'" in text
    assert warning.filename == __file__  # it points at the caller's line


def test_fixed_steps_that_meet_completeness_stay_silent(rng):
    torch.manual_seed(0)
    model = nn.Linear(6, 3).double()  # linear: exact at any step count
    res = igkit.integrated_gradients(model, rng.normal(size=(2, 6)), steps=2)
    assert res.converged.all()


def test_multi_target_misses_name_each_input_and_class(images):
    with pytest.warns(igkit.NotConvergedWarning) as record:
        res = igkit.integrated_gradients(conv_net(), images, target=[[1, 2], [3], [0, 4]],
                                         steps=2)
    text = str(record[0].message)
    for i, k in res.pairs():
        named = f"input {i} (class {res.target[i, k]}) {res.relative_error[i, k]:.1%}"
        assert (named in text) == (not res.converged[i, k]), (named, text)


# --- 5. layouts and dtypes ------------------------------------------------------------------


def test_a_channels_last_image_for_a_torch_conv_net_names_the_transpose(rng):
    image = rng.random((16, 16, 3), dtype=np.float32)
    with pytest.raises(ValueError) as err:
        igkit.integrated_gradients(conv_net(), image, steps=8)
    message = str(err.value)
    assert message.startswith(
        "inputs of shape (16, 16, 3) look channels-last; this PyTorch model takes "
        "channels-first: transpose to (3, 16, 16)")
    assert "np.transpose(x, (2, 0, 1))" in message
    assert isinstance(err.value.__cause__, RuntimeError)  # the framework's own error, chained
    with pytest.raises(ValueError, match=r"shape \(2, 16, 16, 3\) .* to \(2, 3, 16, 16\)"):
        igkit.integrated_gradients(conv_net(), np.stack([image, image]), steps=8)
    with pytest.raises(ValueError, match="look channels-last"):
        igkit.gradients(conv_net(), image)
    # The fix works.
    fixed = igkit.integrated_gradients(conv_net(), image.transpose(2, 0, 1), steps=64, tol=1e6)
    assert fixed.attributions.shape == (3, 16, 16)


def test_a_loaded_model_refuses_the_other_layout_before_running(rng):
    from igkit.models.spec import LoadedModel

    model = Counting(conv_net())
    loaded = LoadedModel(model=model, framework="torch", channels_first=True,
                         input_size=(16, 16), preprocess="pad")
    with pytest.raises(ValueError, match=r"\(1, 16, 16, 3\) look channels-last.*\(1, 3, 16, 16\)"):
        igkit.integrated_gradients(loaded, rng.random((1, 16, 16, 3), dtype=np.float32))
    assert model.calls == 0


def test_a_channels_first_image_for_keras_names_the_transpose(keras, rng):
    image = rng.random((3, 12, 12), dtype=np.float32)
    with pytest.raises(ValueError, match=r"^inputs of shape \(3, 12, 12\) look channels-first; "
                                         r"this TensorFlow model takes channels-last: transpose "
                                         r"to \(12, 12, 3\)"):
        igkit.integrated_gradients(keras_net(keras, softmax=False), image, steps=8)


class TokenModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(50, 8)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(6 * 8, 3))

    def forward(self, ids):
        return self.head(self.embed(ids))


def test_integer_token_ids_are_refused_with_the_embedding_fix():
    model = TokenModel()
    ids = np.array([[1, 5, 7, 9, 2, 3]], dtype=np.int64)
    with pytest.raises(ValueError, match=r"^integer inputs \(token ids\?\) cannot be "
                                         r"interpolated: attribute at the embedding layer "
                                         r"\(pass the embeddings as inputs") as err:
        igkit.integrated_gradients(model, ids, steps=8)
    assert "'indices'" in str(err.value)  # what torch said, for the record
    # The fix: the embeddings are the inputs, the rest of the model is the model.
    with torch.no_grad():
        vectors = model.embed(torch.as_tensor(ids)).numpy()
    res = igkit.integrated_gradients(model.head, vectors, steps=2, batched=True)
    assert res.attributions.shape == (1, 6, 8) and res.converged.all()


def test_other_model_failures_keep_their_error_and_say_what_the_batch_held(rng):
    torch.manual_seed(0)
    model = nn.Linear(10, 2)
    with pytest.raises(RuntimeError, match="mat1 and mat2") as err:
        igkit.integrated_gradients(model, rng.random(12, dtype=np.float32))
    notes = getattr(err.value, "__notes__", [])
    assert notes == ["igkit: the model was called on the 1 input and 1 baseline together: "
                     "a batch of shape (2, 12)"]


def test_igkit_errors_inside_the_forward_pass_are_not_rewritten(rng):
    class Pair(nn.Module):
        def forward(self, x):
            return x.flatten(1), x.flatten(1)

    with pytest.raises(TypeError, match="returned tuple, not a tensor"):
        igkit.integrated_gradients(Pair(), rng.random((16, 16, 3), dtype=np.float32))


# --- 6. limits ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps": 10_000_000}, r"steps=10000000 is more than the 8192 gradient evaluations "
                                r"per path .*use steps='auto' with tol.*method='secant'"),
        ({"steps": "auto", "max_steps": 100_000}, r"max_steps=100000 is more than the 8192"),
        ({"steps": 8193, "method": "secant"}, "steps=8193 is more than"),
    ],
)
def test_step_counts_past_the_limit_are_refused_before_the_model(kwargs, message, images):
    model = Counting(conv_net())
    with pytest.raises(ValueError, match=message):
        igkit.integrated_gradients(model, images, **kwargs)
    assert model.calls == 0


def test_the_limit_itself_runs(rng):
    from igkit.core.quadrature import MAX_STEPS

    torch.manual_seed(0)
    res = igkit.integrated_gradients(nn.Linear(4, 2).double(), rng.normal(size=(1, 4)),
                                     steps=MAX_STEPS, batch_size=MAX_STEPS)
    assert res.steps[0] == MAX_STEPS and res.converged.all()


def test_the_command_line_settings_refuse_the_same_limit():
    from igkit.workflow.settings import ExplainSettings

    with pytest.raises(ValueError, match="--steps/--max-steps: steps=20000 is more than"):
        ExplainSettings(steps=20_000).check()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ExplainSettings(steps=8192).check()
