"""Every attribution method igkit shares with Captum (or PAIR), side by side on EfficientNet-Lite0.

    python benchmarks/methods_speed.py            # the three photos, full settings
    python benchmarks/methods_speed.py --quick    # one photo (two for feature_permutation),
                                                  # small settings: minutes on 2 CPU cores
    python benchmarks/methods_speed.py --methods occlusion,shapley_sampling

For each method: images/s and the peak memory of one call of igkit (``igkit.attribute``) and of
Captum at equal settings (the same model, targets, baselines, steps, samples, windows, masks and
rows per model call), the calls interleaved round by round (the fastest round of each: the one
least disturbed by other processes), and their ratios (speed: igkit / Captum, > 1 is igkit
faster; memory: igkit / Captum, < 1 is igkit smaller).
The CPU-time ratio (Captum's process CPU seconds / igkit's) is the fairer speed figure on a
shared machine, where wall time depends on what else runs. The last column compares the
attributions (max |igkit - Captum| / max |Captum|) where the two compute the same numbers;
stochastic methods draw different random numbers, and methods Captum defines differently on
this model are marked.

Peak memory is CUDA's max allocated during the call on a GPU; on the CPU it is the most the
process's resident memory rose above its level before the call (sampled every millisecond
after returning freed heap to the system), so small numbers are noisy.

The model is the builtin default (``igkit.load_model("efficientnet_lite0")``), explained in its
raw logits for each photo's top class. Its activations are functional ReLU6 calls: Captum's
GuidedBackprop, Deconvolution and DeepLift only act on ``nn.ReLU`` modules, so on this model
they compute plain gradients (resp. gradient x input); igkit's follow every ReLU. Methods that
igkit has not registered are listed as such and skipped. Blur IG, Guided IG and XRAI are
compared with PAIR saliency (framework-free, one photo per call, its own batch_size).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import igkit  # noqa: E402
from igkit.models.photos import demo_photos  # noqa: E402

CAM_LAYER = "_conv_head"  # the last convolution: Grad-CAM's usual choice
LAYER = "_blocks.6"  # a middle block, for the layer attribution methods


# -- measuring --------------------------------------------------------------------------------


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _trim() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


class Peak:
    """The peak memory a block of code added (MiB): CUDA max allocated, or sampled RSS."""

    def __init__(self, dev: str):
        self.dev, self.mib = dev, 0.0

    def __enter__(self) -> Peak:
        import torch

        _trim()
        if self.dev == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            self._before = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            return self
        self._before_rss = _rss_mib()
        self._max = self._before_rss
        self._stop = threading.Event()

        def sample() -> None:
            while not self._stop.is_set():
                self._max = max(self._max, _rss_mib())
                time.sleep(0.001)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        import torch

        if self.dev == "cuda":
            torch.cuda.synchronize()
            self.mib = (torch.cuda.max_memory_allocated() - self._before) / 2**20
            return
        self._stop.set()
        self._thread.join()
        self.mib = max(self._max, _rss_mib()) - self._before_rss


def measure(fn: Callable[[], np.ndarray], dev: str) -> tuple[float, float, float, np.ndarray]:
    """(wall seconds, process CPU seconds, peak MiB, result) of one call."""
    with Peak(dev) as peak:
        start, cpu = time.perf_counter(), time.process_time()
        out = fn()
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return seconds, cpu, peak.mib, out


# -- the methods, as both libraries run them ---------------------------------------------------


@dataclass
class Setup:
    model: Any
    x: np.ndarray  # (N, 3, 224, 224) in [0, 1]
    xt: Any  # the same, a torch tensor on the device
    targets: list[int]
    bs: int
    dev: str
    quick: bool
    superpixels: np.ndarray  # (N, 1, 224, 224) SLIC labels
    refs: np.ndarray  # (2, 3, 224, 224): black and white references

    @property
    def n(self) -> int:
        return self.x.shape[0]

    @property
    def per_eval(self) -> int:
        """Captum's perturbations / noise samples per call giving ``bs`` rows like igkit."""
        return max(1, self.bs // self.n)


@dataclass
class Case:
    name: str
    settings: str
    ours: dict[str, Any]
    theirs: Callable[[Setup], np.ndarray]
    agree: str = "yes"  # "yes", or why the numbers differ
    inputs: int | None = None  # photos used (feature_permutation needs 2)
    extra: dict[str, Any] = field(default_factory=dict)


def _np(t: Any) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def cases(s: Setup) -> list[Case]:
    from captum import attr as ca

    q = s.quick
    steps = 8 if q else 64
    samples = 4 if q else 16
    window, stride = (56, 56) if q else (32, 16)
    layer = s.model.get_submodule(LAYER)
    cam = s.model.get_submodule(CAM_LAYER)
    refs = lambda s: __import__("torch").tensor(s.refs, device=s.xt.device)  # noqa: E731
    mask_t = lambda s: __import__("torch").tensor(s.superpixels, device=s.xt.device)  # noqa: E731
    groups = int(s.superpixels.max()) + 1
    return [
        Case("saliency", "abs of the gradient", {"abs": True},
             lambda s: _np(ca.Saliency(s.model).attribute(s.xt, target=s.targets, abs=True))),
        Case("input_x_gradient", "", {},
             lambda s: _np(ca.InputXGradient(s.model).attribute(s.xt, target=s.targets))),
        Case("integrated_gradients", f"Gauss-Legendre {steps}",
             {"rule": "gauss_legendre", "steps": steps},
             lambda s: _np(ca.IntegratedGradients(s.model).attribute(
                 s.xt, baselines=0.0, target=s.targets, n_steps=steps, method="gausslegendre",
                 internal_batch_size=s.bs))),
        Case("smoothgrad", f"{samples} samples, stdev 0.15", {"samples": samples, "stdev": 0.15},
             lambda s: _np(ca.NoiseTunnel(ca.Saliency(s.model)).attribute(
                 s.xt, nt_type="smoothgrad", nt_samples=samples, stdevs=0.15,
                 nt_samples_batch_size=s.per_eval, target=s.targets, abs=False)),
             agree="stochastic"),
        Case("vargrad", f"{samples} samples, stdev 0.15", {"samples": samples, "stdev": 0.15},
             lambda s: _np(ca.NoiseTunnel(ca.Saliency(s.model)).attribute(
                 s.xt, nt_type="vargrad", nt_samples=samples, stdevs=0.15,
                 nt_samples_batch_size=s.per_eval, target=s.targets, abs=False)),
             agree="stochastic"),
        Case("expected_gradients", f"GradientShap, {samples} samples, black+white refs",
             {"samples": samples, "baseline": "refs"},
             lambda s: _np(ca.GradientShap(s.model).attribute(
                 s.xt, baselines=refs(s), n_samples=samples, stdevs=0.0, target=s.targets)),
             agree="stochastic"),
        Case("deeplift", "Rescale, black baseline", {},
             lambda s: _np(ca.DeepLift(s.model).attribute(s.xt, baselines=0.0, target=s.targets)),
             agree="Captum skips functional ReLU6"),
        Case("deeplift_shap", "black+white refs", {"baseline": "refs"},
             lambda s: _np(ca.DeepLiftShap(s.model).attribute(s.xt, baselines=refs(s),
                                                             target=s.targets)),
             agree="Captum skips functional ReLU6"),
        Case("guided_backprop", "", {},
             lambda s: _np(ca.GuidedBackprop(s.model).attribute(s.xt, target=s.targets)),
             agree="Captum skips functional ReLU6"),
        Case("deconvnet", "", {},
             lambda s: _np(ca.Deconvolution(s.model).attribute(s.xt, target=s.targets)),
             agree="Captum skips functional ReLU6"),
        Case("grad_cam", f"layer {CAM_LAYER}, layer resolution",
             {"layer": CAM_LAYER, "upsample": False},
             lambda s: _np(ca.LayerGradCam(s.model, cam).attribute(s.xt, target=s.targets))),
        Case("guided_grad_cam", f"layer {CAM_LAYER}, nearest",
             {"layer": CAM_LAYER, "interpolation": "nearest"},
             lambda s: _np(ca.GuidedGradCam(s.model, cam).attribute(s.xt, target=s.targets)),
             agree="Captum skips functional ReLU6"),
        Case("layer_activation", f"layer {LAYER}", {"layer": LAYER},
             lambda s: _np(ca.LayerActivation(s.model, layer).attribute(s.xt))),
        Case("layer_gradient_x_activation", f"layer {LAYER}", {"layer": LAYER},
             lambda s: _np(ca.LayerGradientXActivation(s.model, layer).attribute(
                 s.xt, target=s.targets))),
        Case("layer_integrated_gradients", f"layer {LAYER}, Gauss-Legendre {steps}",
             {"layer": LAYER, "steps": steps, "rule": "gauss_legendre"},
             lambda s: _np(ca.LayerIntegratedGradients(s.model, layer).attribute(
                 s.xt, baselines=0.0, target=s.targets, n_steps=steps, method="gausslegendre",
                 internal_batch_size=s.bs))),
        Case("layer_conductance", f"layer {LAYER}, trapezoid {steps}",
             {"layer": LAYER, "steps": steps, "rule": "riemann_trapezoid"},
             lambda s: _np(ca.LayerConductance(s.model, layer).attribute(
                 s.xt, baselines=0.0, target=s.targets, n_steps=steps, method="riemann_trapezoid",
                 internal_batch_size=s.bs))),
        Case("occlusion", f"window {window}, stride {stride}, black",
             {"window": window, "stride": stride},
             lambda s: _np(ca.Occlusion(s.model).attribute(
                 s.xt, sliding_window_shapes=(3, window, window), strides=(3, stride, stride),
                 baselines=0.0, target=s.targets, perturbations_per_eval=s.per_eval))),
        Case("feature_ablation", f"{groups} SLIC superpixels, black", {"mask": "superpixels"},
             lambda s: _np(ca.FeatureAblation(s.model).attribute(
                 s.xt, baselines=0.0, target=s.targets, feature_mask=mask_t(s),
                 perturbations_per_eval=s.per_eval))),
        Case("feature_permutation", "8 x 8 grid of patches", {"mask": "grid"},
             lambda s: _np(ca.FeaturePermutation(s.model).attribute(
                 s.xt, target=s.targets, feature_mask=__import__("torch").tensor(
                     _grid(), device=s.xt.device), perturbations_per_eval=s.per_eval)),
             agree="stochastic", inputs=2 if q else None),
        Case("shapley_sampling", f"{groups} SLIC superpixels, {1 if q else 4} samples, black",
             {"mask": "superpixels", "samples": 1 if q else 4},
             lambda s: _np(ca.ShapleyValueSampling(s.model).attribute(
                 s.xt, baselines=0.0, target=s.targets, feature_mask=mask_t(s),
                 n_samples=1 if q else 4, perturbations_per_eval=s.per_eval)),
             agree="stochastic"),
    ]


def _pair_call(s: Setup, target: int) -> Callable[..., dict]:
    """PAIR saliency's call_model_function for the torch model (PAIR works in H, W, C)."""
    import saliency.core as pair
    import torch

    def call(batch, call_model_args=None, expected_keys=None):
        t = torch.tensor(np.moveaxis(np.asarray(batch, np.float32), -1, 1), device=s.xt.device,
                         requires_grad=True)
        s.model(t)[:, target].sum().backward()
        return {pair.INPUT_OUTPUT_GRADIENTS: np.moveaxis(t.grad.cpu().numpy(), 1, -1)}

    return call


def _pair(s: Setup, mask_of: Callable[[Any, np.ndarray, Callable[..., dict]], np.ndarray]
          ) -> np.ndarray:
    """PAIR's map of each photo (one at a time, as PAIR takes them), channels first."""
    maps = []
    for img, target in zip(s.x, s.targets, strict=True):
        hwc = img.transpose(1, 2, 0)
        out = np.asarray(mask_of(None, hwc, _pair_call(s, target)))
        maps.append(np.moveaxis(out, -1, 0) if out.ndim == 3 else out[None])
    return np.stack(maps)


def pair_cases(s: Setup) -> list[Case]:
    import types

    import saliency.core as pair
    from saliency.core import guided_ig
    from saliency.core.xrai import XRAIParameters

    # PAIR's Guided IG calls np.quantile(interpolation=), which NumPy 2 renamed method=.
    shim = types.SimpleNamespace(**{k: getattr(np, k) for k in dir(np) if not k.startswith("__")})
    shim.quantile = lambda a, q, interpolation="linear": np.quantile(a, q, method=interpolation)
    guided_ig.np = shim

    steps = 8 if s.quick else 64
    return [
        Case("blur_ig", f"{steps} steps, max sigma 50 (PAIR, batch {s.bs})", {"steps": steps},
             lambda s: _pair(s, lambda _, x, call: pair.BlurIG().GetMask(
                 x, call, steps=steps, batch_size=s.bs)),
             agree="PAIR weighs a batch by its last step"),
        Case("guided_ig", f"{steps} steps, black (PAIR)", {"steps": steps},
             lambda s: _pair(s, lambda _, x, call: pair.GuidedIG().GetMask(
                 x, call, x_steps=steps, x_baseline=np.zeros_like(x)))),
        Case("xrai", f"IG {steps} steps, black+white (PAIR, batch {s.bs})", {"steps": steps},
             lambda s: _pair(s, lambda _, x, call: pair.XRAI().GetMask(
                 x, call, batch_size=s.bs, extra_parameters=XRAIParameters(steps=steps))),
             agree="PAIR's IG rule differs"),
    ]


def _grid() -> np.ndarray:
    cell = np.arange(224) // 28
    return (cell[:, None] * 8 + cell[None, :])[None, None]


def superpixels(x: np.ndarray, segments: int) -> np.ndarray:
    """SLIC labels of each photo, ``(N, 1, H, W)``, numbered from 0."""
    from skimage.segmentation import slic

    out = [slic(img.transpose(1, 2, 0), n_segments=segments, start_label=0) for img in x]
    return np.stack(out)[:, None].astype(np.int64)


def run_ours(s: Setup, case: Case) -> np.ndarray:
    opts = dict(case.ours)
    baseline: Any = "black"
    if opts.get("baseline") == "refs":
        baseline = s.refs
        del opts["baseline"]
    if opts.get("mask") == "superpixels":
        opts["mask"] = s.superpixels
    elif opts.get("mask") == "grid":
        opts["mask"] = _grid()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = igkit.attribute(s.model, s.x, case.name, target=s.targets, baseline=baseline,
                              output="raw", batch_size=s.bs, seed=0, **opts)
    return np.asarray(res.attributions)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--methods", default=None, help="comma-separated subset")
    ap.add_argument("--out", default=None, help="also write the table to this markdown file")
    args = ap.parse_args()
    started, started_cpu = time.perf_counter(), time.process_time()

    import captum
    import torch
    from captum.attr import Saliency

    dev = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available()
                                                     else "cpu")
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    model = igkit.load_model("efficientnet_lite0").model.to(dev).eval()
    photos = demo_photos()
    names = ["chelsea", "coffee"] if args.quick else ["chelsea", "coffee", "astronaut"]
    x_all = np.stack([photos[n].transpose(2, 0, 1) for n in names]).astype(np.float32)
    with torch.no_grad():
        targets_all = model(torch.tensor(x_all, device=dev)).argmax(1).tolist()
    bs = 64 if dev == "cuda" else 16
    rounds = args.rounds or (1 if args.quick else 3)
    sp_all = superpixels(x_all, 16 if args.quick else 50)
    refs = np.stack([np.zeros_like(x_all[0]), np.ones_like(x_all[0])])

    def setup(n: int) -> Setup:
        x = x_all[:n]
        return Setup(model=model, x=x, xt=torch.tensor(x, device=dev), targets=targets_all[:n],
                     bs=bs, dev=dev, quick=args.quick, superpixels=sp_all[:n], refs=refs)

    default_n = 1 if args.quick else len(names)
    registered = set(igkit.attribution_methods())
    wanted = args.methods.split(",") if args.methods else None
    # One untimed call of each library first (allocator, kernels, Captum's imports).
    warm = setup(default_n)
    run_ours(warm, Case("saliency", "", {"abs": True}, lambda s: s.x))
    Saliency(model).attribute(warm.xt, target=warm.targets)

    header = [
        f"# igkit vs Captum, every shared method, {time.strftime('%Y-%m-%d')}",
        "",
        f"device: {torch.cuda.get_device_name() if dev == 'cuda' else 'CPU'} "
        f"({os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}); torch "
        f"{torch.__version__}, captum {captum.__version__}, igkit {igkit.__version__}; "
        f"EfficientNet-Lite0 224 x 224, raw logits of the top class; batch {bs} rows per "
        f"model call for both; {rounds} interleaved round(s), fastest of each"
        f"{'; --quick settings' if args.quick else ''}.",
        "",
        "| method | settings | photos | igkit img/s | Captum/PAIR img/s | speed ratio | "
        "CPU-time ratio | igkit peak MiB | Captum/PAIR peak MiB | memory ratio | "
        "max diff / max abs |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(header), flush=True)
    lines = list(header)
    skipped = []
    try:
        extra = pair_cases(warm)
    except ImportError:
        extra = []
        skipped.append("blur_ig, guided_ig, xrai: PAIR saliency (PyPI saliency) not installed")
    for case in cases(warm) + extra:
        if wanted and case.name not in wanted:
            continue
        if case.name not in registered:
            skipped.append(f"{case.name}: not registered in igkit.attribution_methods()")
            print(skipped[-1], flush=True)
            continue
        s = setup(case.inputs or default_n)
        got: dict[str, list[tuple[float, float, float]]] = {"ours": [], "theirs": []}
        ours = theirs = None
        try:
            for _ in range(rounds):
                *m, ours = measure(lambda: run_ours(s, case), dev)  # noqa: B023
                got["ours"].append(tuple(m))
                *m, theirs = measure(lambda: case.theirs(s), dev)  # noqa: B023
                got["theirs"].append(tuple(m))
        except Exception as exc:  # a method one library refuses on this model: say which
            who = "Captum" if len(got["ours"]) > len(got["theirs"]) else "igkit"
            skipped.append(f"{case.name}: {who} refused: {str(exc).splitlines()[0]}")
            print(skipped[-1], flush=True)
            continue
        a, b = (min(v[0] for v in got[k]) for k in ("ours", "theirs"))
        ca_, cb = (min(v[1] for v in got[k]) for k in ("ours", "theirs"))
        ma, mb = (max(v[2] for v in got[k]) for k in ("ours", "theirs"))
        if case.agree == "yes" and ours is not None and theirs is not None:
            diff = (np.abs(ours.reshape(theirs.shape) - theirs).max()
                    / max(np.abs(theirs).max(), 1e-30))
            agree = f"{diff:.1e}"
        else:
            agree = case.agree
        line = (f"| {case.name} | {case.settings} | {s.n} | {s.n / a:.3g} | {s.n / b:.3g} | "
                f"{b / a:.2f} | {cb / ca_:.2f} | {ma:.0f} | {mb:.0f} | "
                f"{ma / mb if mb > 0.5 else float('nan'):.2f} | {agree} |")
        print(line, flush=True)
        lines.append(line)
    total = (f"whole run: {time.perf_counter() - started:.0f} s wall, "
             f"{time.process_time() - started_cpu:.0f} s CPU")
    print(total, flush=True)
    lines += ["", *skipped, total]
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
