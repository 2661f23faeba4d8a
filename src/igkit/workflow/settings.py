"""One typed settings object for an explanation run, and the text forms the CLI accepts.

:class:`ExplainSettings` is everything that decides what a run computes and writes: the model,
how photos become inputs, which classes are explained, the attribution settings, the figures and
the multi-channel options. The command line builds one from its arguments, a notebook passes
keywords to :func:`igkit.explain`, and a dataset run keeps one per store (its
:meth:`ExplainSettings.fingerprint` is what a store is refused or resumed by). It is plain,
frozen, picklable data: Ray ships it to its actors.

The ``parse_*`` functions turn the text a user types (``top3``, ``black,0.5``, ``240x320``)
into settings values and raise ``ValueError`` naming the fix; the CLI wraps them as argparse
types.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

# The attribution defaults are igkit.integrated_gradients' own, so that a notebook, the command
# line and a dataset run compute the same thing unless told otherwise.
from igkit.api import DEFAULT_MAX_STEPS, DEFAULT_METHOD, DEFAULT_STEPS, DEFAULT_TOL

if TYPE_CHECKING:
    from igkit.models.spec import PreprocessMode
    from igkit.typing import Method, Output, Steps
    from igkit.viz.augment import Augmentation

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MAX_STEPS",
    "DEFAULT_METHOD",
    "DEFAULT_MODEL",
    "DEFAULT_STEPS",
    "DEFAULT_THRESHOLD",
    "DEFAULT_TOL",
    "DEFAULT_TOP_K",
    "ExplainSettings",
    "TargetSpec",
    "number_parser",
    "parse_baselines",
    "parse_input_size",
    "parse_steps",
    "parse_target",
]

DEFAULT_MODEL = "efficientnet_lite0"
DEFAULT_BATCH_SIZE = 16
DEFAULT_TOP_K = 3
#: The HPA notebook's confidence threshold for multi-label targets.
DEFAULT_THRESHOLD = 0.4


@dataclass(frozen=True)
class TargetSpec:
    """One requested target: the ``count`` best classes ("top"), a class index, or a name."""

    kind: Literal["top", "index", "label"]
    value: int | str
    text: str


TOP1 = TargetSpec("top", 1, "top1")


def parse_target(text: str) -> TargetSpec:
    """``top1`` / ``topN`` / a class index / a class name, as typed.

    Raises:
        ValueError: For ``top0`` or an empty name.
    """
    text = text.strip()
    top = re.fullmatch(r"top(\d+)", text, flags=re.IGNORECASE)
    if top:
        count = int(top.group(1))
        if count < 1:
            raise ValueError(f"{text!r}: topN needs N >= 1")
        return TargetSpec("top", count, text)
    if re.fullmatch(r"[+-]?\d+", text):
        return TargetSpec("index", int(text), text)
    if not text:
        raise ValueError("empty target")
    return TargetSpec("label", text, text)


def number_parser(
    convert: Callable[[str], Any], accept: Callable[[Any], bool], what: str
) -> Callable[[str], Any]:
    """A parser of numbers typed as text: ``convert`` it, check ``accept``, or raise a
    ValueError saying the text is not ``what``."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise ValueError(f"{text!r} is not {what}") from None
        if not accept(value):
            raise ValueError(f"{text!r} is not {what}")
        return value

    return parse


_step_count = number_parser(int, lambda v: v >= 1, "a positive integer or 'auto'")


def parse_method_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` of a method option (``--option layer=features.3``): the value is read as
    an integer, a number, ``true``/``false``, a comma list of integers (``window=3,8,8``), or
    else kept as text."""
    key, sep, raw = text.partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or not key.isidentifier():
        raise ValueError(f"{text!r} is not KEY=VALUE (e.g. layer=features.3 or samples=20)")
    value: Any = raw
    if raw.lower() in ("true", "false"):
        value = raw.lower() == "true"
    else:
        for convert in (int, float):
            try:
                value = convert(raw)
                break
            except ValueError:
                continue
        else:
            parts = raw.split(",")
            if len(parts) > 1 and all(p.strip().lstrip("-").isdigit() for p in parts):
                value = tuple(int(p) for p in parts)
    return key, value


def parse_steps(text: str) -> Steps:
    """A positive step count or ``auto``."""
    if text.strip().lower() == "auto":
        return "auto"
    return int(_step_count(text))


def parse_input_size(text: str) -> tuple[int, int]:
    """``224`` or ``240x320`` (height x width)."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[x,]\s*(\d+)\s*)?", text)
    if not match or int(match.group(1)) < 1 or (match.group(2) and int(match.group(2)) < 1):
        raise ValueError(f"{text!r} is not N or HxW with positive integers")
    height = int(match.group(1))
    return height, int(match.group(2) or height)


def parse_baselines(text: str) -> tuple[str | float, ...]:
    """``black``, ``white,uniform``, ``0.5``: names or constant pixel values, comma-separated."""
    from igkit.core.baselines import available_baselines

    names = available_baselines()
    items: list[str | float] = []
    for part in (p.strip() for p in text.split(",")):
        if part in names:
            items.append(part)
            continue
        try:
            value = float(part)
        except ValueError:
            raise ValueError(
                f"unknown baseline {part!r}; choose from {', '.join(names)} or a pixel value "
                "in [0, 1], comma-separated to average several"
            ) from None
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"constant baseline {part} is outside [0, 1]")
        items.append(value)
    return tuple(items)


def baseline_text(baselines: tuple[str | float, ...] | list[str | float]) -> str:
    """The baselines as the user would type them: ``black,0.5``."""
    return ",".join(b if isinstance(b, str) else f"{b:g}" for b in baselines)


@dataclass(frozen=True)
class ExplainSettings:
    """Everything that decides what an explanation run computes and writes.

    Attributes:
        model: A model name (``efficientnet_lite0``), file, ``scheme:name`` or
            ``module:function`` (see ``igkit.load_model``).
        weights: A local weights file for models that would otherwise download theirs.
        trust: Allow model formats that can run code when loaded.
        input_size: ``(height, width)`` of the model input; None: the model's own.
        preprocess: "pad", "resize" or "center_crop"; None: the model's own.
        targets: Which classes to explain per input (``topN``, an index, a name); several are
            all explained. Multi-label runs add every class above ``threshold``.
        top_k: Predictions reported per input.
        steps: "auto" (refine until ``tol``) or gradient evaluations per path.
        method: The attribution method: an IG quadrature rule (``igkit.available_methods()``;
            "auto" picks secant or Gauss-Legendre per model, see
            ``igkit.integrated_gradients``) or any name of ``igkit.attribution_methods()``
            ("saliency", "grad_cam", "xrai", ...). ``steps``, ``tol`` and ``max_steps`` are
            Integrated Gradients' settings.
        method_options: The method's own options as ``(name, value)`` pairs (``layer=`` for
            Grad-CAM, ``samples=`` for SmoothGrad, ...), checked against its declaration.
        tol: Relative tolerance of completeness and, for ``steps="auto"``, of the estimated
            attribution error.
        max_steps: The most gradient evaluations per path of ``steps="auto"``.
        batch_size: Path points per model call.
        baseline: Baseline names or constant pixel values; several are averaged.
        output: "softmax", "sigmoid" or "raw"; None: the model's own.
        seed: Seed of random baselines.
        figures: Figure styles to draw per explanation; empty for none.
        augment: Augmentations also explained per input (the TF tutorial's debugging use).
        channels: Names of each multi-channel example's channels, in file order; None for
            photos.
        channel_files: The per-channel file pattern (``{id}_{channel}.png``); None for photos.
        model_channels: The channels the model takes; None: those the model declares.
        multilabel: Explain every class whose output exceeds ``threshold``.
        threshold: The multi-label threshold.
    """

    model: str = DEFAULT_MODEL
    weights: str | None = None
    trust: bool = False
    input_size: tuple[int, int] | None = None
    preprocess: PreprocessMode | None = None
    targets: tuple[TargetSpec, ...] = (TOP1,)
    top_k: int = DEFAULT_TOP_K
    steps: Steps = DEFAULT_STEPS
    method: Method | str = DEFAULT_METHOD
    method_options: tuple[tuple[str, Any], ...] = ()
    tol: float = DEFAULT_TOL
    max_steps: int = DEFAULT_MAX_STEPS
    batch_size: int = DEFAULT_BATCH_SIZE
    baseline: tuple[str | float, ...] = ("black",)
    output: Output | None = None
    seed: int = 0
    figures: tuple[str, ...] = ("panel",)
    augment: tuple[Augmentation, ...] = field(default=())
    channels: tuple[str, ...] | None = None
    channel_files: str | None = None
    model_channels: tuple[str, ...] | None = None
    multilabel: bool = False
    threshold: float = DEFAULT_THRESHOLD

    @property
    def multichannel(self) -> bool:
        """Whether inputs are multi-channel examples (per-channel files or TIFF stacks) and
        targets are labels above the threshold: the microscopy workflow."""
        return bool(
            self.channels or self.channel_files or self.model_channels or self.multilabel
        )

    @property
    def one_target(self) -> bool:
        """Whether each input has exactly one requested class (outputs are then named
        ``NAME.*`` rather than ``NAME_TARGET.*``; multi-channel runs always use the latter)."""
        if self.multichannel or len(self.targets) != 1:
            return False
        spec = self.targets[0]
        return not (spec.kind == "top" and int(spec.value) > 1)

    @property
    def integrated_gradients(self) -> bool:
        """Whether ``method`` is Integrated Gradients (one of its rule names)."""
        from igkit.methods import get_method

        return get_method(self.method).name == "integrated_gradients"

    def replace(self, **changes: Any) -> ExplainSettings:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    def check(self) -> None:
        """Checks that need no model and no inputs: step counts, figure packages.

        Raises:
            ValueError: Naming the setting and the fix.
        """
        from igkit.core.quadrature import check_steps, get_rule
        from igkit.methods import get_method

        spec = get_method(self.method)  # an unknown name: ValueError listing the choices
        if spec.name == "integrated_gradients":
            if self.method_options:
                raise ValueError(
                    f"--option: --method {self.method} takes its settings as --steps, --tol "
                    "and --max-steps, not --option"
                )
            rule = get_rule(self.method)
            try:
                check_steps(rule, self.max_steps if self.steps == "auto" else self.steps)
            except ValueError as exc:
                raise ValueError(f"--steps/--max-steps: {exc}") from None
        else:
            try:
                spec.bind(dict(self.method_options))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"--option: {exc}") from None
        if self.multichannel and (self.augment or set(self.figures) - {"panel"}):
            option = "augment" if self.augment else "figure"
            raise ValueError(
                f"--{option} does not apply to multi-channel examples (they get the sign-mask "
                "and RGBY figures); drop it"
            )

    def fingerprint(self, model_digest: str = "") -> dict[str, Any]:
        """What determines a dataset run's numbers, as JSON-able values (the store's identity).

        ``trust`` is a permission, not a setting, and figures, top-k and augmentation do not
        change a store's numbers, so they are left out. ``model_digest`` identifies a model
        file's contents.
        """
        target = self.targets[0].text if self.targets else "top1"
        return {
            "model": self.model,
            "weights": self.weights,
            "model_digest": model_digest,
            "input_size": list(self.input_size) if self.input_size else None,
            "preprocess": self.preprocess,
            "target": "top1" if target.lower() == "top1" else str(self.targets[0].value),
            "steps": self.steps,
            "method": self.method,
            "tol": self.tol,
            "max_steps": self.max_steps,
            "batch_size": self.batch_size,
            "baseline": list(self.baseline),
            "output": self.output,
            "seed": self.seed,
            # Only when given, so stores of runs without options keep their identity.
            **({"method_options": [[k, list(v) if isinstance(v, tuple) else v]
                                   for k, v in self.method_options]}
               if self.method_options else {}),
        }

    def fingerprint_json(self, model_digest: str = "") -> str:
        """:meth:`fingerprint` as canonical JSON."""
        return json.dumps(self.fingerprint(model_digest), sort_keys=True)
