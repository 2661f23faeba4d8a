"""A dataset store never passes off damaged data as good.

Each kind of damage is done to a copy of a real store made by a real ``explain-dataset`` run:
``summarize``, ``compare`` and ``report`` name it (file, example id and image) and leave the
damaged examples out of every number, ``summarize`` and ``compare`` exit with status 1 and say
how to repair, and running the same ``explain-dataset`` command again repairs the store to the
undamaged one: the same rows and the same attribution arrays, to the bit. Also here: two runs
that create one store at once, and SIGKILLs that land in the middle of a chunk or part write.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb  # noqa: F401 - installed by make test: a regression fails, not skips
import numpy as np
import pyarrow  # noqa: F401 - installed by make test: a regression fails, not skips
import pytest
import torch  # noqa: F401 - installed by make test: a regression fails, not skips
import zarr  # noqa: F401 - installed by make test: a regression fails, not skips
from test_runner_support import (  # noqa: E402
    MODEL_MODULE,
    RUN_OPTIONS,
    cli_env,
    igkit_command,
    make_images,
    run_igkit,
    write_model_module,
)

from igkit.cli import main  # noqa: E402
from igkit.runner.aggregate import read_class_maps  # noqa: E402
from igkit.runner.store import REPAIR_ADVICE, DatasetStore  # noqa: E402

#: Three examples per part file: parts 1, 2, 3 hold ids 0-2, 3-5 and 6-8 (8: a corrupt image).
#: One thread, so an example explained again gives the same bits.
OPTIONS = [*RUN_OPTIONS, "--commit-every", "3", "--threads", "1"]
EXAMPLES = 9
FAILED = {8}


@dataclass(frozen=True)
class Made:
    """The undamaged store of a real run, and the command that made it (without --out)."""

    root: Path
    models: Path
    command: list[str]
    store: Path


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Made]:
    root = tmp_path_factory.mktemp("damage")
    models = write_model_module(root / "models")
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(models))
        make_images(root / "imgs", EXAMPLES - 1, broken=True)
        command = ["explain-dataset", str(root / "imgs"), "--model", f"{MODEL_MODULE}:tiny",
                   *OPTIONS]
        assert main([*command, "--out", str(root / "store")]) == 1  # the corrupt image
        yield Made(root, models, command, root / "store")


def _part(store: Path, number: int) -> Path:
    (part,) = (store / "results").glob(f"part-{number:06d}-*.parquet")
    return part


def _chunk(store: Path, example: int) -> Path:
    return store / "attributions.zarr" / "c" / str(example) / "0" / "0" / "0"


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def assert_same_bits(store: Path, reference: Path) -> None:
    """The same trusted rows (all but the timings) and attribution arrays equal to the bit."""
    checked, expected = DatasetStore.open(store).check(), DatasetStore.open(reference).check()
    assert checked.ok, [str(d) for d in checked.damage]
    assert [r["id"] for r in checked.rows] == list(range(EXAMPLES))
    for got, want in zip(checked.rows, expected.rows, strict=True):
        assert {k: v for k, v in got.items() if k != "seconds"} == {
            k: v for k, v in want.items() if k != "seconds"}
        if want["status"] == "ok":
            a = DatasetStore.open(store).attributions(got["id"])
            b = DatasetStore.open(reference).attributions(want["id"])
            assert a.tobytes() == b.tobytes(), got["id"]


# ------------------------------------------------------------------------------ the damage


@dataclass(frozen=True)
class Case:
    """One kind of damage: what it does, what the readers must name, which examples they must
    leave out, and what the repair moves into the quarantine."""

    damage: Callable[[Path], list[str]]  # returns the names (besides `named`) to look for
    named: tuple[str, ...] = ()
    left_out: frozenset[int] = frozenset()
    quarantined: int = 0
    numbers: bool = True  # the store can still be summarised


def _flip_chunk(store: Path) -> list[str]:
    chunk = _chunk(store, 4)
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    return []


def _delete_chunk(store: Path) -> list[str]:
    _chunk(store, 1).unlink()
    return []


def _copy_chunk(store: Path) -> list[str]:
    shutil.copyfile(_chunk(store, 5), _chunk(store, 2))
    return []


def _truncate_part(store: Path) -> list[str]:
    part = _part(store, 2)
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    return [f"results/{part.name}: unreadable"]


def _garbage_part(store: Path) -> list[str]:
    part = _part(store, 1)
    part.write_bytes(np.random.default_rng(5).bytes(part.stat().st_size))
    return [f"results/{part.name}: unreadable"]


def _duplicate_part(store: Path) -> list[str]:
    part = _part(store, 2)
    shutil.copyfile(part, store / "results" / "part-000007-0123abcd.parquet")
    return [f"results/part-000007-0123abcd.parquet: a duplicate of results/{part.name}"]


def _delete_part(store: Path) -> list[str]:
    _part(store, 3).unlink()
    return []


def _foreign_parquet(store: Path) -> list[str]:
    shutil.copyfile(_part(store, 1), store / "results" / "backup.parquet")
    return ["results/backup.parquet: not a part file igkit writes"]


def _contradicting_part(store: Path) -> list[str]:
    """A copy of part 2 in which example 3's score differs: two rows disagree about it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(_part(store, 2))
    scores = table.column("score").to_pylist()
    scores[0] += 0.25
    table = table.set_column(table.schema.get_field_index("score"), "score",
                             pa.array(scores, pa.float64()))
    pq.write_table(table, store / "results" / "part-000008-89abcdef.parquet")
    return ["2 different rows for this example", "repeats the row of example 4"]


def _garbage_store_json(store: Path) -> list[str]:
    (store / "store.json").write_bytes(b'{"format": 1, "settin')
    return [f"{store.as_posix()}/store.json: unreadable"]


def _garbage_examples(store: Path) -> list[str]:
    (store / "examples.parquet").write_bytes(b"PAR1 not really")
    return ["examples.parquet: unreadable"]


def _garbage_array_metadata(store: Path) -> list[str]:
    (store / "attributions.zarr" / "zarr.json").write_text("{}")
    return ["attributions.zarr: cannot be opened"]


OK_IDS = frozenset(range(EXAMPLES)) - FAILED

CASES = {
    # The seven kinds the readers once passed off as good.
    "flipped bytes in a chunk": Case(
        _flip_chunk, ("example 4 (", "attributions.zarr/c/4/0/0/0: the chunk"), frozenset({4})),
    "deleted chunk": Case(
        _delete_chunk, ("example 1 (", "attributions.zarr/c/1/0/0/0: the chunk is missing"),
        frozenset({1})),
    "chunk copied over another": Case(
        _copy_chunk, ("example 2 (", "c/2/0/0/0: the chunk does not match the checksum"),
        frozenset({2})),
    "truncated part": Case(
        _truncate_part, ("example 3 (", "no result row"), frozenset({3, 4, 5}), 1),
    "garbage part": Case(_garbage_part, ("example 0 (",), frozenset({0, 1, 2}), 1),
    "duplicated part": Case(_duplicate_part, ("its rows are counted once",), frozenset(), 1),
    "deleted part": Case(
        _delete_part, ("example 6 (", "example 8 (", "no result row"), frozenset({6, 7, 8})),
    # More hostile ones.
    "foreign parquet file in results/": Case(_foreign_parquet, (), frozenset(), 1),
    "part contradicting another": Case(_contradicting_part, ("example 3 (",), frozenset({3})),
    "garbage store.json": Case(_garbage_store_json, (), OK_IDS | FAILED, 1, numbers=False),
    "garbage examples.parquet": Case(_garbage_examples, (), frozenset(), 1),
    "garbage array metadata": Case(
        _garbage_array_metadata, ("example 0 (", "attributions.zarr is damaged"), OK_IDS, 1),
}


def _expected_maps(reference: Path, left_out: frozenset[int]) -> dict[str, np.ndarray]:
    """Per class the mean |attribution| map over the ok examples not left out (NumPy)."""
    store = DatasetStore.open(reference)
    groups: dict[str, list[np.ndarray]] = {}
    for row in store.check().rows:
        if row["status"] == "ok" and row["id"] not in left_out:
            values = np.abs(store.attributions(row["id"]).astype(np.float64)).sum(axis=-1)
            groups.setdefault(row["label"] or row["target_label"], []).append(values)
    return {name: np.mean(maps, axis=0) for name, maps in groups.items()}


@pytest.mark.parametrize("kind", list(CASES))
def test_readers_name_the_damage_and_resume_repairs_it(
    tmp_path: Path, made: Made, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    case = CASES[kind]
    store = tmp_path / "store"
    shutil.copytree(made.store, store)
    names = [*case.named, *case.damage(store)]

    # summarize: named on stderr and in damaged.csv, left out of every number, exit 1.
    code = main(["summarize", str(store), "--no-figures", "--out", str(tmp_path / "sum")])
    err = capsys.readouterr().err
    assert code == 1
    for name in names:
        assert name in err, (name, err)
    assert REPAIR_ADVICE.split(":")[0] in err  # "Run the same igkit explain-dataset command..."
    assert err.strip().splitlines()[-1].startswith("igkit: error: ")
    if case.numbers:
        assert "Traceback" not in err
        damaged = _csv(tmp_path / "sum" / "damaged.csv")
        assert damaged and {d["example"] for d in damaged if d["example"]} == {
            str(i) for i in case.left_out}
        counted = sum(int(c["examples"]) for c in _csv(tmp_path / "sum" / "classes.csv"))
        assert counted == EXAMPLES - len(case.left_out)
        maps = read_class_maps(tmp_path / "sum" / "mean_maps.npz")
        expected = _expected_maps(made.store, case.left_out)
        assert sorted(k for k in maps if not np.isnan(maps[k]).all()) == sorted(expected)
        for name, values in expected.items():
            np.testing.assert_allclose(maps[name], values, rtol=1e-6)

    # compare: both stores checked; the damaged one named, exit 1.
    code = main(["compare", str(made.store), str(store), "--no-figures",
                 "--out", str(tmp_path / "cmp")])
    err = capsys.readouterr().err
    assert code == 1
    for name in names:
        assert name in err, (name, err)

    # report: named on stderr, damaged examples are not items.
    code = main(["report", str(store), "--out", str(tmp_path / "report")])
    captured = capsys.readouterr()
    for name in names:
        assert name in captured.err, (name, captured.err)
    if case.numbers:
        assert f"wrote a report of {EXAMPLES - len(case.left_out)} item(s)" in captured.out
        assert code == 1  # the report is written, and the damage is the exit status too
    else:
        assert code == 2  # nothing in the store can be read

    # The same command again repairs it: equal to the undamaged store, to the bit.
    code = main([*made.command, "--out", str(store)])
    captured = capsys.readouterr()
    assert code == 1, captured.err  # the corrupt image, as in the undamaged run
    assert "Traceback" not in captured.err
    assert_same_bits(store, made.store)
    quarantine = store / "quarantine"
    moved = [p for p in quarantine.rglob("*") if p.is_file()] if quarantine.is_dir() else []
    assert len(moved) == case.quarantined, moved
    assert main(["summarize", str(store), "--no-figures", "--out", str(tmp_path / "sum2")]) == 0
    assert main(["compare", str(made.store), str(store), "--no-figures",
                 "--out", str(tmp_path / "cmp2")]) == 0
    capsys.readouterr()


def test_a_flipped_bit_anywhere_in_a_part_is_found_or_harmless(made: Made, tmp_path: Path) -> None:
    """Flip one bit at every 5th byte of a part file (a different bit each time): no row that
    differs from the one written is ever trusted, and when rows go missing the part is named.
    Parts carry page CRCs for this; a flip in the footer's statistics changes no row."""
    store = tmp_path / "store"
    shutil.copytree(made.store, store)
    part = _part(store, 1)
    original = part.read_bytes()
    good = DatasetStore.open(store).check(chunks=False).rows
    rel = f"results/{part.name}"
    try:
        for offset in range(0, len(original), 5):
            data = bytearray(original)
            data[offset] ^= 0x01 << (offset % 8)
            part.write_bytes(bytes(data))
            checked = DatasetStore.open(store).check(chunks=False)
            assert all(row in good for row in checked.rows), offset
            if checked.rows != good:
                assert any(d.file == rel for d in checked.damage), offset
    finally:
        part.write_bytes(original)


# ------------------------------------------------------------------------------ kills and races


def _wait(path: Path, process: subprocess.Popen[bytes], seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, "the run ended before it reached the write"
        assert time.monotonic() < deadline, "the run never reached the write"
        time.sleep(0.02)


@pytest.mark.parametrize(("where", "temporary"), [
    ("chunk:5", "attributions.zarr/c/4/0/0/0.*.partial"),
    ("part:2", "results/.part-000002-*.parquet.*.tmp"),
])
def test_a_kill_in_the_middle_of_a_write_is_cleaned_up_by_the_resume(
    tmp_path: Path, made: Made, where: str, temporary: str
) -> None:
    """The 5th chunk (example 4's) or the 2nd part file is half written when the SIGKILL comes.
    Zarr writes a chunk into a named ``.partial`` file; igkit's atomic_open writes a part into
    an unnamed file where Linux has O_TMPFILE (a kill leaves nothing) and into a named
    ``.tmp`` elsewhere. What the kill leaves is no part file of any reader's, and the resume
    removes it and ends with every example once and the same numbers."""
    store = tmp_path / "store"
    command = [*made.command, "--out", str(store)]
    sign = tmp_path / "paused"
    process = subprocess.Popen(
        igkit_command(*command), cwd=tmp_path,
        env=cli_env(made.models, IGKIT_TEST_PAUSE_WRITE=where,
                    IGKIT_TEST_PAUSE_SIGNAL=str(sign)),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        _wait(sign, process)
        left = list(store.glob(temporary))
        if where.startswith("chunk") or not hasattr(os, "O_TMPFILE"):
            assert len(left) == 1 and left[0].stat().st_size > 0  # half a file, on disk
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=30)
    assert list(store.glob(temporary)) == left  # what the kill left behind
    assert not [d for d in DatasetStore.open(store).check().damage if "unreadable" in d.problem]

    # A reader is not fooled by it (the half-written examples have no row), removes nothing.
    read = run_igkit(["summarize", str(store), "--no-figures"], made.models, tmp_path)
    assert read.returncode == 1 and "no result row" in read.stderr, read.stderr
    assert list(store.glob(temporary)) == left

    resumed = run_igkit(command, made.models, tmp_path)
    assert resumed.returncode == 1, resumed.stderr
    if left:
        assert "removed 1 temporary file(s) a killed run left" in resumed.stderr
    assert not list(store.glob(temporary))
    assert not [p for p in store.rglob("*") if p.name.endswith((".tmp", ".partial"))]
    assert_same_bits(store, made.store)  # every example exactly once, the same numbers


def test_only_igkit_temporaries_are_removed(tmp_path: Path, made: Made) -> None:
    """The resume removes what igkit's and Zarr's writers name their temporaries, only inside
    the store, and keeps every other file."""
    store = tmp_path / "store"
    shutil.copytree(made.store, store)
    ours = [
        store / ".store.json.ab12cd_9.tmp",
        store / ".examples.parquet.zzzzzzzz.tmp",
        store / "results" / ".part-000004-0123abcd.parquet.k3j4h5g6.tmp",
        store / "attributions.zarr" / "c" / "3" / "0" / "0" / f"0.{'ab' * 16}.partial",
        store / "attributions.zarr" / f"zarr.json.{'cd' * 16}.partial",
    ]
    theirs = [
        store / "notes.tmp",
        store / ".mine.abcdefgh.tmp",  # atomic_open's pattern, but not a file igkit writes
        store / "results" / ".notes.parquet.abcdefgh.tmp",
        store / "results" / "part-000004-0123abcd.parquet.tmp",
        store / "attributions.zarr" / "c" / "3" / "0" / "0" / "0.partial",
        store / "summary" / ".classes.csv.abcdefgh.tmp",  # a summarize may be writing it
        tmp_path / ".store.abcdefgh.tmp",  # beside the store: not the store's
    ]
    for path in ours + theirs:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(made.models))
        assert main([*made.command, "--out", str(store)]) == 1
    assert not [p for p in ours if p.exists()]
    assert all(p.exists() for p in theirs)
    assert_same_bits(store, made.store)


def test_two_runs_creating_one_store_at_once(tmp_path: Path, made: Made) -> None:
    """Both start together (the model import waits for the same moment); one creates the store
    and explains, the other is refused in one line, and the store is whole."""
    store = tmp_path / "store"
    images = tmp_path / "imgs"
    make_images(images, 6)
    command = ["explain-dataset", str(images), "--out", str(store), "--model",
               f"{MODEL_MODULE}:slow", *OPTIONS]
    start = f"{time.time() + 12:.3f}"
    processes = [
        subprocess.Popen(igkit_command(*command), cwd=tmp_path,
                         env=cli_env(made.models, IGKIT_TEST_START_AT=start),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(p.wait(timeout=300), *p.communicate()) for p in processes]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    (loser,) = [err for code, _, err in results if code == 2]
    assert loser.count("\n") == 1 and loser.startswith("igkit: error: "), loser
    assert "another igkit run is writing to this store" in loser
    checked = DatasetStore.open(store).check()
    assert checked.ok and [r["id"] for r in checked.rows] == list(range(6))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs", "store"]  # no half-made store


def test_examples_without_a_row_are_named_while_a_run_is_unfinished(
    tmp_path: Path, made: Made, capsys: pytest.CaptureFixture[str]
) -> None:
    """A store whose run has not finished is not a whole dataset: summarize says which
    examples have no row and exits 1; the numbers are those of the rows there are."""
    store = tmp_path / "store"
    shutil.copytree(made.store, store)
    for number in (2, 3):
        _part(store, number).unlink()
    assert main(["summarize", str(store), "--no-figures"]) == 1
    err = capsys.readouterr().err
    assert "6 example(s) damaged or without a row" in err
    assert sum(int(c["examples"]) for c in _csv(store / "summary" / "classes.csv")) == 3


def test_every_damaged_example_is_named_and_long_lists_are_cut(
    tmp_path: Path, made: Made, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without any chunk, every ok example is named (stderr and damaged.csv); the failed one
    still counts. A long list is cut on stderr with how many more there are."""
    store = tmp_path / "store"
    shutil.copytree(made.store, store)
    shutil.rmtree(store / "attributions.zarr" / "c")
    assert main(["summarize", str(store), "--no-figures"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == len(OK_IDS) + 1
    assert {d["example"] for d in _csv(store / "summary" / "damaged.csv")} == {
        str(i) for i in OK_IDS}
    assert [f["id"] for f in _csv(store / "summary" / "failures.csv")] == ["8"]
    lines = DatasetStore.open(store).check().messages(store, limit=3)
    assert len(lines) == 5 and lines[3] == f"igkit: damaged: ... and {len(OK_IDS) - 3} more"
