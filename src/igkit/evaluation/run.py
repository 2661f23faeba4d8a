"""Running an evaluation over a source, locally or on Ray, and what it reads.

SOURCE is an image folder, a CSV / Parquet manifest (as for ``explain-dataset``), or an
``explain-dataset`` store: then its trusted rows are the examples (damaged ones are left out
and named), each is evaluated on the class the store explained, and the store's attributions
are reused for ``integrated_gradients`` instead of being computed again. A store made with
another model is refused (its attributions would not be this model's).

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
from igkit.runner.store import Example
from igkit.workflow.inputs import Input, InputError, photo_inputs

__all__ = ["EvaluationSource", "open_source", "run_evaluation"]


@dataclass(frozen=True)
class EvaluationSource:
    """The examples to evaluate and, for a store, where its attributions are.

    Attributes:
        examples: The examples (a store's: with the class it explained as ``target``).
        store: The store's folder, or None for images and manifests.
        skipped: Messages about examples left out (a store's damaged ones).
    """

    examples: tuple[Example, ...]
    store: str | None = None
    skipped: tuple[str, ...] = ()


def open_source(source: str, settings: EvaluateSettings) -> EvaluationSource:
    """The examples of SOURCE (see the module docstring).

    Raises:
        InputError: A missing or malformed source, or a store made with another model.
    """
    from igkit.runner.engine import SourceError, read_source

    path = Path(source)
    if (path / "store.json").is_file():
        return _open_store(path, settings)
    try:
        return EvaluationSource(tuple(read_source(source)))
    except SourceError as exc:
        raise InputError(str(exc)) from None


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
    examples = tuple(Example(int(r["id"]), str(r["path"]), r.get("label"), int(r["target"]))
                     for r in rows)
    return EvaluationSource(examples, str(path), tuple(check.messages(path)))


def _inputs(examples: Sequence[Example]) -> list[Input]:
    return photo_inputs([e.path for e in examples], expand=False)


def _stored(source: EvaluationSource, evaluator: Evaluator,
            examples: Sequence[Example]) -> dict[str, np.ndarray] | None:
    """The store's IG attributions of ``examples`` in the model's layout, when asked for."""
    if source.store is None or "integrated_gradients" not in evaluator.settings.methods:
        return None
    from igkit.runner.store import DatasetStore

    store = DatasetStore.open(source.store)
    hwc = np.stack([store.attributions(e.id) for e in examples])
    return {"integrated_gradients": evaluator.model.to_model_layout(hwc)}


def evaluate_examples(
    evaluator: Evaluator, source: EvaluationSource, examples: Sequence[Example]
) -> EvaluatedBatch:
    """One batch: read and predict the examples, targets as the source says, then evaluate.
    An example that cannot be read becomes a failure, never a crashed run."""
    out = EvaluatedBatch()
    good, predictions = [], []
    for example, item in zip(examples, _inputs(examples), strict=True):
        try:
            prediction = evaluator.explainer.predict(item)
        except (ValueError, OSError) as exc:
            out.failures.append((example.path, str(exc)))
            continue
        if example.target is not None:
            prediction = replace(prediction, choice=replace(prediction.choice,
                                                            targets=(int(example.target),)))
        good.append(example)
        predictions.append(prediction)
    if predictions:
        out.merge(evaluator.evaluate(predictions, [e.id for e in good],
                                     _stored(source, evaluator, good)))
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
    chunks = [source.examples[i:i + batch] for i in range(0, len(source.examples), batch)]
    total = EvaluatedBatch()
    if engine == "ray":
        for done in _ray_batches(settings, source, chunks, workers):
            total.merge(done)
            if progress is not None:
                progress(len({r["example"] for r in done.rows}) + len(done.failures))
        return total
    evaluator = evaluator or Evaluator(settings)
    for chunk in chunks:
        done = evaluate_examples(evaluator, source, chunk)
        total.merge(done)
        if progress is not None:
            progress(len(chunk))
    return total


class EvaluateActor:
    """A Ray Data callable class: one Evaluator per actor, batches of examples per call."""

    def __init__(self, settings: EvaluateSettings, source: EvaluationSource) -> None:
        self.evaluator = Evaluator(settings)
        self.source = source

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        examples = [
            Example(int(i), str(p), None, None if int(t) < 0 else int(t))
            for i, p, t in zip(batch["id"], batch["path"], batch["target"], strict=True)
        ]
        done = evaluate_examples(self.evaluator, self.source, examples)
        curves = {f"{m}\t{k}": [f.tolist(), s.tolist(), c]
                  for (m, k), (f, s, c) in done.curves.items()}
        text = json.dumps({"rows": done.rows, "failures": done.failures, "curves": curves})
        return {"done": np.asarray([text], dtype=object)}


def _ray_batches(settings: EvaluateSettings, source: EvaluationSource,
                 chunks: Sequence[Sequence[Example]], workers: int) -> Any:
    import ray

    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    items = [{"id": e.id, "path": e.path, "target": -1 if e.target is None else e.target}
             for chunk in chunks for e in chunk]
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
                                  failures=[tuple(f) for f in found["failures"]])
            for key, (f, s, c) in found["curves"].items():
                method, metric = key.split("\t")
                done.curves[(method, metric)] = (np.asarray(f), np.asarray(s), int(c))
            yield done
