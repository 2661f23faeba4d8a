"""igkit.metrics against Quantus: the same metrics on the same model, inputs and attributions,
side by side in one run.

For each metric it prints the images per second of each library (inputs evaluated per second
of wall time), the ratio igkit / Quantus, and the largest absolute difference between their
per-input results (both run with identical perturbations; see tests/test_metrics_quantus.py).
igkit packs the perturbed images of all inputs and steps into full batches of ``--batch-size``;
Quantus calls the model once per step with the inputs of its batch. Then the peak host memory
(tracemalloc: NumPy's allocations) of igkit's deletion curve against ``batch_size``, which
bounds it whatever the number of inputs and steps. Run from the repository root::

    .venv/bin/python benchmarks/metrics_speed.py [--inputs 32] [--size 32] [--batch-size 256]
        [--device cpu|cuda]

Needs ``igkit[torch]`` and ``quantus`` (the test extra).
"""

from __future__ import annotations

import argparse
import copy
import os
import time
import tracemalloc
import warnings
from collections.abc import Callable

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _model(size: int, device: str):
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(64, 10),
    )
    return net.to(device).eval()


def _timed(fn: Callable[[], object], repeats: int = 1) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inputs", type=int, default=32)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    import quantus
    import torch

    import igkit
    from igkit import metrics

    device = args.device
    model = _model(args.size, device)
    rng = np.random.default_rng(0)
    n, s, bs = args.inputs, args.size, args.batch_size
    x = rng.uniform(0, 1, size=(n, 3, s, s)).astype(np.float32)
    y = metrics.forward(model, x).argmax(axis=1)
    grads = np.asarray(igkit.gradients(model, x, target=y), dtype=np.float32)
    a = grads * x
    masks = np.zeros((n, 1, s, s), dtype=bool)
    masks[:, :, s // 4 : s // 2, s // 4 : 3 * s // 4] = True
    quiet = {"disable_warnings": True, "display_progressbar": False}
    call = {"softmax": False, "device": device, "channel_first": True, "batch_size": n}

    def grad_fn(m: object, xb: np.ndarray, t: np.ndarray) -> np.ndarray:
        return np.asarray(igkit.gradients(m, np.asarray(xb, dtype=np.float32),
                                          target=np.asarray(t), batch_size=bs), dtype=np.float32)

    def quantus_grad(model: object, inputs: np.ndarray, targets: np.ndarray, **_: object):
        return grad_fn(model, inputs, targets)

    features = 3 * s * s
    step = s * s // 32  # Quantus wants it to divide H * W
    rows: list[tuple[str, float, float, float]] = []

    def compare(name: str, ours: Callable[[], np.ndarray], theirs: Callable[[], np.ndarray]):
        t_ours, v_ours = _timed(ours, args.repeats)
        t_theirs, v_theirs = _timed(theirs, args.repeats)
        diff = float(np.nanmax(np.abs(np.asarray(v_ours, dtype=np.float64)
                                      - np.asarray(v_theirs, dtype=np.float64))))
        rows.append((name, n / t_ours, n / t_theirs, diff))
        print(f"{name:28s} igkit {n / t_ours:9.1f} img/s   Quantus {n / t_theirs:9.1f} img/s"
              f"   ratio {t_theirs / t_ours:6.2f}x   max |diff| {diff:.2e}", flush=True)

    compare(
        f"pixel flipping ({features // step + 1} points)",
        lambda: metrics.pixel_flipping(model, x, a, target=y, features_per_step=step,
                                       batch_size=bs).scores[:, 1:],
        lambda: np.asarray(quantus.PixelFlipping(
            features_in_step=step, perturb_baseline=0.0, normalise=False, abs=False, **quiet)(
            model=model, x_batch=x, y_batch=y, a_batch=a, **call)),
    )
    blocks = (s // 4) ** 2

    def cumulative(xi: np.ndarray, k: int, _: np.random.Generator) -> np.ndarray:
        out = xi.copy()
        for b in range(k + 1):
            r, c = divmod(b, s // 4)
            out[:, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4] = 0.0
        return out

    compare(
        f"infidelity ({blocks} patches)",
        lambda: metrics.infidelity(model, x, a, target=y, perturbation=cumulative,
                                   samples=blocks, batch_size=bs).values,
        lambda: np.asarray(quantus.Infidelity(
            perturb_baseline=0.0, perturb_patch_sizes=[4], n_perturb_samples=1,
            normalise=False, abs=False, **quiet)(
            model=model, x_batch=x, y_batch=y, a_batch=a, **call)),
    )
    pixel_map = a.sum(axis=1, keepdims=True)
    pct = [10, 30, 50, 70, 90]
    x1 = x[:, :1]
    model1 = copy.deepcopy(model)
    with torch.no_grad():  # a one-channel copy of the network for ROAD (see the test)
        conv = model1[0]
        one = torch.nn.Conv2d(1, 32, 3, padding=1).to(device)
        one.weight.copy_(conv.weight.sum(dim=1, keepdim=True))
        one.bias.copy_(conv.bias)
        model1[0] = one
    y1 = metrics.forward(model1, x1).argmax(axis=1)
    compare(
        "ROAD (5 percentages)",
        lambda: metrics.road(model1, x1, pixel_map, target=y1, channel_axis=1, percentages=pct,
                             noise=0.0, batch_size=bs).accuracy,
        lambda: np.array([v for v in quantus.ROAD(
            percentages=pct, noise=0.0, normalise=False, abs=False, **quiet)(
            model=model1, x_batch=x1, y_batch=y1, a_batch=pixel_map, **call).values()]),
    )
    samples, radius = 8, 0.02
    counter = {"k": 0}

    def same_noise(arr: np.ndarray, indices: object = None, **_: object) -> np.ndarray:
        k = counter["k"]
        counter["k"] += 1
        noise = np.stack([np.random.default_rng([0, i, k]).uniform(-radius, radius, x.shape[1:])
                          for i in range(n)])
        return (x + noise).astype(np.float32).reshape(arr.shape)

    compare(
        f"max-sensitivity ({samples} draws)",
        lambda: metrics.max_sensitivity(model, x, grads, grad_fn, target=y, radius=radius,
                                        samples=samples, batch_size=bs).values,
        lambda: np.asarray(quantus.MaxSensitivity(
            nr_samples=samples, perturb_func=same_noise, normalise=False, abs=False, **quiet)(
            model=model, x_batch=x, y_batch=y, a_batch=grads, explain_func=quantus_grad,
            **call)),
    )
    largs = {"model": model, "x_batch": x, "y_batch": y, "a_batch": pixel_map, "s_batch": masks}
    compare(
        "pointing game",
        lambda: metrics.pointing_game(pixel_map, masks).values,
        lambda: np.asarray(quantus.PointingGame(normalise=False, abs=False, **quiet)(
            **largs, **call)),
    )
    compare(
        "relevance rank accuracy",
        lambda: metrics.relevance_rank_accuracy(pixel_map, masks).values,
        lambda: np.asarray(quantus.RelevanceRankAccuracy(normalise=False, abs=False, **quiet)(
            **largs, **call)),
    )

    def reset(m: object, names: list[str], seed: int) -> object:
        work = copy.deepcopy(m)
        modules = dict(work.named_modules())  # type: ignore[attr-defined]
        for name in names:
            torch.manual_seed(seed + 1)
            modules[name].reset_parameters()
        return work

    def quantus_mprt() -> np.ndarray:
        out = quantus.MPRT(seed=42, abs=True, normalise=False,
                           similarity_func=quantus.correlation_spearman, **quiet)(
            model=model, x_batch=x, y_batch=y, a_batch=grads, explain_func=quantus_grad, **call)
        return np.stack([v for k, v in out.items() if k != "original"], axis=1)

    compare(
        "MPRT (4 layers, Spearman)",
        lambda: metrics.mprt(model, x, grads, grad_fn, target=y, similarities=["spearman_abs"],
                             randomise=reset, seed=42, batch_size=bs).similarity["spearman_abs"],
        quantus_mprt,
    )

    print("\npeak host memory of igkit's deletion curve (NumPy allocations, tracemalloc):")
    big = np.concatenate([x] * 2)
    big_a = np.concatenate([a] * 2)
    for size in (16, 64, 256, 1024):
        tracemalloc.start()
        metrics.deletion(model, big, big_a, target=0, features_per_step=step, batch_size=size)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        points = features // step + 1
        held = 2 * n * points * features * 4 / 2**20
        print(f"  batch_size {size:5d}: {peak / 2**20:7.1f} MiB for {2 * n} inputs x {points} "
              f"points ({held:.0f} MiB if all were held)")


if __name__ == "__main__":
    main()
