"""A whole dataset run: validate, open or resume the store, explain what is pending, count.

:func:`prepare_dataset` checks everything a user can get wrong before the first attribution
(the source, the packages, the model, every target, the GPUs a Ray run asks for) and raises
:class:`~igkit.workflow.InputError`; :meth:`DatasetJob.run` opens or creates the store (a store
made with other settings is refused), redoes damaged rows, explains the pending examples on
the local engine or Ray, and returns a :class:`DatasetRun` with the counts. Opening the store
for the run repairs it (:meth:`~igkit.runner.store.DatasetStore.repair`): stale temporaries
go, damaged part files go to its quarantine, damaged and missing examples are redone. ``igkit
explain-dataset`` only parses its arguments and prints these.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from igkit.runner.engine import DatasetExplainer, SourceError, file_digest, read_source
from igkit.runner.store import DatasetStore, Example, StoreRepair
from igkit.workflow.inputs import InputError
from igkit.workflow.settings import ExplainSettings

__all__ = ["DatasetJob", "DatasetRun", "DatasetRunError", "prepare_dataset"]

ENGINES = ("local", "ray")


class DatasetRunError(RuntimeError):
    """The engine failed part-way (e.g. a Ray worker that cannot load the model); the committed
    batches stay and the same run resumes."""


@dataclass(frozen=True)
class DatasetRun:
    """What one run did.

    Attributes:
        examples: Examples in the source (and the store).
        pending: Examples this run set out to explain.
        failed: Of those, how many became failed rows.
        failed_total: Failed rows in the whole store.
        seconds: Wall time of the explaining.
    """

    examples: int
    pending: int
    failed: int
    failed_total: int
    seconds: float

    @property
    def rate(self) -> float:
        """Examples per second over this run."""
        return self.pending / self.seconds if self.seconds > 0 and self.pending else 0.0


def _require_packages(engine: str) -> None:
    missing = []
    for module in ("zarr", "pyarrow", "duckdb") + (("ray",) if engine == "ray" else ()):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        extra = "ray" if missing == ["ray"] else "dataset"
        raise InputError(
            f"explain-dataset needs {', '.join(missing)}: pip install 'igkit[{extra}]'"
        )


@dataclass
class DatasetJob:
    """A validated dataset run, ready to open its store and explain (:func:`prepare_dataset`)."""

    settings: ExplainSettings
    out: Path
    examples: list[Example]
    explainer: DatasetExplainer
    digest: str
    engine: str = "local"
    workers: int = 1
    gpus_per_worker: float = 0.0
    threads: int | None = None

    def run(
        self,
        *,
        commit_every: int = 16,
        progress: bool = True,
        note: Callable[[str], None] = print,
    ) -> DatasetRun:
        """Open or create the store and explain every example not yet in it.

        Args:
            commit_every: Examples per committed batch (at most this many are redone after a
                kill).
            progress: Show a progress bar (rate and ETA) on stderr.
            note: Where to say that the run resumes or redoes damaged rows.

        Raises:
            InputError: For a store made with other settings, locked by another run, or a GPU
                request the Ray cluster cannot meet.
            DatasetRunError: If the Ray run fails part-way.
        """
        from igkit.runner.local import run_local
        from igkit.runner.store import StoreError
        from igkit.workflow.progress import Progress

        try:
            store = DatasetStore.create_or_open(
                self.out, self.settings.fingerprint(self.digest), self.examples,
                self.explainer.shape, lock=True,
            )
        except StoreError as exc:
            raise InputError(str(exc)) from None
        try:
            repair = store.repair(self.examples)
        except BaseException as exc:
            store.unlock()
            if isinstance(exc, StoreError):
                raise InputError(str(exc)) from None
            raise
        _note_repair(store, repair, note)
        done = store.done_ids()
        pending = [e for e in self.examples if e.id not in done]
        if done:
            note(f"resuming: {len(done)} of {len(self.examples)} example(s) already in {self.out}")
        bar = Progress(len(self.examples), initial=len(done), enabled=progress)
        started = time.perf_counter()
        try:
            if self.engine == "ray":
                failed = self._run_ray(store, pending, commit_every, bar)
            else:
                failed = run_local(
                    self.explainer, store, pending, commit_every=commit_every, progress=bar
                )
        finally:
            bar.close()
            store.unlock()
        seconds = time.perf_counter() - started
        failed_total = store.query(
            "select count(*) from results where status = 'failed'"
        ).fetchall()[0][0]
        return DatasetRun(len(self.examples), len(pending), failed, int(failed_total), seconds)

    def _run_ray(
        self, store: object, pending: list[Example], commit_every: int, bar: object
    ) -> int:
        import ray.exceptions

        from igkit.runner.ray_engine import run_ray

        try:
            return run_ray(
                self.settings, store, pending, workers=self.workers,  # type: ignore[arg-type]
                gpus_per_worker=self.gpus_per_worker, commit_every=commit_every,
                threads=self.threads, model_digest=self.digest, progress=bar,  # type: ignore[arg-type]
            )
        except ValueError as exc:  # e.g. more GPUs asked for than the cluster has
            raise InputError(str(exc)) from None
        except ray.exceptions.RayError as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            raise DatasetRunError(
                f"the Ray run failed ({type(exc).__name__}: {first}); run the same command "
                "again to resume"
            ) from None


def _note_repair(store: DatasetStore, repair: StoreRepair, note: Callable[[str], None]) -> None:
    """Say what opening the store for the run repaired."""
    out = store.root.as_posix()
    if store.restored:
        note(f"igkit: wrote {out}/store.json again (it was damaged: {store.restored}); the "
             "store's images, array and rows agree with this command")
    if repair.temporaries:
        note(f"igkit: removed {len(repair.temporaries)} temporary file(s) a killed run left in "
             f"{out}")
    for name in repair.rewritten:
        note(f"igkit: wrote {out}/{name} again (it was damaged)")
    if repair.moved:
        names = ", ".join(rel for rel, _ in repair.moved)
        note(f"igkit: moved {len(repair.moved)} damaged or duplicate file(s) to "
             f"{out}/quarantine/: {names}")
    if repair.redo:
        note(f"igkit: redoing {len(repair.redo)} example(s) whose rows or attributions were "
             "damaged")


def prepare_dataset(
    settings: ExplainSettings,
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    engine: str = "local",
    workers: int = 1,
    gpus_per_worker: float = 0.0,
    threads: int | None = None,
) -> DatasetJob:
    """Validate a dataset run before anything is computed or written.

    Args:
        settings: One target per example (``top1``, an index or a name); a manifest's
            ``target`` column overrides it per example.
        source: An image folder or a CSV / Parquet manifest.
        out: The store folder.
        engine: "local" (one process, prefetching) or "ray" (an actor pool).
        workers: Ray actors, each holding the model.
        gpus_per_worker: GPUs per Ray actor.
        threads: PyTorch threads per process or actor.

    Raises:
        InputError: Naming the problem and the fix.
    """
    from igkit.workflow.outputs import check_out_dir

    spec = settings.targets[0] if settings.targets else None
    if len(settings.targets) > 1 or (spec is not None and spec.kind == "top" and spec.value != 1):
        text = ",".join(s.text for s in settings.targets)
        raise InputError(
            f"--target {text}: explain-dataset explains one class per example; use "
            "top1, a class index or a class name"
        )
    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r}; choose {' or '.join(ENGINES)}")
    if engine != "ray" and (workers != 1 or gpus_per_worker):
        raise InputError("--workers and --gpus-per-worker need --engine ray")
    check_out_dir(Path(out))
    if settings.weights:
        settings = settings.replace(weights=str(Path(settings.weights).resolve()))
    _require_packages(engine)
    try:
        examples = read_source(source)
    except SourceError as exc:
        raise InputError(str(exc)) from None
    digest = file_digest(settings.model)
    explainer = DatasetExplainer(settings, digest, threads=threads)
    classes = explainer.workflow.classes()
    explainer.workflow.fixed_targets()
    for example in examples:
        if example.target is not None and not 0 <= example.target < classes:
            raise InputError(
                f"{source}: target {example.target} of {example.path} is out of range, "
                f"the model has classes 0..{classes - 1}"
            )
    if engine == "ray" and gpus_per_worker:
        from igkit.runner.ray_engine import check_gpus

        try:  # before the store exists: a request the cluster cannot meet writes nothing
            check_gpus(workers, gpus_per_worker)
        except ValueError as exc:
            raise InputError(str(exc)) from None
    return DatasetJob(
        settings, Path(out), examples, explainer, digest, engine, workers, gpus_per_worker,
        threads,
    )
