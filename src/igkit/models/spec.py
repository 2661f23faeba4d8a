"""What a model loader hands back: the model plus everything needed to feed and read it.

A :class:`LoadedModel` is the contract between :mod:`igkit.models.sources` and the command line.
Its callable always takes RGB pixel values in [0, 1] (any normalisation the network needs is
inside it), so baselines live in pixel space: the TF tutorial's black baseline is black pixels,
whatever mean/std or ``preprocess_input`` the network was trained with.

Only numpy is imported here: a model is run by its framework's backend
(``igkit.backends.<framework>.predict``), which imports the framework.
"""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from igkit.typing import OutputSpec, TargetSpec

if TYPE_CHECKING:
    from igkit.core.result import Result

__all__ = [
    "FRAMEWORKS",
    "PREPROCESS_MODES",
    "AmbiguousLabel",
    "Framework",
    "LabelNotFound",
    "LoadedModel",
    "PreprocessMode",
    "find_label",
    "guess_labels",
    "transform_outputs",
]

Framework = Literal["torch", "tensorflow", "jax"]
PreprocessMode = Literal["pad", "resize", "center_crop"]

#: Frameworks a loaded model may run on (the names of igkit's backends).
FRAMEWORKS: tuple[str, ...] = ("torch", "tensorflow", "jax")
#: Image preprocessing presets: the TF tutorial's aspect-preserving resize with black padding,
#: the Keras example's plain resize, and a centre crop (see :func:`igkit.io.images.preprocess`).
PREPROCESS_MODES: tuple[str, ...] = ("pad", "resize", "center_crop")


@dataclass(frozen=True)
class LoadedModel:
    """A classifier ready to explain, with what the command line needs to know about it.

    Attributes:
        model: The callable to differentiate: a ``torch.nn.Module``, a Keras model or
            ``tf.Module``, or a JAX function. It takes a batch of RGB pixels in [0, 1] in its
            own layout (see ``channels_first``) and returns per-class outputs ``(N, classes)``.
        framework: "torch", "tensorflow" or "jax": which igkit backend runs it.
        channels_first: True for NCHW input (PyTorch), False for NHWC (TensorFlow, JAX).
        input_size: ``(height, width)`` of the images the model was trained on.
        preprocess: How an arbitrary photo becomes an ``input_size`` image: "pad", "resize" or
            "center_crop".
        labels: Class names indexed like the outputs, or None when unknown.
        name: A short name for messages and output files, e.g. "efficientnet_lite0".
        default_output: What to explain by default: "softmax" for classifiers returning logits,
            "raw" for models that already return probabilities.
        description: One line about where the model and its weights came from.
        channels: Names of the input channels in order, for models of multi-channel images
            (e.g. ``("red", "green", "blue")`` for stains of a microscopy model); None for
            models of RGB photos.
    """

    model: Callable[..., object]
    framework: Framework
    channels_first: bool
    input_size: tuple[int, int]
    preprocess: PreprocessMode
    labels: list[str] | None = None
    name: str = "model"
    default_output: str = "softmax"
    description: str = ""
    channels: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.framework not in FRAMEWORKS:
            raise ValueError(
                f"framework must be one of {', '.join(FRAMEWORKS)}, got {self.framework!r}"
            )
        if self.preprocess not in PREPROCESS_MODES:
            raise ValueError(
                f"preprocess must be one of {', '.join(PREPROCESS_MODES)}, got {self.preprocess!r}"
            )
        height, width = self.input_size
        if not (int(height) > 0 and int(width) > 0):
            raise ValueError(f"input_size must be two positive ints, got {self.input_size!r}")
        if not callable(self.model):
            raise TypeError(f"model must be callable, got {type(self.model).__name__}")

    @property
    def channel_axis(self) -> int:
        """Axis of a model-layout batch that holds the colour channels."""
        return 1 if self.channels_first else 3

    def to_model_layout(self, images_nhwc: np.ndarray) -> np.ndarray:
        """A batch of HWC images ``(N, H, W, C)`` in the model's own layout, C-contiguous."""
        images_nhwc = np.asarray(images_nhwc, dtype=np.float32)
        if images_nhwc.ndim != 4:
            raise ValueError(f"expected an (N, H, W, C) batch, got shape {images_nhwc.shape}")
        if self.channels_first:
            return np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2))
        return np.ascontiguousarray(images_nhwc)

    def to_hwc(self, array: np.ndarray) -> np.ndarray:
        """One example or a batch in the model's layout, back to channels-last."""
        array = np.asarray(array)
        if not self.channels_first:
            return array
        if array.ndim == 3:
            return array.transpose(1, 2, 0)
        return array.transpose(0, 2, 3, 1)

    def explain(self, x: np.ndarray, target: TargetSpec, settings: Any, output: OutputSpec,
                return_path: bool = False) -> Result:
        """``igkit.integrated_gradients`` on a batch already in the model's layout, with the
        run settings of a command or dataset run (``settings`` has ``baseline``, ``steps``,
        ``method``, ``batch_size``, ``tol``, ``seed`` and ``max_steps``). Inputs are in [0, 1].
        ``NotConvergedWarning`` is silenced: every caller reports convergence itself."""
        import warnings

        import igkit
        from igkit.core.engine import NotConvergedWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotConvergedWarning)
            return igkit.integrated_gradients(
                self.model, x, target=target, baseline=list(settings.baseline),
                steps=settings.steps, method=settings.method, output=output,
                batch_size=settings.batch_size, tol=settings.tol, seed=settings.seed,
                max_steps=settings.max_steps, channel_axis=self.channel_axis,
                input_range=(0.0, 1.0), batched=True, return_path=return_path,
            )

    def predict(self, images_nhwc: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """Raw model outputs ``(N, classes)`` as float64 for a batch of HWC images in [0, 1].

        Forward only (no gradients), in batches of ``batch_size``, by
        ``igkit.backends.<framework>.predict`` (torch: eval mode, on the model's own device and
        in its dtype).

        Raises:
            ValueError: If the model does not return one row of class scores per image.
        """
        x = self.to_model_layout(images_nhwc)
        # The framework's forward pass lives in its backend, which imports the framework.
        backend = importlib.import_module(f"igkit.backends.{self.framework}")
        chunks = [
            backend.predict(self.model, x[s : s + batch_size])
            for s in range(0, len(x), batch_size)
        ]
        out = np.concatenate(chunks, axis=0) if chunks else np.empty((0, 0))
        if out.ndim == 1 and out.shape[0] == x.shape[0]:
            out = out[:, None]
        if out.ndim != 2 or out.shape[0] != x.shape[0]:
            raise ValueError(
                f"model {self.name!r} returned outputs of shape {out.shape} for {x.shape[0]} "
                "images; igkit needs one row of class scores per image, (N, classes)"
            )
        return out


def transform_outputs(raw: np.ndarray, output: str) -> np.ndarray:
    """Apply the named output transform ("raw", "softmax", "sigmoid") to raw outputs in numpy.

    The same transforms the backends differentiate, so printed probabilities and the explained
    score agree.
    """
    raw = np.asarray(raw, dtype=np.float64)
    if output == "raw":
        return raw
    if output == "softmax":
        z = np.exp(raw - raw.max(axis=-1, keepdims=True))
        return z / z.sum(axis=-1, keepdims=True)
    if output == "sigmoid":
        return 1.0 / (1.0 + np.exp(-raw))
    raise ValueError(f"unknown output {output!r}; choose raw, softmax or sigmoid")


def guess_labels(num_classes: int) -> list[str] | None:
    """Class names for a model whose labels are not known, from its number of outputs.

    1000 outputs are read as ImageNet-1k; 1001 as ImageNet with a "background" class at 0
    (the TF-Slim / TF-Hub convention of the TF tutorial's Inception V1). Anything else: None.
    """
    from igkit.models.imagenet import imagenet_labels

    if num_classes == 1000:
        return imagenet_labels()
    if num_classes == 1001:
        return ["background", *imagenet_labels()]
    return None


class LabelNotFound(KeyError):
    """No class has the name asked for; ``candidates`` are the indices of close names (a
    partial match or a likely typo), best first, possibly none, and ``hint`` the part of the
    message that names them ("did you mean 285 'Egyptian cat'?"), or ""."""

    def __init__(self, message: str, candidates: Sequence[int] = (), hint: str = "") -> None:
        super().__init__(message)
        self.candidates = list(candidates)
        self.hint = hint

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class AmbiguousLabel(ValueError):
    """Several classes match the name equally well; ``candidates`` are their indices."""

    def __init__(self, message: str, candidates: Sequence[int]) -> None:
        super().__init__(message)
        self.candidates = list(candidates)


#: How many candidate classes a message names before "and N more".
_SHOWN = 8


def _normal(text: str) -> str:
    """Case-folded, underscores as spaces (``Egyptian_cat``), runs of spaces as one."""
    return " ".join(text.replace("_", " ").casefold().split())


def _shown(labels: Sequence[str], hits: Sequence[int]) -> str:
    shown = ", ".join(f"{i} {labels[i]!r}" for i in hits[:_SHOWN])
    return shown + (f" and {len(hits) - _SHOWN} more" if len(hits) > _SHOWN else "")


def find_label(labels: Sequence[str], query: str) -> int:
    """The index of the class ``query`` names, case-insensitively.

    Tried in order, the first rule with a match decides: the full name ("Egyptian cat"), one
    of its comma-separated synonyms ("bobsleigh" of "bobsled, bobsleigh, bob"), whole words of
    a name ("persian" in "Persian cat"). A rule that matches several classes is ambiguous
    ("cat": tabby cat, tiger cat, Persian cat, ...), and a name that is only part of a word
    ("cat" of "catamaran") or a near miss ("egyptain cat") is not taken: it raises with the
    candidates, so a name never explains a class the user did not mean. Underscores count as
    spaces.

    Raises:
        LabelNotFound: (a KeyError) No class has that name, whole name, synonym or word; the
            message names the classes containing it as part of a word or, failing that, the
            closest names ("did you mean ...").
        AmbiguousLabel: (a ValueError) The deciding rule matches several classes; the message
            names them (up to eight, with indices).
    """
    wanted = _normal(query)
    if not wanted:
        raise LabelNotFound("empty class name")
    names = [_normal(label) for label in labels]
    synonyms = [[part.strip() for part in name.split(",")] for name in names]
    word = re.compile(rf"(?<!\w){re.escape(wanted)}(?!\w)")
    rules: tuple[tuple[str, Callable[[int], bool]], ...] = (
        ("names", lambda i: names[i] == wanted),
        ("is a synonym of", lambda i: wanted in synonyms[i]),
        ("is a word of", lambda i: word.search(names[i]) is not None),
    )
    for how, rule in rules:
        hits = [i for i in range(len(names)) if rule(i)]
        if len(hits) == 1:
            return hits[0]
        if hits:
            raise AmbiguousLabel(
                f"class name {query!r} is ambiguous: it {how} {len(hits)} classes, "
                f"{_shown(labels, hits)}; pass one of them by its full name or index",
                hits,
            )
    missing = f"no class is named {query!r}"
    partial = [i for i, name in enumerate(names) if wanted in name]
    if partial:
        hint = f"it is only part of a word of {_shown(labels, partial)}"
        raise LabelNotFound(f"{missing}; {hint}; pass a full name or an index", partial, hint)
    # A typo: the closest full names and synonyms, each class once, best first.
    owner: dict[str, int] = {}
    for i, parts in enumerate(synonyms):
        for text in (names[i], *parts):
            owner.setdefault(text, i)
    close = difflib.get_close_matches(wanted, list(owner), n=3 * _SHOWN, cutoff=0.75)
    near = list(dict.fromkeys(owner[text] for text in close))[:6]
    if near:
        hint = f"did you mean {_shown(labels, near)}?"
        raise LabelNotFound(f"{missing}; {hint}", near, hint)
    raise LabelNotFound(missing)
