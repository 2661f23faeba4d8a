"""``igkit explain-dataset``, ``summarize`` and ``compare`` end to end, with a kill and resume."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("zarr")
pytest.importorskip("pyarrow")
pytest.importorskip("duckdb")

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
from igkit.runner.store import DatasetStore  # noqa: E402


@pytest.fixture
def model_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = write_model_module(tmp_path / "models")
    monkeypatch.syspath_prepend(str(folder))
    return folder


def _rows(store: Path) -> list[dict]:
    return DatasetStore.open(store).results().to_pylist()


def assert_same_store(a: Path, b: Path, *, atol: float = 1e-6) -> None:
    """Same rows (but timings) and attributions within ``atol``."""
    store_a, store_b = DatasetStore.open(a), DatasetStore.open(b)
    rows_a, rows_b = _rows(a), _rows(b)
    assert [r["id"] for r in rows_b] == [r["id"] for r in rows_a]
    for ra, rb in zip(rows_a, rows_b, strict=True):
        for key in ("path", "label", "target", "status", "error", "steps", "evaluations"):
            assert ra[key] == rb[key], key
        for key in ("score", "baseline_score", "delta", "relative_error"):
            if ra[key] is None:
                assert rb[key] is None
            else:
                assert abs(ra[key] - rb[key]) <= atol, key
        if ra["status"] == "ok":
            np.testing.assert_allclose(
                store_b.attributions(rb["id"]), store_a.attributions(ra["id"]), rtol=0, atol=atol
            )


def test_explain_dataset_summarize_compare(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = make_images(tmp_path / "imgs", 6, broken=True)
    store = tmp_path / "store"
    model = f"{MODEL_MODULE}:tiny"
    code = main(["explain-dataset", str(tmp_path / "imgs"), "--out", str(store),
                 "--model", model, *RUN_OPTIONS, "--commit-every", "4"])
    captured = capsys.readouterr()
    assert code == 1  # the corrupt image
    assert "explained 6 of 7 pending example(s)" in captured.out
    rows = _rows(store)
    assert [r["id"] for r in rows] == list(range(7))
    assert [r["path"] for r in rows] == [str(p.resolve()) for p in images]
    failed = rows[-1]
    assert failed["status"] == "failed" and "zz_broken.png" in failed["error"]
    assert all(r["status"] == "ok" for r in rows[:-1])
    for r in rows[:-1]:
        assert r["steps"] == 16 and r["target_label"] == f"class {r['target']}"
        assert json.loads(r["settings"])["steps"] == 16
        attributions = DatasetStore.open(store).attributions(r["id"])
        assert attributions.shape == (16, 16, 3)
        # delta is sum(attributions) - (F(x) - F(x')): the stored chunk is what was checked.
        total = float(attributions.astype(np.float64).sum())
        assert total == pytest.approx(r["score"] - r["baseline_score"] + r["delta"], abs=1e-5)

    # The same command again: nothing to do, nothing duplicated.
    code = main(["explain-dataset", str(tmp_path / "imgs"), "--out", str(store),
                 "--model", model, *RUN_OPTIONS, "--commit-every", "4"])
    captured = capsys.readouterr()
    assert code == 1 and "explained 0 of 0 pending" in captured.out
    assert [r["id"] for r in _rows(store)] == list(range(7))

    # Other settings: refused in one line, store untouched.
    code = main(["explain-dataset", str(tmp_path / "imgs"), "--out", str(store),
                 "--model", model, *RUN_OPTIONS, "--baseline", "white"])
    captured = capsys.readouterr()
    assert code == 2
    err = captured.err.strip()
    assert err.count("\n") == 0 and "other settings (baseline differ)" in err
    assert "use a new --out or the same settings" in err
    assert len(_rows(store)) == 7

    code = main(["summarize", str(store)])
    captured = capsys.readouterr()
    assert code == 0
    summary = store / "summary"
    for name in ("classes.csv", "failures.csv", "mean_maps.npz", "mean_abs_attribution.png",
                 "channel_shares.png"):
        assert (summary / name).is_file(), name
    with open(summary / "classes.csv", newline="") as handle:
        classes = list(csv.DictReader(handle))
    ok = [c for c in classes if c["class"] != "(failed)"]
    assert sum(int(c["examples"]) for c in ok) == 6
    for c in ok:
        shares = [float(c[f"share_c{i}"]) for i in range(3)]
        assert sum(shares) == pytest.approx(1.0)
    with open(summary / "failures.csv", newline="") as handle:
        assert [f["id"] for f in csv.DictReader(handle)] == ["6"]
    assert "1 failed example(s)" in captured.out

    # A second "split": other images explained with the same settings.
    make_images(tmp_path / "imgs_b", 5, seed=7)
    store_b = tmp_path / "store_b"
    assert main(["explain-dataset", str(tmp_path / "imgs_b"), "--out", str(store_b),
                 "--model", model, *RUN_OPTIONS]) == 0
    compare_out = tmp_path / "cmp"
    assert main(["compare", str(store), str(store_b), "--out", str(compare_out)]) == 0
    captured = capsys.readouterr()
    assert "map_l1" in captured.out
    for name in ("compare.csv", "map_differences.png", "channel_share_differences.png"):
        assert (compare_out / name).is_file(), name
    assert main(["compare", str(store), str(store), "--out", str(tmp_path / "same"),
                 "--no-figures"]) == 0
    with open(tmp_path / "same" / "compare.csv", newline="") as handle:
        same = [r for r in csv.DictReader(handle) if r["class"] != "(failed)"]
    assert same and all(float(r["map_l1"]) == 0.0 for r in same)


def test_manifest_labels_group_the_summary(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_images(tmp_path / "imgs", 4)
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "path,label,target\nimgs/img000.png,cat,0\nimgs/img001.png,cat,\n"
        "imgs/img002.png,dog,2\nimgs/img003.png,dog,\n"
    )
    store = tmp_path / "s"
    assert main(["explain-dataset", str(manifest), "--out", str(store),
                 "--model", f"{MODEL_MODULE}:tiny", *RUN_OPTIONS, "--target", "1"]) == 0
    rows = _rows(store)
    assert [r["target"] for r in rows] == [0, 1, 2, 1]
    assert [r["label"] for r in rows] == ["cat", "cat", "dog", "dog"]
    assert main(["summarize", str(store), "--no-figures"]) == 0
    with open(store / "summary" / "classes.csv", newline="") as handle:
        assert [r["class"] for r in csv.DictReader(handle)] == ["cat", "dog"]
    capsys.readouterr()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--target", "top2"], "one class per example"),
        (["--target", "7"], "out of range"),
        (["--workers", "2"], "need --engine ray"),
        (["--steps", "0"], "not a positive integer"),
    ],
)
def test_usage_errors_are_one_line(
    tmp_path: Path,
    model_dir: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    make_images(tmp_path / "imgs", 2)
    code = main(["explain-dataset", str(tmp_path / "imgs"), "--out", str(tmp_path / "s"),
                 "--model", f"{MODEL_MODULE}:tiny", *RUN_OPTIONS, *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("igkit: error: ") and "\n" not in err
    assert message in err
    assert not (tmp_path / "s").exists()


def test_missing_source_and_not_a_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain-dataset", str(tmp_path / "nope"), "--out", str(tmp_path / "s"),
                 "--model", "x.pt"]) == 2
    assert "no such folder or manifest" in capsys.readouterr().err
    assert main(["summarize", str(tmp_path)]) == 2
    assert "not an igkit dataset store" in capsys.readouterr().err


def test_kill_and_resume_loses_and_duplicates_nothing(tmp_path: Path, model_dir: Path) -> None:
    make_images(tmp_path / "imgs", 14, broken=True)
    common = [str(tmp_path / "imgs"), *RUN_OPTIONS, "--commit-every", "2"]
    reference = tmp_path / "reference"
    done = run_igkit(["explain-dataset", *common, "--out", str(reference),
                      "--model", f"{MODEL_MODULE}:tiny"], model_dir, tmp_path)
    assert done.returncode == 1, done.stderr  # the corrupt image

    killed = tmp_path / "killed"
    command = ["explain-dataset", *common, "--out", str(killed), "--model", f"{MODEL_MODULE}:slow"]
    process = subprocess.Popen(
        igkit_command(*command), cwd=tmp_path, env=cli_env(model_dir),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    results = killed / "results"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if results.is_dir() and len(list(results.glob("part-*.parquet"))) >= 2:
                break
            time.sleep(0.02)
        assert process.poll() is None, "the run finished before it could be killed"
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=30)
    partial = _rows(killed)
    assert 4 <= len(partial) < 15
    assert len({r["id"] for r in partial}) == len(partial)

    resumed = run_igkit(command, model_dir, tmp_path)
    assert resumed.returncode == 1, resumed.stderr
    assert "resuming:" in resumed.stderr
    rows = _rows(killed)
    assert [r["id"] for r in rows] == list(range(15))  # each example exactly once
    assert_same_store(reference, killed)
    # The table as DuckDB sees it agrees.
    counts = DatasetStore.open(killed).query(
        "select count(*), count(distinct id) from results"
    ).fetchall()
    assert counts == [(15, 15)]
