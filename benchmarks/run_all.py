"""igkit beside Captum and hand-written IG on EfficientNet-Lite0, in one process. Prints ratios.

    python benchmarks/run_all.py            # everything, on CUDA if present, else CPU
    python benchmarks/run_all.py --quick    # fewer rounds and a coarser sweep

Sections (each prints a markdown table; ``--out FILE`` also writes them):
1. overhead: igkit at n steps / n hand-written forward+backward passes of the same model (and
   Captum's ratio), medians over interleaved rounds; overhead_small: the same on an 8x8 crop,
   where dispatching operations dominates as on a GPU;
2. evaluations: gradient evaluations each method needs to reach relative completeness error
   <= 1 % AND attribution error <= 1 % (relative L2 to a Gauss-Legendre reference), per photo;
   igkit ``steps="auto"`` is run as a user would, stopping by itself;
3. throughput: images/s at that accuracy, several photos per call;
4. tf_tutorial: igkit on the Keras port of the default model beside the TF tutorial's algorithm
   written by hand (same trapezoid nodes): time ratio, and agreement of the attributions;
5. precision: float32 / tf32 / bf16 / fp16 speed beside their attribution and completeness error;
6. memory: peak at steps=1024 / peak at steps=32, same batch size, fresh processes;
7. compile: the hand-written loop with torch.compile beside the eager model (time, and how far
   the attributions move).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import igkit  # noqa: E402
from igkit.models.efficientnet_lite import build_efficientnet_lite0_torch  # noqa: E402
from igkit.models.photos import demo_photos  # noqa: E402

NAMES = ("chelsea", "coffee", "astronaut")


def load_photos(names) -> dict[str, np.ndarray]:
    """The demo photos, or other scikit-image photos prepared the same way (out-of-sample
    checks of choices made on the demo photos)."""
    import skimage.data

    from igkit.models.photos import center_crop_resize

    photos = demo_photos()
    for name in names:
        if name not in photos:
            image = (skimage.data.stereo_motorcycle()[0] if name == "motorcycle"
                     else getattr(skimage.data, name)())
            if image.ndim == 2:  # a grey photo (camera, coins, moon): the same in R, G and B
                image = np.repeat(image[..., None], 3, axis=2)
            photos[name] = center_crop_resize(image[..., :3])
    return photos


def _torch():
    import torch

    return torch


def sync(dev: str) -> None:
    if dev == "cuda":
        _torch().cuda.synchronize()


@functools.lru_cache(maxsize=8)
def _leggauss(n: int):
    return np.polynomial.legendre.leggauss(n)


def hand_ig(model, x, target: int, n: int, bs: int):
    """IG with n Gauss-Legendre nodes, written by hand: the floor igkit is measured against.
    The nodes are computed once per n (an eigenvalue problem, 12 ms at n = 256), so the floor
    is the n forward+backward passes alone."""
    torch = _torch()
    a, w = _leggauss(n)
    alphas = torch.as_tensor((a + 1) / 2, dtype=x.dtype, device=x.device)
    weights = torch.as_tensor(w / 2, dtype=x.dtype, device=x.device)
    total = torch.zeros_like(x)
    for s in range(0, n, bs):
        al = alphas[s : s + bs].view(-1, 1, 1, 1)
        xb = (al * x).requires_grad_(True)
        p = torch.softmax(model(xb), -1)[:, target]
        (g,) = torch.autograd.grad(p.sum(), xb)
        total += (g * weights[s : s + bs].view(-1, 1, 1, 1)).sum(0, keepdim=True)
    return total * x


def captum_ig(model, x, target: int, n: int, bs: int, tf32: bool = False):
    """Captum's IG; ``tf32=True`` runs it under PyTorch's default CUDA flags (TF32 convs)."""
    from captum.attr import IntegratedGradients

    torch = _torch()
    if tf32:
        torch.backends.cudnn.allow_tf32 = True
        try:
            return captum_ig(model, x, target, n, bs)
        finally:
            torch.backends.cudnn.allow_tf32 = False
    ig = IntegratedGradients(lambda t: torch.softmax(model(t), -1))
    return ig.attribute(x, target=target, n_steps=n, method="gausslegendre",
                        internal_batch_size=bs)


def section_overhead(model, photos, dev, n, bs, rounds):
    torch = _torch()
    x_np = photos["chelsea"][None].transpose(0, 3, 1, 2).copy()
    x = torch.as_tensor(x_np, device=dev)
    target = int(torch.softmax(model(x), -1).argmax())
    configs = {
        "hand": lambda: hand_ig(model, x, target, n, bs),
        "igkit": lambda: igkit.integrated_gradients(model, x, target=target, steps=n,
                                                    output="softmax", batch_size=bs),
        "captum": lambda: captum_ig(model, x, target, n, bs),
    }
    for f in configs.values():  # warm-up
        f()
    times = {k: [] for k in configs}
    for _ in range(rounds):
        for k, f in configs.items():
            sync(dev)
            t0 = time.perf_counter()
            f()
            sync(dev)
            times[k].append(time.perf_counter() - t0)
    ratio = {k: statistics.median(t / h for t, h in zip(times[k], times["hand"], strict=True))
             for k in ("igkit", "captum")}
    lines = [
        f"## Overhead: n={n} Gauss-Legendre steps, batch {bs}, chelsea, "
        f"{rounds} interleaved rounds",
        "",
        "| config | median s | min s | median ratio to hand-written |",
        "|---|---|---|---|",
    ]
    for k in configs:
        r = 1.0 if k == "hand" else ratio[k]
        lines.append(f"| {k} | {statistics.median(times[k]):.3f} | {min(times[k]):.3f} | {r:.3f} |")
    return lines, ratio


def rel_l2(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def reference(model, x, dev, ref_steps, bs, cache: Path | None, name: str):
    """The Gauss-Legendre reference ``(attributions, target, F(x) - F(x'))`` of one photo, kept
    in ``cache`` (a folder) when one is given: it does not depend on what is measured."""
    path = cache / f"{name}_gl{ref_steps}.npz" if cache else None
    if path is not None and path.exists():
        z = np.load(path)
        return z["attributions"], int(z["target"]), float(z["gap"])
    ref = igkit.integrated_gradients(model, _torch().as_tensor(x, device=dev), steps=ref_steps,
                                     output="softmax", batch_size=bs)
    out = (ref.attributions, int(ref.target[0]), float(ref.score[0] - ref.baseline_score[0]))
    if path is not None:
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(path, attributions=out[0], target=out[1], gap=out[2])
    return out


def section_evaluations(model, photos, dev, ref_steps, grid, bs, tol,
                        methods=("gauss_legendre", "adaptive", "secant"), cache=None):
    torch = _torch()
    needs = {}
    results = {}
    evals = {}
    for name in NAMES:
        x = photos[name][None].transpose(0, 3, 1, 2).copy()
        ref_attr, t, gap = reference(model, x, dev, ref_steps, bs, cache, name)

        def errs(attr, gap=gap, ref_attr=ref_attr):
            attr = np.asarray(attr)
            return rel_l2(attr, ref_attr), abs(float(attr.sum()) - gap) / abs(gap)

        per = {}
        for n in grid:
            theirs = captum_ig(model, torch.as_tensor(x, device=dev), t, n, bs)
            per[("captum gausslegendre", n)] = errs(theirs.detach().cpu().numpy())
            if dev == "cuda":
                theirs = captum_ig(model, torch.as_tensor(x, device=dev), t, n, bs, tf32=True)
                per[("captum gausslegendre, default TF32", n)] = errs(
                    theirs.detach().cpu().numpy())
            for method in methods:
                r = igkit.integrated_gradients(model, x, target=t, steps=n, method=method,
                                               output="softmax", batch_size=bs)
                per[(f"igkit {method}", n)] = errs(r.attributions)
                # Secant: n pieces cost n points and the pilot (or a probe); count what ran.
                evals[(f"igkit {method}", n)] = int(r.evaluations[0])
        autos = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", igkit.NotConvergedWarning)
            for method in ("adaptive", "secant"):
                t0 = time.perf_counter()
                auto = igkit.integrated_gradients(model, x, target=t, steps="auto",
                                                  method=method, output="softmax",
                                                  batch_size=bs, tol=tol, max_steps=1024)
                autos[method] = (int(auto.evaluations[0]), errs(auto.attributions),
                                 time.perf_counter() - t0)
        results[name] = {"per": per, "auto": autos}
        for label in sorted({k[0] for k in per}):
            hit = next((n for n in grid if max(per[(label, n)]) <= tol), None)
            needs.setdefault(label, {})[name] = evals.get((label, hit), hit)
        for method, (used, a_err, _) in autos.items():
            needs.setdefault(f"igkit {method}, steps='auto' (stops by itself)", {})[name] = (
                used if max(a_err) <= tol else None
            )
    lines = [
        f"## Gradient evaluations to reach attribution error <= {tol:.0%} AND completeness "
        f"error <= {tol:.0%}",
        "",
        f"Reference: igkit Gauss-Legendre {ref_steps}. Fixed-step methods: first n of the sweep "
        f"{list(grid)} meeting both (an oracle choice a user cannot make), counted in "
        "gradient evaluations (secant: n pieces are n points after the baseline, whose "
        "activations take one forward pass, plus its pilot of 16 points from 32 pieces up, or a "
        "1-point probe below); auto: what it used.",
        "",
        "| method | " + " | ".join(NAMES) + " | median |",
        "|---|" + "---|" * (len(NAMES) + 1),
    ]
    medians = {}
    for label, per_img in needs.items():
        vals = [per_img[nm] for nm in NAMES]
        known = [v if v is not None else float("inf") for v in vals]
        med = statistics.median(known)
        medians[label] = med
        cells = [str(v) if v is not None else f">{grid[-1]}" for v in vals]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {med} |")
    base = medians["captum gausslegendre"]
    lines += ["", "| ratio (median evaluations) | value |", "|---|---|"]
    for label, med in medians.items():
        if label != "captum gausslegendre":
            lines.append(f"| {label} / captum gausslegendre | {med / base:.3f} |")
    lines += ["", "Errors per photo and n (attribution % / completeness %):", "",
              "| method | n | " + " | ".join(NAMES) + " |", "|---|---|" + "---|" * len(NAMES)]
    for label in sorted({k[0] for k in results[NAMES[0]]["per"]}):
        for n in grid:
            cells = [
                f"{100 * results[nm]['per'][(label, n)][0]:.2f} / "
                f"{100 * results[nm]['per'][(label, n)][1]:.2f}"
                for nm in NAMES
            ]
            lines.append(f"| {label} | {n} | " + " | ".join(cells) + " |")
    for method in ("adaptive", "secant"):
        cells = []
        for nm in NAMES:
            used, (e_a, e_c), secs = results[nm]["auto"][method]
            cells.append(f"{used} evals, {secs:.0f} s: {100 * e_a:.2f} / {100 * e_c:.2f}")
        lines.append(f"| igkit {method} auto | - | " + " | ".join(cells) + " |")
    return lines, medians, results


def section_throughput(model, photos, dev, bs, tol, n_gl, rounds, n_secant=96):
    """Images/s at the accuracy: all photos in one call (packed batches) vs one by one.

    ``n_gl`` and ``n_secant`` are the fixed budgets at which each rule meets the accuracy on
    all photos (the evaluations table: Gauss-Legendre 384 at worst, 256 at the median; secant
    96 pieces)."""
    torch = _torch()
    x = np.stack([photos[nm].transpose(2, 0, 1) for nm in NAMES])
    out = []
    configs = {
        f"captum gausslegendre n={n_gl}, one image per call": lambda: [
            captum_ig(model, torch.as_tensor(x[i : i + 1], device=dev),
                      int(torch.softmax(model(torch.as_tensor(x[i : i + 1], device=dev)), -1)
                          .argmax()), n_gl, bs)
            for i in range(len(x))
        ],
        f"igkit gauss_legendre n={n_gl}, all images in one call": lambda: (
            igkit.integrated_gradients(model, x, steps=n_gl, output="softmax", batch_size=bs)
        ),
        "igkit adaptive steps='auto', all images in one call": lambda: (
            igkit.integrated_gradients(model, x, steps="auto", method="adaptive", tol=tol,
                                       output="softmax", batch_size=bs)
        ),
        f"igkit secant n={n_secant}, all images in one call": lambda: (
            igkit.integrated_gradients(model, x, steps=n_secant, method="secant",
                                       output="softmax", batch_size=bs)
        ),
        "igkit secant steps='auto', all images in one call": lambda: (
            igkit.integrated_gradients(model, x, steps="auto", method="secant", tol=tol,
                                       output="softmax", batch_size=bs)
        ),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", igkit.NotConvergedWarning)
        for f in configs.values():  # warm-up: library handles, kernels for new shapes
            f()
        times = {label: [] for label in configs}
        for _ in range(rounds):
            for label, f in configs.items():
                sync(dev)
                t0 = time.perf_counter()
                f()
                sync(dev)
                times[label].append(time.perf_counter() - t0)
    out = [(label, len(x) / statistics.median(t)) for label, t in times.items()]
    lines = ["## Throughput at about the accuracy above (images/s, 3 photos, median of rounds)", "",
             "| config | images/s |", "|---|---|"]
    lines += [f"| {label} | {v:.3f} |" for label, v in out]
    return lines, out


def section_compile(model, photos, dev, n, bs, rounds):
    """torch.compile on the hand-written IG loop: compile time, then time per call beside the
    eager model's, and how far the compiled attributions move (kernels fuse differently)."""
    torch = _torch()
    x = torch.as_tensor(photos["chelsea"][None].transpose(0, 3, 1, 2).copy(), device=dev)
    target = int(torch.softmax(model(x), -1).argmax())
    compiled = torch.compile(model)
    sync(dev)
    t0 = time.perf_counter()
    out_c = hand_ig(compiled, x, target, n, bs)
    sync(dev)
    first = time.perf_counter() - t0
    out_e = hand_ig(model, x, target, n, bs)
    times = {"eager": [], "torch.compile": []}
    for _ in range(rounds):
        for label, m in (("eager", model), ("torch.compile", compiled)):
            sync(dev)
            t0 = time.perf_counter()
            hand_ig(m, x, target, n, bs)
            sync(dev)
            times[label].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    moved = rel_l2(out_c.detach().cpu().numpy(), out_e.detach().cpu().numpy())
    lines = [f"## torch.compile: IG with n={n} Gauss-Legendre steps by hand, batch {bs}, chelsea, "
             f"{rounds} interleaved rounds", "",
             "| | value |", "|---|---|",
             f"| compile and first call, s | {first:.1f} |",
             f"| eager, median s per call | {med['eager']:.3f} |",
             f"| compiled, median s per call | {med['torch.compile']:.3f} |",
             f"| ratio compiled / eager | {med['torch.compile'] / med['eager']:.3f} |",
             f"| attributions moved (relative L2) | {moved:.1e} |"]
    return lines, med["torch.compile"] / med["eager"]


def tf_tutorial_ig(model, image, target: int, m_steps: int, batch: int):
    """The TensorFlow IG tutorial's algorithm on a Keras model, written out by hand: m_steps + 1
    images from the black baseline to the input, softmax gradients in batches under a
    GradientTape, the trapezoidal mean of the gradients, times (input - baseline)."""
    import tensorflow as tf

    baseline = tf.zeros_like(image)
    alphas = tf.linspace(0.0, 1.0, m_steps + 1)
    chunks = []
    for start in range(0, m_steps + 1, batch):
        a = alphas[start : start + batch][:, None, None, None]
        path = baseline[None] + a * (image - baseline)[None]
        with tf.GradientTape() as tape:
            tape.watch(path)
            prob = tf.nn.softmax(model(path, training=False), axis=-1)[:, target]
        chunks.append(tape.gradient(prob, path))
    grads = tf.concat(chunks, axis=0)
    mean = tf.reduce_mean((grads[:-1] + grads[1:]) / 2.0, axis=0)
    return ((image - baseline) * mean).numpy()


def section_tf_tutorial(photos, bs, m_steps, rounds, weights):
    """igkit on the Keras default model beside the TF tutorial's algorithm, same nodes."""
    from igkit.models.efficientnet_lite import build_efficientnet_lite0_keras

    model = build_efficientnet_lite0_keras(weights)
    image = photos["chelsea"].astype(np.float32)  # NHWC, as the Keras model takes it
    target = int(np.argmax(model(image[None], training=False)[0]))
    configs = {
        "TF tutorial, by hand": lambda: tf_tutorial_ig(model, image, target, m_steps, bs),
        "igkit riemann_trapezoid": lambda: igkit.integrated_gradients(
            model, image, target=target, steps=m_steps + 1, method="riemann_trapezoid",
            output="softmax", batch_size=bs).attributions,
    }
    outs = {k: f() for k, f in configs.items()}  # warm-up (tf.function traces), and the answers
    times = {k: [] for k in configs}
    for _ in range(rounds):
        for k, f in configs.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    agree = rel_l2(outs["igkit riemann_trapezoid"], outs["TF tutorial, by hand"])
    base = statistics.median(times["TF tutorial, by hand"])
    lines = [
        f"## Keras default model: igkit beside the TF tutorial's algorithm ({m_steps} + 1 "
        f"trapezoid points, batch {bs}, chelsea, {rounds} interleaved rounds)",
        "",
        "| config | median s | ratio to the tutorial |",
        "|---|---|---|",
    ]
    for k in configs:
        med = statistics.median(times[k])
        lines.append(f"| {k} | {med:.3f} | {med / base:.3f} |")
    lines += ["", f"Attributions agree to {agree:.1e} (relative L2): the same algorithm."]
    return lines, agree


def section_precision(model, photos, dev, bs, n, ref_steps, rounds):
    """Reduced precision: its speed beside its cost in completeness and attribution error."""
    torch = _torch()
    rows = []
    precisions = ("float32", "tf32", "bf16", "fp16") if dev == "cuda" else ("float32", "bf16")
    for name in NAMES:
        x = torch.as_tensor(photos[name][None].transpose(0, 3, 1, 2).copy(), device=dev)
        ref = igkit.integrated_gradients(model, x, steps=ref_steps, output="softmax",
                                         batch_size=bs)
        t = int(ref.target[0])
        for prec in precisions:
            run = lambda prec=prec, x=x, t=t: igkit.integrated_gradients(  # noqa: E731
                model, x, target=t, steps=n, output="softmax", batch_size=bs, precision=prec)
            run()
            times = []
            for _ in range(rounds):
                sync(dev)
                t0 = time.perf_counter()
                res = run()
                sync(dev)
                times.append(time.perf_counter() - t0)
            rows.append((name, prec, statistics.median(times),
                         rel_l2(res.attributions, ref.attributions), float(res.relative_error[0])))
    base = {name: s for name, prec, s, _, _ in rows if prec == "float32"}
    lines = [f"## Precision: n={n} Gauss-Legendre steps, batch {bs}; reference float32 "
             f"GL{ref_steps}", "",
             "| photo | precision | median s | speed-up | attribution error % | completeness % |",
             "|---|---|---|---|---|---|"]
    for name, prec, s, err, comp in rows:
        lines.append(f"| {name} | {prec} | {s:.3f} | {base[name] / s:.2f} | {100 * err:.2f} | "
                     f"{100 * comp:.2f} |")
    return lines, rows


MEM_CHILD = """
import resource, sys, json, numpy as np, torch
sys.path.insert(0, {src!r})
import igkit
from igkit.models.efficientnet_lite import build_efficientnet_lite0_torch
from igkit.models.photos import demo_photos
dev = {dev!r}
model = build_efficientnet_lite0_torch({weights!r}).to(dev)
x = demo_photos()["chelsea"][None].transpose(0, 3, 1, 2).copy()
if dev == "cuda":
    torch.cuda.reset_peak_memory_stats()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
igkit.integrated_gradients(model, x, steps={steps}, output="softmax", batch_size={bs},
                           method="gauss_legendre")
peak = (torch.cuda.max_memory_allocated() / 2**20 if dev == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
print(json.dumps({{"peak_mib": peak}}))
"""


def section_memory(dev, bs, weights):
    vals = {}
    for steps in (32, 1024):
        code = MEM_CHILD.format(src=str(ROOT / "src"), dev=dev, steps=steps, bs=bs,
                                weights=weights)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True)
        vals[steps] = json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]
    kind = "CUDA max allocated" if dev == "cuda" else "process peak RSS"
    lines = [f"## Memory: {kind}, batch {bs}, fresh process per run", "",
             "| steps | peak MiB |", "|---|---|"]
    lines += [f"| {s} | {v:.0f} |" for s, v in vals.items()]
    lines.append(f"| ratio 1024 / 32 | {vals[1024] / vals[32]:.3f} |")
    return lines, vals[1024] / vals[32]


def main() -> None:
    global NAMES
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--weights", default=None, help="EfficientNet-Lite0 .pth (default: packaged)")
    ap.add_argument("--out", default=None, help="also write the tables to this markdown file")
    ap.add_argument("--photos", default=",".join(NAMES),
                    help="scikit-image photos (any of its RGB images, or motorcycle)")
    ap.add_argument("--grid", default=None, help="step counts of the evaluations sweep")
    ap.add_argument("--methods", default=None, help="igkit methods of the evaluations sweep")
    ap.add_argument("--cache", default=None,
                    help="folder keeping the evaluations' references between runs")
    ap.add_argument("--sections",
                    default="overhead,overhead_small,evaluations,throughput,tf_tutorial,"
                            "precision,memory,compile")
    args = ap.parse_args()
    torch = _torch()
    dev = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    bs = 64 if dev == "cuda" else 16
    model = build_efficientnet_lite0_torch(args.weights).to(dev)
    NAMES = tuple(args.photos.split(","))
    photos = load_photos(NAMES)
    import captum

    header = [
        f"# igkit benchmarks, {time.strftime('%Y-%m-%d')}",
        "",
        f"device: {torch.cuda.get_device_name() if dev == 'cuda' else 'CPU'}"
        f" ({os.cpu_count()} CPUs visible, torch threads {torch.get_num_threads()}); "
        f"torch {torch.__version__}, captum {captum.__version__}, igkit {igkit.__version__}, "
        f"numpy {np.__version__}, Python {sys.version.split()[0]}",
        "",
    ]
    # Every configuration computes in exact float32 (PyTorch's CUDA default lets convolutions use
    # TF32, which floors IG's attribution error near 2 %; igkit turns it off while it runs).
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    header.append("All configurations run in exact float32 (TF32 off) unless marked.")
    header.append("")
    print("\n".join(header), flush=True)
    report = list(header)
    sections = args.sections.split(",")
    tol = 0.01
    if "overhead" in sections:
        lines, _ = section_overhead(model, photos, dev, 64 if dev == "cpu" else 256, bs,
                                    3 if args.quick else 7)
        print("\n".join(lines), "\n", flush=True)
        report += lines + [""]
    if "overhead_small" in sections:
        # An 8x8 crop makes every layer tiny, so the time goes to dispatching operations, as on
        # a GPU where the kernels are launch-bound: the CPU's view of the GPU overhead goal.
        small = {"chelsea": np.ascontiguousarray(photos["chelsea"][:8, :8])}
        lines, _ = section_overhead(model, small, dev, 256, 64, 3 if args.quick else 7)
        lines[0] = lines[0].replace("## Overhead:", "## Overhead, 8x8 crop (dispatch-bound):")
        print("\n".join(lines), "\n", flush=True)
        report += lines + [""]
    if "evaluations" in sections:
        if args.grid:
            grid = tuple(int(v) for v in args.grid.split(","))
        elif args.quick:
            grid = (64, 128, 256, 512)
        else:
            grid = (48, 64, 80, 96, 128, 160, 192, 256, 320, 384, 512)
        ref = 1024 if args.quick else 2048
        # On the CPU igkit's Gauss-Legendre is left out: it computes Captum's numbers (the GPU
        # table shows both, equal to the printed digits).
        methods = tuple(args.methods.split(",")) if args.methods else (
            ("adaptive", "secant") if dev == "cpu" else ("gauss_legendre", "adaptive", "secant"))
        lines, _, _ = section_evaluations(model, photos, dev, ref, grid, bs, tol, methods,
                                          Path(args.cache) if args.cache else None)
        print("\n".join(lines), "\n", flush=True)
        report += lines + [""]
    if "throughput" in sections:
        lines, _ = section_throughput(model, photos, dev, bs, tol, 256, 1 if args.quick else 3)
        print("\n".join(lines), "\n", flush=True)
        report += lines + [""]
    if "tf_tutorial" in sections:
        lines, _ = section_tf_tutorial(photos, bs, 64, 3 if args.quick else 5, args.weights)
        print("\n".join(lines), "\n", flush=True)
        report += lines + [""]
    if "precision" in sections:
        lines, _ = section_precision(model, photos, dev, bs, 256 if dev == "cuda" else 64,
                                     1024 if (args.quick or dev == "cpu") else 2048,
                                     3 if args.quick else 5)
        print("\n".join(lines), "\n", flush=True)
        report += lines + [""]
    if "memory" in sections:
        # Batch 16: at steps=32 a batch of 64 would be half empty, flattering the small run.
        lines, _ = section_memory(dev, 16, args.weights)
        print("\n".join(lines), "\n", flush=True)
        report += lines + [""]
    if "compile" in sections:
        lines, _ = section_compile(model, photos, dev, 64 if dev == "cpu" else 256, bs,
                                   3 if args.quick else 5)
        print("\n".join(lines), "\n", flush=True)
        report += lines + [""]
    if args.out:
        Path(args.out).write_text("\n".join(report) + "\n")


if __name__ == "__main__":
    main()
