"""Research: where should the gradient evaluations go on EfficientNet-Lite0's IG path?

Computes a converged reference (Gauss-Legendre, many nodes) for the demo photos, then the
attribution error (relative L2 to the reference) and completeness error of candidate node
placements at several budgets, including an oracle placement derived from a fine grid. Prints one
table. Not a test: a tool to decide the design of ``method="adaptive"``.

    python benchmarks/research_nodes.py --ref 2048 --budgets 64,96,128,192,256
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from igkit.backends import torch as torch_backend
from igkit.backends.base import SessionOptions
from igkit.core.planner import pack_rows
from igkit.core.quadrature import nodes_and_weights
from igkit.models.efficientnet_lite import build_efficientnet_lite0_torch
from igkit.models.photos import demo_photos


def integrate(session, n_paths, alphas, weights, bs):
    """Same or per-path nodes; returns (sums, scores per path)."""
    if not isinstance(alphas, list):
        alphas, weights = [alphas] * n_paths, [weights] * n_paths
    for b in pack_rows(list(range(n_paths)), alphas, weights, bs):
        session.accumulate(b)
    t = session.take()
    out, k = [], 0
    for a in alphas:
        out.append(t.scores[k : k + len(a)])
        k += len(a)
    return t.sums, out


def masses_to_nodes(edges, density, n):
    """Midpoints of n cells of equal mass under a piecewise-constant density on ``edges``."""
    mass = density * np.diff(edges)
    cdf = np.concatenate([[0.0], np.cumsum(mass)])
    cdf /= cdf[-1]
    q = np.linspace(0, 1, n + 1)
    cuts = np.interp(q, cdf, edges)
    nodes = (cuts[:-1] + cuts[1:]) / 2
    # Weight: cell width; node at the mass-midpoint would be better, plain midpoint is simpler.
    mids_mass = (q[:-1] + q[1:]) / 2
    nodes = np.interp(mids_mass, cdf, edges)
    return nodes, np.diff(cuts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref", type=int, default=2048)
    ap.add_argument("--fine", type=int, default=512)
    ap.add_argument("--budgets", default="64,96,128,192,256")
    ap.add_argument("--bs", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--images", default="chelsea,coffee,astronaut")
    args = ap.parse_args()
    import torch

    dev = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    bs = args.bs or (256 if dev == "cuda" else 16)
    model = build_efficientnet_lite0_torch(args.weights).to(dev)
    photos = demo_photos()
    names = args.images.split(",")
    x = np.stack([photos[n].transpose(2, 0, 1) for n in names]).astype(np.float32)
    P = len(names)
    session = torch_backend.open_session(model, SessionOptions(output="softmax", batch_size=bs))
    out = session.outputs(x)
    tgt = out.argmax(1)
    fx = out[np.arange(P), tgt]
    base = np.zeros_like(x)
    fb = session.outputs(base)[np.arange(P), tgt]
    session.set_paths(x, base, np.arange(P), tgt)
    diff = (x - base).astype(np.float64)
    gap = fx - fb

    t0 = time.time()
    a, w = nodes_and_weights("gauss_legendre", args.ref)
    sums, _ = integrate(session, P, a, w, bs)
    ref = diff * sums
    print(f"reference GL{args.ref}: {time.time() - t0:.1f}s; device {dev}; batch {bs}")
    for i in range(P):
        print(f"  {names[i]} target {tgt[i]} F(x)={fx[i]:.4f} F(x')={fb[i]:.2e} "
              f"ref completeness {abs(ref[i].sum() - gap[i]) / abs(gap[i]):.3%}")

    def errors(attr):
        e = [np.linalg.norm(attr[i] - ref[i]) / np.linalg.norm(ref[i]) for i in range(P)]
        c = [abs(attr[i].sum() - gap[i]) / abs(gap[i]) for i in range(P)]
        return e, c

    # Fine grid: per-cell roughness of the attribution integrand d*g along alpha.
    nf = args.fine
    fine_a = (np.arange(nf) + 0.5) / nf
    rough = np.zeros((P, nf - 1))
    fscore = np.zeros((P, nf))
    prev = None
    # One alpha at a time for all paths: each (path, alpha) gradient needs its own sum.
    for k in range(nf):
        s, sc = integrate(session, P, np.array([fine_a[k]]), np.array([1.0]), bs)
        g = (diff * s).reshape(P, -1)
        fscore[:, k] = [v[0] for v in sc]
        if prev is not None:
            rough[:, k - 1] = np.linalg.norm(g - prev, axis=1) ** 2
        prev = g
    edges_f = np.concatenate([[0.0], (fine_a[:-1] + fine_a[1:]) / 2, [1.0]])
    bins = np.linspace(0, 1, 17)
    for i in range(P):
        prof = np.histogram(fine_a[1:], bins=bins, weights=rough[i])[0]
        print(f"  roughness by alpha sixteenth, {names[i]}: "
              + " ".join(f"{v / prof.sum():.2f}" for v in prof))

    # Pilot gradients on a coarse uniform grid (kept per node: a fixed count, not per step).
    pilots = {}
    for m in (8, 16, 32):
        grid = np.linspace(0, 1, m + 1)
        gs = []
        for k in range(m + 1):
            s, _ = integrate(session, P, np.array([grid[k]]), np.array([1.0]), bs)
            gs.append(diff * s)
        pilots[m] = (grid, np.stack(gs, axis=1))  # (P, m+1, ...)

    def two_stage(m, n, power, floor):
        grid, G = pilots[m]
        h = 1.0 / m
        rest = n - (m + 1)
        ks = []
        for i in range(P):
            d = np.linalg.norm((G[i, 1:] - G[i, :-1]).reshape(m, -1), axis=1)
            a = (d * h) ** (2 * power)
            share = (1 - floor) * a / max(a.sum(), 1e-300) + floor / m
            target = share * (rest + m) - 1  # subcells k+1 proportional to share
            k = np.maximum(0, np.floor(target)).astype(int)
            while k.sum() < rest:
                k[np.argmax(target - k)] += 1
            while k.sum() > rest:
                j = np.argmax(k - target)
                k[j] -= 1
            ks.append(k)
        al, wl, node_w = [], [], []
        for i in range(P):
            a_i, w_i = [], []
            wn = np.zeros(m + 1)
            for c in range(m):
                sub = h / (ks[i][c] + 1)
                inner = grid[c] + sub * np.arange(1, ks[i][c] + 1)
                a_i.append(inner)
                w_i.append(np.full(inner.shape, sub))
                wn[c] += sub / 2
                wn[c + 1] += sub / 2
            al.append(np.concatenate(a_i))
            wl.append(np.concatenate(w_i))
            node_w.append(wn)
        s, _ = integrate(session, P, al, wl, bs)
        attr = diff * s
        for i in range(P):
            attr[i] += np.tensordot(node_w[i], pilots[m][1][i], axes=1)
        return attr

    rows = []
    for n in [int(b) for b in args.budgets.split(",")]:
        for m in (8, 16, 32):
            for power, floor in ((1 / 3, 0.0), (1 / 3, 0.2), (1 / 2, 0.2)):
                if n > m + 1:
                    rows.append((n, f"2stage m{m} p{power:.2f} f{floor}",
                                 *errors(two_stage(m, n, power, floor))))
        for method in ("gauss_legendre", "riemann_middle", "riemann_trapezoid"):
            a, w = nodes_and_weights(method, n)
            s, _ = integrate(session, P, a, w, bs)
            rows.append((n, method, *errors(diff * s)))
        # Oracle densities from the fine grid roughness D: nodes ~ D^p mixed with uniform.
        for p in (1 / 3, 1 / 2):
            for mix in (0.0, 0.3):
                al, wl = [], []
                for i in range(P):
                    d = np.concatenate([[rough[i, 0]], rough[i]])  # per fine cell
                    dens = d ** p
                    dens = dens / dens.mean()
                    dens = (1 - mix) * dens + mix
                    nodes, wts = masses_to_nodes(edges_f, dens, n)
                    al.append(nodes)
                    wl.append(wts)
                s, _ = integrate(session, P, al, wl, bs)
                rows.append((n, f"oracle D^{p:.2f} mix{mix}", *errors(diff * s)))
        # Forward-only pilot: |dF/dalpha| from the fine scores (m cells), cost m forwards.
        for m in (16, 32):
            for beta in (0.3, 0.6):
                al, wl = [], []
                for i in range(P):
                    grid = np.linspace(0, 1, m + 1)
                    fvals = np.interp(grid, fine_a, fscore[i])
                    dens = np.abs(np.diff(fvals))
                    dens = dens / dens.mean()
                    dens = (1 - beta) + beta * dens
                    nodes, wts = masses_to_nodes(grid, dens, n)
                    al.append(nodes)
                    wl.append(wts)
                s, _ = integrate(session, P, al, wl, bs)
                rows.append((n, f"pilotF m{m} b{beta}", *errors(diff * s)))
    print()
    print("| n | placement | " + " | ".join(f"{nm} attr" for nm in names) + " | "
          + " | ".join(f"{nm} compl" for nm in names) + " |")
    for n, label, e, c in rows:
        print(f"| {n} | {label} | " + " | ".join(f"{v:.2%}" for v in e) + " | "
              + " | ".join(f"{v:.2%}" for v in c) + " |")


if __name__ == "__main__":
    main()
