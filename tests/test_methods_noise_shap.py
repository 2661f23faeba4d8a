"""SmoothGrad, VarGrad, the noise= wrapper, expected gradients, DeepLift and DeepLiftSHAP:
their identities (DeepLift is one secant piece of IG, expected gradients converge to IG,
SmoothGrad at zero noise is the gradient) and their agreement with Captum."""

from __future__ import annotations

import types
import warnings

import numpy as np
import pytest
import torch
from analytic import NumpySession, sigmoid_linear, sigmoid_linear_ig
from captum.attr import DeepLift, DeepLiftShap, GradientShap, NoiseTunnel, Saliency

import igkit
from igkit.core.checks import NothingToAttributeWarning
from igkit.core.strategies import NotConvergedWarning
from igkit.core.targets import resolve_target_plan
from igkit.methods import MethodContext, get_method
from igkit.methods.noise import aggregate


def _mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(12, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16), torch.nn.ReLU(),
        torch.nn.Linear(16, 4),
    ).eval()


def _cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(144, 5)
    ).eval()


V = np.random.default_rng(0).normal(size=(3, 12)).astype(np.float32)
REFS = np.random.default_rng(1).normal(size=(5, 12)).astype(np.float32)
IMG = np.random.default_rng(2).random((2, 3, 8, 8)).astype(np.float32)


def _captum(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    """A Captum call, without its notes about hooks and gradients (UserWarning)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="captum")
        return fn(*args, **kwargs)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(a, requires_grad=True)


# -- DeepLift and DeepLiftSHAP -------------------------------------------------------------


def test_deeplift_is_integrated_gradients_with_one_secant_piece() -> None:
    for net, x in ((_mlp(), V), (_cnn(), IMG)):
        for baseline in ("black", ["black", "white"]):
            dl = igkit.attribute(net, x, "deeplift", baseline=baseline, target=1)
            ig = igkit.attribute(net, x, "secant", steps=1, baseline=baseline, target=1)
            np.testing.assert_array_equal(dl.attributions, ig.attributions)
            np.testing.assert_array_equal(dl.baseline_score, ig.baseline_score)
            # One piece, complete to float32 rounding.
            assert dl.relative_error.max() < 2e-6 and dl.converged.all()
            assert dl.attribution_method == "deeplift" and (dl.steps == 1).all()


def test_deeplift_matches_captum_rescale_on_elementwise_activation_nets() -> None:
    mlp, cnn = _mlp(), _cnn()
    torch.manual_seed(1)
    smooth = torch.nn.Sequential(
        torch.nn.Linear(12, 16), torch.nn.Sigmoid(), torch.nn.Linear(16, 16), torch.nn.Tanh(),
        torch.nn.Linear(16, 4),
    ).eval()
    cases = (
        (mlp, V, np.zeros_like(V)),
        (smooth, V, REFS[:3]),
        (mlp, V, REFS[:3]),
        (cnn, IMG, np.zeros_like(IMG)),
        (cnn, IMG, IMG[::-1].copy()),
    )
    for net, x, base in cases:
        ours = igkit.attribute(net, x, "deeplift", baseline=list(base[None]), target=2)
        theirs = _captum(DeepLift(net).attribute, _t(x), baselines=torch.tensor(base),
                         target=2).detach().numpy()
        scale = np.abs(theirs).max()
        # Measured: at most 3.7e-8 absolute (5.6e-7 of the largest attribution; on
        # the sigmoid/tanh net, 1.0e-6, whose slopes are ratios of float32 differences).
        np.testing.assert_allclose(ours.attributions, theirs, rtol=0, atol=1e-5 * scale)


def test_deeplift_shap_matches_captum_with_the_same_references() -> None:
    for net, x, refs in ((_mlp(), V, REFS), (_cnn(), IMG, np.random.default_rng(3).random(
            (4, 3, 8, 8)).astype(np.float32))):
        ours = igkit.attribute(net, x, "deeplift_shap", baseline=refs, target=0)
        theirs = _captum(DeepLiftShap(net).attribute, _t(x), baselines=torch.tensor(refs),
                         target=0).detach().numpy()
        np.testing.assert_allclose(ours.attributions, theirs, rtol=0,
                                   atol=1e-6 * np.abs(theirs).max())
        # Complete against the mean reference score, to rounding.
        assert ours.relative_error.max() < 2e-6
        assert ours.baselines == (f"distribution of {refs.shape[0]}",)


def test_deeplift_shap_of_one_reference_is_deeplift_and_names_work_per_input() -> None:
    net = _mlp()
    one = igkit.attribute(net, V, "deeplift_shap", baseline=REFS[0], target=[[0, 1], [2], [3]])
    dl = igkit.attribute(net, V, "deeplift", baseline=REFS[0], target=[[0, 1], [2], [3]])
    np.testing.assert_array_equal(one.attributions, dl.attributions)
    both = igkit.attribute(net, V, "deeplift_shap", baseline=["black", "white"])
    avg = igkit.attribute(net, V, "deeplift", baseline=["black", "white"])
    np.testing.assert_allclose(both.attributions, avg.attributions, rtol=1e-6, atol=1e-9)


def _plain_context(method: str, x: np.ndarray, w: np.ndarray) -> MethodContext:
    """A context over a session that declares no capabilities (the four-method contract)."""
    session = NumpySession(sigmoid_linear(w))
    outputs = session.outputs(x)
    return MethodContext(
        session=session, backend=types.SimpleNamespace(name="numpy", title="NumPy"),  # type: ignore[arg-type]
        model=None, x=x, outputs=outputs, plan=resolve_target_plan(0, outputs),
        baseline="black", channel_axis=None, input_range=(0.0, 1.0),
        rng=np.random.default_rng(0), batch_size=64, method=method, output="raw", seed=0,
    )


def test_deeplift_is_refused_by_name_without_secant_passes_and_expected_gradients_is_not() -> None:
    rng = np.random.default_rng(4)
    w, x = rng.normal(size=6), rng.random((2, 6))
    for name in ("deeplift", "deeplift_shap"):
        ctx = _plain_context(name, x, w)
        with pytest.raises(ValueError, match="needs a session declaring interval_accumulation"
                           ".*NumPy session does not.*'expected_gradients'"):
            get_method(name).run(ctx, {"tol": 0.01})
        assert ctx.gradient_evaluations == 0
    # Expected gradients need plain gradients only: on the analytic model they converge to
    # the closed-form IG.
    ctx = _plain_context("expected_gradients", x, w)
    res = get_method("expected_gradients").run(ctx, {"samples": 4000, "stdev": 0.0, "tol": 0.05})
    exact = sigmoid_linear_ig(w, x, np.zeros_like(x))
    assert np.abs(res.attributions - exact).max() < 0.05 * np.abs(exact).max()


# -- expected gradients ----------------------------------------------------------------------


def _moments(net: torch.nn.Module, x: np.ndarray, refs: np.ndarray, target: int,
             nodes: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance over (reference, alpha ~ U(0, 1)) of (x - x') * grad F(x' + alpha
    (x - x')) per input, by the midpoint rule in alpha: what expected gradients estimate."""
    alphas = (np.arange(nodes) + 0.5) / nodes
    means, variances = [], []
    for xi in x:
        d = xi[None] - refs  # (K, D)
        pts = refs[:, None] + alphas[None, :, None] * d[:, None]
        g = igkit.gradients(net, pts.reshape(-1, x.shape[1]).astype(np.float32), target=target)
        z = d[:, None].astype(np.float64) * g.reshape(refs.shape[0], nodes, -1)
        means.append(z.mean(axis=(0, 1)))
        variances.append(z.var(axis=(0, 1)))
    return np.asarray(means), np.asarray(variances)


def test_expected_gradients_with_one_baseline_converge_to_ig_as_one_over_sqrt_samples() -> None:
    net = _mlp()
    mean, var = _moments(net, V, np.zeros((1, 12), np.float32), target=1)
    # IG by 64 secant pieces (512 agree to 1e-5 of the largest attribution); the midpoint
    # rule that gave the variance agrees to 2.5e-3 (each ReLU kink costs it up to jump / 512).
    ig = igkit.attribute(net, V, "secant", steps=64, target=1, tol=1e6).attributions
    np.testing.assert_allclose(mean, ig, rtol=0, atol=5e-3 * np.abs(ig).max())
    for samples in (25, 100, 400, 1600):
        eg = igkit.attribute(net, V, "expected_gradients", samples=samples, target=1)
        err = eg.attributions - ig
        se = np.sqrt(var / samples)  # each feature's standard error at this many samples
        # Beyond five standard errors only with probability < 1e-6 per feature (CLT; with 36
        # features the union bound stays below 1e-4), plus the reference's own error.
        # Measured: at most 2.5 standard errors.
        assert (np.abs(err) <= 5 * se + 3e-3 * np.abs(ig).max()).all()
        # And the error is the Monte Carlo error, shrinking as samples^-1/2: in units of the
        # standard error its RMS stays near 1 at every size (measured 0.6 to 1.4 over seeds
        # 0-2, at most 2.5 standard errors anywhere).
        assert 0.4 < np.sqrt((err**2 / se**2).mean()) < 2.5
        assert np.isfinite(eg.relative_error).all()  # the Monte Carlo error, measured


def test_expected_gradients_agree_with_captum_gradient_shap_in_distribution() -> None:
    # Captum draws from NumPy's and torch's global generators and igkit from its seed, so the
    # draws cannot match: both must fall within five standard errors of the expectation.
    net, samples = _mlp(), 1000
    mean, var = _moments(net, V, REFS, target=3, nodes=256)
    ours = igkit.attribute(net, V, "expected_gradients", baseline=REFS, samples=samples,
                           target=3).attributions
    np.random.seed(0)  # noqa: NPY002 - Captum draws from NumPy's global generator
    torch.manual_seed(0)
    theirs = _captum(GradientShap(net).attribute, _t(V), baselines=torch.tensor(REFS),
                     n_samples=samples, target=3).detach().numpy()
    bound = 5 * np.sqrt(var / samples) + 2e-3 * np.abs(mean).max()
    assert (np.abs(ours - mean) <= bound).all()
    assert (np.abs(theirs - mean) <= bound).all()
    # Measured: both within 2.2 standard errors of it; max |ours - Captum| 2.0e-3 (10% of
    # the largest attribution) at 1000 samples, the bound 7.0e-3.
    assert np.abs(ours - theirs).max() < 2 * bound.max()


def test_expected_gradients_are_seeded_and_shared_by_the_classes_of_an_input() -> None:
    net = _mlp()
    a = igkit.attribute(net, V, "expected_gradients", baseline=REFS, samples=20, stdev=0.1,
                        target=[[0, 2], [2], [1, 3]], seed=5)
    b = igkit.attribute(net, V, "expected_gradients", baseline=REFS, samples=20, stdev=0.1,
                        target=2, seed=5)
    np.testing.assert_allclose(a.attributions[0, 1], b.attributions[0], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(a.attributions[1, 0], b.attributions[1], rtol=1e-6, atol=1e-9)
    c = igkit.attribute(net, V, "expected_gradients", baseline=REFS, samples=20, stdev=0.1,
                        target=2, seed=6)
    assert not np.allclose(b.attributions, c.attributions)


def test_reference_distribution_of_the_wrong_shape_is_refused() -> None:
    with pytest.raises(ValueError, match=r"not a distribution of references.*\(K, \*\(12,\)\)"):
        igkit.attribute(_mlp(), V, "expected_gradients", baseline=np.zeros((4, 11)))


# -- SmoothGrad, VarGrad and noise= ----------------------------------------------------------


def test_smoothgrad_at_zero_noise_is_the_gradient_and_vargrad_is_zero() -> None:
    net = _cnn()
    grad = igkit.attribute(net, IMG, "saliency", abs=False).attributions
    zero = igkit.attribute(net, IMG, "smoothgrad", samples=3, stdev=0.0).attributions
    np.testing.assert_allclose(zero, grad, rtol=1e-6, atol=1e-9)
    tiny = igkit.attribute(net, IMG, "smoothgrad", samples=3, stdev=1e-7).attributions
    np.testing.assert_allclose(tiny, grad, rtol=1e-3, atol=1e-6 * np.abs(grad).max())
    with pytest.warns(NothingToAttributeWarning, match="method='vargrad' gave all-zero"):
        var = igkit.attribute(net, IMG, "vargrad", samples=3, stdev=0.0).attributions
    assert not var.any()


def test_registered_noise_methods_are_the_noise_wrapper_around_the_gradient() -> None:
    net = _cnn()
    noise = {"samples": 12, "stdev": 0.2}
    pairs = (
        (("smoothgrad", {}), "smoothgrad"),
        (("smoothgrad", {"magnitude": True}), "smoothgrad_sq"),
        (("vargrad", {}), "vargrad"),
    )
    for (name, opts), kind in pairs:
        own = igkit.attribute(net, IMG, name, samples=12, stdev=0.2, seed=3, **opts)
        wrapped = igkit.attribute(net, IMG, "saliency", abs=False, seed=3,
                                  noise={**noise, "kind": kind})
        scale = np.abs(own.attributions).max()
        np.testing.assert_allclose(own.attributions, wrapped.attributions, rtol=0,
                                   atol=1e-6 * scale)
    var = igkit.attribute(net, IMG, "vargrad", samples=12, stdev=0.2).attributions
    assert (var >= 0).all() and var.any()


def test_noise_wrapper_with_one_noiseless_copy_is_the_method_itself() -> None:
    net, img = _cnn(), IMG
    off = {"samples": 1, "stdev": 0.0}
    for method, opts in (("saliency", {}), ("input_x_gradient", {}),
                         ("gauss_legendre", {"steps": 8, "tol": 1e6}), ("deeplift", {})):
        for target in (1, [[0, 4], [2]]):
            plain = igkit.attribute(net, img, method, target=target, baseline="white", **opts)
            noisy = igkit.attribute(net, img, method, target=target, baseline="white",
                                    noise=off, **opts)
            np.testing.assert_allclose(noisy.attributions, plain.attributions, rtol=1e-6,
                                       atol=1e-9)
            np.testing.assert_array_equal(noisy.score, plain.score)
            assert noisy.attribution_method == plain.attribution_method
            assert np.isnan(noisy.delta[noisy.target >= 0]).all()


def test_noise_wrapper_runs_all_copies_in_one_call_against_the_clean_baselines() -> None:
    net = _cnn()
    res = igkit.attribute(net, IMG, "gauss_legendre", steps=4, tol=1e6, baseline="blur",
                          noise={"samples": 5, "stdev": 0.1})
    # 5 copies x 4 steps per explanation; the baseline is the blur of the clean input.
    assert (res.evaluations == 20).all()
    assert res.baselines == ("blur",)
    clean = igkit.integrated_gradients(net, IMG, baseline="blur", steps=4, tol=1e6)
    np.testing.assert_allclose(res.baseline_score, clean.baseline_score, rtol=1e-5)
    np.testing.assert_array_equal(res.baseline_inputs, clean.baseline_inputs)
    # The method's warnings say they are about the copies.
    with pytest.warns(NotConvergedWarning, match=r"noise=: on the 6 noisy copies \(copy j is "
                      r"input j // 3\): completeness missed"):
        igkit.attribute(net, IMG, "gauss_legendre", steps=1, tol=1e-9,
                        noise={"samples": 3, "stdev": 0.1})


def test_noise_options_are_refused_before_the_model_runs() -> None:
    net = _cnn()
    with pytest.raises(TypeError, match="noise= takes no key 'sigma'; its keys are: samples, "
                       "stdev, kind"):
        igkit.attribute(net, IMG, "saliency", noise={"sigma": 0.1})
    with pytest.raises(ValueError, match="noise=.'kind': 'mean'.: choose one of 'smoothgrad'"):
        igkit.attribute(net, IMG, "saliency", noise={"kind": "mean"})
    with pytest.raises(TypeError, match="no option 'steps'"):
        igkit.attribute(net, IMG, "saliency", steps=3, noise={"samples": 2})


def test_noise_tunnel_aggregation_matches_captum_on_the_same_draws() -> None:
    # Captum's NoiseTunnel draws its noise with torch.normal after repeat_interleave: seeding
    # torch and drawing the same way gives the same noisy copies, so each kind is compared on
    # identical samples (igkit's saliency, abs=True as Captum's, at each copy).
    net, samples, stdev = _cnn(), 16, 0.1
    target = np.array([1, 3])
    for kind in ("smoothgrad", "smoothgrad_sq", "vargrad"):
        torch.manual_seed(7)
        theirs = _captum(NoiseTunnel(Saliency(net)).attribute, _t(IMG), nt_type=kind,
                         nt_samples=samples, stdevs=stdev, target=target.tolist())
        torch.manual_seed(7)
        size = (IMG.shape[0] * samples, *IMG.shape[1:])
        noise = torch.normal(0, torch.tensor(stdev).repeat(size))
        copies = (torch.tensor(IMG).repeat_interleave(samples, dim=0) + noise).numpy()
        per_copy = igkit.attribute(net, copies, "saliency", target=np.repeat(target, samples))
        ours = aggregate(per_copy.attributions.reshape(2, samples, *IMG.shape[1:]), kind)
        ref = theirs.detach().numpy()
        # vargrad: Captum's E[a^2] - E[a]^2 in float32 cancels to ~1e-7 of E[a^2]. Measured:
        # max difference 1.6e-7 (smoothgrad), 5.6e-8 (smoothgrad_sq) of the largest value,
        # 5.8e-10 absolute (vargrad).
        scale = np.abs(aggregate(per_copy.attributions.reshape(2, samples, -1), "smoothgrad_sq"
                                 )).max() if kind == "vargrad" else np.abs(ref).max()
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6 * scale)


def test_smoothgrad_agrees_with_captum_noise_tunnel_in_distribution() -> None:
    # Independent draws: the difference of two means of `samples` draws has variance
    # 2 var / samples, and vargrad (same seed, same draws) is the sample variance.
    net, samples = _cnn(), 400
    ours = igkit.attribute(net, IMG, "smoothgrad", samples=samples, stdev=0.15, target=2)
    var = igkit.attribute(net, IMG, "vargrad", samples=samples, stdev=0.15, target=2)
    torch.manual_seed(0)
    theirs = _captum(NoiseTunnel(Saliency(net)).attribute, _t(IMG), nt_type="smoothgrad",
                     nt_samples=samples, stdevs=0.15, target=2, abs=False).detach().numpy()
    # Measured: at most 3.2 standard errors apart (3.9% of the largest attribution).
    bound = 5 * np.sqrt(2 * var.attributions / samples) + 1e-7
    assert (np.abs(ours.attributions - theirs) <= bound).all()


def test_random_draws_are_the_backends_own_so_jax_gives_torchs_answer() -> None:
    # Every draw is NumPy's, from the seed: the same weights as a JAX function give the same
    # expected gradients and SmoothGrad as the torch net (measured: 1e-7 of the largest value).
    import jax
    import jax.numpy as jnp

    net = _mlp()
    params = [(jnp.asarray(m.weight.detach().numpy().T), jnp.asarray(m.bias.detach().numpy()))
              for m in net if isinstance(m, torch.nn.Linear)]

    def f(x):  # type: ignore[no-untyped-def]
        for k, (w, b) in enumerate(params):
            x = x @ w + b
            x = jax.nn.relu(x) if k < len(params) - 1 else x
        return x

    for method, opts in (("expected_gradients", {"baseline": REFS, "samples": 8, "stdev": 0.1}),
                         ("smoothgrad", {"samples": 8})):
        a = igkit.attribute(net, V, method, target=1, seed=2, **opts).attributions
        b = igkit.attribute(f, V, method, target=1, seed=2, **opts).attributions
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * np.abs(a).max())
