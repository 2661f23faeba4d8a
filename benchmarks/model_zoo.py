"""The model zoo benchmark of issue 16: evaluations to 1 % accuracy, igkit's default against
Captum's Gauss-Legendre, on many architectures and all three frameworks, in one command.

    python benchmarks/model_zoo.py --cache /tmp/zoo     # everything (about an hour on 2 cores)
    python benchmarks/model_zoo.py --quick              # the smallest case, seconds
    python benchmarks/model_zoo.py --cases resnet,vit --frameworks torch,jax

Cases (``benchmarks/zoo_nets.py`` builds them): EfficientNet-Lite0 with its real weights
(``igkit.load_model("efficientnet_lite0")`` and its Keras port, on the scikit-image photos);
ResNet-, MobileNetV3-, ConvNeXt- and ViT-style nets and a softmax-ending Keras Sequential with
seeded weights, each in PyTorch, JAX and Keras (the same function in all three); and the real
all-MiniLM-L6-v2 (PyTorch), attributing a sentence-similarity score to the token embeddings.

For each case and input (a *unit*) the benchmark computes a reference (Gauss-Legendre at
``--ref-steps``, once per input and shared by the frameworks, cross-checked against secant at
half as many pieces where the backend has it, else Gauss-Legendre at half), then:

* the evaluations igkit's default needs, called as a user would:
  ``igkit.integrated_gradients(model, x, steps="auto", tol=0.01)`` with no ``method`` (the
  table names the method it ran), and ``method="secant", steps="auto"`` where the backend has
  secant (``igkit.api.method_supported``);
* the smallest step count on a doubling/1.5x grid at which Captum's Gauss-Legendre (torch only)
  and igkit's ``method="gauss_legendre"`` (every framework) reach both 1 % relative L1
  attribution error and 1 % completeness error (an oracle budget a user cannot know);
* their ratios, medians over units; and the cost of one evaluation of a secant pass against a
  plain forward + backward written by hand, per framework.

What a backend does not support is printed as "not available", never estimated. The fixed-rule
sweeps and references do not depend on igkit's automatic rules, so ``--cache DIR`` keeps them
between runs and a later run measures only what changed.

Why one module: a benchmark a user runs as one command; its units, rules, cache and tables
share one notion of a unit and its reference, and the tables print them side by side.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import zoo_nets  # noqa: E402

import igkit  # noqa: E402
from igkit.api import method_supported  # noqa: E402
from igkit.models.spec import LoadedModel  # noqa: E402

TOL = 0.01
GRID = (4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
QUICK_GRID = (8, 32, 128)
PHOTOS = ("chelsea", "coffee", "astronaut")
ALL_CASES = ("effnet", *zoo_nets.NETS, "minilm")
FRAMEWORK_OF = {"torch": "torch", "jax": "jax", "keras": "tensorflow"}


@dataclass
class Unit:
    """One input of one case in one framework: what is explained, and how."""

    case: str
    framework: str  # "torch", "jax" or "keras"
    label: str  # the input's name
    model: Any  # what igkit.integrated_gradients gets
    x: np.ndarray  # a batch of one, in the model's layout
    output: str
    baseline: Any
    batch_size: int
    captum_forward: Callable[[Any], Any] | None = None  # torch: inputs -> explained scores
    extra: dict[str, Any] = field(default_factory=dict)  # igkit keyword arguments

    @property
    def key(self) -> str:
        return f"{self.case}/{self.label}"  # shared by the frameworks: one reference

    @property
    def name(self) -> str:
        return f"{self.case}/{self.framework}/{self.label}"


def _softmax_forward(model: Any) -> Callable[[Any], Any]:
    import torch

    return lambda t: torch.softmax(model(t), -1)


def build_units(cases: list[str], frameworks: list[str], quick: bool,
                photo_names: tuple[str, ...] = PHOTOS) -> list[Unit]:
    """The units of the cases asked for, torch first (the references are computed there)."""
    units: list[Unit] = []
    for case in cases:
        if case == "effnet":
            from igkit.models.photos import demo_photos

            photos = demo_photos()
            names = photo_names[:1] if quick else photo_names
            if "torch" in frameworks:
                lm = igkit.load_model("efficientnet_lite0")
                units += [Unit("effnet", "torch", n, lm, photos[n].transpose(2, 0, 1)[None].copy(),
                               "softmax", "black", 16, _softmax_forward(lm.model)) for n in names]
            if "keras" in frameworks:
                lm = igkit.load_model("keras:efficientnet_lite0")
                units += [Unit("effnet", "keras", n, lm, photos[n][None].copy(), "softmax",
                               "black", 16) for n in names]
        elif case == "minilm":
            if "torch" not in frameworks:
                continue
            models, inputs = zoo_nets.minilm()
            for i, (model, x) in enumerate(zip(models, inputs, strict=True)):
                if quick and i:
                    break
                units.append(Unit("minilm", "torch", f"pair{i}", model, x, "raw", 0.0, 16,
                                  model, {"batched": True, "target": 0}))
        else:
            images = zoo_nets.zoo_images(1 if quick else 2)
            for fw in frameworks:
                model = zoo_nets.build(case, fw)
                xs = zoo_nets.to_framework_layout(images, fw)
                output = zoo_nets.OUTPUTS[case]
                forward = None
                if fw == "torch":
                    forward = model if output == "raw" else _softmax_forward(model)
                units += [Unit(case, fw, f"img{i}", model, xs[i : i + 1], output, "black", 32,
                               forward) for i in range(len(xs))]
    return units


# ---------------------------------------------------------------------------------------------
# Running the rules
# ---------------------------------------------------------------------------------------------


@dataclass
class Reference:
    attributions: np.ndarray  # in the torch layout of the unit that made it
    target: int
    gap: float  # F(x) - F(x')
    check_l1: float  # the cross-check's distance to it
    check_l2: float
    check_label: str


def _quiet_call(fn: Callable[[], Any]) -> tuple[Any, list[str]]:
    """Run ``fn`` recording the igkit warnings it raises (their class names), not printing."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn()
    names = sorted({w.category.__name__ for w in caught
                    if w.category.__module__.startswith("igkit")})
    return out, names


def _ig(unit: Unit, **kw: Any) -> Any:
    args = {"output": unit.output, "baseline": unit.baseline, "batch_size": unit.batch_size,
            **unit.extra, **kw}
    return igkit.integrated_gradients(unit.model, unit.x, **args)


def _to_reference_layout(unit: Unit, a: np.ndarray) -> np.ndarray:
    """Attributions of one input as the reference holds them (torch's NCHW for images)."""
    a = np.asarray(a, dtype=np.float64).reshape(unit.x.shape)
    if unit.framework != "torch" and a.ndim == 4:
        a = a.transpose(0, 3, 1, 2)
    return a


def errors(unit: Unit, ref: Reference, attributions: np.ndarray) -> tuple[float, float, float]:
    """Relative L1 and L2 attribution errors and the completeness error against ``ref``."""
    a = _to_reference_layout(unit, attributions)
    r = ref.attributions
    l1 = float(np.abs(a - r).sum() / np.abs(r).sum())
    l2 = float(np.linalg.norm(a - r) / np.linalg.norm(r))
    comp = abs(float(a.sum()) - ref.gap) / abs(ref.gap)
    return l1, l2, comp


class Cache:
    """JSON and npz files under a folder, or nothing when no folder is given."""

    def __init__(self, folder: str | None) -> None:
        self.folder = Path(folder) if folder else None
        if self.folder:
            self.folder.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str, suffix: str) -> Path | None:
        return self.folder / (key.replace("/", "__") + suffix) if self.folder else None

    def get(self, key: str) -> Any:
        path = self._path(key, ".json")
        return json.loads(path.read_text()) if path and path.exists() else None

    def put(self, key: str, value: Any) -> None:
        path = self._path(key, ".json")
        if path:
            path.write_text(json.dumps(value))

    def has_sweeps(self, unit: Unit, ref_steps: int, grid: tuple[int, ...], gl_on_torch: bool
                   ) -> bool:
        """Whether the reference and the fixed-rule sweeps of ``unit`` are kept here."""
        keys = [f"sweep/{unit.name}/captum/{grid[-1]}"] if unit.captum_forward else []
        if unit.framework != "torch" or gl_on_torch:
            keys.append(f"sweep/{unit.name}/igkit/{grid[-1]}")
        ref = self._path(_reference_key(unit, ref_steps), ".npz")
        return bool(ref and ref.exists()) and all(self.get(k) is not None for k in keys)

    def array(self, key: str) -> np.ndarray | None:
        path = self._path(key, ".npy")
        return np.load(path) if path and path.exists() else None

    def put_array(self, key: str, value: np.ndarray) -> None:
        path = self._path(key, ".npy")
        if path:
            np.save(path, value)

    def reference(self, key: str) -> Reference | None:
        path = self._path(key, ".npz")
        if not (path and path.exists()):
            return None
        z = np.load(path)
        return Reference(z["attributions"], int(z["target"]), float(z["gap"]),
                         float(z["check_l1"]), float(z["check_l2"]), str(z["check_label"]))

    def put_reference(self, key: str, ref: Reference) -> None:
        path = self._path(key, ".npz")
        if path:
            np.savez(path, **ref.__dict__)


def _reference_key(unit: Unit, ref_steps: int) -> str:
    """Where ``Cache`` keeps a unit's reference."""
    return f"ref/{unit.key}/gl{ref_steps}"


def top_target(unit: Unit, ref_steps: int, cache: Cache) -> int:
    """The class a unit attributes (its reference's, or the model's top class at the input)."""
    ref = cache.reference(_reference_key(unit, ref_steps))
    if ref is not None:
        return ref.target
    r, _ = _quiet_call(lambda: _ig(unit, method="gauss_legendre", steps=1))
    return int(np.ravel(r.target)[0])


def reference(unit: Unit, ref_steps: int, cache: Cache) -> Reference:
    key = _reference_key(unit, ref_steps)
    ref = cache.reference(key)
    if ref is not None:
        return ref
    r, _ = _quiet_call(lambda: _ig(unit, method="gauss_legendre", steps=ref_steps))
    base = Reference(_to_reference_layout(unit, r.attributions), int(np.ravel(r.target)[0]),
                     float(np.ravel(r.score)[0] - np.ravel(r.baseline_score)[0]), 0.0, 0.0, "")
    fw = FRAMEWORK_OF[unit.framework]
    # Secant converges faster than Gauss-Legendre: a quarter of the nodes in pieces is a
    # sharper check than half of them in nodes.
    check_method = "secant" if method_supported(fw, "secant") else "gauss_legendre"
    check_steps = ref_steps // 4 if check_method == "secant" else ref_steps // 2
    check, _ = _quiet_call(lambda: _ig(unit, method=check_method, steps=check_steps,
                                       target=base.target))
    l1, l2, _ = errors(unit, base, check.attributions)
    ref = Reference(base.attributions, base.target, base.gap, l1, l2,
                    f"{check_method} {check_steps}")
    cache.put_reference(key, ref)
    return ref


def captum_gl(unit: Unit, ref: Reference, n: int) -> np.ndarray:
    import torch
    from captum.attr import IntegratedGradients

    x = torch.as_tensor(unit.x)
    baseline = 0.0 if not isinstance(unit.baseline, str) else torch.zeros_like(x)
    ig = IntegratedGradients(unit.captum_forward)
    out = ig.attribute(x, baselines=baseline, target=ref.target, n_steps=n,
                       method="gausslegendre", internal_batch_size=unit.batch_size)
    return out.detach().numpy()


def sweep(unit: Unit, ref: Reference, rule: str, grid: tuple[int, ...], cache: Cache
          ) -> dict[str, Any]:
    """The smallest n of ``grid`` at which ``rule`` ("captum" or "igkit") meets both
    tolerances, and the errors along the way."""
    key = f"sweep/{unit.name}/{rule}/{grid[-1]}"
    done = cache.get(key)
    if done is not None:
        return done
    rows = []
    need = None
    for n in grid:
        if rule == "captum":
            attr, _ = _quiet_call(lambda n=n: captum_gl(unit, ref, n))
        else:
            res, _ = _quiet_call(lambda n=n: _ig(unit, method="gauss_legendre", steps=n,
                                                 target=ref.target))
            attr = res.attributions
        rows.append((n, *errors(unit, ref, attr)))
        if rows[-1][1] <= TOL and rows[-1][3] <= TOL:
            need = n
            break
    out = {"need": need, "rows": rows}
    cache.put(key, out)
    return out


def source_stamp() -> str:
    """A hash of igkit's source: results of its automatic rules are cached under it, so a run
    after a change to igkit measures them again and one without reuses them."""
    digest = hashlib.sha1()
    for path in sorted((ROOT / "src" / "igkit").rglob("*.py")):
        digest.update(path.as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def run_auto(unit: Unit, ref: Reference, method: str | None, cache: Cache, stamp: str
             ) -> dict[str, Any]:
    """``steps="auto", tol=0.01`` as a user calls it (``method`` None: the default)."""
    key = f"auto/{unit.name}/{method or 'default'}/{stamp}"
    done = cache.get(key)
    if done is not None:
        return done
    out = _run_auto(unit, ref, method)
    cache.put(key, out)
    return out


def _run_auto(unit: Unit, ref: Reference, method: str | None) -> dict[str, Any]:
    kw: dict[str, Any] = {"steps": "auto", "tol": TOL}
    if method is not None:
        kw["method"] = method
    start = time.perf_counter()
    res, warned = _quiet_call(lambda: _ig(unit, **kw))
    seconds = time.perf_counter() - start
    l1, l2, comp = errors(unit, ref, res.attributions)
    estimate = getattr(res, "error_estimate", None)
    return {"evals": int(np.ravel(res.evaluations)[0]), "method": str(res.method),
            "l1": l1, "l2": l2, "comp": comp, "seconds": seconds, "warnings": warned,
            "estimate": None if estimate is None else float(np.ravel(estimate)[0]),
            "met": l1 <= TOL and comp <= TOL}


def secant_agreement(unit: Unit, ref: Reference, torch_attributions: dict[str, np.ndarray],
                     cache: Cache, stamp: str) -> str:
    """Secant at 64 pieces in this unit's framework against the same in torch (relative L2),
    or "torch" for the torch unit, which keeps its attributions in ``torch_attributions``."""
    key = f"secant64/{unit.name}/{stamp}"
    a = cache.array(key)
    if a is None:
        res, _ = _quiet_call(lambda: _ig(unit, method="secant", steps=64, target=ref.target))
        a = _to_reference_layout(unit, res.attributions)
        cache.put_array(key, a)
    if unit.framework == "torch":
        torch_attributions[unit.key] = a
        return "torch"
    other = torch_attributions.get(unit.key)
    if other is None:
        return "no torch run"
    return f"{np.linalg.norm(a - other) / np.linalg.norm(other):.1e}"


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------


def _pct(v: float) -> str:
    return f"{100 * v:.2f}"


def _need(s: dict[str, Any] | None, grid: tuple[int, ...]) -> str:
    if s is None:
        return "not available"
    return str(s["need"]) if s["need"] is not None else f">{grid[-1]}"


def _auto_cell(a: dict[str, Any] | None) -> str:
    if a is None:
        return "not available"
    flag = "" if a["met"] else " (missed)"
    return f"{a['evals']}{flag}"


def tables(results: list[dict[str, Any]], grid: tuple[int, ...]) -> list[str]:
    lines = [
        f"### Evaluations to {TOL:.0%} relative L1 attribution error and {TOL:.0%} completeness",
        "",
        f"Captum GL and igkit GL: the smallest n of {list(grid)} meeting both (an oracle budget); "
        "auto: `steps=\"auto\", tol=0.01`, what it spent, marked (missed) when its result "
        "misses either tolerance. Ratios are auto's evaluations over each rule's need.",
        "",
        "| case | framework | input | Captum GL | igkit GL | default auto (method) | "
        "auto / Captum | auto / igkit GL | secant auto | secant auto / Captum |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    ratios: dict[str, list[float]] = {"auto/captum": [], "auto/gl": [], "secant/captum": [],
                                      "secant/gl": []}
    for r in results:
        cap, gl, auto, sec = r["captum"], r["igkit_gl"], r["auto"], r["secant_auto"]
        gl_cell = _need(gl, grid)
        if gl is None and cap is not None:  # torch: igkit's Gauss-Legendre is Captum's rule
            gl, gl_cell = cap, "= Captum"

        def ratio(a: dict[str, Any] | None, s: dict[str, Any] | None, bucket: str) -> str:
            if a is None or s is None:
                return "-"
            # A rule that never met the tolerances on the grid needed more than its last n:
            # the ratio to that n is an upper bound, marked "<=".
            value = a["evals"] / (s["need"] or grid[-1])
            ratios[bucket].append(value)
            return f"{value:.2f}" if s["need"] else f"<={value:.2f}"

        lines.append(
            f"| {r['case']} | {r['framework']} | {r['label']} | {_need(cap, grid)} | "
            f"{gl_cell} | {_auto_cell(auto)} ({auto['method']}) | "
            f"{ratio(auto, cap, 'auto/captum')} | {ratio(auto, gl, 'auto/gl')} | "
            f"{_auto_cell(sec)} | {ratio(sec, cap, 'secant/captum')} |")
        ratio(sec, gl, "secant/gl")
    lines += ["", "| ratio over units | median | worst | units |", "|---|---|---|---|"]
    for bucket, values in ratios.items():
        if values:
            lines.append(f"| {bucket} | {statistics.median(values):.2f} | {max(values):.2f} | "
                         f"{len(values)} |")
        else:
            lines.append(f"| {bucket} | not available | - | 0 |")
    lines += ["", "Accuracy of the automatic runs (relative L1 / L2 attribution error % / "
              "completeness %, the rule's own error estimate when it gives one, seconds, "
              "warnings), the reference's cross-check (L1 / L2 %), and secant's attributions at "
              "64 pieces against torch's (relative L2):", "",
              "| unit | reference check | default auto | secant auto | secant 64 vs torch |",
              "|---|---|---|---|---|"]
    for r in results:
        cells = []
        for a in (r["auto"], r["secant_auto"]):
            if a is None:
                cells.append("not available")
                continue
            est = "-" if a["estimate"] is None else _pct(a["estimate"])
            cells.append(f"{a['evals']} evals ({a['method']}): {_pct(a['l1'])} / {_pct(a['l2'])}"
                         f" / {_pct(a['comp'])}, est. {est}, {a['seconds']:.1f} s"
                         + (f", {' '.join(a['warnings'])}" if a["warnings"] else ""))
        agree = r["agree"] if r["agree"] is not None else "not available"
        lines.append(f"| {r['case']}/{r['framework']}/{r['label']} | {r['ref_check']} | "
                     + " | ".join(cells) + f" | {agree} |")
    return lines


# ---------------------------------------------------------------------------------------------
# Cost of an evaluation
# ---------------------------------------------------------------------------------------------


def _hand_pass(unit: Unit, target: int, rows: int) -> Callable[[], Any]:
    """One plain forward + backward of ``rows`` path points, written by hand in the unit's
    framework (the explained score: softmax or raw output of ``target``)."""
    alphas = np.linspace(0.05, 1.0, rows, dtype=np.float32).reshape(-1, *[1] * (unit.x.ndim - 1))
    batch = (alphas * unit.x).astype(np.float32)
    model = unit.model.model if isinstance(unit.model, LoadedModel) else unit.model
    soft = unit.output == "softmax"
    if unit.framework == "torch":
        import torch

        xb = torch.as_tensor(batch)

        def torch_pass() -> Any:
            t = xb.clone().requires_grad_(True)
            out = model(t)
            out = torch.softmax(out, -1) if soft else out
            return torch.autograd.grad(out[:, target].sum(), t)[0]

        return torch_pass
    if unit.framework == "jax":
        import jax

        def score(t: Any) -> Any:
            out = model(t)
            return (jax.nn.softmax(out, -1) if soft else out)[:, target].sum()

        step = jax.jit(jax.grad(score))
        return lambda: step(batch).block_until_ready()
    import tensorflow as tf

    @tf.function
    def tf_step(t: Any) -> Any:
        with tf.GradientTape() as tape:
            tape.watch(t)
            out = model(t, training=False)
            out = tf.nn.softmax(out, -1) if soft else out
            score = tf.reduce_sum(out[:, target])
        return tape.gradient(score, t)

    tb = tf.constant(batch)
    return lambda: tf_step(tb).numpy()


def _igkit_call(unit: Unit, method: str, steps: int, target: int) -> Callable[[], Any]:
    return lambda: _quiet_call(lambda: _ig(unit, method=method, steps=steps, target=target))[0]


def cost(units: list[Unit], targets: dict[str, int], rounds: int, pieces: int) -> list[str]:
    """Per framework and case, milliseconds per evaluation of: a hand-written forward+backward
    (one full batch); a whole igkit call of Gauss-Legendre at ``pieces`` nodes and of the secant
    rule at ``pieces`` pieces (everything a call does over its gradient evaluations: the
    forward passes at inputs and baselines, a secant call's pilot); and a *pass*, the cost of
    one more evaluation, from calls at ``pieces`` and ``2 * pieces`` (time difference over
    evaluation difference: what a call's fixed work and a pilot do not dilute). Rounds
    interleaved, medians."""
    lines = [f"### Cost of one evaluation (ms), batch as in the runs, {pieces} pieces / nodes "
             f"(a pass: {pieces} more), median of {rounds} interleaved rounds", "",
             "| case | framework | hand fwd+bwd | igkit GL call | igkit secant call | "
             "secant call / hand | GL pass | secant pass | secant pass / hand | "
             "secant pass / GL pass |", "|---|---|---|---|---|---|---|---|---|---|"]
    seen = set()
    for unit in units:
        if (unit.case, unit.framework) in seen:
            continue
        seen.add((unit.case, unit.framework))
        target = targets[unit.key]
        configs = {"hand": _hand_pass(unit, target, unit.batch_size)}
        rules = ["gl"] + (["secant"] if method_supported(FRAMEWORK_OF[unit.framework], "secant")
                          else [])
        for rule in rules:
            method = "gauss_legendre" if rule == "gl" else rule
            configs[rule] = _igkit_call(unit, method, pieces, target)
            configs[rule + "2"] = _igkit_call(unit, method, 2 * pieces, target)
        evals = {"hand": unit.batch_size}  # what each call's time is divided by
        for label, fn in configs.items():
            # Warm-up: the first call compiles each step at the full batch, the second at the
            # short batches' own sizes (``igkit.backends.base.RowSizes``).
            fn()
            out = fn()
            if label != "hand":
                evals[label] = int(np.ravel(out.evaluations)[0])
        times: dict[str, list[float]] = {label: [] for label in configs}
        for _ in range(rounds):
            for label, fn in configs.items():
                start = time.perf_counter()
                fn()
                times[label].append(time.perf_counter() - start)
        t = {label: 1e3 * statistics.median(v) for label, v in times.items()}
        ms = {label: t[label] / evals[label] for label in t}
        for rule in rules:
            ms[rule + " pass"] = ((t[rule + "2"] - t[rule])
                                  / (evals[rule + "2"] - evals[rule]))
        cells = [f"{ms['hand']:.2f}", f"{ms['gl']:.2f}"]
        if "secant" in rules:
            cells += [f"{ms['secant']:.2f}", f"{ms['secant'] / ms['hand']:.2f}",
                      f"{ms['gl pass']:.2f}", f"{ms['secant pass']:.2f}",
                      f"{ms['secant pass'] / ms['hand']:.2f}",
                      f"{ms['secant pass'] / ms['gl pass']:.2f}"]
        else:
            cells += ["not available", "-", f"{ms['gl pass']:.2f}", "not available", "-", "-"]
        lines.append(f"| {unit.case} | {unit.framework} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    return lines


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="the smallest case, one input, a short grid and a 256-node reference")
    ap.add_argument("--cases", default=None, help=f"comma-separated, of {', '.join(ALL_CASES)}")
    ap.add_argument("--frameworks", default=",".join(zoo_nets.FRAMEWORKS))
    ap.add_argument("--ref-steps", type=int, default=None)
    ap.add_argument("--cache", default=None, help="folder keeping references and sweeps")
    ap.add_argument("--sections", default="evaluations,cost")
    ap.add_argument("--cost-cases", default="effnet,resnet",
                    help="cases whose evaluations are timed in the cost section")
    ap.add_argument("--rounds", type=int, default=5,
                    help="interleaved rounds of the cost section (its median is reported)")
    ap.add_argument("--igkit-gl-on-torch", action="store_true",
                    help="also sweep igkit's Gauss-Legendre on torch (it computes Captum's "
                         "numbers, so by default torch's best fixed GL is Captum's)")
    ap.add_argument("--stamp", default=None,
                    help="read the automatic rules' results cached under this igkit source hash "
                         "(printed in the header) instead of the current source's")
    ap.add_argument("--cached-only", action="store_true",
                    help="leave out the units whose reference or sweeps --cache lacks")
    ap.add_argument("--photos", default=",".join(PHOTOS), help="EfficientNet's demo photos")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--out", default=None, help="also write the tables to this markdown file")
    ap.add_argument("--malloc", choices=("kept", "system"), default="kept",
                    help="kept: freed memory is kept for reuse, as in the igkit command "
                         "(igkit.keep_freed_memory); system: glibc's own thresholds")
    args = ap.parse_args(argv)
    allocator = igkit.keep_freed_memory() if args.malloc == "kept" else "system"
    cases = (args.cases or ("sequential" if args.quick else ",".join(ALL_CASES))).split(",")
    unknown = sorted(set(cases) - set(ALL_CASES))
    if unknown:
        ap.error(f"unknown cases {unknown}; choose from {', '.join(ALL_CASES)}")
    frameworks = args.frameworks.split(",")
    grid = QUICK_GRID if args.quick else GRID
    ref_steps = args.ref_steps or (512 if args.quick else 2048)
    cache = Cache(args.cache)
    import torch

    torch.set_num_threads(args.threads)
    stamp = args.stamp or source_stamp()
    header = [f"model zoo, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; CPU "
              f"({os.cpu_count()} cores), torch {torch.__version__}, igkit {igkit.__version__}; "
              f"default method: {'auto' if 'auto' in igkit.available_methods() else 'as before'}"
              f"; secant in torch / jax / tensorflow: "
              + " / ".join("yes" if method_supported(f, "secant") else "no"
                           for f in ("torch", "jax", "tensorflow")),
              f"reference: igkit Gauss-Legendre {ref_steps}; igkit source {stamp}; "
              f"allocator: {allocator}", ""]
    print("\n".join(header), flush=True)
    units = build_units(cases, frameworks, args.quick, tuple(args.photos.split(",")))
    refs: dict[str, Reference] = {}
    targets: dict[str, int] = {}
    results = []
    secant_64: dict[str, np.ndarray] = {}
    sections = args.sections.split(",")
    left_out = []
    for unit in units:
        if args.cached_only and not cache.has_sweeps(unit, ref_steps, grid, args.quick
                                                     or args.igkit_gl_on_torch):
            left_out.append(unit.name)
            continue
        if "evaluations" not in sections:  # the cost section needs only each unit's target
            if unit.key not in targets:
                targets[unit.key] = top_target(unit, ref_steps, cache)
            continue
        if unit.key not in refs:
            refs[unit.key] = reference(unit, ref_steps, cache)
        ref = refs[unit.key]
        targets[unit.key] = ref.target
        fw = FRAMEWORK_OF[unit.framework]
        row = {
            "case": unit.case, "framework": unit.framework, "label": unit.label,
            "ref_check": f"{ref.check_label}: {_pct(ref.check_l1)} / {_pct(ref.check_l2)}",
            "captum": sweep(unit, ref, "captum", grid, cache) if unit.captum_forward else None,
            "igkit_gl": (sweep(unit, ref, "igkit", grid, cache)
                         if unit.framework != "torch" or args.quick or args.igkit_gl_on_torch
                         else None),
            "auto": run_auto(unit, ref, None, cache, stamp),
            "secant_auto": run_auto(unit, ref, "secant", cache, stamp)
            if method_supported(fw, "secant")
            else None,
        }
        row["agree"] = secant_agreement(unit, ref, secant_64, cache, stamp) if method_supported(
            fw, "secant") else None
        results.append(row)
        print(f"{unit.name}: captum {_need(row['captum'], grid)}, igkit GL "
              f"{_need(row['igkit_gl'], grid)}, auto {_auto_cell(row['auto'])} "
              f"({row['auto']['method']}), secant auto {_auto_cell(row['secant_auto'])}",
              flush=True)
    report = list(header)
    if left_out:
        report += [f"Not run (--cached-only, their reference or sweeps not cached): "
                   f"{', '.join(left_out)}", ""]
    if results:
        report += tables(results, grid) + [""]
    if "cost" in sections:
        chosen = [u for u in units if u.case in args.cost_cases.split(",")]
        if args.quick:
            chosen = units[:1]
        report += cost(chosen, targets, 1 if args.quick else args.rounds,
                       16 if args.quick else 32) + [""]
    text = "\n".join(report)
    print(text, flush=True)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return text


if __name__ == "__main__":
    main()
