"""The Ray engine: Ray Data ``map_batches`` over an actor pool that holds the model.

Each actor builds one :class:`~igkit.runner.engine.Explainer` (the model is loaded once per
actor) and explains the examples of the batches Ray gives it, decoding the images itself. The
driver streams the finished batches back and commits them to the store exactly as the local
engine does, so both engines produce the same store: every example is explained by the same
code with the same settings, one example at a time.

Ray is imported only here; ``pip install 'igkit[ray]'``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from igkit.process import keep_freed_memory
from igkit.runner.engine import DatasetExplainer
from igkit.runner.store import DatasetStore, Example
from igkit.workflow.progress import Progress
from igkit.workflow.settings import ExplainSettings

__all__ = ["ExplainActor", "check_gpus", "run_ray"]


class ExplainActor:
    """A Ray Data callable class: loads the model in ``__init__``, explains batches in ``__call__``.

    Args:
        settings: The run's settings (Ray pickles them to the actor).
        model_digest: Identifies a model file's contents, for the rows.
        threads: PyTorch intra-op threads per actor (None: the default Ray sets up, one per
            CPU the actor holds).
        use_gpu: Move a PyTorch model to the GPU Ray assigned to this actor.
    """

    def __init__(
        self,
        settings: ExplainSettings,
        model_digest: str = "",
        threads: int | None = None,
        use_gpu: bool = False,
    ) -> None:
        keep_freed_memory()  # the actor's process is igkit's (igkit.process)
        self.explainer = DatasetExplainer(
            settings, model_digest, threads=threads, device="cuda" if use_gpu else None
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Explain a batch of examples (columns id, path, label, target)."""
        rows: list[str] = []
        attributions: list[np.ndarray] = []
        shape = self.explainer.shape
        for i in range(len(batch["id"])):
            label = batch["label"][i]
            target = int(batch["target"][i])
            example = Example(
                id=int(batch["id"][i]),
                path=str(batch["path"][i]),
                label=None if label is None or label == "" else str(label),
                target=None if target < 0 else target,
            )
            done = self.explainer.explain_path(example)
            rows.append(json.dumps(done.row))
            attributions.append(
                done.attributions
                if done.attributions is not None
                else np.zeros(shape, dtype=np.float32)
            )
        return {"row": np.asarray(rows, dtype=object), "attributions": np.stack(attributions)}


def check_gpus(workers: int, gpus_per_worker: float) -> None:
    """Join Ray (the cluster ``ray.init()`` finds, or a new local one) and check that it has
    the GPUs asked for.

    Raises:
        ValueError: If ``workers * gpus_per_worker`` exceeds the cluster's GPUs (Ray would
            otherwise wait for them forever).
    """
    import ray

    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    if gpus_per_worker:
        available = float(ray.cluster_resources().get("GPU", 0.0))
        if workers * gpus_per_worker > available:
            raise ValueError(
                f"--workers {workers} x --gpus-per-worker {gpus_per_worker:g} needs "
                f"{workers * gpus_per_worker:g} GPUs; the Ray cluster has {available:g}"
            )


def run_ray(
    settings: ExplainSettings,
    store: DatasetStore,
    pending: Sequence[Example],
    *,
    workers: int = 1,
    gpus_per_worker: float = 0.0,
    commit_every: int = 16,
    threads: int | None = None,
    model_digest: str = "",
    progress: Progress | None = None,
    on_commit: Callable[[list[dict[str, Any]]], None] | None = None,
) -> int:
    """Explain ``pending`` on Ray (the cluster ``ray.init()`` finds, or a local one).

    Returns:
        The number of failed examples.

    Raises:
        ValueError: If ``workers * gpus_per_worker`` exceeds the cluster's GPUs (Ray would
            otherwise wait for them forever).
    """
    import ray

    check_gpus(workers, gpus_per_worker)
    if not pending:
        return 0
    items = [
        {
            "id": e.id,
            "path": e.path,
            "label": e.label or "",
            "target": -1 if e.target is None else e.target,
        }
        for e in pending
    ]
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.execution_options.preserve_order = False
    dataset = ray.data.from_items(items, override_num_blocks=max(1, len(items) // commit_every))
    kwargs: dict[str, Any] = {}
    if gpus_per_worker:
        kwargs["num_gpus"] = gpus_per_worker
    mapped = dataset.map_batches(
        ExplainActor,
        fn_constructor_kwargs={
            "settings": settings,
            "model_digest": model_digest,
            "threads": threads,
            "use_gpu": bool(gpus_per_worker),
        },
        batch_size=commit_every,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=workers),
        **kwargs,
    )
    failed = 0
    for batch in mapped.iter_batches(batch_size=None, batch_format="numpy"):
        rows = [json.loads(text) for text in batch["row"]]
        attributions = {
            row["id"]: batch["attributions"][i]
            for i, row in enumerate(rows)
            if row["status"] == "ok"
        }
        store.commit(rows, attributions)
        bad = sum(r["status"] != "ok" for r in rows)
        failed += bad
        if progress is not None:
            progress.update(len(rows), failed)
        if on_commit is not None:
            on_commit(rows)
    return failed

