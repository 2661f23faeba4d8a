"""``igkit explain-dataset``, ``summarize`` and ``compare`` end to end, with a kill and resume."""

from __future__ import annotations

import csv
import json
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
    kill_after_parts,
    make_images,
    run_igkit,
    write_model_module,
    write_store,
)

from igkit.cli import main  # noqa: E402
from igkit.runner.aggregate import read_class_maps  # noqa: E402
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
        shares = [float(c[f"share_{name}"]) for name in ("red", "green", "blue")]
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


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _shares(arrays: list[np.ndarray]) -> np.ndarray:
    """Per channel: its part of each example's total |attribution|, averaged over examples."""
    parts = [np.abs(a.astype(np.float64)).sum(axis=(0, 1)) for a in arrays]
    return np.mean([p / p.sum() for p in parts], axis=0)


def _mean_map(arrays: list[np.ndarray]) -> np.ndarray:
    return np.mean([np.abs(a.astype(np.float64)).sum(axis=-1) for a in arrays], axis=0)


def _two_stores(tmp_path: Path) -> tuple[Path, Path, dict[str, list[np.ndarray]],
                                         dict[str, list[np.ndarray]]]:
    """Stores A (cat, dog, a failure) and B (cat, bird) of random signed 5x4x3 attributions;
    B's cat attributions lean to blue and to the top rows, so A and B differ."""
    rng = np.random.default_rng(3)
    a = {"cat": [rng.normal(size=(5, 4, 3)) for _ in range(3)],
         "dog": [rng.normal(size=(5, 4, 3)) for _ in range(2)]}
    lean = np.array([1.0, 1.0, 4.0]) * np.linspace(3.0, 1.0, 5)[:, None, None]
    b = {"cat": [rng.normal(size=(5, 4, 3)) * lean for _ in range(2)],
         "bird": [rng.normal(size=(5, 4, 3))]}
    errors = iter([0.01, -0.2, 0.03, 0.5, -0.04, 0.02, 0.07, 0.0])

    def examples(groups: dict[str, list[np.ndarray]]) -> list[dict]:
        return [{"path": f"/nowhere/{name}{k}.png", "label": name, "attributions": arr,
                 "relative_error": next(errors)}
                for name, arrays in groups.items() for k, arr in enumerate(arrays)]

    store_a = write_store(tmp_path / "a", [*examples(a), {"path": "/nowhere/x.png",
                                                          "label": "dog", "error": "broken"}],
                          shape=(5, 4, 3))
    store_b = write_store(tmp_path / "b", examples(b), shape=(5, 4, 3))
    return store_a, store_b, a, b


def test_summarize_numbers_match_numpy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store, _, groups, _ = _two_stores(tmp_path)
    assert main(["summarize", str(store), "--no-figures", "--out", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "share_red" in out and "share_c0" not in out
    rows = {r["class"]: r for r in _csv(tmp_path / "s" / "classes.csv")}
    assert sorted(rows) == ["cat", "dog"]
    errors = {"cat": [0.01, 0.2, 0.03], "dog": [0.5, 0.04]}
    tol = 0.05
    maps = read_class_maps(tmp_path / "s" / "mean_maps.npz")  # classes + stacked maps
    for name, arrays in groups.items():
        row = rows[name]
        assert int(row["examples"]) == len(arrays) + (name == "dog")
        assert int(row["failed"]) == (name == "dog")
        expected = _shares(arrays)
        got = [float(row[f"share_{c}"]) for c in ("red", "green", "blue")]
        np.testing.assert_allclose(got, expected, rtol=1e-5)
        np.testing.assert_allclose(maps[name], _mean_map(arrays), rtol=1e-6)
        err = np.array(errors[name])
        assert float(row["mean_abs_relative_error"]) == pytest.approx(err.mean(), rel=1e-5)
        assert float(row["median_abs_relative_error"]) == pytest.approx(np.median(err),
                                                                        rel=1e-5)
        assert float(row["max_abs_relative_error"]) == pytest.approx(err.max(), rel=1e-5)
        assert float(row["within_tol"]) == pytest.approx((err <= tol).mean())
    assert [f["id"] for f in _csv(tmp_path / "s" / "failures.csv")] == ["5"]


def test_compare_numbers_match_numpy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store_a, store_b, a, b = _two_stores(tmp_path)
    out = tmp_path / "cmp"
    assert main(["compare", str(store_a), str(store_b), "--out", str(out), "--no-figures"]) == 0
    printed = capsys.readouterr().out
    assert "d_share_blue" in printed and "classes in only one store: bird, dog" in printed
    rows = {r["class"]: r for r in _csv(out / "compare.csv")}
    assert sorted(rows) == ["bird", "cat", "dog"]
    assert (rows["bird"]["examples_a"], rows["bird"]["examples_b"]) == ("0", "1")
    assert (rows["dog"]["examples_a"], rows["dog"]["examples_b"]) == ("3", "0")
    assert rows["dog"]["map_l1"] == rows["bird"]["map_l1"] == ""
    map_a, map_b = _mean_map(a["cat"]), _mean_map(b["cat"])
    diff = map_b / map_b.sum() - map_a / map_a.sum()
    cat = rows["cat"]
    assert float(cat["map_l1"]) == pytest.approx(np.abs(diff).sum(), rel=1e-5)
    assert float(cat["map_l1"]) > 0.1  # B leans to the top rows
    change = _shares(b["cat"]) - _shares(a["cat"])
    got = [float(cat[f"d_share_{c}"]) for c in ("red", "green", "blue")]
    np.testing.assert_allclose(got, change, rtol=1e-5, atol=1e-7)
    assert change[2] > 0.2  # ... and to blue
    assert float(cat["rel_err_a"]) == pytest.approx(np.mean([0.01, 0.2, 0.03]), rel=1e-5)
    assert float(cat["rel_err_b"]) == pytest.approx(np.mean([0.02, 0.07]), rel=1e-5)
    maps = read_class_maps(out / "map_differences.npz")
    assert sorted(maps) == ["cat"]
    np.testing.assert_allclose(maps["cat"], diff, rtol=1e-5, atol=1e-7)
    # A store against itself: no difference anywhere.
    assert main(["compare", str(store_a), str(store_a), "--out", str(tmp_path / "same"),
                 "--no-figures"]) == 0
    for row in _csv(tmp_path / "same" / "compare.csv"):
        assert float(row["map_l1"]) == 0.0
        assert all(float(row[f"d_share_{c}"]) == 0.0 for c in ("red", "green", "blue"))


@pytest.mark.parametrize(
    ("settings", "channels", "names"),
    [
        ({}, 3, ["red", "green", "blue"]),
        ({"channels": ["DAPI", "actin", "tubulin"]}, 3, ["DAPI", "actin", "tubulin"]),
        ({"channels": "red,green,blue,yellow", "model_channels": ["red", "green", "blue"]}, 3,
         ["red", "green", "blue"]),
        ({"channels": ["a", "b"]}, 3, ["red", "green", "blue"]),  # names that do not fit
        ({"model": "hpa_synthetic"}, 3, ["red", "green", "blue"]),
        ({}, 4, ["c0", "c1", "c2", "c3"]),
    ],
)
def test_summarize_and_compare_name_channels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], settings: dict, channels: int,
    names: list[str],
) -> None:
    rng = np.random.default_rng(0)
    store = write_store(tmp_path / "s", [{"path": "/nowhere/a.png", "label": "cat",
                                          "attributions": rng.normal(size=(2, 2, channels))}],
                        shape=(2, 2, channels), settings=settings)
    assert main(["summarize", str(store), "--no-figures"]) == 0
    (row,) = _csv(store / "summary" / "classes.csv")
    assert [k for k in row if k.startswith("share_")] == [f"share_{n}" for n in names]
    assert main(["compare", str(store), str(store), "--out", str(tmp_path / "c"),
                 "--no-figures"]) == 0
    (row,) = _csv(tmp_path / "c" / "compare.csv")
    assert [k for k in row if k.startswith("d_share_")] == [f"d_share_{n}" for n in names]
    capsys.readouterr()


def test_summarize_and_compare_read_channel_names_from_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run records resolved settings in its rows; channel names there are used too."""
    rng = np.random.default_rng(0)
    store = write_store(tmp_path / "s", [{"path": "/nowhere/a.png", "label": "cat",
                                          "attributions": rng.normal(size=(2, 2, 3))}],
                        shape=(2, 2, 3), row_settings={"channels": ["DAPI", "actin", "ER"]})
    assert "channels" not in DatasetStore.open(store).settings
    assert main(["summarize", str(store), "--no-figures"]) == 0
    (row,) = _csv(store / "summary" / "classes.csv")
    assert [k for k in row if k.startswith("share_")] == ["share_DAPI", "share_actin", "share_ER"]
    assert main(["compare", str(store), str(store), "--out", str(tmp_path / "c"),
                 "--no-figures"]) == 0
    (row,) = _csv(tmp_path / "c" / "compare.csv")
    assert [k for k in row if k.startswith("d_share_")] == [
        "d_share_DAPI", "d_share_actin", "d_share_ER"]
    capsys.readouterr()


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
    kill_after_parts(command, killed, cli_env(model_dir), tmp_path, timeout=120)
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


#: Class names that break ``np.savez(**{name: ...})``: two are its own parameter names (``file``
#: raised TypeError, ``allow_pickle`` vanished), one a path, one markup, one empty, one unicode.
HOSTILE_LABELS = ["file", "allow_pickle", "a/b", "$x$", "", "猫 ü ☃"]


def test_any_class_name_survives_summarize_and_compare(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from igkit.io.writers import write_npz
    from igkit.runner.aggregate import class_maps_npz

    rng = np.random.default_rng(2)
    arrays = [rng.normal(size=(3, 2, 3)) for _ in HOSTILE_LABELS]
    store = write_store(tmp_path / "s", [
        {"path": f"/nowhere/{i}.png", "label": label, "attributions": values}
        for i, (label, values) in enumerate(zip(HOSTILE_LABELS, arrays, strict=True))
    ], shape=(3, 2, 3))
    # An empty label is no class: the example counts under its explained class, "class 0".
    names = {label or "class 0": values for label, values in zip(HOSTILE_LABELS, arrays,
                                                                  strict=True)}
    assert main(["summarize", str(store), "--no-figures"]) == 0
    assert sorted(r["class"] for r in _csv(store / "summary" / "classes.csv")) == sorted(names)
    maps = read_class_maps(store / "summary" / "mean_maps.npz")
    assert sorted(maps) == sorted(names)
    for name, values in names.items():
        np.testing.assert_allclose(maps[name], _mean_map([values]), rtol=1e-6)
    with np.load(store / "summary" / "mean_maps.npz", allow_pickle=False) as data:
        assert sorted(data.files) == ["classes", "maps"] and data["classes"].dtype.kind == "U"

    assert main(["compare", str(store), str(store), "--out", str(tmp_path / "c"),
                 "--no-figures"]) == 0
    differences = read_class_maps(tmp_path / "c" / "map_differences.npz")
    assert sorted(differences) == sorted(names)
    assert all(not d.any() for d in differences.values())
    assert sorted(r["class"] for r in _csv(tmp_path / "c" / "compare.csv")) == sorted(names)
    capsys.readouterr()

    # The file format itself, with the empty name too, and no class at all.
    arrays_2d = [a.sum(axis=-1) for a in arrays]
    write_npz(tmp_path / "m.npz", class_maps_npz(HOSTILE_LABELS, arrays_2d, (3, 2)))
    back = read_class_maps(tmp_path / "m.npz")
    assert list(back) == HOSTILE_LABELS
    for label, values in zip(HOSTILE_LABELS, arrays_2d, strict=True):
        np.testing.assert_array_equal(back[label], values.astype(np.float32))
    write_npz(tmp_path / "none.npz", class_maps_npz([], [], (3, 2)))
    assert read_class_maps(tmp_path / "none.npz") == {}
