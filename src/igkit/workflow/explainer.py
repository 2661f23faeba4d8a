"""The explanation workflow: a model loaded once, inputs predicted, targets chosen, attributed.

:class:`Explainer` is the one implementation behind ``igkit explain`` (photos and multi-channel
microscopy examples), ``igkit demo``, ``igkit explain-dataset`` (local and Ray) and
:func:`igkit.explain`:

1. ``Explainer(settings)`` loads the model and checks the settings against it;
2. :meth:`Explainer.prepare` reads every input (preprocessed to the model's size), predicts them
   in batches and chooses each one's targets: every mistake a user can make is an
   :class:`~igkit.workflow.inputs.InputError` here, before any attribution;
3. :meth:`Explainer.explain` attributes each target (and augmented variants), returning an
   :class:`Explanation` with one :class:`TargetExplanation` per target and variant.

Writing files is :mod:`igkit.workflow.outputs`; printing is the command line's.

Why one module: the three steps share the loaded model's resolved defaults (input size,
preprocessing, output, channels) and the run's settings; split, each step would re-derive them
and the validation of ``prepare`` could drift from what ``explain`` then does.
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from igkit.workflow.inputs import Input, InputError, model_channels
from igkit.workflow.settings import ExplainSettings, baseline_text
from igkit.workflow.targets import Choice, choose_targets, fixed_target, label_of

if TYPE_CHECKING:
    from igkit.core.result import Result
    from igkit.models.spec import LoadedModel
    from igkit.typing import Method, Output

__all__ = ["Explainer", "Explanation", "Prediction", "TargetExplanation", "Variant"]

_SCORE_KIND = {"softmax": "probability", "sigmoid": "sigmoid", "raw": "score"}


@dataclass(frozen=True)
class Variant:
    """One version of an input: the original or an augmentation, with its predictions.

    Attributes:
        name: "original" or the augmentation as typed (``rot90``, ``zoom=0.45``).
        slug: For file names: "" for the original, else e.g. ``zoom0.45``.
        pixels: The model input, ``(H, W, model channels)`` float32 in [0, 1].
        scores: The model's transformed outputs on it, ``(classes,)``.
    """

    name: str
    slug: str
    pixels: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True)
class Prediction:
    """One input read, predicted, and its targets chosen.

    Attributes:
        input: The input.
        image: ``(H, W, C)`` float32 at the model's size, every channel the input has.
        scores: Transformed model outputs (probabilities for softmax), ``(classes,)``.
        choice: The classes to explain and, for multi-label runs, those above the threshold.
    """

    input: Input
    image: np.ndarray
    scores: np.ndarray
    choice: Choice

    @property
    def targets(self) -> tuple[int, ...]:
        """The classes to explain."""
        return self.choice.targets


@dataclass(frozen=True)
class TargetExplanation:
    """One class of one variant of an input, explained.

    Attributes:
        target: The class.
        label: Its name.
        rank: Its rank among the variant's predictions (1 = the top class).
        variant: The variant explained.
        result: A single-target :class:`~igkit.core.result.Result` of one input.
        attributions: ``(H, W, model channels)`` float32, channels last.
        baseline: The first baseline, ``(H, W, model channels)``, exactly as the engine built it.
        seconds: Wall time of the attribution call (shared by the targets it explained).
    """

    target: int
    label: str
    rank: int
    variant: Variant
    result: Result
    attributions: np.ndarray
    baseline: np.ndarray
    seconds: float

    def describe(self) -> str:
        """One line: the class, its rank, and the completeness check in words."""
        on = f" on the {self.variant.name} image" if self.variant.slug else ""
        method = self.result.attribution_method
        name = "IG" if method == "integrated_gradients" else method
        return (
            f"{name} of {self.label} ({self.target}){on}, rank {self.rank}: "
            f"{self.result.completeness_report(0)}; {self.seconds:.1f} s"
        )


@dataclass(frozen=True)
class Explanation:
    """Everything one input's explanation produced.

    Attributes:
        prediction: The input, its image, scores and chosen targets.
        variants: The original and its augmentations.
        targets: One per target and variant, target-major, variant-minor.
        top: The original's top-k predictions as ``(class, name, score)``.
    """

    prediction: Prediction
    variants: tuple[Variant, ...]
    targets: tuple[TargetExplanation, ...]
    top: tuple[tuple[int, str, float], ...] = ()

    def _repr_html_(self) -> str:
        from igkit.workflow.notebook import explanation_html

        return explanation_html(self)


class Explainer:
    """A model loaded once, turning inputs into explanations (see the module docstring).

    Args:
        settings: What to compute (see :class:`~igkit.workflow.settings.ExplainSettings`).
        model: An already loaded model; by default ``settings.model`` is loaded.
        threads: PyTorch intra-op threads for this process (None: torch's default).
        device: Where to run a PyTorch model, e.g. "cuda" (None: where it was loaded).

    Raises:
        InputError: If the model cannot be loaded or does not fit the settings.
    """

    def __init__(
        self,
        settings: ExplainSettings,
        model: LoadedModel | None = None,
        *,
        threads: int | None = None,
        device: str | None = None,
    ) -> None:
        self.settings = settings
        from igkit.api import why_unsupported

        if model is None:
            model = _load(settings)
        if threads is not None or device is not None:
            backend = importlib.import_module(f"igkit.backends.{model.framework}")
            backend.place(model.model, threads=threads, device=device)
        if settings.input_size is not None:
            height, width = settings.input_size
            model = dataclasses.replace(model, input_size=(int(height), int(width)))
        from igkit.methods import get_method

        spec = get_method(settings.method)
        problem = (why_unsupported(model.framework, settings.method)
                   if spec.name == "integrated_gradients" else spec.unsupported(model.framework))
        if problem is not None:
            raise InputError(
                f"--method {settings.method}: --model {settings.model} runs on "
                f"{model.framework}: {problem}"
            )
        self.model = model
        self.preprocess = settings.preprocess or model.preprocess
        self.output = cast("Output", settings.output or model.default_output)
        if settings.multichannel:
            from igkit.io.channels import DEFAULT_CHANNELS

            self.channels: tuple[str, ...] = tuple(settings.channels or DEFAULT_CHANNELS)
            self.model_channels = model_channels(settings.model_channels, model, self.channels)
        else:
            self.channels = self.model_channels = ("red", "green", "blue")
        self.picks = [self.channels.index(c) for c in self.model_channels]
        self._classes: int | None = None
        self._labels: list[str] | None = None
        self._fixed: list[int | None] | None = None

    # ------------------------------------------------------------------------ model facts

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(H, W, model channels)`` of model inputs and of attributions."""
        height, width = self.model.input_size
        return int(height), int(width), len(self.model_channels)

    @property
    def score_kind(self) -> str:
        """What the scores are: "probability", "sigmoid" or "score"."""
        return _SCORE_KIND.get(self.output, "score")

    def classes(self) -> int:
        """Number of model outputs, found by running the model once on a black image."""
        if self._classes is None:
            self._set_classes(self.scores([np.zeros(self.shape, np.float32)]).shape[1])
        return self._classes  # type: ignore[return-value]

    def _set_classes(self, classes: int) -> None:
        from igkit.models.spec import guess_labels

        self._classes = classes
        labels = self.model.labels if self.model.labels is not None else guess_labels(classes)
        # Names that do not fit the outputs would mislabel every class.
        self._labels = labels if labels is not None and len(labels) == classes else None

    @property
    def labels(self) -> list[str] | None:
        """Class names indexed like the outputs, or None."""
        self.classes()
        return self._labels

    def label(self, index: int) -> str:
        """The name of class ``index`` (``class N`` when the model has none)."""
        return label_of(self.labels, index)

    def fixed_targets(self) -> list[int | None]:
        """The requested targets resolved to class indices (None for ``topN``).

        Raises:
            InputError: For a class out of range or an unknown name.
        """
        if self._fixed is None:
            classes = self.classes()
            self._fixed = [
                fixed_target(spec, self.labels, classes, self.model.name)
                for spec in self.settings.targets
            ]
        return self._fixed

    # ------------------------------------------------------------------ reading, predicting

    def read(self, item: Input) -> np.ndarray:
        """One input at the model's size, ``(H, W, C)`` with all its channels.

        Raises:
            igkit.io.images.ImageError, igkit.io.channels.ChannelError: For a file that cannot
                be read (both are ValueErrors naming the file).
        """
        from igkit.io.images import preprocess

        image = item.read()
        return preprocess(image, self.model.input_size, self.preprocess)  # type: ignore[arg-type]

    def pixels(self, image: np.ndarray) -> np.ndarray:
        """The channels of ``image`` the model takes, in its order."""
        if len(self.picks) == image.shape[-1] and self.picks == list(range(image.shape[-1])):
            return image
        return image[..., self.picks]

    def scores(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Transformed model outputs ``(N, classes)`` of HWC images (all their channels).

        Raises:
            InputError: When the model cannot run on them (wrong size or channel count).
        """
        from igkit.models.spec import transform_outputs

        batch = np.stack([self.pixels(image) for image in images])
        try:
            raw = self.model.predict(batch, batch_size=self.settings.batch_size)
        except Exception as exc:  # noqa: BLE001 - any framework's error for a bad input
            # Most often a model made for another input size or channel count: the user's
            # choice of model or options, not a bug of igkit.
            first = (str(exc).strip().splitlines() or [""])[0]
            height, width = self.model.input_size
            if self.settings.multichannel:
                what = (
                    f"{len(self.picks)} channels ({','.join(self.model_channels)}) of "
                    f"{height}x{width} pixels"
                )
                fix = "check --model-channels"
            else:
                what, fix = f"images of {height}x{width} pixels", "check --input-size"
            raise InputError(
                f"--model {self.settings.model}: running it on {what} failed "
                f"({type(exc).__name__}: {first}); {fix}"
            ) from None
        self._check_output(raw)
        return transform_outputs(raw, self.output)

    def _check_output(self, raw: np.ndarray) -> None:
        """Refuse an output transform that would explain softmax(probabilities): the same
        check ``integrated_gradients`` makes, here before any attribution, in the CLI's words."""
        from igkit.core.checks import distribution_rows

        if self.output in ("softmax", "sigmoid") and distribution_rows(raw, np.float32):
            raise InputError(
                f"--output {self.output}: the outputs of --model {self.settings.model} are "
                f"already probabilities (every row is non-negative and sums to 1: the model "
                f"ends in a softmax), so {self.output} would explain {self.output}"
                "(probabilities), not the model's decision; pass --output raw"
            )

    def prepare(self, inputs: Sequence[Input]) -> list[Prediction]:
        """Read and predict every input and choose its targets: the validation of a run.

        Raises:
            InputError: For an unreadable input, a model that cannot run on the inputs, or a
                target that is not a class of the model.
        """
        images: list[np.ndarray] = []
        for item in inputs:
            try:
                images.append(self.read(item))
            except ValueError as exc:  # ImageError, ChannelError: the message names the file
                raise InputError(str(exc)) from None
        rows: list[np.ndarray] = []
        size = self.settings.batch_size
        for start in range(0, len(images), size):
            rows.append(self.scores(images[start : start + size]))
        scores = np.concatenate(rows, axis=0) if rows else np.empty((0, 0))
        if self._classes is None and len(scores):
            self._set_classes(scores.shape[1])
        fixed = self.fixed_targets()
        return [
            self._predicted(item, image, row, fixed)
            for item, image, row in zip(inputs, images, scores, strict=True)
        ]

    def predict(self, item: Input, image: np.ndarray | None = None) -> Prediction:
        """:meth:`prepare` for one input (a dataset run's pace): read errors are raised as
        they are, so a run can record them as the example's failure."""
        image = self.read(item) if image is None else image
        return self._predicted(item, image, self.scores([image])[0], self.fixed_targets())

    def _predicted(
        self, item: Input, image: np.ndarray, scores: np.ndarray, fixed: list[int | None]
    ) -> Prediction:
        if item.target is not None and not 0 <= item.target < scores.shape[0]:
            raise InputError(
                f"{item.where}: target {item.target} is out of range, the model has classes "
                f"0..{scores.shape[0] - 1}"
            )
        s = self.settings
        choice = choose_targets(
            scores, s.targets, fixed, multilabel=s.multilabel, threshold=s.threshold,
            given=item.target,
        )
        return Prediction(item, image, scores, choice)

    def variants(self, prediction: Prediction) -> tuple[Variant, ...]:
        """The original input and its augmentations (``settings.augment``), predicted."""
        pixels = self.pixels(prediction.image)
        original = Variant("original", "", pixels, prediction.scores)
        if not self.settings.augment:
            return (original,)
        from igkit.viz.augment import augment_image

        augmentations = self.settings.augment
        images = [augment_image(pixels, aug) for aug in augmentations]
        scores = self.scores(images)
        return (original,) + tuple(
            Variant(aug.name, aug.slug, image, row)
            for aug, image, row in zip(augmentations, images, scores, strict=True)
        )

    # ------------------------------------------------------------------------- attributing

    def explain(
        self,
        prediction: Prediction,
        variants: Sequence[Variant] | None = None,
        *,
        trace: bool = False,
    ) -> Explanation:
        """Attribute every target of ``prediction`` on every variant.

        All targets of one variant share one attribution call (their paths share batches).

        Args:
            prediction: From :meth:`prepare` or :meth:`predict`.
            variants: From :meth:`variants`; by default the original only.
            trace: Keep the path trace of the original's explanations (saturation figures).
        """
        variants = tuple(variants) if variants is not None else self.variants(prediction)[:1]
        targets = prediction.targets
        per_variant = []
        for variant in variants:
            x = self.model.to_model_layout(variant.pixels[None])
            target: Any = targets[0] if len(targets) == 1 else [list(targets)]
            started = time.perf_counter()
            result = self.attribute(x, target, trace=trace and variant is variants[0])
            seconds = time.perf_counter() - started
            baseline = self.baseline_image(x)
            ranked = np.argsort(-variant.scores, kind="stable")
            done = []
            for single in result.per_target():
                k = int(single.target[0])
                done.append(
                    TargetExplanation(
                        target=k,
                        label=self.label(k),
                        rank=int(np.flatnonzero(ranked == k)[0]) + 1,
                        variant=variant,
                        result=single,
                        attributions=np.ascontiguousarray(
                            self.model.to_hwc(single.attributions[0]), np.float32
                        ),
                        baseline=baseline,
                        seconds=seconds,
                    )
                )
            per_variant.append(done)
        ordered = tuple(
            per_variant[v][t] for t in range(len(targets)) for v in range(len(variants))
        )
        ranked = np.argsort(-prediction.scores, kind="stable")[: max(self.settings.top_k, 1)]
        top = tuple((int(k), self.label(int(k)), float(prediction.scores[k])) for k in ranked)
        return Explanation(prediction, variants, ordered, top)

    def attribute(self, x: np.ndarray, target: Any, *, trace: bool = False) -> Result:
        """The run's attribution method on a batch in the model's layout (pixels in [0, 1]):
        ``igkit.integrated_gradients`` for IG's rules, else ``igkit.attribute`` with the
        method's options.

        For IG, ``NotConvergedWarning`` and ``NothingToAttributeWarning`` are silenced: every
        front end reports them itself (the completeness check in words, the ``completeness``
        column).
        """
        import warnings

        import igkit
        from igkit.core.checks import NothingToAttributeWarning
        from igkit.core.engine import NotConvergedWarning

        s = self.settings
        with warnings.catch_warnings():
            # The completeness check in words says both, in every front end.
            warnings.simplefilter("ignore", NotConvergedWarning)
            warnings.simplefilter("ignore", NothingToAttributeWarning)
            if s.integrated_gradients:
                return igkit.integrated_gradients(
                    self.model.model, x, target=target, baseline=list(s.baseline),
                    steps=s.steps, method=cast("Method", s.method), output=self.output,
                    batch_size=s.batch_size, tol=s.tol, seed=s.seed, max_steps=s.max_steps,
                    channel_axis=self.model.channel_axis, input_range=(0.0, 1.0),
                    batched=True, return_path=trace,
                )
        # Any other method: its map may be all zero (a saturated output), which it warns
        # about by name; that warning is the user's to see.
        return igkit.attribute(
            self.model.model, x, s.method, target=target, baseline=list(s.baseline),
            output=self.output, batch_size=s.batch_size, seed=s.seed,
            channel_axis=self.model.channel_axis, input_range=(0.0, 1.0), batched=True,
            **dict(s.method_options),
        )

    def baseline_image(self, x: np.ndarray) -> np.ndarray:
        """The first baseline (HWC) exactly as the engine builds it for ``x``, for figures and
        npz files: the engine's own builder, context and seed, so random baselines match."""
        from igkit.core.baselines import BaselineContext, make_baselines

        context = BaselineContext(
            inputs=x.astype(np.float32),
            channel_axis=self.model.channel_axis,
            input_range=(0.0, 1.0),
            rng=np.random.default_rng(self.settings.seed),
        )
        _, first = make_baselines(list(self.settings.baseline), context)[0]
        return np.asarray(self.model.to_hwc(first[0]), np.float32)

    # -------------------------------------------------------------------------- describing

    def describe_predictions(self, what: str, scores: np.ndarray) -> list[str]:
        """The top-k predictions of one input or variant, as printed lines."""
        top_k = min(self.settings.top_k, len(scores))
        ranked = np.argsort(-scores, kind="stable")
        lines = [f"{what}: top-{top_k} predictions of {self.model.name} ({self.score_kind}):"]
        for rank, index in enumerate(ranked[:top_k], start=1):
            lines.append(f"  {rank}. {self.label(int(index))} ({int(index)})  {scores[index]:.4f}")
        return lines

    def describe_labels(self, prediction: Prediction) -> list[str]:
        """A multi-label input's predictions in one line, and what is above the threshold."""
        scores = prediction.scores
        shown = np.argsort(-scores, kind="stable")[: max(self.settings.top_k, 1)]
        listed = ", ".join(f"{self.label(int(k))} {scores[k]:.3f}" for k in shown)
        lines = [f"{prediction.input.name}: {self.model.name} ({self.score_kind}): {listed}"]
        if self.settings.multilabel:
            above = ", ".join(self.label(k) for k in prediction.choice.predicted) or "none"
            note = " (explaining the top class)" if prediction.choice.fallback else ""
            lines.append(f"  above {self.settings.threshold:g}: {above}{note}")
        return lines

    @property
    def baseline_text(self) -> str:
        """The baselines as typed, e.g. ``black,0.5``."""
        return baseline_text(self.settings.baseline)


def _load(settings: ExplainSettings) -> LoadedModel:
    from igkit.models.sources import ModelLoadError, load_model

    try:
        return load_model(settings.model, trust=settings.trust, weights=settings.weights)
    except ModelLoadError as exc:
        raise InputError(str(exc)) from None

