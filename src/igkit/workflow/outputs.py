"""Writing an explanation run: npz files, figures and ``summary.csv``, each atomically.

An output folder holds one run. Before the first file is written, :meth:`OutputFolder.plan`
lists every file the run will write and refuses (``InputError``, nothing written) when one would
overwrite an input, or a file igkit did not write, or when the folder holds an earlier run and
``replace`` is off. Each run keeps a record, :data:`RUN_RECORD` (``igkit-run.json``): the
settings used, the inputs and every file written so far, rewritten atomically after each input;
it is how a later run knows which files are igkit's to replace. A disk that fills up or turns
read-only stops the run with one message (:class:`OutputError`); every file already written is
whole.

Per input and target an :class:`OutputFolder` writes ``NAME.npz`` (``NAME_TARGET.npz`` when an
input has several targets, and always in multi-channel runs) and the figures the settings ask
for; at the end, :meth:`OutputFolder.finish` writes the once-per-run Riemann figure and
``summary.csv``. The npz files hold plain arrays (``np.load(..., allow_pickle=False)`` reads
them): the attributions, the input and first baseline, every number of the Result, every
setting and the printed predictions (see :data:`PHOTO_NPZ_KEYS` and :data:`CHANNEL_NPZ_KEYS`).
Photos and multi-channel examples keep their own column sets, as the CLI has always written
them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from igkit.io.writers import DISK_ERRORS
from igkit.workflow.explainer import Explainer, Explanation, Prediction, TargetExplanation
from igkit.workflow.inputs import InputError
from igkit.workflow.records import (
    CHANNEL_SUMMARY_FIELDS,
    PHOTO_SUMMARY_FIELDS,
    npz_fields,
    summary_row,
)

__all__ = [
    "CHANNEL_SUMMARY_FIELDS",
    "PHOTO_SUMMARY_FIELDS",
    "RUN_RECORD",
    "OutputError",
    "OutputFolder",
    "check_figure_packages",
    "check_out_dir",
]

#: The run's record in its output folder: settings, inputs and every file written.
RUN_RECORD = "igkit-run.json"


class OutputError(OSError):
    """The output folder cannot take more files (full disk, read-only, no permission): the run
    stops; the files already written are whole and listed in the run record."""

_RGBY = ("red", "green", "blue", "yellow")


def check_out_dir(out: Path) -> None:
    """Check that ``out`` is, or can be created as, a writable folder.

    Raises:
        InputError: Naming the folder and the problem.
    """
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"--out {out}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"--out {out}: no permission to write in {existing}")


def check_figure_packages(styles: Sequence[str]) -> None:
    """Check that the packages the figure styles draw with are installed.

    Raises:
        InputError: Naming what to install, or ``--no-figures``.
    """
    try:
        import matplotlib  # noqa: F401 - only checking that it is there

        from igkit.viz.styles import explain_figures  # noqa: F401
    except ImportError as exc:
        raise InputError(
            f"PNG figures need matplotlib and igkit.viz ({exc}); install them with "
            "`pip install igkit[viz]`, or pass --no-figures"
        ) from None
    if "gradvis" in styles:
        try:
            import scipy.ndimage  # noqa: F401 - the Keras clean-up and outlines use it
        except ImportError:
            raise InputError(
                "--figure gradvis needs SciPy: `pip install igkit[viz]`, or leave gradvis out"
            ) from None


class OutputFolder:
    """Where one run's files go, and how each explanation becomes files and summary rows.

    Args:
        out: The folder (created on the first write).
        explainer: The run's explainer (settings, model, labels).
        replace: Replace an earlier run's files in ``out`` (only files its record lists);
            without it a folder holding an earlier run is refused.
    """

    def __init__(
        self, out: str | os.PathLike[str], explainer: Explainer, *, replace: bool = False
    ) -> None:
        self.out = Path(out)
        self.explainer = explainer
        self.settings = explainer.settings
        self.replace = replace
        self.multichannel = self.settings.multichannel
        self.fields = CHANNEL_SUMMARY_FIELDS if self.multichannel else PHOTO_SUMMARY_FIELDS
        self.written: list[str] = []
        self._new: list[str] = []  # files of the input being written
        self._earlier: list[str] = []
        self._inputs: list[str] = []

    @property
    def styles(self) -> tuple[str, ...]:
        """The figure styles drawn per explanation (multi-channel runs draw their own)."""
        return self.settings.figures

    @property
    def needs_trace(self) -> bool:
        """Whether the explanations must keep their path trace (saturation figures)."""
        return "saturation" in self.styles and not self.multichannel

    def check(self) -> None:
        """Before any work: the folder can be written and the figure packages are there."""
        check_out_dir(self.out)
        if self.styles:
            check_figure_packages(self.styles)

    def planned(self, predictions: Sequence[Prediction]) -> list[str]:
        """The names of every file the run will write, in order."""
        names: list[str] = []
        styles = [s for s in self.styles if s != "riemann"]
        for p in predictions:
            name = p.input.name
            if self.multichannel and self.styles and set(self.explainer.channels) >= set(_RGBY):
                names.append(f"{name}_rgby.png")
            for target in p.targets:
                stem = name if self.settings.one_target else f"{name}_{target}"
                names.append(f"{stem}.npz")
                if self.multichannel:
                    names += [f"{stem}.png"] if self.styles else []
                    continue
                names += [f"{stem}.{aug.slug}.npz" for aug in self.settings.augment]
                names += [self._figure_name(stem, style) for style in styles]
                if styles and self.settings.augment:
                    names.append(f"{stem}.augment.png")
        if "riemann" in self.styles and not self.multichannel:
            names.append(self._riemann_name([p.input.name for p in predictions]))
        return [*names, "summary.csv", RUN_RECORD]

    @staticmethod
    def _figure_name(stem: str, style: str) -> str:
        from igkit.viz.styles import figure_filename

        return figure_filename(stem, style)

    @staticmethod
    def _riemann_name(names: Sequence[str]) -> str:
        from igkit.viz.styles import RIEMANN_FILE

        stem = RIEMANN_FILE.removesuffix(".png")
        return RIEMANN_FILE if stem not in names else f"{stem}-sums.png"

    def plan(self, predictions: Sequence[Prediction]) -> None:
        """Refuse, before anything is written, a run that would destroy a file.

        Raises:
            InputError: When a file the run writes is one of its inputs, exists without igkit
                having written it, or the folder holds an earlier run and ``replace`` is off.
        """
        self._inputs = sorted(
            {str(Path(f).resolve()) for p in predictions for f in p.input.sources}
        )
        inputs = set(self._inputs)
        record = self._read_record()
        earlier = set(record.get("files", [])) if record else set()
        for name in self.planned(predictions):
            path = self.out / name
            if str(path.resolve()) in inputs:
                raise InputError(
                    f"--out {self.out}: the run would write {name} over its input {path}; "
                    "choose another --out"
                )
            if path.is_symlink() or (path.exists() and name not in earlier):
                raise InputError(
                    f"--out {self.out}: {path} exists and igkit did not write it; igkit never "
                    "overwrites such a file: choose another --out or move the file"
                )
        if record and not self.replace:
            raise InputError(
                f"--out {self.out} holds an earlier igkit run ({len(earlier)} files, listed in "
                f"{RUN_RECORD}); pass --replace to replace it, or choose another --out"
            )
        self._earlier = sorted(earlier - set(self._inputs))

    def _read_record(self) -> dict[str, Any] | None:
        from igkit.io.owned import OwnershipError, read_record

        try:
            return read_record(self.out, RUN_RECORD)
        except OwnershipError as exc:
            raise InputError(str(exc)) from None

    def begin(self) -> None:
        """Create the folder, remove the earlier run's files (``replace``: only those its
        record lists, only plain files directly in the folder), and start this run's record."""
        self._guard(lambda: self.out.mkdir(parents=True, exist_ok=True), self.out)
        for name in self._earlier:
            path = self.out / name
            if Path(name).name == name and path.is_file() and not path.is_symlink():
                self._guard(path.unlink, path)
        self._record(complete=False)

    def _record(self, *, complete: bool) -> None:
        import igkit
        from igkit.io.writers import atomic_open

        ex = self.explainer
        record = {
            "igkit_version": igkit.__version__,
            "complete": complete,
            "model": ex.model.name,
            "settings": {
                **self.settings.fingerprint(),
                "output": ex.output,
                "preprocess": ex.preprocess,
                "input_size": list(ex.model.input_size),
                "figures": list(self.styles),
                "multichannel": self.multichannel,
            },
            "inputs": self._inputs,
            "files": [*self.written, RUN_RECORD],
        }
        data = json.dumps(record, indent=1, sort_keys=True).encode()

        def write() -> None:
            with atomic_open(self.out / RUN_RECORD) as handle:
                handle.write(data)

        self._guard(write, self.out / RUN_RECORD)

    def _guard(self, action: Any, path: Path) -> Any:
        """Run a write; a disk that cannot take it becomes an :class:`OutputError`."""
        try:
            return action()
        except OSError as exc:
            if exc.errno in DISK_ERRORS:
                raise OutputError(
                    exc.errno,
                    f"--out {self.out}: cannot write {path.name} ({os.strerror(exc.errno or 0)}); "
                    "free space or choose another --out. The files written so far are whole and "
                    f"listed in {RUN_RECORD}",
                ) from None
            raise

    def _npz(self, path: Path, fields: dict[str, Any]) -> None:
        from igkit.io.writers import write_npz

        self._guard(lambda: write_npz(path, fields), path)

    def _png(self, path: Path, figure: Any) -> None:
        from igkit.io.writers import write_figure_png

        self._guard(lambda: write_figure_png(path, figure), path)

    def _wrote(self, names: Iterable[str]) -> None:
        self.written.extend(n for n in names if n not in self.written)
        self._record(complete=False)

    def stem(self, explanation: Explanation, target: int) -> str:
        """``NAME`` or ``NAME_TARGET``: the file stem of one target of one input."""
        name = explanation.prediction.input.name
        return name if self.settings.one_target else f"{name}_{target}"

    def write(self, explanation: Explanation) -> list[dict[str, Any]]:
        """Write one input's npz files and figures; return its summary rows.

        Raises:
            OutputError: When the disk cannot take the files.
        """
        if self.multichannel:
            rows = self._write_channels(explanation)
        else:
            rows = self._write_photo(explanation)
        self._wrote(self._new)
        self._new = []
        return rows

    def finish(self, rows: Sequence[dict[str, Any]], names: Sequence[str]) -> None:
        """The once-per-run files: the Riemann figure (when asked for) and ``summary.csv``.

        The summary is written even when the figure fails; the figure's error is raised after.
        """
        from igkit.io.writers import write_csv

        try:
            if "riemann" in self.styles and not self.multichannel:
                from igkit.viz.styles import riemann_figure

                filename = self._riemann_name(names)
                s = self.settings
                self._png(self.out / filename, riemann_figure(s.method, s.steps))
                self.written.append(filename)
        finally:
            summary = self.out / "summary.csv"
            self._guard(lambda: write_csv(summary, list(rows), self.fields), summary)
            self.written.append("summary.csv")
            self._record(complete=True)

    # ------------------------------------------------------------------------------ photos

    def _write_photo(self, explanation: Explanation) -> list[dict[str, Any]]:
        rows = []
        variants = explanation.variants
        by_target = [
            explanation.targets[i : i + len(variants)]
            for i in range(0, len(explanation.targets), len(variants))
        ]
        for group in by_target:
            original = group[0]
            stem = self.stem(explanation, original.target)
            done = []
            for te in group:
                slug = te.variant.slug
                variant = te.variant.name if slug else None
                npz = self.out / (f"{stem}.{slug}.npz" if slug else f"{stem}.npz")
                self._npz(npz, npz_fields(self.explainer, explanation, te, variant))
                self._new.append(npz.name)
                done.append(summary_row(self.explainer, explanation, te, npz.name))
            per_image = [s for s in self.styles if s != "riemann"]
            if per_image:
                written = self._figures(stem, original, per_image)
                self._new.extend(written)
                done[0]["png"] = f"{stem}.png" if f"{stem}.png" in written else ""
            if per_image and len(group) > 1:
                comparison = f"{stem}.augment.png"
                self._augment_figure(self.out / comparison, stem, group)
                self._new.append(comparison)
                for row in done[1:]:
                    row["png"] = comparison
            rows.extend(done)
        return rows

    def _figures(self, stem: str, te: TargetExplanation, styles: Sequence[str]) -> list[str]:
        from igkit.viz.styles import explain_figures, figure_filename

        ex, s = self.explainer, self.settings
        explain_figures(
            te.variant.pixels, te.result, styles=list(styles), model=ex.model, output=ex.output,
            label=te.label, title=f"{stem} ({ex.model.name}, {ex.output})", name=stem,
            baseline=te.baseline, batch_size=s.batch_size, seed=s.seed, out_dir=self.out,
            save=self._png,
        )
        return [figure_filename(stem, style) for style in styles]

    def _augment_figure(self, path: Path, stem: str, group: Sequence[TargetExplanation]) -> None:
        from dataclasses import replace

        from igkit.viz.styles import augment_figure

        ex = self.explainer
        top = [int(np.argmax(te.variant.scores)) for te in group]
        figure = augment_figure(
            [te.variant.pixels for te in group],
            [replace(te.result, attributions=te.attributions) for te in group],
            [te.variant.name for te in group],
            predictions=[
                (ex.label(t), float(te.variant.scores[t])) for t, te in zip(top, group, strict=True)
            ],
            label=group[0].label,
            title=f"{stem} ({ex.model.name}, {ex.output})",
        )
        self._png(path, figure)

    # -------------------------------------------------------------------- multi-channel

    def _write_channels(self, explanation: Explanation) -> list[dict[str, Any]]:
        ex = self.explainer
        name = explanation.prediction.input.name
        if self.styles and set(ex.channels) >= set(_RGBY):
            from igkit.viz.figures import rgby_figure

            image = explanation.prediction.image
            order = [ex.channels.index(c) for c in _RGBY]
            self._png(
                self.out / f"{name}_rgby.png",
                rgby_figure(image[..., order], value_max=1.0, title=f"{name}: the four stains"),
            )
            self._new.append(f"{name}_rgby.png")
        rows = []
        for te in explanation.targets:
            stem = self.stem(explanation, te.target)
            npz = self.out / f"{stem}.npz"
            self._npz(npz, npz_fields(self.explainer, explanation, te))
            self._new.append(npz.name)
            png = ""
            if self.styles:
                png = f"{stem}.png"
                self._sign_masks(self.out / png, explanation, te)
                self._new.append(png)
            row = summary_row(self.explainer, explanation, te, npz.name)
            row["png"] = png
            rows.append(row)
        return rows

    def _sign_masks(self, path: Path, explanation: Explanation, te: TargetExplanation) -> None:
        from igkit.viz.figures import sign_mask_figure

        ex, r = self.explainer, te.result
        title = (
            f"{explanation.prediction.input.name}: {te.label} ({te.target}), {ex.output} "
            f"{r.score[0]:.3f}; IG over {','.join(ex.model_channels)}, "
            f"{int(r.steps[0])} steps, relative error {r.relative_error[0]:.2%}"
        )
        self._png(
            path,
            sign_mask_figure(explanation.prediction.image, te.attributions, te.baseline,
                             title=title),
        )
