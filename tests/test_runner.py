"""The dataset store (Zarr + Parquet + DuckDB), sources and the local engine, in process."""

from __future__ import annotations

from pathlib import Path

import duckdb  # noqa: F401 - installed by make test: a regression fails, not skips
import numpy as np
import pyarrow  # noqa: F401 - installed by make test: a regression fails, not skips
import pytest
import zarr  # noqa: F401 - installed by make test: a regression fails, not skips

from igkit.runner.engine import SourceError, read_source  # noqa: E402
from igkit.runner.store import DatasetStore, Example, StoreError, checksum  # noqa: E402

SETTINGS = {"model": "m", "steps": 16, "tol": 0.05}


def _row(example: Example, status: str = "ok") -> dict:
    ok = status == "ok"
    return {
        "id": example.id,
        "path": example.path,
        "label": example.label,
        "target": 1 if ok else None,
        "target_label": "class 1" if ok else None,
        "score": 0.5 if ok else None,
        "baseline_score": 0.25 if ok else None,
        "delta": 1e-4 if ok else None,
        "relative_error": 4e-4 if ok else None,
        "converged": True if ok else None,
        "steps": 16 if ok else None,
        "evaluations": 17 if ok else None,
        "seconds": 0.01,
        "status": status,
        "error": None if ok else "corrupt",
        "settings": "{}",
    }


def _examples(count: int) -> list[Example]:
    return [Example(i, f"/data/{i}.png", "cat" if i % 2 else "dog") for i in range(count)]


def test_store_round_trip(tmp_path: Path, rng: np.random.Generator) -> None:
    examples = _examples(5)
    store = DatasetStore.create_or_open(tmp_path / "s", SETTINGS, examples, (4, 6, 3))
    attributions = {e.id: rng.normal(size=(4, 6, 3)).astype(np.float32) for e in examples}
    store.commit([_row(e) for e in examples[:3]], attributions)
    store.commit([_row(examples[3]), _row(examples[4], "failed")], attributions)

    again = DatasetStore.open(tmp_path / "s")
    assert again.settings == SETTINGS and again.shape == (4, 6, 3)
    assert again.examples() == examples
    assert again.done_ids() == {0, 1, 2, 3, 4}
    table = again.results().to_pylist()
    assert [r["id"] for r in table] == [0, 1, 2, 3, 4]
    assert table[4]["status"] == "failed" and table[4]["error"] == "corrupt"
    assert table[4]["checksum"] is None
    for e in examples[:4]:
        np.testing.assert_array_equal(again.attributions(e.id), attributions[e.id])
        assert table[e.id]["checksum"] == checksum(attributions[e.id])
    assert np.isnan(again.attributions(4)).all()  # failed: no chunk
    counts = again.query("select status, count(*) from results group by 1 order by 1").fetchall()
    assert counts == [("failed", 1), ("ok", 4)]
    parts = sorted(p.name for p in (tmp_path / "s" / "results").iterdir())
    assert [p[:12] for p in parts] == ["part-000001-", "part-000002-"]
    assert not list(tmp_path.glob(".s.*"))  # no temporary skeleton left
    assert again.verify() == []


def test_other_settings_or_examples_are_refused(tmp_path: Path) -> None:
    DatasetStore.create_or_open(tmp_path / "s", SETTINGS, _examples(3), (4, 4, 3))
    with pytest.raises(StoreError, match=r"other settings \(steps differ\); use a new --out"):
        DatasetStore.create_or_open(
            tmp_path / "s", {**SETTINGS, "steps": 32}, _examples(3), (4, 4, 3)
        )
    with pytest.raises(StoreError, match="another list of images"):
        DatasetStore.create_or_open(tmp_path / "s", SETTINGS, _examples(4), (4, 4, 3))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file.txt").write_text("x")
    with pytest.raises(StoreError, match="not an igkit store"):
        DatasetStore.create_or_open(tmp_path / "other", SETTINGS, _examples(3), (4, 4, 3))
    with pytest.raises(StoreError, match="no store.json"):
        DatasetStore.open(tmp_path / "other")


def test_one_run_at_a_time(tmp_path: Path) -> None:
    DatasetStore.create_or_open(tmp_path / "s", SETTINGS, _examples(2), (4, 4, 3))
    first, second = DatasetStore.open(tmp_path / "s"), DatasetStore.open(tmp_path / "s")
    first.lock()
    with pytest.raises(StoreError, match="another igkit run is writing"):
        second.lock()
    first.unlock()
    second.lock()
    second.unlock()


def test_rows_whose_chunk_is_missing_or_damaged_are_dropped(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    examples = _examples(4)
    store = DatasetStore.create_or_open(tmp_path / "s", SETTINGS, examples, (4, 4, 3))
    attributions = {e.id: rng.normal(size=(4, 4, 3)).astype(np.float32) for e in examples}
    store.commit([_row(e) for e in examples[:2]], attributions)
    store.commit([_row(e) for e in examples[2:]], attributions)
    chunks = tmp_path / "s" / "attributions.zarr" / "c"
    (chunks / "1" / "0" / "0" / "0").unlink()  # a lost chunk
    damaged = chunks / "3" / "0" / "0" / "0"
    damaged.write_bytes(damaged.read_bytes()[:10])  # a truncated chunk

    reopened = DatasetStore.open(tmp_path / "s")
    assert sorted(reopened.verify()) == [1, 3]
    assert reopened.done_ids() == {0, 2}
    assert reopened.verify() == []
    ids = reopened.query("select id from results order by id").fetchall()
    assert ids == [(0,), (2,)]


def test_read_source_folder_csv_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from test_runner_support import make_images

    paths = make_images(tmp_path / "imgs", 3)
    folder = read_source(tmp_path / "imgs")
    assert [e.path for e in folder] == [str(p.resolve()) for p in paths]
    assert [e.id for e in folder] == [0, 1, 2]

    csv = tmp_path / "manifest.csv"
    csv.write_text("path,label,target\nimgs/img000.png,cat,1\nimgs/img001.png,,\n")
    rows = read_source(csv)
    assert rows[0] == Example(0, str(paths[0].resolve()), "cat", 1)
    assert rows[1] == Example(1, str(paths[1].resolve()), None, None)

    parquet = tmp_path / "manifest.parquet"
    pq.write_table(pa.table({"path": [str(paths[2])], "label": ["dog"]}), parquet)
    assert read_source(parquet) == [Example(0, str(paths[2].resolve()), "dog", None)]

    (tmp_path / "bad.csv").write_text("file,label\na.png,cat\n")
    with pytest.raises(SourceError, match="no 'path' column"):
        read_source(tmp_path / "bad.csv")
    (tmp_path / "bad2.csv").write_text("path,target\na.png,cat\n")
    with pytest.raises(SourceError, match="row 1: target 'cat' is not a class index"):
        read_source(tmp_path / "bad2.csv")
    with pytest.raises(SourceError, match="no such folder or manifest"):
        read_source(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SourceError, match="image folder or a .csv/.parquet manifest"):
        read_source(tmp_path / "notes.txt")


def test_a_new_store_is_locked_from_its_creation(tmp_path: Path) -> None:
    """The run that creates a store holds its lock from the moment it appears, so a second run
    cannot slip in between the creation and the lock."""
    first = DatasetStore.create_or_open(tmp_path / "s", SETTINGS, _examples(2), (4, 4, 3),
                                        lock=True)
    with pytest.raises(StoreError, match="another igkit run is writing"):
        DatasetStore.create_or_open(tmp_path / "s", SETTINGS, _examples(2), (4, 4, 3), lock=True)
    first.unlock()
    second = DatasetStore.create_or_open(tmp_path / "s", SETTINGS, _examples(2), (4, 4, 3),
                                         lock=True)
    second.unlock()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no building folder left


def test_a_damaged_store_json_is_written_again_only_when_the_store_confirms_the_run(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    import json

    from igkit.runner.store import StoreDamaged

    examples = _examples(3)
    store = DatasetStore.create_or_open(tmp_path / "s", SETTINGS, examples, (4, 4, 3))
    row = {**_row(examples[0]), "settings": json.dumps(SETTINGS)}
    store.commit([row], {0: rng.normal(size=(4, 4, 3)).astype(np.float32)})
    meta = (tmp_path / "s" / "store.json").read_bytes()
    (tmp_path / "s" / "store.json").write_bytes(meta[:40])

    with pytest.raises(StoreDamaged, match=r"store.json: unreadable .*; the store cannot be read"):
        DatasetStore.open(tmp_path / "s")
    with pytest.raises(StoreDamaged):  # a reader never writes it again
        DatasetStore.create_or_open(tmp_path / "s", SETTINGS, examples, (4, 4, 3))
    refusals = [
        ({**SETTINGS, "steps": 32}, examples, (4, 4, 3), r"other settings \(steps differs\)"),
        (SETTINGS, _examples(4), (4, 4, 3), "does not list the same images"),
        (SETTINGS, examples, (8, 8, 3), "its attributions have the shape"),
    ]
    for settings, others, shape, message in refusals:
        with pytest.raises(StoreError, match=message):
            DatasetStore.create_or_open(tmp_path / "s", settings, others, shape, lock=True)
        assert (tmp_path / "s" / "store.json").read_bytes() == meta[:40]  # left as it was

    restored = DatasetStore.create_or_open(tmp_path / "s", SETTINGS, examples, (4, 4, 3),
                                           lock=True)
    restored.unlock()
    assert restored.restored and "unreadable" in restored.restored
    assert json.loads((tmp_path / "s" / "store.json").read_bytes()) == json.loads(meta)
    assert (tmp_path / "s" / "quarantine" / "store.json").read_bytes() == meta[:40]
    assert DatasetStore.open(tmp_path / "s").check().rows[0]["id"] == 0


def test_rows_of_one_example_in_one_part_count_once(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    examples = _examples(3)
    store = DatasetStore.create_or_open(tmp_path / "s", SETTINGS, examples, (4, 4, 3))
    attributions = {e.id: rng.normal(size=(4, 4, 3)).astype(np.float32) for e in examples}
    store.commit([_row(e) for e in examples] + [_row(examples[1])], attributions)
    checked = store.check()
    assert [r["id"] for r in checked.rows] == [0, 1, 2]
    (damage,) = checked.damage
    assert "row 3 repeats the row of example 1" in str(damage)
    store.lock()
    assert store.verify() == []  # nothing to redo: the repeated row is dropped
    store.unlock()
    assert store.check().ok and len(store.results()) == 3
