"""PyTorch layers for the layer attribution methods: a named module's output, read or replaced,
its gradient, and input gradients through a modified ReLU backward.

``igkit.methods.layers`` (Grad-CAM, guided backprop, layer IG, ...) reaches a torch model only
through ``TorchLayers``: layers are modules named as ``model.named_modules()`` names them.

* The layer's output is caught by a forward hook that returns a fresh leaf in its place (the
  activation, or values given to replace it), so its gradient is one ``autograd.grad`` and an
  in-place operation after the layer (``nn.ReLU(inplace=True)``) acts on a copy, never on the
  leaf. A module that runs more than once per forward pass (a shared ``nn.ReLU``) is refused:
  its output is not one tensor.
* Guided backprop and DeconvNet swap the backward pass of every ReLU, modules and functional
  calls alike (``F.relu``, ``torch.relu``, ``Tensor.relu`` and their in-place forms), through a
  ``TorchFunctionMode`` for the duration of one batch. Captum hooks ``nn.ReLU`` modules only,
  which misses the functional ReLUs most torchvision blocks and timm models call.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from igkit.backends.base import DisconnectedModelError

__all__ = ["ReluRuleMode", "TorchLayers"]

#: The ReLU calls a ``ReluRuleMode`` swaps, and whether each works in place.
_RELUS: dict[Any, bool] = {
    torch.relu: False,
    torch.relu_: True,
    torch.nn.functional.relu: False,
    torch.nn.functional.relu_: True,
    torch.Tensor.relu: False,
    torch.Tensor.relu_: True,
}


class _RuleRelu(torch.autograd.Function):
    """ReLU forward; backward by ``rule``: "guided" passes ``relu(grad) * (x > 0)`` (Springenberg
    et al.), "deconvnet" passes ``relu(grad)`` whatever the forward's sign (Zeiler & Fergus)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, rule: str, inplace: bool) -> torch.Tensor:
        ctx.rule = rule
        if rule == "guided":
            ctx.save_for_backward(x > 0)
        if inplace:
            ctx.mark_dirty(x)
            return x.clamp_(min=0)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        passed = grad.clamp(min=0)
        if ctx.rule == "guided":
            (positive,) = ctx.saved_tensors
            passed = passed * positive
        return passed, None, None


class ReluRuleMode(TorchFunctionMode):
    """Every ReLU called while active runs with ``_RuleRelu``'s backward (see the module
    docstring); ``seen`` counts them, so a model without ReLUs can be told apart."""

    def __init__(self, rule: str) -> None:
        super().__init__()
        self.rule = rule
        self.seen = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inplace = _RELUS.get(func)
        if inplace is None:
            return func(*args, **kwargs)
        x = args[0] if args else kwargs["input"]
        inplace = inplace or bool(kwargs.get("inplace", args[1] if len(args) > 1 else False))
        self.seen += 1
        return _RuleRelu.apply(x, self.rule, inplace)


class TorchLayers:
    """The layers of one torch model in an open ``TorchSession``.

    Args:
        session: The ``igkit.backends.torch.TorchSession`` of the call (its device, dtype and
            output transform are used, so scores are the ones the other methods explain).
        model: The model the session runs.
    """

    channel_axis = 1  # of a convolution's output: (N, C, H, W)

    def __init__(self, session: Any, model: object) -> None:
        self._session = session
        self._model: Any = model
        self._tdtype = getattr(torch, session.dtype.name)
        self._modules: dict[str, torch.nn.Module] = (
            {name: m for name, m in model.named_modules() if name}
            if isinstance(model, torch.nn.Module) else {}
        )

    # -- naming -------------------------------------------------------------------------------

    def names(self) -> list[str]:
        """The layer names ``layer=`` takes: ``model.named_modules()`` (the root excluded)."""
        return list(self._modules)

    naming = "module names, as model.named_modules() gives them"
    no_layers = (
        "the model is a plain function, not a torch.nn.Module: it has no named layers. Wrap it "
        "in an nn.Module whose submodules are the layers"
    )

    # -- model calls --------------------------------------------------------------------------

    def _t(self, x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x), dtype=self._tdtype, device=self._session.device)

    def _scores(self, xb: torch.Tensor) -> torch.Tensor:
        return self._session._scores_of(xb)  # the transformed (n, classes) output

    def _hooked(
        self, layer: str, xb: torch.Tensor, replace: torch.Tensor | None, grad: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Runs the model on ``xb`` with ``layer``'s output caught (and replaced by
        ``replace`` if given); returns (scores, the leaf standing for the layer's output)."""
        caught: list[torch.Tensor] = []

        def hook(module: torch.nn.Module, args: Any, out: Any) -> torch.Tensor:
            del module, args
            if caught:
                raise ValueError(
                    f"module {layer!r} runs more than once in a forward pass (a shared module), "
                    "so its output is not one tensor; choose a module that runs once"
                )
            if not isinstance(out, torch.Tensor):
                raise ValueError(
                    f"module {layer!r} returns {type(out).__name__}, not a tensor; choose a "
                    "module whose output is one tensor (e.g. a submodule of it)"
                )
            if replace is not None and replace.shape != out.shape:
                raise ValueError(
                    f"module {layer!r} output has shape {tuple(out.shape)}, the values given "
                    f"to replace it {tuple(replace.shape)}"
                )
            value = out if replace is None else replace.to(out.dtype)
            leaf = value.detach().requires_grad_(grad)
            caught.append(leaf)
            # A copy goes on, so that an in-place operation after the layer leaves the leaf.
            return leaf.clone() if grad else leaf

        handle = self._modules[layer].register_forward_hook(hook)
        try:
            with torch.set_grad_enabled(grad):
                scores = self._scores(xb)
        finally:
            handle.remove()
        if not caught:
            raise ValueError(
                f"module {layer!r} did not run in the model's forward pass; choose a module "
                "the forward pass calls"
            )
        return scores, caught[0]

    def output_shapes(self, point: np.ndarray) -> list[tuple[str, tuple[int, ...]]]:
        """(name, output shape without the batch axis) of every module with one tensor output,
        in the order a forward pass at ``point`` (one example, batch axis included) calls
        them."""
        seen: list[tuple[str, tuple[int, ...]]] = []
        handles = [
            module.register_forward_hook(
                lambda m, a, out, name=name: seen.append((name, tuple(out.shape[1:])))
                if isinstance(out, torch.Tensor) else None
            )
            for name, module in self._modules.items()
        ]
        try:
            with torch.no_grad():
                self._scores(self._t(point))
        finally:
            for h in handles:
                h.remove()
        return seen

    def activations(self, layer: str, points: np.ndarray, batch_size: int) -> np.ndarray:
        """Forward only: ``layer``'s output at each point, ``(M, *layer_shape)``."""
        out = []
        for start in range(0, points.shape[0], batch_size):
            _, act = self._hooked(layer, self._t(points[start : start + batch_size]), None, False)
            out.append(act.detach().to(torch.float64).cpu().numpy())
        return np.concatenate(out)

    def gradients(
        self,
        layer: str,
        points: np.ndarray,
        targets: np.ndarray,
        batch_size: int,
        replace: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``layer``'s output at each point (or ``replace``, substituted for it), the gradient
        of the point's target score with respect to it, and the scores.

        Returns:
            ``(activations, gradients, scores)``: ``(M, *layer_shape)`` twice and ``(M,)``.
        """
        acts, grads, scores = [], [], []
        for start in range(0, points.shape[0], batch_size):
            stop = min(points.shape[0], start + batch_size)
            sub = None if replace is None else self._t(replace[start:stop])
            out, leaf = self._hooked(layer, self._t(points[start:stop]), sub, True)
            t = torch.as_tensor(targets[start:stop], dtype=torch.long, device=out.device)
            s = out.gather(1, t[:, None]).squeeze(1)
            if not s.requires_grad:
                raise DisconnectedModelError(
                    f"the explained output does not depend on module {layer!r}'s output"
                )
            (g,) = torch.autograd.grad(s.sum(), leaf, allow_unused=True)
            if g is None:
                raise DisconnectedModelError(
                    f"the explained output does not depend on module {layer!r}'s output"
                )
            acts.append(leaf.detach().to(torch.float64).cpu().numpy())
            grads.append(g.detach().to(torch.float64).cpu().numpy())
            scores.append(s.detach().to(torch.float64).cpu().numpy())
        return np.concatenate(acts), np.concatenate(grads), np.concatenate(scores)

    def scores_replaced(
        self, layer: str, points: np.ndarray, targets: np.ndarray, replace: np.ndarray,
        batch_size: int,
    ) -> np.ndarray:
        """Forward only: the target score at each point with ``layer``'s output replaced."""
        out = []
        for start in range(0, points.shape[0], batch_size):
            stop = min(points.shape[0], start + batch_size)
            s, _ = self._hooked(layer, self._t(points[start:stop]),
                                self._t(replace[start:stop]), False)
            t = torch.as_tensor(targets[start:stop], dtype=torch.long, device=s.device)
            out.append(s.gather(1, t[:, None]).squeeze(1).to(torch.float64).cpu().numpy())
        return np.concatenate(out)

    def relu_gradients(
        self, points: np.ndarray, targets: np.ndarray, batch_size: int, rule: str
    ) -> np.ndarray:
        """The gradient of each point's target score with respect to the input, every ReLU's
        backward replaced by ``rule`` ("guided" or "deconvnet"), ``(M, *input_shape)``.

        Raises:
            ValueError: The model called no ReLU (the rule would change nothing).
        """
        out = []
        for start in range(0, points.shape[0], batch_size):
            stop = min(points.shape[0], start + batch_size)
            xb = self._t(points[start:stop]).requires_grad_(True)
            mode = ReluRuleMode(rule)
            with torch.enable_grad(), mode:
                scores = self._scores(xb)
            if not mode.seen:
                raise ValueError(
                    f"the model calls no ReLU (nn.ReLU, F.relu, torch.relu), so {rule!r} ReLU "
                    "backward changes nothing; use method='saliency' for its plain gradient"
                )
            t = torch.as_tensor(targets[start:stop], dtype=torch.long, device=scores.device)
            s = scores.gather(1, t[:, None]).squeeze(1)
            (g,) = torch.autograd.grad(s.sum(), xb, allow_unused=True)
            if g is None:
                raise DisconnectedModelError("the explained output does not depend on the input")
            out.append(g.detach().to(torch.float64).cpu().numpy())
        return np.concatenate(out)

