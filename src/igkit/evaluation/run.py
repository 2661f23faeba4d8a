"""Running an evaluation over a source, locally or on Ray, and what it reads.

SOURCE is an image folder, a CSV / Parquet manifest (as for ``explain-dataset``), a folder of
multi-channel examples (with the multi-channel options, as ``igkit explain`` reads microscopy),
or an ``explain-dataset`` store: then its trusted rows are the examples (damaged ones are left
out and named), each is evaluated on the class the store explained, and the store's attributions
are reused for ``integrated_gradients`` instead of being computed again. A store made with
another model is refused (its attributions would not be this model's).

Ground-truth masks for the localisation metrics come from ``--masks DIR``: for an example named
``NAME`` explained for class ``LABEL``, ``DIR/NAME_LABEL.png`` (or ``.npy``), else
``DIR/NAME.png``; non-zero pixels are the region. An example without a mask gets NaN for those
metrics (and is left out of their means).

Examples go through :class:`~igkit.evaluation.job.Evaluator` in batches of ``--batch-size``;
on Ray, each actor of a pool holds one Evaluator (the model loaded once per actor) and the
driver merges the batches' rows, so both engines give the same table.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from igkit.evaluation.job import EvaluatedBatch, EvaluateSettings, Evaluator
from igkit.process import keep_freed_memory
from igkit.workflow.inputs import Input, InputError, channel_inputs, photo_inputs

__all__ = ["EvaluationSource", "open_source", "read_mask", "run_evaluation"]


@dataclass(frozen=True)
class EvaluationSource:
    """The examples to evaluate and, for a store, where its attributions are.

    Attributes:
        inputs: The examples (a store's: with the class it explained as ``target``).
        store: The store's folder, or None.
        masks: The folder of ground-truth masks, or None.
        skipped: Messages about examples left out (a store's damaged ones).
    """

    inputs: tuple[Input, ...]
    store: str | None = None
    masks: str | None = None
    skipped: tuple[str, ...] = ()


def open_source(source: str, settings: EvaluateSettings, masks: str | None = None
                ) -> EvaluationSource:
    """The examples of SOURCE (see the module docstring).

    Raises:
        InputError: A missing or malformed source, a store made with another model, or a
            masks folder that does not exist.
    """
    from igkit.runner.engine import SourceError, read_source

    if masks is not None and not Path(masks).is_dir():
        raise InputError(f"--masks {masks}: no such folder")
    path = Path(source)
    if (path / "store.json").is_file():
        return replace(_open_store(path, settings), masks=masks)
    s = settings.explain
    if s.multichannel:
        return EvaluationSource(tuple(channel_inputs([source], s.channels, s.channel_files)),
                                masks=masks)
    try:
        examples = read_source(source)
    except SourceError as exc:
        raise InputError(str(exc)) from None
    inputs = photo_inputs([e.path for e in examples], expand=False)
    return EvaluationSource(tuple(
        replace(item, id=e.id, label=e.label, target=e.target)
        for item, e in zip(inputs, examples, strict=True)
    ), masks=masks)


def _open_store(path: Path, settings: EvaluateSettings) -> EvaluationSource:
    from igkit.runner.store import DatasetStore, StoreError

    try:
        store = DatasetStore.open(path)
        check = store.check()
    except StoreError as exc:
        raise InputError(str(exc)) from None
    made_with = store.settings.get("model")
    if made_with != settings.explain.model:
        raise InputError(
            f"{path}: the store was made with --model {made_with}, so its attributions explain "
            f"that model, not {settings.explain.model}; pass --model {made_with}"
        )
    rows = [r for r in check.rows if r.get("status") == "ok"]
    if not rows:
        raise InputError(f"{path}: the store holds no explained example")
    inputs = photo_inputs([str(r["path"]) for r in rows], expand=False)
    return EvaluationSource(
        tuple(replace(item, id=int(r["id"]), label=r.get("label"), target=int(r["target"]))
              for item, r in zip(inputs, rows, strict=True)),
        str(path), skipped=tuple(check.messages(path)),
    )


def read_mask(folder: str, name: str, label: str, size: tuple[int, int]) -> np.ndarray:
    """The ground-truth region of example ``name`` for class ``label`` at the model's ``size``
    (all False when there is none: its localisation metrics are then NaN)."""
    from igkit.io.images import load_image

    base = Path(folder)
    for stem in (f"{name}_{label}", name):
        for suffix in (".npy", ".png"):
            file = base / f"{stem}{suffix}"
            if not file.is_file():
                continue
            if suffix == ".npy":
                mask = np.load(file, allow_pickle=False)
            else:
                image = load_image(file)
                mask = image.max(axis=-1) if image.ndim == 3 else image
            mask = np.asarray(mask, dtype=np.float64) > 0
            if mask.shape != size:
                from skimage.transform import resize

                mask = resize(mask.astype(np.float64), size, order=0, anti_aliasing=False) > 0.5
            return mask
    return np.zeros(size, dtype=bool)


def _stored(source: EvaluationSource, evaluator: Evaluator,
            inputs: Sequence[Input]) -> dict[str, np.ndarray] | None:
    """The store's IG attributions of ``inputs`` in the model's layout, when asked for."""
    if source.store is None or "integrated_gradients" not in evaluator.settings.methods:
        return None
    from igkit.runner.store import DatasetStore

    store = DatasetStore.open(source.store)
    hwc = np.stack([store.attributions(item.id) for item in inputs])
    return {"integrated_gradients": evaluator.model.to_model_layout(hwc)}


def evaluate_examples(
    evaluator: Evaluator, source: EvaluationSource, inputs: Sequence[Input]
) -> EvaluatedBatch:
    """One batch: read and predict the examples, targets as the source says, then evaluate.
    An example that cannot be read becomes a failure, never a crashed run."""
    out = EvaluatedBatch()
    good, predictions = [], []
    for item in inputs:
        try:
            prediction = evaluator.explainer.predict(item)
        except (ValueError, OSError) as exc:
            out.failures.append((item.where, str(exc)))
            continue
        if item.target is not None:
            prediction = replace(prediction, choice=replace(prediction.choice,
                                                            targets=(int(item.target),)))
        good.append(item)
        predictions.append(prediction)
    if not predictions:
        return out
    masks = None
    if source.masks is not None:
        size = tuple(evaluator.explainer.shape[:2])
        masks = np.stack([
            read_mask(source.masks, item.name, evaluator.explainer.label(p.targets[0]),
                      (int(size[0]), int(size[1])))
            for item, p in zip(good, predictions, strict=True)
        ])
    out.merge(evaluator.evaluate(predictions, [item.id for item in good],
                                 _stored(source, evaluator, good), masks=masks))
    return out


def run_evaluation(
    settings: EvaluateSettings,
    source: EvaluationSource,
    *,
    engine: str = "local",
    workers: int = 1,
    evaluator: Evaluator | None = None,
    progress: Callable[[int], None] | None = None,
) -> EvaluatedBatch:
    """Evaluate every example of ``source`` (``engine`` "local" or "ray")."""
    batch = max(1, settings.explain.batch_size)
    chunks = [list(range(i, min(i + batch, len(source.inputs))))
              for i in range(0, len(source.inputs), batch)]
    total = EvaluatedBatch()
    if engine == "ray":
        for done in _ray_batches(settings, source, chunks, workers):
            total.merge(done)
            if progress is not None:
                progress(len({r["example"] for r in done.rows}) + len(done.failures))
        return total
    evaluator = evaluator or Evaluator(settings)
    for chunk in chunks:
        done = evaluate_examples(evaluator, source, [source.inputs[i] for i in chunk])
        total.merge(done)
        if progress is not None:
            progress(len(chunk))
    return total


class EvaluateActor:
    """A Ray Data callable class: one Evaluator per actor, batches of examples per call."""

    def __init__(self, settings: EvaluateSettings, source: EvaluationSource) -> None:
        keep_freed_memory()  # the actor's process is igkit's (igkit.process)
        self.evaluator = Evaluator(settings)
        self.source = source

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        inputs = [self.source.inputs[int(i)] for i in batch["index"]]
        done = evaluate_examples(self.evaluator, self.source, inputs)
        curves = {f"{m}\t{k}": [f.tolist(), s.tolist(), c]
                  for (m, k), (f, s, c) in done.curves.items()}
        text = json.dumps({"rows": done.rows, "failures": done.failures, "notes": done.notes,
                           "curves": curves})
        return {"done": np.asarray([text], dtype=object)}


def _ray_batches(settings: EvaluateSettings, source: EvaluationSource,
                 chunks: Sequence[Sequence[int]], workers: int) -> Any:
    import ray

    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    items = [{"index": i} for chunk in chunks for i in chunk]
    if not items:
        return
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    dataset = ray.data.from_items(items, override_num_blocks=max(1, len(chunks)))
    mapped = dataset.map_batches(
        EvaluateActor, fn_constructor_kwargs={"settings": settings, "source": source},
        batch_size=max(1, settings.explain.batch_size), batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=workers),
    )
    for out in mapped.iter_batches(batch_size=None, batch_format="numpy"):
        for text in out["done"]:
            found = json.loads(text)
            done = EvaluatedBatch(rows=found["rows"],
                                  failures=[tuple(f) for f in found["failures"]],
                                  notes=[tuple(n) for n in found["notes"]])
            for key, (f, s, c) in found["curves"].items():
                method, metric = key.split("\t")
                done.curves[(method, metric)] = (np.asarray(f), np.asarray(s), int(c))
            yield done
