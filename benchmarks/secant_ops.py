"""``method="secant"`` on every operation class: errors per model and the cost of a secant pass.

    python benchmarks/secant_ops.py                       # both sections, CPU
    python benchmarks/secant_ops.py --sections cost --device cuda
    python benchmarks/secant_ops.py --sections errors --models resnet_stem,tiny_vit

Sections (each prints a markdown table; ``--out FILE`` also writes them):

1. errors: for each seeded float64 model of ``tests/test_secant_ops.py`` (one per operation class,
   and the architectures the secant rule used to refuse), the attribution error (relative L2 to
   a Gauss-Legendre 2048 reference, mean over two random 12x12 images, black baseline) of
   ``method="secant"`` at n pieces beside Gauss-Legendre at the same number of gradient
   evaluations, and the largest relative completeness error of the secant runs. The reference
   is itself off by ~1e-4 on ReLU networks (its nodes cannot see the kinks), so errors near
   that are the reference's;
2. cost: one secant pass (forward under ``SecantMode`` with the previous batch's rows, the
   backward of its relations) over one plain forward + backward of EfficientNet-Lite0 (real
   weights) at the same batch, medians over interleaved rounds; and the same ratio through
   ``igkit.integrated_gradients`` (secant at 31 pieces vs Gauss-Legendre at 31 nodes: 31
   evaluations each, per evaluation), on ``--device``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

import igkit  # noqa: E402

PIECES = (8, 16, 32, 64)


def _quiet():
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("ignore")
    return ctx


def errors(names: list[str]) -> str:
    import test_secant_ops as zoo

    rows = ["| model | " + " | ".join(f"{n} pieces: evals, secant / GL" for n in PIECES)
            + " | secant completeness (max) |",
            "|---" * (len(PIECES) + 2) + "|"]
    for name in names:
        model = zoo.build(name)
        x = zoo.photos()
        ctx = _quiet()
        try:
            ref = zoo.reference(model, x, baseline="black")
            cells, worst = [], 0.0
            for n in PIECES:
                sec = igkit.integrated_gradients(model, x, method="secant", steps=n,
                                                 baseline="black")
                evals = int(sec.evaluations.max())
                gl = igkit.integrated_gradients(model, x, method="gauss_legendre",
                                                steps=evals, baseline="black")
                e_sec = np.mean([zoo.rel(sec.attributions[i], ref.attributions[i])
                                 for i in range(x.shape[0])])
                e_gl = np.mean([zoo.rel(gl.attributions[i], ref.attributions[i])
                                for i in range(x.shape[0])])
                worst = max(worst, float(np.nanmax(sec.relative_error)))
                cells.append(f"{evals}: {e_sec:.1e} / {e_gl:.1e}")
        finally:
            ctx.__exit__(None, None, None)
        rows.append(f"| {name} | " + " | ".join(cells) + f" | {worst:.0e} |")
        print(rows[-1], flush=True)
    return "\n".join(rows)


def cost(device: str, batch: int, rounds: int) -> str:
    import torch

    from igkit.backends.torch_secant import SecantMode
    from igkit.models.efficientnet_lite import build_efficientnet_lite0_torch
    from igkit.models.photos import demo_photos

    model = build_efficientnet_lite0_torch().to(device).eval()
    photo = torch.as_tensor(demo_photos()["coffee"].transpose(2, 0, 1)[None].copy(),
                            dtype=torch.float32, device=device)
    alphas = torch.linspace(0.0, 1.0, 2 * batch + 1, device=device)

    def rows(k: int) -> torch.Tensor:
        a = alphas[k * batch : (k + 1) * batch].view(-1, 1, 1, 1)
        return (photo * a).requires_grad_(True)

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def plain() -> None:
        xb = rows(1)
        out = torch.softmax(model(xb), -1)[:, 967]
        torch.autograd.grad(out.sum(), xb)

    with SecantMode() as first:
        model(rows(0))
    before = first.after

    def secant() -> None:
        xb = rows(1)
        with SecantMode(before):
            out = model(xb)
        seeds = torch.zeros_like(out)
        seeds[:, 967] = 1.0
        torch.autograd.grad(out, xb, seeds)

    def timed(fn) -> float:
        sync()
        start = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - start

    x = demo_photos()["coffee"].transpose(2, 0, 1)[None]

    def api(method: str) -> None:
        igkit.integrated_gradients(model, x, method=method, steps=31, batch_size=batch,
                                   output="softmax", tol=1.0)

    for fn in (plain, secant):
        fn()
    ctx = _quiet()
    try:
        api("secant")
        api("gauss_legendre")
        pass_times: dict[str, list[float]] = {"plain": [], "secant": []}
        api_times: dict[str, list[float]] = {"gauss_legendre": [], "secant": []}
        for _ in range(rounds):
            pass_times["plain"].append(timed(plain))
            pass_times["secant"].append(timed(secant))
        for _ in range(max(2, rounds // 4)):
            for method in api_times:
                api_times[method].append(timed(lambda m=method: api(m)))
    finally:
        ctx.__exit__(None, None, None)
    passes = {k: statistics.median(v) for k, v in pass_times.items()}
    calls = {k: statistics.median(v) for k, v in api_times.items()}
    threads = torch.get_num_threads()
    where = device if device != "cpu" else f"cpu ({threads} threads)"
    return "\n".join([
        "| device | batch | plain fwd+bwd | secant pass | ratio | igkit GL 31 | igkit secant 31 "
        "| ratio per evaluation |",
        "|---|---|---|---|---|---|---|---|",
        f"| {where} | {batch} | {passes['plain'] * 1e3:.1f} ms | {passes['secant'] * 1e3:.1f} ms"
        f" | {passes['secant'] / passes['plain']:.2f}x | {calls['gauss_legendre']:.2f} s | "
        f"{calls['secant']:.2f} s | {calls['secant'] / calls['gauss_legendre']:.2f}x |",
    ])


def main() -> None:
    import test_secant_ops as zoo

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sections", default="errors,cost")
    parser.add_argument("--models", default=",".join([*zoo.OP_MODELS, *zoo.REFUSED_MODELS]))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    parts = []
    sections = args.sections.split(",")
    if "errors" in sections:
        parts.append("### errors\n\n" + errors(args.models.split(",")))
    if "cost" in sections:
        table = cost(args.device, args.batch, args.rounds)
        print(table, flush=True)
        parts.append("### cost\n\n" + table)
    if args.out:
        args.out.write_text("\n\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
