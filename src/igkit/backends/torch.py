"""PyTorch backend: interpolation, forward, backward and the weighted reduction, all on device."""

from __future__ import annotations

import contextlib
import hashlib
import sys
from collections.abc import Callable, Iterator
from typing import Any, cast

import numpy as np

from igkit.backends.base import (
    PRECISIONS,
    Capabilities,
    DisconnectedModelError,
    OutOfMemory,
    SessionOptions,
    Taken,
    check_output_shape,
)
from igkit.core.planner import RowBatch

name = "torch"
title = "PyTorch"

#: Every precision; whole levels of rows in one host-to-device copy (``accumulate_rows``);
#: secant pieces (``accumulate_intervals``, ``igkit.backends.torch_secant``); sessions restore
#: the modules' training flags and the TF32 switches on ``close``; ``outputs_and_raw``.
CAPABILITIES = Capabilities(precisions=PRECISIONS, row_accumulation=True,
                            interval_accumulation=True, closing=True, raw_outputs=True)


def matches(model: object) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


def is_tensor(x: object) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def probe(model: object, example: np.ndarray) -> bool:
    """True when ``model`` accepts a torch tensor and returns one."""
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    try:
        with torch.no_grad():
            out = cast(Any, model)(torch.as_tensor(example[:1], dtype=torch.float32))
    except Exception:  # noqa: BLE001 - a failed probe only means "not a torch callable"
        return False
    return isinstance(out, torch.Tensor)


def to_numpy(x: object) -> np.ndarray:
    return x.detach().cpu().numpy()  # type: ignore[attr-defined]


def adapt_model(model: object) -> object:
    """Torch models need no adapting: modules and callables on tensors are run as they are."""
    return model


def place(model: object, *, threads: int | None = None, device: str | None = None) -> None:
    """Set this process's intra-op threads and move a module to ``device`` (e.g. "cuda").

    For dataset runs: on a busy machine one thread per process is often far faster for small
    models, and a Ray actor given a GPU moves its model there.
    """
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    if device is not None and isinstance(model, torch.nn.Module):
        model.to(device)


def predict(model: object, x: np.ndarray) -> np.ndarray:
    """The raw outputs of ``model`` at the batch ``x``, forward only, as float64 numpy.

    A module runs in eval mode (dropout and batch statistics would make predictions random; it
    is left in eval mode) on the device and in the dtype of its first floating parameter or
    buffer; a plain callable gets float32 on the CPU.
    """
    import torch

    device, dtype = _model_place(model)
    if isinstance(model, torch.nn.Module) and model.training:
        model.eval()
    with torch.no_grad():
        out = cast(Any, model)(torch.as_tensor(x, dtype=dtype or torch.float32, device=device))
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"the model returned {type(out).__name__}, not a tensor")
    return out.detach().to(torch.float64).cpu().numpy()


@contextlib.contextmanager
def _eval_mode(model: object) -> Iterator[None]:
    """Evaluates in eval mode (dropout off, batch-norm running stats), then restores the flags."""
    torch = sys.modules["torch"]
    if not isinstance(model, torch.nn.Module):
        yield
        return
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


@contextlib.contextmanager
def _tf32(allowed: bool) -> Iterator[None]:
    """Sets TF32 for convolutions and matmuls while IG runs (off unless asked), then restores
    the user's flags.

    PyTorch lets cuDNN convolutions use TF32 by default. Its 10-bit mantissa puts noise of about
    1e-3 into every gradient: on an H100 the Gauss-Legendre attribution error of EfficientNet-Lite0
    then stalls near 2 % instead of falling as 1/n. Mixed precision is an explicit choice, never a
    silent default.
    """
    torch = sys.modules["torch"]
    flags = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = allowed
    torch.backends.cuda.matmul.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags


def _model_place(model: object) -> tuple[Any, Any]:
    """The device and dtype of the model's first floating parameter (else buffer); the CPU and
    None for a model without either."""
    torch = sys.modules["torch"]
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            if p.is_floating_point():
                return p.device, p.dtype
        for b in model.buffers():
            if b.is_floating_point():
                return b.device, b.dtype
    return torch.device("cpu"), None


class TorchSession:
    """A ``Session`` (see ``igkit.backends.base``) for torch modules and callables."""

    capabilities = CAPABILITIES
    default_channel_axis = 1

    def __init__(self, model: object, options: SessionOptions) -> None:
        import torch

        self._torch = torch
        self._model: Any = model
        self._opts = options
        self.device, model_dtype = _model_place(model)
        if options.dtype is not None:
            self._tdtype = getattr(torch, np.dtype(options.dtype).name)
        else:
            self._tdtype = model_dtype or getattr(torch, options.fallback_dtype())
        self.dtype = np.dtype(str(self._tdtype).removeprefix("torch."))
        self._transform = _output_transform(options.output)
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(_eval_mode(model))
        self._stack.enter_context(_tf32(options.precision == "tf32"))
        half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(options.precision)
        # Autocast runs the model's convolutions and matmuls in half precision; the interpolated
        # input, its gradient and every sum stay in the compute dtype.
        self._autocast = (
            (lambda: torch.autocast(self.device.type, dtype=half)) if half is not None
            else contextlib.nullcontext
        )
        self._sums: Any = None
        self._scores: list = []
        self._grads: list = []
        self._checked = False
        # method="secant": the operations it could not verify as linear, and the summed
        # |completeness residual| of its pieces (rounding only, when every nonlinearity is seen).
        self.unhandled_ops: set[str] = set()
        self.piece_residual = 0.0
        # Activation inputs and output of each distinct baseline (by content), oldest first.
        self._baseline_points: dict[bytes, tuple[list, Any]] = {}

    def close(self) -> None:
        self._stack.close()

    def _t(self, x: np.ndarray, dtype=None):
        return self._torch.as_tensor(x, dtype=dtype or self._tdtype, device=self.device)

    def _scores_of(self, x, raw: bool = False):
        """The transformed ``(n, classes)`` scores; with ``raw``, also the model's own output
        (None for an output callable)."""
        out = self._model(x)
        if not isinstance(out, self._torch.Tensor):
            raise TypeError(
                f"the model returned {type(out).__name__}, not a tensor; pass output= a callable "
                "that picks the class scores from it"
            )
        scores = check_output_shape(self._transform(out), x.shape[0])
        if not raw:
            return scores
        return scores, None if callable(self._opts.output) else check_output_shape(out, len(x))

    def outputs(self, x: np.ndarray) -> np.ndarray:
        return self.outputs_and_raw(x)[0]

    def outputs_and_raw(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Forward only, in batches, as float64 (see ``base.RawOutputSession``)."""
        torch, bs = self._torch, self._opts.batch_size
        outs, raws = [], []
        with torch.no_grad():
            for start in range(0, x.shape[0], bs):
                out, raw = self._oom_guard(
                    lambda s=start: self._scores_of(self._t(x[s : s + bs]), raw=True))
                outs.append(out.to(torch.float64).cpu().numpy())
                if raw is not None:
                    raws.append(raw.to(torch.float64).cpu().numpy())
        return np.concatenate(outs), np.concatenate(raws) if raws else None

    def set_paths(self, inputs, baselines, path_input, path_target) -> None:
        self._base_rows = baselines
        self._base_keys: dict[int, bytes] = {}
        self._base = self._t(baselines)
        x = self._t(inputs)
        self._diff = x[self._t(path_input, self._torch.long)] - self._base
        self._target = self._t(path_target, self._torch.long)
        self._sums = self._torch.zeros_like(self._base)
        self._scores, self._grads = [], []

    def _oom_guard(self, fn):
        try:
            return fn()
        except self._torch.OutOfMemoryError as exc:
            if self.device.type == "cuda":
                self._torch.cuda.empty_cache()
            raise OutOfMemory(str(exc)) from exc

    def accumulate(self, batch: RowBatch) -> None:
        self._oom_guard(lambda: self._accumulate(batch))

    def accumulate_rows(self, rows: RowBatch, batch_size: int) -> None:
        """A whole level: one host-to-device copy of the plan, then batches sliced on device.

        A copy from pageable host memory waits for the GPU to drain, so one copy per batch
        would stall the device between batches. A batch that runs out of memory is retried in
        halves (and later batches keep the smaller size).
        """
        torch = self._torch
        plan = torch.as_tensor(
            np.stack([rows.path.astype(np.float64), rows.alpha, rows.weight]),
            dtype=torch.float64, device=self.device,
        )
        idx_all = plan[0].long()
        alpha_all, weight_all = plan[1].to(self._tdtype), plan[2].to(self._tdtype)
        start, size = 0, batch_size
        while start < len(rows):
            stop = min(len(rows), start + size)
            segments = int(np.count_nonzero(np.diff(rows.path[start:stop]))) + 1
            try:
                self._accumulate_t(idx_all[start:stop], alpha_all[start:stop],
                                   weight_all[start:stop], segments,
                                   _only_path(rows.path[start:stop]))
            except torch.OutOfMemoryError:
                size = self._halved(stop - start, 1, "a single path point")
                continue
            start = stop

    def _halved(self, rows: int, smallest: int, what: str) -> int:
        """The batch size to retry with after ``rows`` rows ran out of memory."""
        if self.device.type == "cuda":
            self._torch.cuda.empty_cache()
        if rows <= smallest:
            raise OutOfMemory(f"out of memory with {what}") from None
        return max(smallest, rows // 2)

    def _points(self, idx, alpha, path: int | None):
        """The path points ``x' + alpha (x - x')`` of each row, in one pass; ``path``: the one
        path of every row, if so (no gathered copies of its baseline and difference then)."""
        alpha = alpha.view((-1,) + (1,) * (self._base.dim() - 1))
        if path is not None:
            base, diff = self._base[path : path + 1], self._diff[path : path + 1]
            return self._torch.addcmul(base, alpha, diff).requires_grad_(True)
        return self._torch.addcmul(self._base[idx], alpha, self._diff[idx]).requires_grad_(True)

    def _grad_t(self, idx, alpha, path: int | None = None):
        torch = self._torch
        with torch.enable_grad():
            xb = self._points(idx, alpha, path)
            with self._autocast():
                out = self._scores_of(xb)
            s = out.to(self._tdtype).gather(1, self._target[idx].view(-1, 1)).squeeze(1)
            if not s.requires_grad:
                raise DisconnectedModelError(_DISCONNECTED)
            (g,) = torch.autograd.grad(s.sum(), xb, allow_unused=True)
        if g is None:
            raise DisconnectedModelError(_DISCONNECTED)
        return idx, g, s

    def _accumulate(self, batch: RowBatch) -> None:
        torch = self._torch
        segments = int(np.count_nonzero(np.diff(batch.path))) + 1 if len(batch) else 0
        self._accumulate_t(self._t(batch.path, torch.long), self._t(batch.alpha),
                           self._t(batch.weight), segments, _only_path(batch.path))

    def _accumulate_t(self, idx, alpha, weight, segments: int, path: int | None = None) -> None:
        """Adds ``weight * grad`` of each row into its path's sum.

        Rows of one path are contiguous, so the batch splits into ``segments`` runs. The
        reduction is one matrix product of a (segments x rows) weight matrix with the gradients:
        an ``index_add_`` of 64 rows into the same path would make every element a 64-way
        atomic collision on CUDA, and the order of atomics makes sums non-deterministic.
        """
        idx, g, s = self._grad_t(idx, alpha, path)
        self._reduce(idx, g, weight, segments)
        self._scores.append(s.detach())
        if self._opts.trace:
            self._grads.append(g.detach().abs().flatten(1).mean(1))

    def _reduce(self, idx, g, weight, segments: int) -> None:
        torch = self._torch
        n = idx.shape[0]
        seg = torch.zeros(n, dtype=torch.long, device=self.device)
        if n > 1:
            seg[1:] = (idx[1:] != idx[:-1]).cumsum(0)
        mix = torch.zeros(segments, n, dtype=g.dtype, device=self.device)
        mix[seg, torch.arange(n, device=self.device)] = weight
        paths = torch.zeros(segments, dtype=torch.long, device=self.device).scatter_(0, seg, idx)
        reduced = (mix @ g.reshape(n, -1)).view(segments, *g.shape[1:])
        self._sums.index_add_(0, paths, reduced)

    def accumulate_intervals(self, rows: RowBatch, batch_size: int) -> np.ndarray:
        """``method="secant"``: integrates each piece between consecutive rows of a path.

        ``rows`` holds every path's points in increasing alpha; a row's weight is the width of
        the piece it starts (0 on a path's last point), and the piece's integral is added to
        the sum of that row's path. The rows are evaluated in batches with secant slopes
        (``igkit.backends.torch_secant``), each row carrying the piece it ends; a batch keeps
        its last row's activation inputs and output for the next batch's first piece, so every
        point is evaluated once. A run that starts at alpha = 0 starts at its baseline, whose
        activation inputs come from one forward pass per distinct baseline, kept for the call,
        so that point costs no row. A batch that runs out of memory is retried in halves.

        Returns:
            The rows evaluated per path index.
        """
        torch = self._torch
        n = len(rows)
        # Row k + 1 carries piece k: its width, and the path whose sum it goes to.
        width = np.zeros(n)
        width[1:] = rows.weight[:-1]
        owner = rows.path.copy()
        owner[1:] = rows.path[:-1]
        # A run's first row at its baseline is left out; the row after it joins the baseline.
        skip = (width == 0) & (rows.alpha == 0) & (rows.weight > 0)
        kept = np.flatnonzero(~skip)
        joined = np.zeros(n, dtype=bool)
        joined[1:] = skip[:-1]
        start, size, before = 0, max(1, batch_size), None
        while start < kept.shape[0]:
            stop = min(kept.shape[0], start + size)
            at = kept[start:stop]
            part = RowBatch(rows.path[at], rows.alpha[at], width[at])
            joins = [(i, int(rows.path[r - 1])) for i, r in enumerate(at) if joined[r]]
            try:
                before = self._interval_batch(part, owner[at], before, joins)
            except torch.OutOfMemoryError:
                size = self._halved(stop - start, 1, "a single point of the path")
                continue
            start = stop
        return np.bincount(rows.path[kept], minlength=int(rows.path.max()) + 1 if n else 0)

    def _baseline_point(self, path: int) -> tuple[list, Any]:
        """Activation inputs and output of path ``path``'s baseline, from one forward pass per
        distinct baseline, kept while they take at most ``_BASELINE_POINTS_BYTES``."""
        from igkit.backends.torch_secant import SecantMode, captured_bytes

        torch = self._torch
        key = self._base_keys.get(path)
        if key is None:
            row = np.ascontiguousarray(self._base_rows[path])
            key = self._base_keys[path] = hashlib.blake2b(row.tobytes(), digest_size=16).digest()
        point = self._baseline_points.get(key)
        if point is None:
            mode = SecantMode(capture=True)
            with torch.enable_grad():
                xb = self._base[path : path + 1].detach().requires_grad_(True)
                with self._autocast(), mode:
                    out = self._model(xb)
            point = (mode.after, out.detach())
            size = captured_bytes(mode.after)
            held = self._baseline_points
            while held and size * (len(held) + 1) > _BASELINE_POINTS_BYTES:
                held.pop(next(iter(held)))
            held[key] = point
        return point

    def _interval_batch(self, part: RowBatch, owner: np.ndarray, before, joins: list):
        """One batch of ``method="secant"``; ``part.weight`` is the width of the piece each
        row ends. ``before``: the previous batch's last row (activation inputs, output), or
        ``None``; ``joins``: ``(row, path)``, that row's piece starts at the path's baseline.
        Returns this batch's last row, for the next."""
        from igkit.backends.torch_secant import SecantMode, interval_seeds

        torch = self._torch
        idx = self._t(part.path, torch.long)
        weight = self._t(part.weight)
        alpha = self._t(part.alpha)
        ends = weight != 0
        starts = [(i, self._baseline_point(p)) for i, p in joins]
        mode = SecantMode(None if before is None else before[0],
                          [(i, point[0]) for i, point in starts])
        with torch.enable_grad():
            xb = self._points(idx, alpha, _only_path(part.path))
            with self._autocast(), mode:
                out = self._model(xb)
            if not isinstance(out, torch.Tensor):
                raise TypeError(
                    f"the model returned {type(out).__name__}, not a tensor; pass output= a "
                    "callable that picks the class scores from it"
                )
            self.unhandled_ops |= mode.unhandled
            seeds, d_score, s, s_start = interval_seeds(
                out, self._transform, self._target[idx], ends,
                None if before is None else before[1], [(i, point[1]) for i, point in starts])
            seeds = seeds * weight.to(seeds.dtype)[:, None]
            if not out.requires_grad:
                raise DisconnectedModelError(_DISCONNECTED)
            (g,) = torch.autograd.grad(out, xb, seeds.to(out.dtype), allow_unused=True)
        if g is None:
            raise DisconnectedModelError(_DISCONNECTED)
        owners = self._t(owner, torch.long)
        segments = int(np.count_nonzero(np.diff(owner))) + 1
        self._reduce(owners, g, torch.ones_like(weight), segments)
        # Each piece's completeness: width * secant gradient . (x - x') = s[k] - s[k-1].
        moved = (g.reshape(len(part), -1).to(torch.float64)
                 * self._diff[idx].reshape(len(part), -1).to(torch.float64)).sum(1)
        self.piece_residual += float((moved - d_score).abs().sum())
        # The scores in path order: a baseline's before the row that joins it.
        cuts = [0] + [i for i, _ in joins] + [len(part)]
        parts = [s[cuts[0] : cuts[1]]]
        for k in range(len(joins)):
            parts += [s_start[k : k + 1], s[cuts[k + 1] : cuts[k + 2]]]
        self._scores.append(torch.cat(parts).to(self._tdtype))
        return mode.after, out[-1:].detach()

    def take(self) -> Taken:
        torch = self._torch
        sums = self._sums.cpu().numpy().astype(np.float64)
        scores = (
            torch.cat(self._scores).to(torch.float64).cpu().numpy()
            if self._scores
            else np.empty(0)
        )
        grads = (
            torch.cat(self._grads).to(torch.float64).cpu().numpy()
            if self._opts.trace and self._grads
            else None
        )
        self._sums.zero_()
        self._scores, self._grads = [], []
        return Taken(sums, scores, grads)


def _only_path(paths: np.ndarray) -> int | None:
    """The path of every row of a batch, if they share one (for ``TorchSession._points``)."""
    return int(paths[0]) if len(paths) and bool(np.all(paths == paths[0])) else None


# method="secant" keeps the activation inputs of at most this many bytes of baselines (about
# 25 MB each for EfficientNet-Lite0 at 224 x 224); at least the one in use.
_BASELINE_POINTS_BYTES = 1 << 28

_DISCONNECTED = (
    "the model's output does not depend on its input (no gradient reaches the input); "
    "check that the model does not detach, round or convert the input to numpy"
)


def _output_transform(output: object):
    import torch

    if callable(output):
        return output
    named: dict[str, Callable[[Any], Any]] = {
        "raw": lambda y: y,
        "softmax": lambda y: torch.softmax(y, dim=-1),
        "sigmoid": torch.sigmoid,
    }
    return named[cast(str, output)]


def open_session(model: object, options: SessionOptions) -> TorchSession:
    return TorchSession(model, options)
